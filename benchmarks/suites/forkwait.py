"""The forkwait suite (Adams & Agesen 2006 §6.2): fork and waitpid under each VMM, and the p64os runner the other suites share.

The paper's forkwait makes 40,000 processes, each a ``fork`` (an address space copied
copy-on-write), an ``exit`` and a ``waitpid``: the workload where a VMM's MMU virtualization is
all that counts, and where the paper found its hardware VMM slower than its software one
(6.1x native for binary translation, 17.7x for VT-x without nested paging; §7.1,
``benchmarks.paper.FORKWAIT``).  Here p64os's ``forkwait`` workload runs ``n`` and ``2 n``
iterations under each VMM; the record's delta is ``n`` forks, so a report gives per-fork
counts (and, priced, cycles and seconds per fork; scaled to 40,000 for the paper's table).

``p64os_records`` runs any p64os workload this way and is what the ``macro``, ``mmu`` and
``io`` suites use too: a paravirtual VMM (``guest_abi == "paravirt"``) gets the paravirtual
build of the kernel (``os_image(paravirt=True)``, guest_os README), every run's console is
checked against the workload's model (``expected_console``), and a VMM the machine cannot
host is left out with a note rather than failing the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from benchmarks.measure import NATIVE, BenchmarkError, Record, measure
from benchmarks.suites import Suite, SuiteOptions, machine_for, register

__all__ = [
    "DEFAULT_N",
    "FORKWAIT_SUITE",
    "P64osRun",
    "guest_abi",
    "left_out_note",
    "note_left_out",
    "p64os_check",
    "p64os_records",
    "place_native_guest",
    "run_forkwait",
]

DEFAULT_N = 20
"""Forks per record at scale 1.  The shadow-paging ``hardware`` VMM handles some 2,000 VM exits
per fork in Python, so 20 (runs of 20 and 40) take a few seconds under it; the slowest, binary
translation, about ten."""


def guest_abi(vmm: str) -> str:
    """``"native"`` or ``"paravirt"``: which build of a guest ``vmm`` runs (``VMM.guest_abi``;
    the bare machine runs the native build)."""
    if vmm == NATIVE:
        return NATIVE
    from conformance.api import load_vmm

    return load_vmm(vmm).guest_abi


def left_out_note(vmm: str, machine: str | None, why: str) -> str:
    """The note a record carries for a VMM left out of its benchmark."""
    where = f" on {machine}" if machine else ""
    return f"left out: {vmm}{where}: {why}"


def place_native_guest(vmm: str, what: str, left_out: list[str], options: SuiteOptions) -> str | None:
    """The machine ``vmm`` runs the native-code guest ``what`` on (``machine_for``), or None with
    a note appended to ``left_out`` and a progress line: a paravirtual VMM runs no native code,
    and a VMM no machine profile can host runs nothing."""
    if guest_abi(vmm) != NATIVE:
        left_out.append(left_out_note(vmm, None, f"it runs paravirtual guests; {what} is native code"))
    else:
        try:
            return machine_for(vmm)
        except ValueError as e:  # no profile has the features it requires
            left_out.append(left_out_note(vmm, None, str(e)))
    options.progress(f"{what}: {left_out[-1]}")
    return None


def note_left_out(records: list[Record], benchmark: str, notes: Sequence[str]) -> list[Record]:
    """``records`` with ``notes`` (the VMMs left out of ``benchmark``) added to every record of
    ``benchmark``, so that a report that shows the benchmark says who is missing and why."""
    if not notes:
        return records
    return [replace(r, notes=[*r.notes, *notes]) if r.benchmark == benchmark else r for r in records]


def p64os_check(workload: str) -> Callable[[int, bytes], None]:
    """A ``measure`` check: the run printed exactly what the workload's model says a correct
    machine prints (``conformance.guest_os.expected_console``)."""
    from conformance.guest_os import expected_console

    def check(size: int, console: bytes) -> None:
        want = expected_console(workload, size)
        if want is None:
            raise BenchmarkError(f"p64os {workload}: a self-test has no model of its output to check")
        if console != want:
            raise BenchmarkError(
                f"p64os {workload} n={size}: printed ...{console[-160:]!r}, a correct machine ...{want[-160:]!r}"
            )

    return check


@dataclass(frozen=True)
class P64osRun:
    """One benchmark of a suite made of a p64os workload: ``benchmark`` (the record's name) is
    ``workload`` at ``n`` iterations; ``notes`` go on every record of it; ``machine`` maps a VMM
    to the profile it runs on (default ``machine_for``)."""

    benchmark: str
    workload: str
    n: int
    notes: tuple[str, ...] = ()
    machine: Callable[[str], str] = machine_for


def p64os_records(suite: str, runs: Sequence[P64osRun], vmms: Sequence[str], options: SuiteOptions) -> list[Record]:
    """The records of every run of ``runs`` under every VMM of ``vmms`` (each on
    ``run.machine(vmm)``), with a progress line before each measurement.  A VMM no machine
    profile can host, or whose host lacks a feature it requires (``VMMUnsupported``), is left
    out with a note on the benchmark's records; any other failure (a wrong output, a VMM error)
    is raised: its counts would measure something else."""
    from conformance.api import VMMUnsupported
    from conformance.guest_os import os_config, os_image

    records: list[Record] = []
    for run in runs:
        left_out: list[str] = []
        check = p64os_check(run.workload)
        for vmm in vmms:
            paravirt = guest_abi(vmm) == "paravirt"
            try:
                machine = run.machine(vmm)
            except ValueError as e:  # machine_for: no profile has the features it requires
                left_out.append(left_out_note(vmm, None, str(e)))
                options.progress(f"{suite} {run.benchmark}: {left_out[-1]}")
                continue
            options.progress(f"{suite} {run.benchmark}: {vmm} on {machine}")

            def make(size: int, workload: str = run.workload, paravirt: bool = paravirt) -> tuple[object, object]:
                return os_image(paravirt=paravirt), os_config(workload, size)

            try:
                record = measure(suite, run.benchmark, vmm, machine, run.n, make, check=check)
            except VMMUnsupported as e:
                left_out.append(left_out_note(vmm, machine, str(e)))
                options.progress(f"{suite} {run.benchmark}: {left_out[-1]}")
                continue
            build = "the paravirtual build of p64os" if paravirt else "the native build of p64os"
            notes = [f"p64os {run.workload}: {build}, runs of n and 2n = {2 * run.n}", *run.notes]
            records.append(replace(record, notes=[*record.notes, *notes]))
        records = note_left_out(records, run.benchmark, left_out)
    return records


def run_forkwait(options: SuiteOptions) -> list[Record]:
    """forkwait under every VMM of ``options``: ``DEFAULT_N × scale`` forks per record."""
    n = DEFAULT_N * options.scale
    note = (
        "one iteration = one fork + exit + waitpid; the paper's run is 40,000 iterations "
        "(Adams & Agesen 2006 §6.2: native 6.02 s, BT 36.95 s, VT 106.4 s on the P4 672)"
    )
    return p64os_records("forkwait", [P64osRun("forkwait", "forkwait", n, (note,))], options.vmms, options)


FORKWAIT_SUITE = register(
    Suite(
        "forkwait",
        "Adams & Agesen 2006 §6.2 forkwait: p64os fork + exit + waitpid, counts per fork under each VMM",
        run_forkwait,
    )
)
