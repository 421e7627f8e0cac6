"""The benchmark report (``popek bench``, ``popek report``): benchmark records priced under cost profiles, beside the paper.

Records (``benchmarks.measure.Record``: counter deltas of ``n`` iterations) are priced here, per
cost profile (``benchmarks.cost_model``), never when measured, so one ``bench.json`` can be read
under every processor generation.  The rules the report keeps (docs/benchmarks.md §1):

- A figure whose counters include a counter the profile does not price is a **bound**, shown
  ``≥ 1234`` (or ``≤``/``≈`` after a subtraction or a ratio) with a footnote listing those counters
  per iteration — never as if it were complete.
- The host's counters are measured; the VMM's own (``vmm.*``) are its word (docs/vmm-api.md §11).
  A VMM counter is priced only where the host did not count the same event, and the cycles it
  gives are shown apart ("VMM-reported").
- Simulated cycles and the simulator's wall clock (guest MIPS) are never mixed.

The comparison follows Adams & Agesen 2006: the nanobenchmark table of its appendix (Figure 4),
forkwait (§6.2, §7.1), the macrobenchmarks (Figure 3, §6.1); the 2D walk of Bhargava et al. 2008;
and the exit latency across processor generations of Agesen et al. 2012 (the generation sweep).
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import paper
from benchmarks.cost_model import CostProfile, load_profile, price
from benchmarks.measure import IO_PREFIX, NATIVE, VMM_PREFIX, Record
from reports import plots
from reports.render import (
    Block,
    Code,
    Contents,
    Details,
    Heading,
    Paragraph,
    Table,
    anchors,
    contents_entries,
    html_contents,
    slug,
    to_html,
    to_markdown,
)

__all__ = [
    "BENCH_FILE",
    "BENCH_FORMAT",
    "BENCH_VERSION",
    "DEFAULT_PROFILES",
    "GENERATIONS",
    "TITLE",
    "BenchData",
    "BenchRun",
    "Bound",
    "Cost",
    "Figure",
    "Toc",
    "bench_blocks",
    "bench_document",
    "is_bench_file",
    "load_bench",
    "merge_bench",
    "price_record",
    "profiles_of",
    "render_html",
    "render_markdown",
    "run_benchmarks",
    "write_bench_report",
    "write_merged_report",
]

TITLE = "popek benchmark report"
BENCH_FILE = "bench.json"
BENCH_FORMAT = "popek-bench"
BENCH_VERSION = 1
DEFAULT_PROFILES = ("p4-2006",)
GENERATIONS = ("p4-2006", "core2-2008", "nehalem-2009", "sandybridge-2011")
"""Cost profiles in processor-generation order: the sweep's x axis (Agesen et al. 2012 Table 1)."""

NANOBENCHMARKS = tuple(paper.NANOBENCH)
BASELINE = "empty"
"""The nanobenchmark loop with nothing in it: subtracted, per VMM, from every other row."""

_PAPER_LABEL = {"native": "native", "bt": "BT", "vt": "VT"}
_VMM_ENTRY_COUNTERS = ("vm_exits", "host_gate_exits", "hcalls")
"""Host-measured transitions into a VMM: VM exits (hardware VMMs), host-gate traps and hcalls
(software VMMs, docs/architecture.md §13)."""
_WALK = re.compile(r"walk-g(\d+)-n(\d+)")


# ---- bench.json -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchData:
    """The records of one or more ``bench.json`` files and their metadata (one dict per file)."""

    records: list[Record]
    meta: list[dict[str, Any]] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)


def _popek_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("popek")
    except metadata.PackageNotFoundError:
        return "unknown"


def bench_document(
    records: Sequence[Record], *, suites: Sequence[str], options: Mapping[str, Any], wall_s: float
) -> dict[str, Any]:
    """The JSON document of a benchmark run: every record (``Record.to_json``) and metadata
    (popek version, date, suites, options, the run's wall time)."""
    return {
        "format": BENCH_FORMAT,
        "version": BENCH_VERSION,
        "popek": _popek_version(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "suites": list(suites),
        "options": dict(options),
        "wall_s": round(wall_s, 3),
        "records": [r.to_json() for r in records],
    }


def is_bench_file(path: Path) -> bool:
    """True when ``path`` is a JSON file written by ``popek bench`` (its ``format`` says so)."""
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return re.search(rb'"format"\s*:\s*"' + BENCH_FORMAT.encode() + rb'"', head) is not None


def load_bench(path: Path) -> BenchData:
    """The records and metadata of one ``bench.json``; ``ValueError`` names the file and what is
    wrong with it."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a benchmark results file: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != BENCH_FORMAT:
        raise ValueError(f'{path}: not a benchmark results file (no "format": "{BENCH_FORMAT}")')
    if doc.get("version") != BENCH_VERSION:
        raise ValueError(f"{path}: benchmark file version {doc.get('version')!r}; this popek reads {BENCH_VERSION}")
    try:
        records = [Record.from_json(r) for r in doc.get("records", [])]
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: {e}") from None
    meta = {k: v for k, v in doc.items() if k != "records"}
    return BenchData(records, [meta], [path])


def merge_bench(datas: Iterable[BenchData]) -> BenchData:
    """Several benchmark files as one: records in file order (a record of the same suite,
    benchmark, VMM and machine in a later file replaces the earlier one)."""
    by_key: dict[tuple[str, str, str, str], Record] = {}
    meta: list[dict[str, Any]] = []
    sources: list[Path] = []
    for d in datas:
        for r in d.records:
            by_key[(r.suite, r.benchmark, r.vmm, r.machine)] = r
        meta += d.meta
        sources += d.sources
    return BenchData(list(by_key.values()), meta, sources)


# ---- pricing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """A priced figure and what it is: ``exact`` (every counter priced), ``lower`` (unpriced
    counters would add cycles), ``upper``, or ``unknown`` (bounds of both directions met)."""

    value: float
    kind: str = "exact"

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    def text(self, digits: int = 0) -> str:
        number = f"{self.value:,.{digits}f}"
        return {"exact": number, "lower": f"≥ {number}", "upper": f"≤ {number}"}.get(self.kind, f"≈ {number}")


_FLIP = {"exact": "exact", "lower": "upper", "upper": "lower", "unknown": "unknown"}


def _ratio(a: Bound, b: Bound) -> Bound | None:
    """``a / b`` with its bound: a lower numerator gives a lower ratio, a lower denominator an
    upper one; two bounds that may pull apart are unknown."""
    if b.value <= 0:
        return None
    kinds = {a.kind, _FLIP[b.kind]} - {"exact"}
    kind = "exact" if not kinds else kinds.pop() if len(kinds) == 1 else "unknown"
    return Bound(a.value / b.value, kind)


def _bound_kind(unpriced: Mapping[str, float]) -> str:
    """The kind of a figure missing ``unpriced`` counts (per iteration; a difference may be
    negative): prices are >= 0, so missing positive counts make a lower bound."""
    signs = {v > 0 for v in unpriced.values() if v}
    if not signs:
        return "exact"
    return "unknown" if len(signs) == 2 else "lower" if signs == {True} else "upper"


@dataclass(frozen=True)
class Cost:
    """One record priced under one profile, per iteration: the cycles (host-measured plus
    VMM-reported), simulated seconds, cycles by event kind (host and VMM apart), and the counts
    per iteration of the counters left unpriced (``vmm.`` names for the VMM's)."""

    record: Record
    profile: str
    cycles: float
    vmm_cycles: float
    seconds: float
    by_kind: dict[str, float]
    vmm_by_kind: dict[str, float]
    unpriced: dict[str, float]

    @property
    def figure(self) -> Bound:
        return Bound(self.cycles, _bound_kind(self.unpriced))


def price_record(record: Record, profile: CostProfile) -> Cost:
    """Price ``record`` under ``profile`` (``benchmarks.cost_model.price`` of its delta, per
    iteration).  The VMM's own counters (``vmm.*``) count only where the profile prices them by
    that name (docs/benchmarks.md §1): their cycles are the VMM's word and kept apart."""
    priced = price(record.delta, profile)
    n = record.n
    host_kind: dict[str, float] = {}
    vmm_kind: dict[str, float] = {}
    for counter, cycles in priced.by_counter.items():
        hit = profile.lookup(counter)
        kind = hit[1].kind if hit is not None else "other"
        into = vmm_kind if counter.startswith(VMM_PREFIX) else host_kind
        into[kind] = into.get(kind, 0.0) + cycles / n
    return Cost(
        record=record,
        profile=profile.name,
        cycles=priced.cycles / n,
        vmm_cycles=priced.vmm_reported / n,
        seconds=priced.seconds / n,
        by_kind=host_kind,
        vmm_by_kind=vmm_kind,
        unpriced={k: c / n for k, c in priced.unpriced_nonzero.items()},
    )


def _net(cost: Cost, base: Cost) -> tuple[Bound, dict[str, float]]:
    """``cost`` less the baseline ``base`` (per iteration), and the unpriced counts of the
    difference: the figure is a bound in the direction those counts point."""
    names = set(cost.unpriced) | set(base.unpriced)
    diff = {k: cost.unpriced.get(k, 0.0) - base.unpriced.get(k, 0.0) for k in sorted(names)}
    diff = {k: d for k, d in diff.items() if abs(d) > 1e-9}
    return Bound(cost.cycles - base.cycles, _bound_kind(diff)), diff


# ---- report model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A plot: a PNG file (linked from Markdown by ``link``, embedded in HTML) and its caption."""

    path: Path
    link: str
    caption: str


Toc = Contents  # the grade sheet's table of contents, one home (reports.render)


ReportBlock = Block | Figure | Toc


class _Notes:
    """The footnotes of one table: a marker per distinct note, the notes after the table."""

    def __init__(self) -> None:
        self.notes: dict[str, int] = {}

    def mark(self, text: str) -> str:
        n = self.notes.setdefault(text, len(self.notes) + 1)
        return f" [{n}]"

    def blocks(self) -> list[ReportBlock]:
        if not self.notes:
            return []
        return [Paragraph(f"[{n}] {text}") for text, n in self.notes.items()]


def _counts(counts: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {_num(v)}" for k, v in sorted(counts.items()))


def _num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.3g}"


def _cell(figure: Bound, unpriced: Mapping[str, float], what: str, notes: _Notes, digits: int = 0) -> str:
    text = figure.text(digits)
    if unpriced and not figure.exact:
        text += notes.mark(f"{what}: unpriced counters per iteration: {_counts(unpriced)}")
    return text


class _Priced:
    """Every record priced under one profile, looked up by (suite, benchmark, VMM)."""

    def __init__(self, records: Sequence[Record], profile: CostProfile) -> None:
        self.profile = profile
        self.costs: dict[tuple[str, str, str], Cost] = {}
        for r in records:
            self.costs[(r.suite, r.benchmark, r.vmm)] = price_record(r, profile)

    def get(self, suite: str, benchmark: str, vmm: str) -> Cost | None:
        return self.costs.get((suite, benchmark, vmm))

    def benchmarks(self, suite: str) -> list[str]:
        return list(dict.fromkeys(b for s, b, _ in self.costs if s == suite))


def _vmm_order(records: Sequence[Record], preferred: Sequence[str] = ()) -> list[str]:
    """The report's columns: native first, then ``preferred`` (the run's --vmm order), then any
    other VMM in the order its records come."""
    seen = list(dict.fromkeys(r.vmm for r in records))
    order = [v for v in (NATIVE, *preferred) if v in seen]
    return list(dict.fromkeys(order + seen))


# ---- sections -------------------------------------------------------------------------------


def _nanobench_section(p: _Priced, vmms: Sequence[str], level: int, out: Path | None, fig_prefix: str) -> list:
    names = [b for b in NANOBENCHMARKS if b in p.benchmarks("nanobench")]
    names += [b for b in p.benchmarks("nanobench") if b not in names and b != BASELINE]
    if not names:
        return []
    # the VMMs that ran nanobench (or a paper column's: its "–" says it was left out)
    vmms = [
        v for v in vmms if any(s == "nanobench" and vv == v for s, _, vv in p.costs) or v in paper.COLUMN_VMMS.values()
    ]
    notes = _Notes()
    headers = ["benchmark", *vmms, *(f"paper {_PAPER_LABEL[c]}" for c in paper.COLUMNS)]
    headers += [f"{_PAPER_LABEL[c]} popek/paper" for c in paper.COLUMNS] + ["same winner?"]
    rows, missing_base = [], []
    plot_series: dict[str, list[tuple[float | None, bool]]] = {v: [] for v in vmms}
    plot_series |= {f"paper {_PAPER_LABEL[c]}": [] for c in paper.COLUMNS}
    for b in names:
        figures: dict[str, Bound] = {}
        row: list[object] = [b]
        for v in vmms:
            cost, base = p.get("nanobench", b, v), p.get("nanobench", BASELINE, v)
            if cost is None:
                row.append("–")
                plot_series[v].append((None, True))
                continue
            if base is None:
                missing_base.append(v)
                row.append("–")
                plot_series[v].append((None, True))
                continue
            figure, unpriced = _net(cost, base)
            figures[v] = figure
            row.append(_cell(figure, unpriced, f"{b} under {v}", notes))
            plot_series[v].append((figure.value, figure.exact))
        published = paper.NANOBENCH.get(b)
        for c in paper.COLUMNS:
            row.append(f"{published.column(c):,.0f}" if published else "–")
            plot_series[f"paper {_PAPER_LABEL[c]}"].append((published.column(c), True) if published else (None, True))
        for c in paper.COLUMNS:
            mine = figures.get(paper.COLUMN_VMMS[c])
            r = _ratio(mine, Bound(published.column(c))) if (mine and published) else None
            row.append(r.text(2) + "×" if r else "–")
        row.append(_same_winner(figures, published))
        rows.append(row)
    blocks: list = [
        Heading(level, f"Nanobenchmarks ({p.profile.name})"),
        Paragraph(
            f"Cycles per iteration under {p.profile.name}: price(benchmark delta)/n − price({BASELINE} delta)/n "
            "for the same VMM (the empty loop subtracted), beside the paper's columns ("
            + paper.NANOBENCH_SOURCE
            + "). "
            "popek/paper compares the VMM standing for each paper column ("
            + ", ".join(f"{_PAPER_LABEL[c]}: {v}" for c, v in paper.COLUMN_VMMS.items())
            + "). Same winner?: the fewest cycles among popek's three columns against the paper's; "
            "'?' when popek's winner is itself a bound, so the order may change once every counter is priced."
        ),
        Table(headers, rows),
        *notes.blocks(),
    ]
    if missing_base:
        blocks.append(
            Paragraph(f"No {BASELINE} baseline for {', '.join(sorted(set(missing_base)))}: those cells are left out.")
        )
    if out is not None and plots.available():
        path = plots.nanobench_bars(
            names, plot_series, out / f"{fig_prefix}nanobench-{p.profile.name}.png",
            f"Nanobenchmarks, cycles per iteration ({p.profile.name}); hatched: bounds",
        )  # fmt: skip
        blocks.append(_figure(path, out, f"Nanobenchmarks under {p.profile.name} beside Adams & Agesen 2006 Figure 4"))
    return blocks


def _same_winner(figures: Mapping[str, Bound], published: paper.Published | None) -> str:
    if published is None:
        return "–"
    mine = {c: figures.get(paper.COLUMN_VMMS[c]) for c in paper.COLUMNS}
    if any(f is None for f in mine.values()):
        return "–"
    best = min(paper.COLUMNS, key=lambda c: mine[c].value)
    low = min(published.column(c) for c in paper.COLUMNS)
    paper_winners = [c for c in paper.COLUMNS if published.column(c) == low]
    answer = "yes" if best in paper_winners else "no"
    # A winner priced exactly beats every other column: theirs can only be larger than shown.
    sure = mine[best].exact and all(mine[c].kind in ("exact", "lower") for c in paper.COLUMNS)
    label = f"{answer} ({_PAPER_LABEL[best]})"
    return label if sure else label + " ?"


def _forkwait_section(p: _Priced, vmms: Sequence[str], level: int, out: Path | None, fig_prefix: str) -> list:
    names = p.benchmarks("forkwait")
    if not names:
        return []
    notes = _Notes()
    blocks: list = [Heading(level, f"forkwait ({p.profile.name})")]
    published = paper.FORKWAIT
    paper_by_vmm = {v: c for c, v in paper.COLUMN_VMMS.items()}
    for b in names:
        native = p.get("forkwait", b, NATIVE)
        rows = []
        bars: dict[str, tuple[float, bool]] = {}
        for v in vmms:
            cost = p.get("forkwait", b, v)
            if cost is None:
                continue
            fig = cost.figure
            ratio = Bound(1.0) if v == NATIVE else _ratio(fig, native.figure) if native else None
            column = paper_by_vmm.get(v)
            paper_ratio = published.column(column) / published.native if column else None
            rows.append([
                v,
                _cell(fig, cost.unpriced, f"{b} under {v}", notes),
                Bound(cost.seconds * 1e6, fig.kind).text(2),
                ratio.text(2) + "×" if ratio else "–",
                f"{published.column(column):g} s ({_PAPER_LABEL[column]})" if column else "",
                f"{paper_ratio:.1f}×" if paper_ratio else "",
            ])  # fmt: skip
            if ratio:
                bars[v] = (ratio.value, ratio.exact)
        for c in paper.COLUMNS:
            bars[f"paper {_PAPER_LABEL[c]}"] = (published.column(c) / published.native, True)
        blocks += [
            Paragraph(
                f"{b}: cycles and simulated µs per iteration under {p.profile.name}, time relative to native, "
                f"beside the paper's 40,000 fork/waitpid ({published.source}; 6.1× software, 17.7× hardware, §7.1)."
            ),
            Table(["VMM", "cycles/iteration", "µs/iteration", "vs native", "paper", "paper vs native"], rows),
        ]
        if out is not None and plots.available() and bars:
            path = plots.forkwait_bars(
                bars, out / f"{fig_prefix}forkwait-{slug(b)}-{p.profile.name}.png",
                f"{b} relative to native ({p.profile.name}); hatched: bounds",
            )  # fmt: skip
            blocks.append(_figure(path, out, f"{b} by VMM under {p.profile.name}, beside Adams & Agesen 2006 §7.1"))
    return blocks + notes.blocks()


def _macro_published(benchmark: str) -> tuple[str, paper.Published] | None:
    name = benchmark.lower()
    if "compile" in name:
        return "kernel compile (Figure 3)", paper.KERNEL_COMPILE
    if "compute" in name or "spec" in name:
        return "SPECint 2000 (§6.1)", paper.SPECINT_SLOWDOWN
    return None


def _macro_section(p: _Priced, vmms: Sequence[str], level: int) -> list:
    names = p.benchmarks("macro")
    if not names:
        return []
    notes = _Notes()
    paper_by_vmm = {v: c for c, v in paper.COLUMN_VMMS.items()}
    rows = []
    for b in names:
        native = p.get("macro", b, NATIVE)
        match = _macro_published(b)
        for v in vmms:
            cost = p.get("macro", b, v)
            if cost is None:
                continue
            speed = _ratio(native.figure, cost.figure) if native else None
            column = paper_by_vmm.get(v)
            published = ""
            if match and column:
                published = (
                    f"{100 * match[1].native / match[1].column(column):.0f}% ({match[0]}, {_PAPER_LABEL[column]})"
                )
            rows.append([
                b, v, _cell(cost.figure, cost.unpriced, f"{b} under {v}", notes),
                Bound(100 * speed.value, speed.kind).text(0) + "%" if speed else "–", published,
            ])  # fmt: skip
    return [
        Heading(level, f"Macrobenchmarks ({p.profile.name})"),
        Paragraph(
            "Speed as % of native (native cycles / the VMM's) beside the published: the compile-like workload "
            f"against the kernel compile ({paper.KERNEL_COMPILE.source}: 67% BT, 55% VT), the compute-bound "
            f"one against SPECint ({paper.SPECINT_SLOWDOWN.source})."
        ),
        Table(["benchmark", "VMM", "cycles/iteration", "% of native", "published"], rows),
        *notes.blocks(),
    ]


def _per_iteration_details(costs: Sequence[Cost]) -> list[ReportBlock]:
    lines = []
    for c in costs:
        r = c.record
        counts = {k: v / r.n for k, v in sorted(r.delta.items())}
        lines.append(f"{r.benchmark} under {r.vmm} on {r.machine} (n={r.n}):\n  " + _counts(counts))
    return [Details("per-iteration counters of every record", "\n".join(lines))] if lines else []


def _mmu_section(p: _Priced, vmms: Sequence[str], level: int, out: Path | None, fig_prefix: str) -> list:
    names = p.benchmarks("mmu")
    if not names:
        return []
    notes = _Notes()
    rows, costs, points = [], [], []
    from benchmarks.suites.mmu import exact_walk_refs

    for b in names:
        m = _WALK.search(b)
        page = "2m" if "-2m" in b else "4k"
        # an uncached walk's references (one level fewer per dimension with 2 MiB pages); with the
        # walk caches (-pwc) fewer are made, so the exact figure is the uncached one's bound
        expected = exact_walk_refs(int(m.group(1)), int(m.group(2)), page) if m else None
        for v in vmms:
            cost = p.get("mmu", b, v)
            if cost is None:
                continue
            costs.append(cost)
            r = cost.record
            # one- and two-dimensional walks alike: a VMM with nested paging makes only the latter
            walks = r.per_iteration("walks") + r.per_iteration("walks_2d")
            refs = r.per_iteration("walk_refs") + r.per_iteration("walk_refs_2d")
            misses = r.per_iteration("dtlb_misses") + r.per_iteration("itlb_misses")
            per_walk = refs / walks if walks else None
            rows.append([
                b, v, _cell(cost.figure, cost.unpriced, f"{b} under {v}", notes),
                _num(misses), _num(walks), _num(refs), _num(r.per_iteration("pwc_hits")),
                f"{per_walk:.2f}" if per_walk is not None else "–",
                expected if expected is not None else "",
            ])  # fmt: skip
            if per_walk is not None and expected is not None:
                points.append((f"{b} {v}", per_walk, float(expected)))
    blocks: list = [
        Heading(level, f"MMU ({p.profile.name})"),
        Paragraph(
            "Per iteration: TLB misses, page walks (one- and two-dimensional) and their memory references, "
            "page-walk-cache hits; an uncached two-dimensional walk of a g-level guest table under an n-level "
            "nested table takes n·g + n + g references (Bhargava et al. 2008; one level fewer per dimension "
            "with 2 MiB pages), the last column of the benchmarks named walk-g<g>-n<n>; with the walk caches "
            "(-pwc) fewer are made. P64's page-walk caches serve two-dimensional walks only (docs/vmx.md "
            "V.6): a one-dimensional walk is never cached, which favours nested paging with them over native."
        ),
        Table(
            [
                "benchmark",
                "VMM",
                "cycles/iteration",
                "TLB misses",
                "walks",
                "walk refs",
                "PWC hits",
                "refs/walk",
                "exact uncached",
            ],
            rows,
        ),
        *notes.blocks(),
        *_per_iteration_details(costs),
    ]
    if out is not None and plots.available() and points:
        path = plots.walk_refs(
            points, out / f"{fig_prefix}walk-refs-{p.profile.name}.png", "Memory references per walk"
        )
        blocks.append(_figure(path, out, "2D-walk references: measured beside n·g + n + g (Bhargava et al. 2008)"))
    return blocks


def _io_section(p: _Priced, vmms: Sequence[str], level: int) -> list:
    names = p.benchmarks("io")
    if not names:
        return []
    from benchmarks.suites.io import SECTORS_PER_ITERATION

    notes = _Notes()
    rows, costs = [], []
    for b in names:
        for v in vmms:
            cost = p.get("io", b, v)
            if cost is None:
                continue
            costs.append(cost)
            r = cost.record
            entries = sum(r.per_iteration(k) for k in _VMM_ENTRY_COUNTERS)
            sectors = SECTORS_PER_ITERATION.get(b)
            per_sector = Bound(cost.cycles / sectors, cost.figure.kind) if sectors else None
            ports = {k[len(IO_PREFIX) :]: r.per_iteration(k) for k in r.delta if k.startswith(IO_PREFIX)}
            disk = sum(n for d, n in ports.items() if d.startswith("disk"))
            seen = (
                f"{_num(disk)} / {_num(sum(ports.values()))}"
                if ports
                else "–" + notes.mark("the host saw no port access leave the guest: the VMM emulates in/out where "
                                      "the host cannot see the port (behind a callout, or a trap it decodes itself)")
            )  # fmt: skip
            rows.append([
                b, v, _cell(cost.figure, cost.unpriced, f"{b} under {v}", notes), _num(entries), seen,
                _num(sectors) if sectors else "–", per_sector.text(0) if per_sector else "–",
            ])  # fmt: skip
    return [
        Heading(level, f"I/O ({p.profile.name})"),
        Paragraph(
            "Per iteration: VMM entries (host-measured " + ", ".join(_VMM_ENTRY_COUNTERS) + "), port accesses "
            "the host saw leave the guest (exits to the host and I/O VM exits, by the device of "
            "docs/architecture.md §11 that claims the port: the disks' / all), "
            "sectors moved (the workload's, benchmarks/suites/io.py) and cycles per sector. A VMM's device model "
            "is its own work, priced by the exits and emulated instructions that reach it: its back end's I/O has "
            "no counter, so an emulated disk can come out cheaper than the real one's port accesses."
        ),
        Table(
            ["benchmark", "VMM", "cycles/iteration", "VMM entries", "disk / all ports", "sectors", "cycles/sector"],
            rows,
        ),
        *notes.blocks(),
        *_per_iteration_details(costs),
    ]


_KNOWN_SUITES = ("nanobench", "forkwait", "macro", "mmu", "io")


def _other_section(p: _Priced, vmms: Sequence[str], level: int) -> list:
    others = [(s, b, v) for (s, b, v) in p.costs if s not in _KNOWN_SUITES]
    if not others:
        return []
    notes = _Notes()
    rows = [
        [s, b, v, _cell(c.figure, c.unpriced, f"{s} {b} under {v}", notes), f"{c.seconds * 1e6:.3g}"]
        for (s, b, v), c in p.costs.items()
        if s not in _KNOWN_SUITES
    ]
    return [
        Heading(level, f"Other suites ({p.profile.name})"),
        Table(["suite", "benchmark", "VMM", "cycles/iteration", "µs/iteration"], rows),
        *notes.blocks(),
    ]


def _breakdown_section(p: _Priced, vmms: Sequence[str], level: int) -> list:
    blocks: list = [
        Heading(level, f"Where the cycles go ({p.profile.name})"),
        Paragraph(
            "Cycles per iteration by event kind (not baseline-subtracted), host-measured; the cycles priced "
            "from the VMM's own counters (its word, not a measurement) apart, with their share of the total; "
            "and how many counters are left unpriced (listed in the tables above)."
        ),
    ]
    any_rows = False
    for v in vmms:
        costs = [c for (s, b, vv), c in p.costs.items() if vv == v]
        if not costs:
            continue
        kinds = sorted({k for c in costs for k in c.by_kind})
        rows = []
        for c in costs:
            share = 100 * c.vmm_cycles / c.cycles if c.cycles else 0.0
            vmm_kinds = ", ".join(f"{k} {_num(x)}" for k, x in sorted(c.vmm_by_kind.items()) if x) or "–"
            rows.append([
                f"{c.record.suite} {c.record.benchmark}", *(_num(c.by_kind.get(k, 0.0)) for k in kinds),
                vmm_kinds, f"{share:.0f}%", c.figure.text(0), len(c.unpriced),
            ])  # fmt: skip
        blocks += [
            Heading(level + 1, f"{v} ({p.profile.name})"),
            Table(["benchmark", *kinds, "VMM-reported", "VMM-reported share", "total", "unpriced counters"], rows),
        ]
        total = sum(c.cycles for c in costs)
        if total and sum(c.vmm_cycles for c in costs) >= total / 2:
            # The host saw little of this VMM's work (an emulator executes the guest itself): its
            # figures rest on what it says of itself, which a reader must know (docs/vmm-api.md §11).
            blocks.append(
                Paragraph(
                    f"Most of {v}'s cycles are priced from its own counters, not from what the host measured: "
                    "its figures are as good as its word, and work it does not report is not priced."
                )
            )
        any_rows = True
    return blocks if any_rows else []


def _sweep_section(records: Sequence[Record], profiles: Sequence[CostProfile], vmms: Sequence[str], level: int,
                   out: Path | None, fig_prefix: str) -> list:  # fmt: skip
    """forkwait priced under every profile, in generation order: where the hardware VMMs
    overtake binary translation (Agesen et al. 2012, Adams & Agesen 2006 §7.1)."""
    fork = [r for r in records if r.suite == "forkwait"]
    if not fork or len(profiles) < 2:
        return []
    order = sorted(profiles, key=lambda pr: GENERATIONS.index(pr.name) if pr.name in GENERATIONS else len(GENERATIONS))
    benchmark = fork[0].benchmark
    notes = _Notes()
    rows = []
    series: dict[str, list[tuple[float | None, bool]]] = {}
    for v in vmms:
        rec = next((r for r in fork if r.vmm == v and r.benchmark == benchmark), None)
        if rec is None:
            continue
        row: list[object] = [v]
        series[v] = []
        for pr in order:
            cost = price_record(rec, pr)
            row.append(_cell(cost.figure, cost.unpriced, f"{benchmark} under {v} on {pr.name}", notes))
            series[v].append((cost.cycles, cost.figure.exact))
        rows.append(row)
    blocks: list = [
        Heading(level, "Hardware generations: forkwait across cost profiles"),
        Paragraph(
            f"The same {benchmark} records priced under each cost profile in generation order: the cycles per "
            "iteration of each VMM as VM exits and entries get cheaper (Adams & Agesen 2006 Table 1, "
            "Agesen et al. 2012 Table 1) — where hardware and hardware-ept overtake binary-translation."
        ),
        Table(["VMM", *(pr.name for pr in order)], rows),
        *notes.blocks(),
    ]
    if out is not None and plots.available() and series:
        path = plots.generation_sweep(
            [pr.name for pr in order], series, out / f"{fig_prefix}generations.png",
            f"{benchmark}: cycles per iteration by processor generation; hollow: bounds",
        )  # fmt: skip
        blocks.append(_figure(path, out, "forkwait across processor generations (the headline figure)"))
    return blocks


def _mips_section(records: Sequence[Record], vmms: Sequence[str], level: int) -> list:
    rows = []
    for v in vmms:
        mine = [r for r in records if r.vmm == v]
        insns, wall = sum(r.guest_instructions for r in mine), sum(r.wall_s for r in mine)
        rows.append([v, len(mine), f"{insns:,}", f"{wall:.2f}", f"{insns / wall / 1e6:.2f}" if wall > 0 else "–"])
    return [
        Heading(level, "Guest MIPS (simulator wall clock)"),
        Paragraph(
            "How fast the simulator ran each VMM: guest instructions of the measured iterations over the wall "
            "time of both runs (sizes n and 2n, boots included, so a lower bound on the speed). Wall-clock "
            "time is the simulator's, never an input of the simulated cycles above."
        ),
        Table(["VMM", "records", "guest instructions", "wall s", "guest MIPS"], rows),
    ]


def _figure(path: Path, out: Path, caption: str) -> Figure:
    try:
        link = path.relative_to(out).as_posix()
    except ValueError:
        link = path.name
    return Figure(path, link, caption)


def _meta_paragraph(data: BenchData) -> list[ReportBlock]:
    lines = []
    for meta, source in zip(data.meta, data.sources or [None] * len(data.meta), strict=False):
        opts = meta.get("options", {})
        lines.append(
            f"{source or 'this run'}: popek {meta.get('popek', '?')}, {meta.get('date', '?')}, suites "
            f"{', '.join(meta.get('suites', [])) or '?'}, VMMs {', '.join(opts.get('vmms', [])) or '?'}, "
            f"scale {opts.get('scale', '?')}, wall time {meta.get('wall_s', '?')} s"
        )
    return [Code("\n".join(lines))] if lines else []


def bench_blocks(
    data: BenchData,
    profiles: Sequence[str | CostProfile] = DEFAULT_PROFILES,
    *,
    level: int = 1,
    out: Path | None = None,
    fig_prefix: str = "",
    toc: bool = True,
) -> list[ReportBlock]:
    """The benchmark report as blocks, headings from ``level``: the generation sweep (with two or
    more profiles), then per profile the nanobenchmark, forkwait, macro, MMU and I/O tables and
    where the cycles go, then guest MIPS.  With ``out``, plots are drawn there (when matplotlib
    is installed) and referenced by ``Figure`` blocks; ``fig_prefix`` prefixes their file names."""
    loaded = [pr if isinstance(pr, CostProfile) else load_profile(pr) for pr in profiles]
    records = data.records
    preferred = [v for m in data.meta for v in m.get("options", {}).get("vmms", [])]
    vmms = _vmm_order(records, preferred)
    sub = level + 1
    blocks: list[ReportBlock] = [
        Heading(level, TITLE if level == 1 else "Benchmarks"),
        Paragraph(
            f"{len(records)} record(s) of {len(vmms)} VMM(s) ({', '.join(vmms) or 'none'}), priced under "
            f"{', '.join(pr.name for pr in loaded)} (docs/benchmarks.md). Cycles are simulated: counters "
            "measured by the host × unit costs the profile declares. '≥ x': some counters of the figure have no "
            "price in the profile, so the true figure is larger (footnotes list them per iteration); '≤'/'≈': "
            "after a subtraction or a ratio the missing cycles may pull the other way or either way."
        ),
        *_meta_paragraph(data),
    ]
    if out is not None and not plots.available():
        blocks.append(Paragraph(f"Plots need matplotlib: {plots.INSTALL_HINT}. Every figure is in the tables."))
    if toc:
        blocks.append(Toc(sub, 2))
    if not records:
        return [*blocks, Paragraph("No benchmark records.")]
    blocks += _sweep_section(records, loaded, vmms, sub, out, fig_prefix)
    blocks += _reproduction_section(records, loaded, sub)
    for pr in loaded:
        p = _Priced(records, pr)
        blocks += _nanobench_section(p, vmms, sub, out, fig_prefix)
        blocks += _forkwait_section(p, vmms, sub, out, fig_prefix)
        blocks += _macro_section(p, vmms, sub)
        blocks += _mmu_section(p, vmms, sub, out, fig_prefix)
        blocks += _io_section(p, vmms, sub)
        blocks += _other_section(p, vmms, sub)
        blocks += _breakdown_section(p, vmms, sub)
    blocks += _mips_section(records, vmms, sub)
    return blocks


def _reproduction_section(records: Sequence[Record], profiles: Sequence[CostProfile], level: int) -> list:
    """The paper's relations checked under ``p4-2006`` (``benchmarks.reproduction``), each with
    the reason measured for it when it does not hold; nothing when p4-2006 is not asked for."""
    from benchmarks import reproduction

    p4 = next((pr for pr in profiles if pr.name == "p4-2006"), None)
    if p4 is None:
        return []
    found = reproduction.claims(records, p4)
    if not found:
        return []
    rows = [[c.name, "yes" if c.holds else "no", c.measured, c.published, c.reason or ""] for c in found]
    held = sum(c.holds for c in found)
    return [
        Heading(level, "Reproduction of Adams & Agesen 2006 (p4-2006)"),
        Paragraph(
            f"{held} of {len(found)} relations hold. The nanobenchmark figures are fitted to the paper's "
            "(docs/benchmarks.md §3): their agreement is partly by construction; forkwait is a prediction. "
            "A relation that does not hold is reported with the reason measured for it, never tuned away."
        ),
        Table(["relation", "holds", "popek", "paper", "why not"], rows),
    ]


# ---- rendering ------------------------------------------------------------------------------


def render_markdown(blocks: Sequence[ReportBlock]) -> str:
    """The blocks as GitHub Markdown: figures as image links, the table of contents as a list."""
    plain: list[Block] = []
    out: list[str] = []

    def flush() -> None:
        if plain:
            out.append(to_markdown(plain).rstrip("\n"))
            plain.clear()

    for i, b in enumerate(blocks):
        if isinstance(b, Figure):
            flush()
            out.append(f"![{_md_alt(b.caption)}]({b.link})\n\n*{_md_alt(b.caption)}*")
        elif isinstance(b, Toc):
            flush()
            items = [
                f"{'  ' * depth}- [{_md_alt(text)}](#{anchor})"
                for depth, text, anchor in contents_entries(blocks, i, b)
            ]
            out.append("**Contents**\n\n" + "\n".join(items))
        else:
            plain.append(b)
    flush()
    return "\n\n".join(out) + "\n"


def _md_alt(text: str) -> str:
    return re.sub(r"([\\`*_\[\]<>|#])", r"\\\1", text)


def _html_block(block: Block) -> str:
    doc = to_html([block], "")
    return doc.split("<body>\n", 1)[1].rsplit("\n</body>", 1)[0]


_EXTRA_STYLE = "figure { margin: 1em 0; } figure img { max-width: 100%; } nav ul { margin: 0.2em 0; }"


def render_html(blocks: Sequence[ReportBlock], title: str) -> str:
    """The blocks as one self-contained HTML5 document: headings with anchors, the table of
    contents as nested lists, figures embedded as base64 PNG."""
    where = anchors(blocks)
    body: list[str] = []
    for i, b in enumerate(blocks):
        if isinstance(b, Heading):
            level = min(max(b.level, 1), 6)
            body.append(f'<h{level} id="{html.escape(where[i])}">{html.escape(b.text)}</h{level}>')
        elif isinstance(b, Figure):
            data = base64.b64encode(b.path.read_bytes()).decode("ascii")
            caption = html.escape(b.caption)
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{caption}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        elif isinstance(b, Toc):
            body.append(html_contents(contents_entries(blocks, i, b)))
        else:
            body.append(_html_block(b))
    skeleton = to_html([], title)
    head, _, tail = skeleton.partition("<body>\n")
    head = head.replace("</style>", _EXTRA_STYLE + "\n</style>")
    return head + "<body>\n" + "\n".join(body) + "\n" + tail


def write_bench_report(
    data: BenchData, out: Path, profiles: Sequence[str | CostProfile] = DEFAULT_PROFILES
) -> tuple[Path, Path]:
    """Write ``out/bench.md`` and ``out/bench.html`` (and the plots, with matplotlib) for
    ``data`` priced under ``profiles``; returns the two report files."""
    out.mkdir(parents=True, exist_ok=True)
    blocks = bench_blocks(data, profiles, out=out)
    markdown, page = out / "bench.md", out / "bench.html"
    markdown.write_text(render_markdown(blocks), encoding="utf-8")
    page.write_text(render_html(blocks, TITLE), encoding="utf-8")
    return markdown, page


def write_merged_report(
    results: Sequence[Path],
    bench: BenchData,
    out: Path,
    problems: Sequence[tuple[str, str]] = (),
    profiles: Sequence[str | CostProfile] = DEFAULT_PROFILES,
    links: Sequence[tuple[str, str]] = (),
):
    """The grade sheet of the conformance ``results`` (``reports.report``) followed by the
    benchmark report of ``bench``, as ``out/report.md`` and ``out/report.html``; ``links`` are
    (text, relative path) of other files to point at (a separate benchmark report).  Returns the
    ``reports.report.Report``."""
    from reports.grades import collect_files, grade, load_runs
    from reports.report import TITLE as GRADE_TITLE
    from reports.report import Report, build_blocks

    grades = [grade(run) for run in load_runs(collect_files(results))] if results else []
    out.mkdir(parents=True, exist_ok=True)
    blocks: list[ReportBlock] = list(build_blocks(grades, problems))
    blocks.insert(2, Toc(2, 2))  # after the title and the opening paragraph
    blocks += bench_blocks(bench, profiles, level=2, out=out, fig_prefix="bench-", toc=False)
    if links:
        blocks.append(Paragraph("Also: " + "; ".join(f"{text} ({path})" for text, path in links) + "."))
    markdown, page = out / "report.md", out / "report.html"
    markdown.write_text(render_markdown(blocks), encoding="utf-8")
    page.write_text(render_html(blocks, GRADE_TITLE), encoding="utf-8")
    return Report(grades, markdown, page, tuple(problems))


# ---- running --------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchRun:
    """What ``run_benchmarks`` did: the files written, the records, and the suites that failed
    ((headline, detail) pairs, as the grade sheet's problems)."""

    json: Path
    markdown: Path
    html: Path
    records: list[Record]
    problems: list[tuple[str, str]]


def run_benchmarks(
    suites: Sequence[str],
    vmms: Sequence[str],
    out: Path,
    *,
    scale: int = 1,
    profiles: Sequence[str] = DEFAULT_PROFILES,
    progress: Callable[[str], None] = lambda line: None,
) -> BenchRun:
    """Run the benchmark ``suites`` (names of ``benchmarks.suites.all_suites()``) under ``vmms``
    at ``scale``, then write ``out/bench.json`` and the report priced under ``profiles``.
    ``progress`` gets one line per run started, numbered ``[suite i/S, run k]``; a suite that
    fails (a run that did not finish as a correct machine would) is a problem, and the others
    still run."""
    from benchmarks.measure import BenchmarkError
    from benchmarks.suites import SuiteOptions, all_suites

    available = all_suites()
    started = time.perf_counter()
    records: list[Record] = []
    problems: list[tuple[str, str]] = []
    for i, name in enumerate(suites, 1):
        count = 0

        def line(text: str, i: int = i, name: str = name) -> None:
            nonlocal count
            count += 1
            progress(f"[suite {i}/{len(suites)} {name}, run {count}] {text}")

        try:
            records += available[name].run(SuiteOptions(vmms=tuple(vmms), scale=scale, progress=line))
        except BenchmarkError as e:
            problems.append((f"benchmark suite {name} failed", str(e)))
    doc = bench_document(
        records,
        suites=suites,
        options={"vmms": list(vmms), "scale": scale, "profiles": list(profiles)},
        wall_s=time.perf_counter() - started,
    )
    out.mkdir(parents=True, exist_ok=True)
    path = out / BENCH_FILE
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    markdown, page = write_bench_report(load_bench(path), out, profiles)
    return BenchRun(path, markdown, page, records, problems)


def profiles_of(data: BenchData) -> list[str]:
    """The cost profiles the benchmark files were asked to be priced under (their ``options``),
    or ``DEFAULT_PROFILES``."""
    names = [p for m in data.meta for p in m.get("options", {}).get("profiles", [])]
    return list(dict.fromkeys(names)) or list(DEFAULT_PROFILES)
