"""Wall-clock benchmark suites (pytest-benchmark) and their guest workloads."""
