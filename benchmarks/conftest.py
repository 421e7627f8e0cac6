"""Benchmark configuration: record the core's table hash and build in the machine info."""

from __future__ import annotations


def pytest_benchmark_update_machine_info(config, machine_info):
    from cffi_core._binding import lib
    from cffi_core.isa.table import table_hash

    machine_info["p64_isa_hash"] = table_hash()
    machine_info["p64_abi_version"] = int(lib.p64_abi_version())
