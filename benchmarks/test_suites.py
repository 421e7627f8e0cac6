"""Each benchmark suite (forkwait, macro, mmu, io) run once at scale 1 under the default VMMs, its records kept in extra_info.

The records are counts only (``benchmarks.measure.Record``, docs/benchmarks.md §1); they go into
``benchmark.extra_info["records"]`` as JSON, so that a saved pytest-benchmark file
(``--benchmark-save``/``--benchmark-json``) can be priced later under any cost profile
(``benchmarks.cost_model.price``) without running anything again.  The measured time is the
simulator's wall time for the whole suite: never an input of the cost model.
"""

from __future__ import annotations

import pytest

from benchmarks.suites import DEFAULT_VMMS, SuiteOptions, all_suites

SUITES = ("forkwait", "macro", "mmu", "io")


@pytest.mark.parametrize("name", SUITES)
def test_suite(benchmark, name):
    suite = all_suites()[name]
    lines: list[str] = []
    options = SuiteOptions(vmms=DEFAULT_VMMS, scale=1, progress=lines.append)
    benchmark.group = "suites"
    records = benchmark.pedantic(suite.run, args=(options,), rounds=1, iterations=1)
    assert records, f"suite {name} made no record"
    benchmark.extra_info.update(
        suite=name,
        vmms=list(DEFAULT_VMMS),
        scale=1,
        progress=lines,
        records=[r.to_json() for r in records],
    )
