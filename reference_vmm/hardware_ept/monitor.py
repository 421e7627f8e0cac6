"""``HardwareEptVMM``: VT-x with nested paging, Fisher-Ogden (2006) §3.1.2 — no shadow tables at all.

Read ``reference_vmm/hardware/monitor.py`` first: this is that VMM with the MMU work given to
the hardware.  The guest's own page tables map guest-virtual to guest-physical, and the VMM's
*nested* tables (docs/vmx.md V.6) map guest-physical to host-physical, once, when the VM is
made: the guest's RAM is one region of host RAM, mapped with 2 MiB pages where it can be.
So nothing the guest does with its MMU concerns the VMM — page faults, CR3 loads, ``invlpg``
never exit (Adams & Agesen 2006 measured exactly these exits as the cost of the first
generation) — and with ``vpid`` (V.7) entries and exits keep the TLB.  With the TPR shadow
(V.3) CR8 writes do not exit either; the TPR threshold says when a blocked interrupt may go in.

What is left to the VMM, one handler per exit reason (``HANDLERS``):

- port I/O, to the virtual devices (``guest_mode.on_io``); TSC writes;
- interrupts: injection, the interrupt window and the TPR threshold (``guest_mode``);
- ``vmcall``: #UD, as on a bare machine;
- an EPT violation: the guest touched guest-physical memory beyond its RAM, which on a bare
  machine is a machine check (#MC, architecture §5.1) — reflected to it as such;
- a triple fault: the guest stops ("shutdown").

The guest runs at its own CPL, so every instruction of the x86-like profile's obstacle list
(``smsw``, ``sidt``, ``rdcs``, ``pushf``, ``popf``...) simply does what it does natively:
guest mode makes the machine classically virtualizable (Fisher-Ogden §3.1.1).
"""

from __future__ import annotations

from cffi_core.machine import Exit
from cffi_core.pagetables import EPT_W, EPT_X, PAGE_2M, PAGE_4K, PageAllocator, PageTables, ept_pointer
from cffi_core.vmx import PinControl, ProcControl, VmcsField, VmExitReason
from reference_vmm.hardware.guest_mode import COMMON_HANDLERS, V_MC, GuestModeVM, GuestModeVMM, Handler

__all__ = ["HANDLERS", "HardwareEptVM", "HardwareEptVMM"]

F = VmcsField
NESTED_LEVELS = 4
NESTED_POOL_PAGES = 16  # a root, a PDPT, PDs for up to 4 GiB, a table for a ragged end
CONTROLS = (
    ProcControl.ENABLE_EPT | ProcControl.ENABLE_VPID | ProcControl.USE_TPR_SHADOW | ProcControl.USE_IO_BITMAPS
    | ProcControl.USE_MSR_BITMAPS | ProcControl.USE_TSC_OFFSET
)  # fmt: skip


def on_ept_violation(vm: GuestModeVM) -> Exit | None:
    """The nested tables map all of the guest's RAM, so a violation is an access beyond it:
    #MC on a bare machine (a fault in an event's delivery: architecture §6.6)."""
    gpa = vm.vmcs[F.GUEST_PHYSICAL_ADDRESS]
    if gpa < vm.config.memory:
        raise RuntimeError(f"EPT violation at guest-physical {gpa:#x}, inside the guest's RAM: nested tables broken")
    return vm.reflect_delivery_fault(V_MC)


def on_unexpected(vm: GuestModeVM) -> Exit | None:
    reason = vm.vmcs[F.EXIT_REASON]
    raise RuntimeError(f"unexpected VM exit {VmExitReason(reason).name} at guest pc {vm.vmcs[F.GUEST_PC]:#x}")


HANDLERS: dict[int, Handler] = {
    **COMMON_HANDLERS,
    VmExitReason.EPT_VIOLATION: on_ept_violation,
    VmExitReason.EPT_MISCONFIG: on_unexpected,
    VmExitReason.EXCEPTION: on_unexpected,
}


class HardwareEptVM(GuestModeVM):
    """One guest: its VMCS, with nested tables mapping its region of host RAM."""

    handlers = HANDLERS

    def __init__(self, monitor: HardwareEptVMM, image, config, base: int) -> None:
        super().__init__(monitor, image, config, base)
        host = self.host
        pool = monitor.map.vmm_pages(NESTED_POOL_PAGES * PAGE_4K)
        nested = PageTables(host.write_u64, PageAllocator(pool, pool + NESTED_POOL_PAGES * PAGE_4K), NESTED_LEVELS)
        large = config.memory // PAGE_2M * PAGE_2M if base % PAGE_2M == 0 else 0
        if large:
            nested.map(0, base, large, flags=EPT_W | EPT_X, page=PAGE_2M)
        if config.memory > large:
            nested.map(large, base + large, config.memory - large, flags=EPT_W | EPT_X)
        v = self.vmcs
        v[F.EPT_POINTER] = ept_pointer(nested.root, NESTED_LEVELS)
        v[F.VPID] = len(monitor.vms) + 1
        v[F.IO_BITMAP] = monitor.io_bitmap
        v[F.MSR_BITMAP] = monitor.msr_bitmap
        v[F.PIN_CONTROLS] = PinControl.EXTERNAL_INTERRUPT_EXITING  # the host's interrupts stay the host's
        self.set_controls(CONTROLS)
        host.invvpid(v[F.VPID])  # a VPID may have served an earlier VM on this host


class HardwareEptVMM(GuestModeVMM):
    """VT-x with nested paging, tagged TLBs and the TPR shadow (Fisher-Ogden §3.1.2)."""

    name = "hardware-ept"
    technique = "hardware-assisted, nested paging (Fisher-Ogden 2006 §3.1.2)"
    requires = frozenset({"vmx", "ept", "vpid", "tpr_shadow"})
    vm_class = HardwareEptVM
    guest_alignment = PAGE_2M

