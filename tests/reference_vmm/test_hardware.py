"""The hardware-assisted reference VMMs: what Adams & Agesen (2006) measured, from the counters —
first-generation VT-x pays an exit for every shadow-paging event, nested paging removes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cffi_core.asm import assemble_file
from cffi_core.devices import DISK_STATUS_IDLE
from cffi_core.machine import Machine
from cffi_core.pagetables import EPT_W, EPT_X, PAGE_4K, PageAllocator, PageTables
from cffi_core.vmx import VmExitReason
from conformance.api import COUNTER_DIRECT, COUNTER_EMULATED, VMConfig, default_host_memory, observe
from conformance.guests import by_name
from reference_vmm.hardware import HardwareVM, HardwareVMM
from reference_vmm.hardware.guest_mode import COMMON_HANDLERS
from reference_vmm.hardware.monitor import HANDLERS
from reference_vmm.hardware_ept import HardwareEptVM, HardwareEptVMM
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


# -- device passthrough (docs/vmx.md V.10) ----------------------------------------------------------

RAM_END = 1 << 20  # the directed guests' RAM (conformance/guests GUEST_MEMORY)


def _disk2_run(profile: str, *, attach: bool = True):
    """hardware-ept running the second-disk guest; ``attach=False`` makes the VMM pass the disk
    through without attaching its IOMMU domain — the mistake the IOMMU exists to catch."""
    guest = by_name("disk2")
    host = Machine(profile, default_host_memory(guest.config.memory))
    if not attach:
        host.iommu_attach = lambda device, root: None
    monitor = HardwareEptVMM(host)
    vm = monitor.create_vm(guest.image(), guest.config)
    monitor.run(guest.config.budget)
    native = observe(NativeVMM, guest.image(), guest.config, profile=profile)
    return vm, host, native


def test_with_an_iommu_the_second_disk_is_passed_through_and_its_port_io_never_exits():
    vm, host, native = _disk2_run("vtx-2009+iommu")
    assert vm.observation() == native
    assert vm.assigned_device is not None
    emulated, emulated_host, _ = _disk2_run("vtx-2009")
    assert emulated.assigned_device is None and emulated.counters["passthrough_io"] == 0
    io_exit = f"vm_exit_{int(VmExitReason.IO_INSTRUCTION)}"
    # The same guest, the same port accesses: the ones that exit when the disk is emulated are
    # exactly those that reach the assigned disk directly when it is passed through.
    passed = vm.counters["passthrough_io"]
    assert passed > 0
    assert emulated_host.counters[io_exit] - host.counters[io_exit] == passed


def test_the_iommu_refuses_the_passed_through_disk_s_dma_outside_the_guest():
    vm, host, native = _disk2_run("vtx-2009+iommu")
    faults = host.iommu_faults()
    # disk2.s: a read straddling the end of RAM (its first page past RAM fails), one far beyond,
    # and a write (the device reads memory) from just past RAM.
    assert [(f.device, f.write, f.address, f.reason) for f in faults] == [
        (vm.assigned_device, True, RAM_END, "not mapped"),
        (vm.assigned_device, True, 0x4000_0000, "not mapped"),
        (vm.assigned_device, False, RAM_END, "not mapped"),
    ]
    assert host.counters["iommu_faults"] == 3
    assert vm.devices.disk2.status == DISK_STATUS_IDLE and vm.observation() == native


def test_without_the_iommu_domain_the_passed_through_disk_would_write_outside_the_guest():
    """The control of the test above: the same VMM with the attach left out lets the device's
    DMA reach host-physical addresses the guest does not own, and the guest can tell."""
    vm, host, native = _disk2_run("vtx-2009+iommu", attach=False)
    assert host.counters["iommu_faults"] == 0
    assert vm.observation() != native
    assert any(line.startswith("console") for line in native.diff(vm.observation()))


def test_each_passed_through_disk_has_its_own_requester_id_until_none_is_left():
    guest = by_name("disk2")
    config = VMConfig(memory=1 << 16, disk2=guest.config.disk2, budget=guest.config.budget)
    monitor = HardwareEptVMM(Machine("vtx-2009+iommu", 48 << 20))
    ids = [monitor.create_vm(guest.image(), config).assigned_device for _ in range(15)]
    assert sorted(ids) == list(range(1, 16))
    with pytest.raises(RuntimeError, match="no IOMMU requester id left"):
        monitor.create_vm(guest.image(), config)


# -- hooks for variants (reference_vmm/READING_GUIDE.md) --------------------------------------------


def test_a_subclass_edits_its_own_handler_table_and_its_vmm_builds_its_vms():
    seen = []

    def counting_io(vm):
        seen.append(vm)
        return HANDLERS[VmExitReason.IO_INSTRUCTION](vm)

    class CountingVM(HardwareVM):
        pass

    class CountingVMM(HardwareVMM):
        vm_class = CountingVM

    CountingVM.handlers[VmExitReason.IO_INSTRUCTION] = counting_io
    assert HardwareVM.handlers is HANDLERS and HANDLERS[VmExitReason.IO_INSTRUCTION] is COMMON_HANDLERS[
        VmExitReason.IO_INSTRUCTION
    ], "the parent's table is untouched"
    cfg = VMConfig()
    monitor = CountingVMM(Machine("vtx-2006", default_host_memory(cfg.memory)))
    vm = monitor.create_vm(assemble_file(COMPUTE), cfg)
    monitor.run(cfg.budget)
    assert type(vm) is CountingVM and vm.stop == "exit"
    assert seen and all(v is vm for v in seen)
    assert len(seen) == vm.counters["vm_exit_io_instruction"]


def test_the_pager_and_the_nested_tables_are_built_by_overridable_methods():
    made = []

    class PagerVM(HardwareVM):
        def make_pager(self):
            made.append("pager")
            return super().make_pager()

    class SmallPagesVM(HardwareEptVM):
        def make_nested_tables(self, base):
            made.append("nested")  # 4 KiB pages only: the same guest, more nested entries
            pool = self.monitor.map.vmm_pages(64 * PAGE_4K)
            nested = PageTables(self.host.write_u64, PageAllocator(pool, pool + 64 * PAGE_4K), 4)
            nested.map(0, base, self.config.memory, flags=EPT_W | EPT_X)
            return nested

    for vmm, vm_class, profile in ((HardwareVMM, PagerVM, "vtx-2006"), (HardwareEptVMM, SmallPagesVM, "vtx-2009")):
        variant = type("Variant", (vmm,), {"vm_class": vm_class})
        obs = observe(variant, assemble_file(PT_CHURN), VMConfig(), profile=profile, isolate=False)  # sees `made`
        assert obs == observe(NativeVMM, assemble_file(PT_CHURN), VMConfig(), profile=profile)
    assert made == ["pager", "nested"]
