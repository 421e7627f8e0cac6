"""``HardwareEptVMM``: VT-x with nested paging, Fisher-Ogden (2006) §3.1.2 — no shadow tables at all.

Read ``reference_vmm/hardware/monitor.py`` first: this is that VMM with the MMU work given to
the hardware.  The guest's own page tables map guest-virtual to guest-physical, and the VMM's
*nested* tables (docs/vmx.md V.6) map guest-physical to host-physical, once, when the VM is
made: the guest's RAM is one region of host RAM, mapped with 2 MiB pages where it can be.
So nothing the guest does with its MMU concerns the VMM — page faults, CR3 loads, ``invlpg``
never exit (Adams & Agesen 2006 measured exactly these exits as the cost of the first
generation) — and with ``vpid`` (V.7) entries and exits keep the TLB.  With the TPR shadow
(V.3) CR8 writes do not exit either; the TPR threshold says when a blocked interrupt may go in.

**Device passthrough** (V.10), on a profile with ``iommu``: the second disk is not emulated but
*assigned* to the guest — a device of its own (requester id 1..15), its ports clear in the
VM's I/O bitmap, so the guest's driver programs it directly with no VM exit; its DMA carries
guest-physical addresses, and the IOMMU translates them through the guest's own nested tables
(one mapping serves the CPU and the device).  A DMA outside the guest's RAM is not mapped, so
the IOMMU refuses it: nothing moves, the disk ends the command with status error, as a DMA
beyond RAM does on a bare machine — and the host's memory and other guests are untouched.
Its completion interrupt reaches the guest as every interrupt does, by injection; the device
keeps the guest's time (the model's devices have no clock of their own).

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

from cffi_core import spec
from cffi_core._binding import lib
from cffi_core.devices import DISK2_DMA_DEVICE, DMA
from cffi_core.machine import Exit
from cffi_core.pagetables import EPT_W, EPT_X, PAGE_2M, PAGE_4K, PageAllocator, PageTables, ept_pointer
from cffi_core.platform import MachineDMA
from cffi_core.spec.state import CR0_PG
from cffi_core.vmx import PinControl, ProcControl, VmcsField, VmExitReason
from reference_vmm.hardware.guest_mode import COMMON_HANDLERS, V_MC, GuestModeVM, GuestModeVMM, Handler, io_bitmap

__all__ = ["HANDLERS", "HardwareEptVM", "HardwareEptVMM"]

F = VmcsField
NESTED_LEVELS = 4
EPT_Q_FINAL_LINEAR = 1 << 7 | 1 << 8  # V.5: the linear address is valid, the access was the final one
EPT_Q_ACCESS = {1: spec.ACCESS_READ, 2: spec.ACCESS_WRITE, 4: spec.ACCESS_FETCH}  # V.5 bits 2:0
NESTED_POOL_PAGES = 16  # a root, a PDPT, PDs for up to 4 GiB, a table for a ragged end
CONTROLS = (
    ProcControl.ENABLE_EPT | ProcControl.ENABLE_VPID | ProcControl.USE_TPR_SHADOW | ProcControl.USE_IO_BITMAPS
    | ProcControl.USE_MSR_BITMAPS | ProcControl.USE_TSC_OFFSET
)  # fmt: skip


def on_ept_violation(vm: GuestModeVM) -> Exit | None:
    """The nested tables map all of the guest's RAM, so a violation is an access beyond it:
    #MC on a bare machine (a fault in an event's delivery: architecture §6.6).

    Natively a walk that completes to a frame beyond RAM has set its A (and D) bits before the
    access takes #MC (architecture §5.3, §7.5); under nested paging the final address is
    translated before the walker's A/D writes (V.6), so the violation comes first and the
    writes are the VMM's to make."""
    v = vm.vmcs
    gpa = v[F.GUEST_PHYSICAL_ADDRESS]
    if gpa < vm.config.memory:
        raise RuntimeError(f"EPT violation at guest-physical {gpa:#x}, inside the guest's RAM: nested tables broken")
    q = v[F.EXIT_QUALIFICATION]
    if q & EPT_Q_FINAL_LINEAR == EPT_Q_FINAL_LINEAR and v[F.GUEST_CR0] & CR0_PG:
        set_walk_accessed_dirty(vm, v[F.GUEST_LINEAR_ADDRESS], EPT_Q_ACCESS[q & 7])
    return vm.reflect_delivery_fault(V_MC)


def set_walk_accessed_dirty(vm: GuestModeVM, va: int, access: int) -> None:
    """Make the A/D writes of the guest's walk of ``va`` (architecture §7.5) in guest-physical
    memory.  The walk already passed the guest's checks in the CPU, so it is replayed as a
    supervisor access, which every access that passed them also passes (§7.4)."""
    v = vm.vmcs
    state = spec.State.reset(entry=0, features=vm.host.profile.features)
    state.cr0, state.cr3, state.cr4 = v[F.GUEST_CR0], v[F.GUEST_CR3], v[F.GUEST_CR4]
    spec.walk(state, vm.memory, va, access, 0, set_ad=True)


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

    monitor: HardwareEptVMM

    def __init__(self, monitor: HardwareEptVMM, image, config, base: int) -> None:
        self.assigned_device: int | None = None  # the IOMMU requester id of a passed-through disk
        super().__init__(monitor, image, config, base)
        host = self.host
        self.nested = self.make_nested_tables(base)
        v = self.vmcs
        v[F.EPT_POINTER] = ept_pointer(self.nested.root, self.nested.levels)
        v[F.VPID] = len(monitor.vms) + 1
        if self.assigned_device is None:
            v[F.IO_BITMAP] = monitor.io_bitmap
        else:
            # The device's domain is the guest's memory: its nested tables (V.10 takes the same
            # format), attached before the guest can start a DMA.
            host.iommu_attach(self.assigned_device, v[F.EPT_POINTER])
            v[F.IO_BITMAP] = monitor.vmm_page_with(io_bitmap(self.devices.disk2.ports))
        v[F.MSR_BITMAP] = monitor.msr_bitmap
        v[F.PIN_CONTROLS] = PinControl.EXTERNAL_INTERRUPT_EXITING  # the host's interrupts stay the host's
        self.set_controls(CONTROLS)
        host.invvpid(v[F.VPID])  # a VPID may have served an earlier VM on this host

    def make_nested_tables(self, base: int) -> PageTables:
        """The nested tables (V.6) mapping the guest's RAM, guest-physical [0, memory), to its
        region of host RAM at ``base``, with 2 MiB pages where alignment allows, from a pool of
        VMM pages taken here.  A hook: a subclass maps otherwise (4 KiB pages, on demand...)."""
        memory = self.config.memory
        pool = self.monitor.map.vmm_pages(NESTED_POOL_PAGES * PAGE_4K)
        # Cleared as taken: host RAM holds whatever it held, not zeroes (docs/vmm-api.md §9).
        zero = lambda page: self.host.write(page, bytes(PAGE_4K))  # noqa: E731
        nested = PageTables(self.host.write_u64, PageAllocator(pool, pool + NESTED_POOL_PAGES * PAGE_4K, zero), NESTED_LEVELS)
        large = memory // PAGE_2M * PAGE_2M if base % PAGE_2M == 0 else 0
        if large:
            nested.map(0, base, large, flags=EPT_W | EPT_X, page=PAGE_2M)
        if memory > large:
            nested.map(large, base + large, memory - large, flags=EPT_W | EPT_X)
        return nested

    def disk2_dma(self) -> DMA:
        """With an IOMMU the second disk is passed through: the device's own DMA, remapped by
        its domain (attached in ``__init__``); without one, emulated as ``guest_mode`` does."""
        if "iommu" not in self.host.profile.features:
            return super().disk2_dma()
        self.assigned_device = self.monitor.assign_device()
        return MachineDMA(self.host, self.assigned_device)


class HardwareEptVMM(GuestModeVMM):
    """VT-x with nested paging, tagged TLBs and the TPR shadow (Fisher-Ogden §3.1.2)."""

    name = "hardware-ept"
    technique = "hardware-assisted, nested paging (Fisher-Ogden 2006 §3.1.2)"
    requires = frozenset({"vmx", "ept", "vpid", "tpr_shadow"})
    optional = frozenset({"iommu"})
    vm_class = HardwareEptVM
    guest_alignment = PAGE_2M

    def __init__(self, host) -> None:
        super().__init__(host)
        self._free_devices = list(range(DISK2_DMA_DEVICE, lib.P64_IOMMU_DEVICES))

    def assign_device(self) -> int:
        """A requester id for one VM's passed-through disk (id 0 is the host's own disk)."""
        if not self._free_devices:
            raise RuntimeError(
                f"no IOMMU requester id left for a passed-through disk: at most "
                f"{lib.P64_IOMMU_DEVICES - DISK2_DMA_DEVICE} VMs with a second disk on one host"
            )
        return self._free_devices.pop(0)

