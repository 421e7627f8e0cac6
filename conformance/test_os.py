"""Equivalence on the reference guest OS (category ``os``): each p64os workload, at a small size, gives the native run's observation under the VMM.

A paravirtual VMM (``guest_abi == "paravirt"``) runs the paravirtual build of p64os, from the
same source (conformance/guest_os/README.md), and is held to the native build's observation
run natively: the same console output, exit code and disk (docs/vmm-api.md §10.6).
"""

from __future__ import annotations

from functools import cache

import pytest

from conformance.api import Observation, observe
from conformance.checks import equivalence_report
from conformance.guest_os import OS_SOURCE, os_config, os_image

# The workloads at the sizes the suite runs them: small enough that the slowest reference VMM
# (emulate, which interprets every instruction in Python) finishes each in seconds, large
# enough that every mechanism a workload stresses happens many times — several forks and
# context switches, timer preemption, copy-on-write breaks, disk interrupts (conformance/
# guest_os/README.md describes each workload).
OS_WORKLOADS: dict[str, int] = {
    "ktest": 1,
    "fstest": 1,
    "forkwait": 8,
    "compute": 1,
    "compile": 2,
    "mmu": 1,
    "diskio": 2,
}


@cache
def _native(name: str, n: int, profile: str) -> Observation:
    from reference_vmm.native import NativeVMM

    return observe(NativeVMM, os_image(), os_config(name, n), profile=profile)


@pytest.mark.popek_property("equivalence", category="os")
@pytest.mark.popek_guest_abi("native", "paravirt")
@pytest.mark.parametrize("name", list(OS_WORKLOADS))
def test_os_workload_is_equivalent(name: str, vmm, popek_profile, popek_record):
    n = OS_WORKLOADS[name]
    expected = _native(name, n, popek_profile)
    assert (expected.stop, expected.exit_code) == ("exit", 0), (
        f"{name} {n} natively on {popek_profile}: {expected.stop} {expected.exit_code} (a bug of p64os)"
    )
    paravirt = vmm.guest_abi == "paravirt"
    actual = observe(vmm, os_image(paravirt=paravirt), os_config(name, n), profile=popek_profile)
    popek_record(**{k: v for k, v in actual.counters.items() if v})
    if expected.equivalent(actual):
        return
    report = equivalence_report(expected, actual, names=("native", vmm.name))
    build = "the paravirtual build of p64os under the VMM, the native build natively" if paravirt else "p64os"
    report.append(f"guest: {build} ({OS_SOURCE.name}), console input {os_config(name, n).console_input!r}")
    raise AssertionError("\n".join(report))
