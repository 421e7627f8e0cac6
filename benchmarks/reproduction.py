"""The reproduction's claims: Adams & Agesen 2006's comparisons checked on priced records, with every known deviation and its reason.

A claim is a relation the paper reports (the same nanobenchmark winner; a figure within 2x of the
published one; forkwait's ordering native < BT < VT and its ratios to native).  ``claims`` checks
each on records priced under a cost profile (``p4-2006``: the paper's machine).  A claim that does
not hold is a finding, not a bug to tune away (docs/benchmarks.md §6): ``DEVIATIONS`` names each with the
reason measured for it, and the suite's test fails both when an undeclared claim fails and when a
declared deviation starts to hold — so the list, the report and docs/benchmarks.md §6 stay true.

The nanobenchmark figures are *fitted* (``benchmarks.fit``): their agreement is partly by
construction.  forkwait is a *prediction*: priced with those costs and nothing fitted to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks import paper
from benchmarks.cost_model import CostProfile, load_profile, price, replace_section
from benchmarks.measure import Record

__all__ = ["DEVIATIONS", "Claim", "claims", "docs_section", "per_iteration", "per_operation", "update_docs"]

DEVIATIONS: dict[str, str] = {
    "nanobench in: VT within 2x": (
        "popek's hardware VMM answers the port exit with the transition and its VMCS accesses "
        "(one third of the published figure); VMware's hosted VMM spent the rest in its I/O path, "
        "work the paper does not break down and no per-event price of popek counts"
    ),
    "nanobench callret: native within 2x": (
        "the fit prices every instruction alike, and ptemod's three native instructions against the "
        "paper's 1 cycle pull that price below what a P4 call/ret pair costs"
    ),
    "nanobench callret: VT within 2x": (
        "popek's hardware VMM runs the call/ret loop in guest mode without a single exit: the "
        "native instructions at the native price, as the paper's VT equals its native (11), so "
        "it shares native's deviation"
    ),
    "nanobench pgfault: VT within 2x": (
        "popek's hardware VMM takes five VM exits per true page fault (the fault, the handler's "
        "traced PTE writes, its invlpg), each with some sixteen VMCS accesses"
    ),
    "nanobench ptemod: native within 2x": (
        "nanobench's ptemod loop is a store, an invlpg and the loop's step; the paper's is one "
        "pipelined store of 1 cycle, below what any per-instruction price can give"
    ),
    "forkwait: BT/native within 2x of 6.1x": (
        "p64os's fork runs some 7,700 instructions natively where Linux 2.6's took ~570,000 cycles "
        "(6.02 s for 40,000), while the VMMs intervene about as often per fork (p64os writes ~2,100 "
        "traced page-table entries per fork): the native denominator is far smaller"
    ),
    "forkwait: VT/native within 2x of 17.7x": (
        "as for BT (a far smaller native fork), and popek's hardware VMM makes some sixteen VMCS "
        "reads and sixteen writes per exit where the paper counts about ten reads"
    ),
    "macro compute: VT within 0-9% of native": (
        "p64os's own timer interrupts it every 20,000 ticks (its time slice), where Linux's on the "
        "P4 interrupts every 3.8 million cycles, and under popek's hardware VMM each of its ticks "
        "costs some 16,000 cycles of VM exits, entries and VMCS accesses (the deadline, the "
        "interrupt's delivery, the end-of-interrupt written to the PIC's port)"
    ),
    "macro compile: BT within 2x of 67%": (
        "p64os's compile-like workload is fork, exec and exit of small processes: as in forkwait, "
        "each writes thousands of traced page-table entries and does little else natively"
    ),
    "macro compile: VT within 2x of 55%": (
        "as for BT, with popek's hardware VMM paying a VM exit and some thirty VMCS accesses per "
        "traced page-table write"
    ),
}
"""Claims that do not hold on ``p4-2006``, each with the reason measured for it."""


@dataclass(frozen=True)
class Claim:
    """One relation of the paper checked on priced records."""

    name: str
    holds: bool
    measured: str
    published: str

    @property
    def reason(self) -> str | None:
        """Why it does not hold (``DEVIATIONS``), if it is a known deviation."""
        return DEVIATIONS.get(self.name)


def per_iteration(record: Record, profile: CostProfile) -> float:
    """The priced cycles of one iteration of ``record``."""
    return price(record.delta, profile).cycles / record.n


def per_operation(records: Iterable[Record], profile: CostProfile) -> dict[tuple[str, str], float]:
    """Nanobenchmark cycles per operation by (benchmark, VMM): the benchmark's priced cycles per
    iteration less the empty loop's under the same VMM."""
    by = {(r.vmm, r.benchmark): r for r in records if r.suite == "nanobench"}
    out = {}
    for (vmm, name), record in by.items():
        if name != "empty" and (vmm, "empty") in by:
            out[(name, vmm)] = per_iteration(record, profile) - per_iteration(by[(vmm, "empty")], profile)
    return out


def _within(measured: float, published: float) -> bool:
    return published / 2 <= measured <= published * 2


def claims(records: Iterable[Record], profile: CostProfile | str = "p4-2006") -> list[Claim]:
    """The paper's relations checked on ``records`` (nanobench, forkwait and macro under the VMMs of
    ``paper.COLUMN_VMMS``) priced under ``profile``; relations whose records are missing are
    left out."""
    if not isinstance(profile, CostProfile):
        profile = load_profile(profile)
    records = list(records)
    out: list[Claim] = []
    ops = per_operation(records, profile)
    vmm_of: Mapping[str, str] = paper.COLUMN_VMMS
    for name, published in paper.NANOBENCH.items():
        mine = {col: ops.get((name, vmm_of[col])) for col in paper.COLUMNS}
        if any(v is None for v in mine.values()):
            continue
        figures = {col: float(v) for col, v in mine.items() if v is not None}
        best = min(figures.values())
        winners = {col for col, v in figures.items() if v == best}
        want = {col for col in paper.COLUMNS if published.column(col) == min(map(published.column, paper.COLUMNS))}
        out.append(
            Claim(
                f"nanobench {name}: same winner",
                bool(winners & want),
                "/".join(sorted(winners)),
                "/".join(sorted(want)),
            )
        )
        for col in paper.COLUMNS:
            out.append(
                Claim(
                    f"nanobench {name}: {col if col == 'native' else col.upper()} within 2x",
                    _within(figures[col], published.column(col)),
                    f"{figures[col]:,.0f}",
                    f"{published.column(col):,g}",
                )
            )
    fork = {r.vmm: per_iteration(r, profile) for r in records if r.suite == "forkwait"}
    if all(vmm_of[col] in fork for col in paper.COLUMNS):
        native, bt, vt = (fork[vmm_of[col]] for col in paper.COLUMNS)
        out.append(
            Claim(
                "forkwait: native < BT < VT",
                native < bt < vt,
                f"{native:,.0f} < {bt:,.0f} < {vt:,.0f} cycles",
                "6.02 < 36.95 < 106.4 s",
            )
        )
        for col, ratio in (("bt", 6.1), ("vt", 17.7)):
            mine = fork[vmm_of[col]] / native
            out.append(
                Claim(
                    f"forkwait: {col.upper()}/native within 2x of {ratio}x",
                    _within(mine, ratio),
                    f"{mine:.1f}x",
                    f"{ratio}x",
                )
            )
    macro = {(r.benchmark, r.vmm): per_iteration(r, profile) for r in records if r.suite == "macro"}
    cols = {col: vmm_of[col] for col in paper.COLUMNS}
    if all(("compute", vmm) in macro for vmm in cols.values()):
        native = macro[("compute", cols["native"])]
        for col in ("bt", "vt"):
            speed = native / macro[("compute", cols[col])]
            out.append(
                Claim(
                    f"macro compute: {col.upper()} within 0-9% of native",
                    speed >= 0.91,
                    f"{speed:.0%}",
                    f"{1 / paper.SPECINT_SLOWDOWN.column(col):.0%} (slowdown 0-9%)",
                )
            )
    if all(("compile", vmm) in macro for vmm in cols.values()):
        native = macro[("compile", cols["native"])]
        speeds = {col: native / macro[("compile", cols[col])] for col in ("bt", "vt")}
        out.append(
            Claim(
                "macro compile: BT faster than VT",
                speeds["bt"] > speeds["vt"],
                f"{speeds['bt']:.0%} > {speeds['vt']:.0%}",
                "67% > 55% of native",
            )
        )
        for col in ("bt", "vt"):
            published = paper.KERNEL_COMPILE.native / paper.KERNEL_COMPILE.column(col)
            out.append(
                Claim(
                    f"macro compile: {col.upper()} within 2x of {published:.0%}",
                    _within(speeds[col], published),
                    f"{speeds[col]:.0%}",
                    f"{published:.0%}",
                )
            )
    return out


DOCS_BEGIN = "<!-- deviations: generated by `python -m benchmarks.reproduction docs/benchmarks.md` -->"
DOCS_END = "<!-- end of deviations -->"


def docs_section() -> str:
    """The deviations as a Markdown list, between the markers of docs/benchmarks.md §6."""
    items = "\n".join(f"- **{name}**: {reason}." for name, reason in DEVIATIONS.items())
    return f"{DOCS_BEGIN}\n{items}\n{DOCS_END}"


def update_docs(path: Path) -> bool:
    """Rewrite the generated deviations of ``path``; True if it changed."""
    return replace_section(path, DOCS_BEGIN, DOCS_END, docs_section())


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        print(f"{arg}: {'updated' if update_docs(Path(arg)) else 'up to date'}")
