"""Mutants of ``hardware-ept`` (VT-x with nested paging, VPID, the TPR shadow, IOMMU passthrough): one realistic bug each."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cffi_core.machine import Exit
from cffi_core.pagetables import PAGE_2M
from cffi_core.vmx import ProcControl, VmcsField, VmExitReason
from conformance.api import COUNTER_DIRECT
from reference_vmm.hardware.guest_mode import Handler
from reference_vmm.hardware_ept import HardwareEptVMM
from reference_vmm.hardware_ept.monitor import HANDLERS, HardwareEptVM

F = VmcsField
V_GP = 13  # docs/architecture.md §6.1


def _handlers(changes: dict[int, Handler]) -> Mapping[int, Handler]:
    """The base's exit handlers with the mutant's changes."""
    return MappingProxyType({**HANDLERS, **changes})


def _vmm(name: str, vm_class: type[HardwareEptVM], doc: str) -> type[HardwareEptVMM]:
    """A ``HardwareEptVMM`` whose VMs are ``vm_class`` (the base's name kept: its deviations apply)."""
    return type(name, (HardwareEptVMM,), {"vm_class": vm_class, "__doc__": doc, "__module__": __name__})


def _on_ept_violation_gp(vm: HardwareEptVM) -> Exit | None:
    # The bug: "an access the guest may not make" is #GP(0) — but past RAM it is #MC (§5.1).
    return vm.reflect_delivery_fault(V_GP, 0)


class _GpForMcVM(HardwareEptVM):
    handlers = _handlers({VmExitReason.EPT_VIOLATION: _on_ept_violation_gp})


GpInsteadOfMc = _vmm("GpInsteadOfMc", _GpForMcVM, "An access past the guest's RAM gets #GP(0) instead of #MC.")


class _RoundedUpVM(HardwareEptVM):
    """The bug: the nested tables map the guest's RAM rounded *up* to whole 2 MiB pages, so a
    guest of 1 MiB reaches the host memory after its region instead of taking #MC."""

    def __init__(self, monitor, image, config, base: int) -> None:
        super().__init__(monitor, image, config, base)
        from cffi_core.pagetables import EPT_W, EPT_X, PageAllocator, PageTables, ept_pointer
        from reference_vmm.hardware_ept.monitor import NESTED_LEVELS, NESTED_POOL_PAGES, PAGE_4K

        pool = monitor.map.vmm_pages(NESTED_POOL_PAGES * PAGE_4K)
        nested = PageTables(self.host.write_u64, PageAllocator(pool, pool + NESTED_POOL_PAGES * PAGE_4K), NESTED_LEVELS)
        rounded = -(-config.memory // PAGE_2M) * PAGE_2M
        nested.map(0, base, rounded, flags=EPT_W | EPT_X, page=PAGE_2M)
        self.vmcs[F.EPT_POINTER] = ept_pointer(nested.root, NESTED_LEVELS)


NestedMapRoundedUp = _vmm(
    "NestedMapRoundedUp",
    _RoundedUpVM,
    "Maps the guest's RAM rounded up to 2 MiB: stores past its RAM reach host memory.",
)


class _TprIgnoredVM(HardwareEptVM):
    def tpr(self) -> int:
        return 0  # the bug: the VIRTUAL_TPR is never compared with the vector's class


TprShadowIgnored = _vmm("TprShadowIgnored", _TprIgnoredVM, "Injects interrupts whatever the guest's virtual TPR.")


class _StaleTscOffsetVM(HardwareEptVM):
    def _enter(self, ticks: int) -> Exit:
        """``GuestModeVM._enter`` with the bug: TSC_OFFSET is computed at the first entry only
        ("the offset does not change while the guest runs") — but halted time, injected
        exceptions and TSC writes move the guest's clock against the host's (architecture §9)."""
        host, v = self.host, self.vmcs
        if self._tsc_written is None:
            offset = (self.clock + self.tsc_offset - host.clock - host.cpu.tsc_offset) & ((1 << 64) - 1)
            v[F.TSC_OFFSET] = self._tsc_written = offset
        start, retired = host.clock, host.retired(guest=True)
        ex = host.vmrun(v, ticks)
        self.clock += host.clock - start
        self._stats[COUNTER_DIRECT] += host.retired(guest=True) - retired
        return ex


TscOffsetStale = _vmm("TscOffsetStale", _StaleTscOffsetVM, "Writes TSC_OFFSET at the first entry only.")


def _on_rdtsc(vm: HardwareEptVM) -> None:
    # The TSC the guest would read: its clock before this tick plus its offset (architecture §9).
    insn = vm.instruction()
    assert insn is not None
    vm.vmcs.regs[insn.rd] = (vm.clock - 1 + vm.tsc_offset) & ((1 << 64) - 1)
    vm.skip()


class _RdtscExitingVM(HardwareEptVM):
    handlers = _handlers({VmExitReason.RDTSC: _on_rdtsc})

    def set_controls(self, proc: int) -> None:
        super().set_controls(proc | ProcControl.RDTSC_EXITING)  # the bug: TSC offsetting needs no exit


RdtscExiting = _vmm("RdtscExiting", _RdtscExitingVM, "Sets RDTSC exiting though the TSC offset does the job.")


def _on_cr8_load(vm: HardwareEptVM) -> None:
    q = vm.vmcs[F.EXIT_QUALIFICATION]
    value = vm.vmcs.regs[q >> 8 & 15]
    if value > 15:
        vm.reflect(V_GP, 0)
        return
    vm.vmcs[F.VIRTUAL_TPR] = value
    vm.skip()


class _Cr8ExitingVM(HardwareEptVM):
    handlers = _handlers({VmExitReason.CR_ACCESS: _on_cr8_load})

    def set_controls(self, proc: int) -> None:
        super().set_controls(proc | ProcControl.CR8_LOAD_EXITING)  # the bug: the TPR shadow makes it needless


Cr8ExitingDespiteTprShadow = _vmm(
    "Cr8ExitingDespiteTprShadow", _Cr8ExitingVM, "Sets CR8 load exiting though the TPR shadow handles CR8."
)


class _UnconfinedVM(HardwareEptVM):
    """The bug: the second disk is given its own DMA (passthrough) but the device is never
    attached to the guest's IOMMU domain — its DMA addresses are host-physical (V.10)."""

    def __init__(self, monitor, image, config, base: int) -> None:
        host = monitor.host
        attach = host.iommu_attach
        host.iommu_attach = lambda device, root: None
        try:
            super().__init__(monitor, image, config, base)
        finally:
            host.iommu_attach = attach


PassthroughNotConfined = _vmm(
    "PassthroughNotConfined", _UnconfinedVM, "Passes the second disk through without attaching it to the IOMMU."
)
