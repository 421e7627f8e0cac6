"""The nanobenchmark suite: Adams & Agesen's (2006) seven nanobenchmarks and the empty loop under each VMM.

Each benchmark of the nanobench kernel (``conformance/guest_os/nanobench``) runs ``n`` and
``2 n`` times; the record holds the counter deltas of ``n`` iterations.  The report subtracts the
``empty`` loop's per-iteration cycles from each benchmark's (the paper's figures are the
operation's own cycles) and sets them beside the paper's native, BT and VT columns
(``benchmarks.paper.NANOBENCH``).  Every run's console is checked against the output a correct
machine prints, so a VMM that skips or repeats an operation makes no record.
"""

from __future__ import annotations

from benchmarks.measure import NATIVE, BenchmarkError, Record, measure
from benchmarks.suites import Suite, SuiteOptions, machine_for, register
from benchmarks.suites.forkwait import guest_abi

__all__ = ["BASELINE", "DEFAULT_N", "NANOBENCH_SUITE", "even_size", "run_nanobench"]

DEFAULT_N = 1000
"""Iterations per record at scale 1: enough that a host-timer slice (docs/vmm-api.md §9) is a
small fraction of an iteration's counts, and a run of all eight under six VMMs takes a minute."""
BASELINE = "empty"
"""The loop alone, subtracted from every benchmark (nanobench.s: every loop has its shape)."""


def even_size(name: str, n: int) -> int:
    """The least size ``m >= n`` whose run prints as many characters as the run of ``2 m``: the
    kernel's report (``nanobench <name> n=<m> check=<value>``) is outside the loop, and a digit
    more at ``2 m`` would leave its printing in the difference of the two runs."""
    from conformance.guest_os.nanobench import MAX_N, expected_output

    m = n
    while len(expected_output(name, m)) != len(expected_output(name, 2 * m)):
        m += 1
        if 2 * m > MAX_N:
            raise ValueError(f"nanobench {name}: no size from {n} up prints as long as twice it")
    return m


def run_nanobench(options: SuiteOptions) -> list[Record]:
    """The records of every nanobenchmark (and the baseline) under every VMM of ``options``; a
    VMM that runs paravirtual guests is left out (nanobench has no paravirtual build), with a
    progress line saying so."""
    from conformance.guest_os.nanobench import NANOBENCHMARKS, expected_output, nanobench_config, nanobench_image

    n = DEFAULT_N * options.scale
    records: list[Record] = []
    for vmm in options.vmms:
        if guest_abi(vmm) != NATIVE:
            options.progress(f"nanobench: {vmm} left out: it runs paravirtual guests and nanobench has no such build")
            continue
        machine = machine_for(vmm)
        for name in NANOBENCHMARKS:
            options.progress(f"nanobench {name}: {vmm} on {machine}")

            def check(size: int, console: bytes, name: str = name) -> None:
                want = expected_output(name, size)
                if console != want:
                    raise BenchmarkError(f"nanobench {name} n={size}: printed {console[-120:]!r}, not {want!r}")

            records.append(
                measure(
                    "nanobench",
                    name,
                    vmm,
                    machine,
                    even_size(name, n),
                    lambda size, name=name: (nanobench_image(), nanobench_config(name, size)),
                    check=check,
                )
            )
    return records


NANOBENCH_SUITE = register(
    Suite(
        "nanobench",
        "Adams & Agesen 2006's seven nanobenchmarks (and the empty loop to subtract), per iteration",
        run_nanobench,
    )
)
