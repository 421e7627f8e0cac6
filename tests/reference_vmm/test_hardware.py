"""The hardware-assisted reference VMMs: what Adams & Agesen (2006) measured, from the counters —
first-generation VT-x pays an exit for every shadow-paging event, nested paging removes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cffi_core.asm import assemble_file
from cffi_core.machine import Machine
from cffi_core.vmx import VmExitReason
from conformance.api import COUNTER_DIRECT, COUNTER_EMULATED, VMConfig, default_host_memory, observe
from reference_vmm.hardware import HardwareVMM
from reference_vmm.hardware_ept import HardwareEptVMM
from reference_vmm.native import NativeVMM

ROOT = Path(__file__).resolve().parents[2]
COMPUTE = ROOT / "conformance" / "guests" / "compute.s"
PT_CHURN = ROOT / "tests" / "guests" / "pt_churn.s"  # edits page tables, switches CR3, invlpg
SHADOW_EXITS = (VmExitReason.EXCEPTION, VmExitReason.CR_ACCESS, VmExitReason.INVLPG)


def run(vmm: type, profile: str, guest: Path) -> tuple[dict, dict, str | None]:
    cfg = VMConfig()
    host = Machine(profile, default_host_memory(cfg.memory))
    monitor = vmm(host)
    vm = monitor.create_vm(assemble_file(guest), cfg)
    monitor.run(cfg.budget)
    assert vm.observation() == observe(NativeVMM, assemble_file(guest), cfg, profile=profile)
    return dict(vm.counters), dict(host.counters), vm.stop


def exits_per_1000(vm_counters: dict, host_counters: dict) -> float:
    guest = vm_counters[COUNTER_DIRECT] + vm_counters[COUNTER_EMULATED]
    return 1000 * host_counters["vm_exits"] / guest


@pytest.mark.parametrize(("vmm", "profile"), [(HardwareVMM, "vtx-2006"), (HardwareEptVMM, "vtx-2009")])
def test_a_compute_bound_guest_almost_never_exits(vmm, profile):
    vmc, hc, stop = run(vmm, profile, COMPUTE)
    assert stop == "exit"
    assert exits_per_1000(vmc, hc) < 1, "only the console's port writes exit"
    assert vmc[COUNTER_DIRECT] / (vmc[COUNTER_DIRECT] + vmc[COUNTER_EMULATED]) > 0.99


def test_page_table_work_exits_under_shadow_paging_and_not_under_nested_paging():
    shadow_vm, shadow_host, _ = run(HardwareVMM, "vtx-2006", PT_CHURN)
    nested_vm, nested_host, _ = run(HardwareEptVMM, "vtx-2009", PT_CHURN)
    for reason in SHADOW_EXITS:  # the exits of first-generation VT-x (Adams & Agesen 2006)
        assert shadow_host.get(f"vm_exit_{int(reason)}", 0) > 0, reason.name
        assert nested_host.get(f"vm_exit_{int(reason)}", 0) == 0, reason.name
    shadow_rate, nested_rate = exits_per_1000(shadow_vm, shadow_host), exits_per_1000(nested_vm, nested_host)
    assert shadow_rate > 10 * nested_rate, (shadow_rate, nested_rate)
    assert shadow_vm["hidden_page_faults"] > 0 and shadow_vm["traced_writes"] > 0


def test_first_generation_flushes_the_tlb_at_every_transition_and_nested_paging_with_vpid_never():
    _, shadow_host, _ = run(HardwareVMM, "vtx-2006", PT_CHURN)
    _, nested_host, _ = run(HardwareEptVMM, "vtx-2009", PT_CHURN)
    assert shadow_host["vm_transition_flushes"] == 2 * shadow_host["vm_entries"]
    assert nested_host["vm_transition_flushes"] == 0
    assert nested_host["walks"] == 0 and nested_host["walks_2d"] > 0, "the guest's walks are two-dimensional"


def test_the_hardware_vmm_runs_on_later_hardware_too_without_using_it():
    _, host, stop = run(HardwareVMM, "vtx-2009", PT_CHURN)
    assert stop == "exit"
    assert host["walks_2d"] == 0 and host["vm_transition_flushes"] == 2 * host["vm_entries"]
