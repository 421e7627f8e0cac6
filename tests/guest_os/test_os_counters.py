"""p64os's counters tell Adams & Agesen's (2006) story: forkwait under shadow paging exits many times more than under nested paging."""

from __future__ import annotations

from functools import cache

import pytest

from cffi_core.vmx import VmExitReason
from conformance.api import load_vmm, run_alone
from conformance.guest_os import os_config, os_image

# Per-iteration figures are differences between two sizes, so boot and the command line cancel
# out: (count at N2 - count at N1) / (N2 - N1).
N1, N2 = 4, 12
HARDWARE = ("hardware", "vtx-2006")  # VT-x with shadow paging: Adams & Agesen's P4 (§4, §6.2)
HARDWARE_EPT = ("hardware-ept", "vtx-2009")  # nested paging (Bhargava et al. 2008)
# The host core counts VM exits by reason number (docs/vmx.md V.11).
EXCEPTION, INVLPG, CR_ACCESS = (
    f"vm_exit_{r.value}" for r in (VmExitReason.EXCEPTION, VmExitReason.INVLPG, VmExitReason.CR_ACCESS)
)


@cache
def _host_counters(vmm: str, profile: str, workload: str, n: int) -> dict[str, int]:
    hosted = run_alone(load_vmm(vmm), os_image(), os_config(workload, n), profile=profile)
    assert (hosted.observation.stop, hosted.observation.exit_code) == ("exit", 0), hosted.observation.console
    return dict(hosted.host.counters)


def _per_iteration(vmm_profile: tuple[str, str], workload: str, counter: str) -> float:
    assert counter in _host_counters(*vmm_profile, workload, N2) or counter.startswith("vm_exit_"), counter
    a = _host_counters(*vmm_profile, workload, N1).get(counter, 0)
    b = _host_counters(*vmm_profile, workload, N2).get(counter, 0)
    return (b - a) / (N2 - N1)


def test_forkwait_exits_many_times_more_under_shadow_paging():
    # Adams & Agesen §6.2: forkwait stresses "creation of address spaces, modification of
    # traced PTEs, injection of page faults" -- all VMM work under shadow paging, none of it
    # under nested paging, where the guest edits its own tables freely.
    shadow = _per_iteration(HARDWARE, "forkwait", "vm_exits")
    nested = _per_iteration(HARDWARE_EPT, "forkwait", "vm_exits")
    assert shadow >= 10 * max(nested, 1), (shadow, nested)


@pytest.mark.parametrize("counter", [EXCEPTION, INVLPG, CR_ACCESS])
def test_forkwait_makes_no_mmu_exits_under_nested_paging(counter):
    # vtx-2009: page faults, invlpg and CR3 loads belong to the guest (docs/vmx.md, nested paging).
    assert _per_iteration(HARDWARE_EPT, "forkwait", counter) == 0


def test_forkwait_under_shadow_paging_exits_for_faults_and_address_space_switches():
    # Every fork switches address spaces at least twice (to the child and back) and faults on
    # copy-on-write pages; the shadow-paging VMM sees each CR3 load and each guest #PF.
    assert _per_iteration(HARDWARE, "forkwait", CR_ACCESS) >= 2
    assert _per_iteration(HARDWARE, "forkwait", EXCEPTION) >= 1


def test_compute_runs_without_vmm_intervention_under_nested_paging():
    # A compute-bound workload is near native under every VMM (Adams & Agesen §6.1, SPECint):
    # under nested paging its exits do not grow with its size beyond the timer's and the
    # console's (interrupt windows and port I/O), never for the MMU.
    for counter in (EXCEPTION, INVLPG, CR_ACCESS):
        assert _per_iteration(HARDWARE_EPT, "compute", counter) == 0, counter
