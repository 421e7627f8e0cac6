"""The published figures the benchmark suites are compared with, each with its source (Adams & Agesen 2006).

One home for the papers' numbers: the nanobenchmark fit (``benchmarks.fit``), the suites and the
reports read them from here.  Columns are the paper's: ``native``, ``bt`` (VMware's software
VMM, binary translation) and ``vt`` (its hardware-assisted VMM on VT-x without nested paging).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "COLUMNS",
    "COLUMN_VMMS",
    "FORKWAIT",
    "KERNEL_COMPILE",
    "NANOBENCH",
    "NANOBENCH_SOURCE",
    "SPECINT_SLOWDOWN",
    "Published",
]

COLUMNS = ("native", "bt", "vt")
"""The paper's columns: native, software VMM (binary translation), hardware VMM (VT-x)."""

COLUMN_VMMS = {"native": "native", "bt": "binary-translation", "vt": "hardware"}
"""The popek VMM that stands for each column: the reference VMM of the same technique
(``hardware``: VT-x with shadow paging, as the paper's hardware VMM; no nested paging in 2006)."""


@dataclass(frozen=True)
class Published:
    """One published row: the figure per column and where it is printed."""

    native: float
    bt: float
    vt: float
    source: str

    def column(self, name: str) -> float:
        return {"native": self.native, "bt": self.bt, "vt": self.vt}[name]

    def winner(self) -> str:
        """The column with the fewest cycles (seconds)."""
        return min(COLUMNS, key=self.column)


NANOBENCH_SOURCE = "Adams & Agesen 2006, appendix 'Nano-benchmarks in cycles' (Figure 4), 3.8 GHz Pentium 4 672"

NANOBENCH: dict[str, Published] = {
    "syscall": Published(242, 2308, 246, NANOBENCH_SOURCE + ", row 'syscall'"),
    "in": Published(3209, 216, 15826, NANOBENCH_SOURCE + ", row 'in'"),
    "cr8wr": Published(150, 35, 177, NANOBENCH_SOURCE + ", row 'cr8wr'"),
    "callret": Published(11, 51, 11, NANOBENCH_SOURCE + ", row 'call/ret'"),
    "pgfault": Published(1093, 3927, 11242, NANOBENCH_SOURCE + ", row 'pgfault'"),
    "divzero": Published(889, 3223, 1014, NANOBENCH_SOURCE + ", row 'divzero'"),
    "ptemod": Published(1, 391, 12733, NANOBENCH_SOURCE + ", row 'ptemod' (unchanged)"),
}
"""Cycles per operation of the seven nanobenchmarks, in the paper's order (``callret`` is its
call/ret).  The appendix's two other ptemod rows ("unused in main body of paper") are not used."""

FORKWAIT = Published(
    6.02, 36.95, 106.4, "Adams & Agesen 2006 §6.2 and appendix: forkwait, 40,000 fork/waitpid, seconds on the P4 672"
)
"""forkwait seconds; the paper's ratios to native are 6.1x (software) and 17.7x (hardware), §7.1."""

KERNEL_COMPILE = Published(
    265, 393, 484, "Adams & Agesen 2006 Figure 3 and appendix: Linux 2.6.11 make -j8 bzImage, seconds on the P4 672"
)
"""The compile-like macrobenchmark: BT runs at 67%, VT at 55% of native speed."""

SPECINT_SLOWDOWN = Published(
    1.0,
    1.04,
    1.05,
    "Adams & Agesen 2006 §6.1: SPECint 2000 slowdown 0-9%, average 4% (software VMM) and 5% (hardware VMM)",
)
"""The compute-bound macrobenchmark, as time relative to native."""
