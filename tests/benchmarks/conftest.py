"""Shared records for the benchmark tests: the nanobench and forkwait suites under the paper's three columns, measured once per test process."""

from __future__ import annotations

import pytest

from benchmarks import paper
from benchmarks.measure import Record


@pytest.fixture(scope="session")
def paper_records() -> list[Record]:
    """nanobench (scale 1), forkwait and macro's compute and compile (their small defaults) under
    native, binary-translation and hardware, each on its machine profile
    (``benchmarks.suites.machine_for``): some 20 s."""
    from benchmarks.suites import SuiteOptions, all_suites
    from benchmarks.suites.macro import run_macro

    options = SuiteOptions(vmms=tuple(paper.COLUMN_VMMS.values()))
    suites = all_suites()
    macro = run_macro(options, ("compute", "compile"))
    return suites["nanobench"].run(options) + suites["forkwait"].run(options) + macro
