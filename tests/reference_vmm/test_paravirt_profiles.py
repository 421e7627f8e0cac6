"""The paravirtual build of p64os under the paravirtual VMM on every other host profile, equivalent to the native build run natively."""

from __future__ import annotations

from functools import cache

import pytest

from cffi_core.machine import Machine
from conformance.api import Observation, default_host_memory, observe
from conformance.guest_os import os_config, os_image
from reference_vmm.native import NativeVMM
from reference_vmm.paravirt import ParavirtVMM

# x86-2005 is tests/guest_os/test_paravirt_build.py's; these are the other transports' hosts.
PROFILES = ["x86-64-2005", "classic-1974", "vtx-2006", "vtx-2009"]
WORKLOADS = [("compute", 16), ("forkwait", 5), ("diskio", 4), ("compile", 2), ("mmu", 64), ("ktest", 1), ("fstest", 1)]


@cache
def native(name: str, n: int) -> Observation:
    """The native build run natively: the oracle, once per workload and process."""
    return observe(NativeVMM, os_image(), os_config(name, n))


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("name", "n"), WORKLOADS)
def test_workload_equivalent_to_native(name, n, profile):
    # (ktest's child that reads the kernel page 0x1000 from user mode dies of #PF on the ring-3
    # hosts only because the build gives set_cr3 a user table without it: every entry has PTE_U
    # there, docs/paravirt-abi.md §7.2, §7.4.)
    config = os_config(name, n)
    expected = native(name, n)
    vmm = ParavirtVMM(Machine(profile, default_host_memory(config.memory)))
    vm = vmm.create_vm(os_image(paravirt=True), config)
    while vm.stop is None and vm.ticks < config.budget:
        vmm.run(20_000)
    assert (vm.stop, vm.exit_code) == ("exit", expected.exit_code)
    assert vm.console == expected.console
    assert vm.disk == expected.disk
    # Nothing emulated, every instruction of the guest on the host (a vmcall exits before it retires).
    c = vm.counters
    assert c["guest_insns_emulated"] == 0 and c["guest_insns_direct"] > 0
