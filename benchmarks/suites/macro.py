"""The macro suite: p64os's compute-bound, compile-like and MMU-stress workloads under each VMM (Adams & Agesen 2006 §6.1).

The paper's macrobenchmarks, in p64os's versions (conformance/guest_os README):

- ``compute``: integer code with few privileged operations (sort, hash, matrix multiply), the
  stand-in for SPECint 2000, which ran within 0-9% of native under both VMMs (§6.1,
  ``benchmarks.paper.SPECINT_SLOWDOWN``);
- ``compile``: many short processes that fork, read and write files through the disk driver
  and exit, the stand-in for the Linux kernel compile (Figure 3: BT at 67%, VT at 55% of native
  speed; ``benchmarks.paper.KERNEL_COMPILE``);
- ``mmu``: TLB misses over a 2 MiB working set, ``mprotect`` page-table updates and
  copy-on-write forks — the MMU stress the paper's analysis (§7) points at.

Each record is ``n`` iterations of the workload's own unit (a report gives per-iteration
counts, and priced, % of native beside the paper's): ``compute`` n elements, ``compile`` n
jobs, ``mmu`` n random read-modify-writes with the toggles and fork rounds that go with them
(models.mmu_model: ``n/32`` toggles of 16 pages and ``n/4096`` fork rounds).
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.measure import Record
from benchmarks.suites import Suite, SuiteOptions, register
from benchmarks.suites.forkwait import P64osRun, p64os_records

__all__ = ["DEFAULT_N", "MACRO_SUITE", "run_macro"]

DEFAULT_N = {"compute": 2048, "compile": 2, "mmu": 2048}
"""Iterations per record at scale 1.  ``compute`` 2048 elements (some 400 ticks each);
``compile`` 2 jobs (about 60,000 ticks each, some 2,500 VM exits under shadow paging); ``mmu``
2048, so that the runs of n and 2n differ by one fork round (``mmu_fork_rounds``: n/4096 + 1) as
well as 2048 accesses and 64 toggles; binary translation takes about ten seconds of it."""

_NOTES = {
    "compute": "one iteration = one element of the sort, hash and matrix work (models.compute_model); "
    "Adams & Agesen 2006 §6.1: SPECint 2000 within 0-9% of native (BT 4%, VT 5% on average)",
    "compile": "one iteration = one compile job: fork, read a source file, write an object file, exit; "
    "Adams & Agesen 2006 Figure 3: kernel compile at 67% (BT) and 55% (VT) of native speed",
    "mmu": "one iteration = one random read-modify-write over 512 pages (2 MiB), with 1/32 of a "
    "16-page mprotect toggle and 1/4096 of a copy-on-write fork round (models.mmu_model)",
}


def run_macro(options: SuiteOptions, workloads: Sequence[str] = tuple(DEFAULT_N)) -> list[Record]:
    """``workloads`` (by default compute, compile and mmu) under every VMM of ``options``,
    ``DEFAULT_N × scale`` each (compile at most its largest size, ``WORKLOADS['compile'].max_n / 2``)."""
    from conformance.guest_os import WORKLOADS

    runs = []
    for name in workloads:
        n = DEFAULT_N[name]
        size = min(n * options.scale, WORKLOADS[name].max_n // 2)
        runs.append(P64osRun(name, name, size, (_NOTES[name],)))
    return p64os_records("macro", runs, options.vmms, options)


MACRO_SUITE = register(
    Suite(
        "macro",
        "p64os compute-bound, compile-like and MMU-stress workloads (Adams & Agesen 2006 §6.1), per iteration",
        run_macro,
    )
)
