"""Mutants of ``hardware`` (VT-x with shadow paging): one realistic bug each, in the shared guest-mode code or the shadow pager."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from cffi_core import spec
from cffi_core.machine import Exit
from cffi_core.vmx import ProcControl, VmcsField, VmExitReason
from reference_vmm.hardware import HardwareVMM, guest_mode, monitor
from reference_vmm.hardware.guest_mode import Handler
from reference_vmm.hardware.monitor import HANDLERS, HardwareVM
from reference_vmm.shadow import Resolution, ShadowPager, Space

F = VmcsField
FLAGS_TF, FLAGS_IF = 1 << 8, 1 << 9  # docs/architecture.md §2
V_UD, V_GP, V_PF = 6, 13, 14  # §6.1
PF_W, PF_U, PF_I = 2, 4, 16  # §7.5: the #PF error code's write, user and fetch bits
CR0_PG = 1 << 15
MSR_TSC = 0x10


def _handlers(changes: dict[int, Handler]) -> Mapping[int, Handler]:
    """The base's exit handlers with the mutant's changes (a read-only table per VM class)."""
    return MappingProxyType({**HANDLERS, **changes})


def _vmm(name: str, vm_class: type[HardwareVM], doc: str) -> type[HardwareVMM]:
    """A ``HardwareVMM`` whose VMs are ``vm_class``: the mutant keeps the base's name, so the
    suite grades it with the base technique's deviations (none for hardware)."""
    return type(name, (HardwareVMM,), {"vm_class": vm_class, "__doc__": doc, "__module__": __name__})


# ---- interrupts and single step ----------------------------------------------------------------


class _TfLostVM(HardwareVM):
    def skip(self) -> None:
        # The bug: "the emulated instruction is done, so its single step is done too" — TF is
        # cleared with the exit, and the guest's #DB after it never comes (§6.4).
        super().skip()
        self.vmcs[F.GUEST_FLAGS] = self.vmcs[F.GUEST_FLAGS] & ~FLAGS_TF


TfLostAfterExit = _vmm("TfLostAfterExit", _TfLostVM, "Clears the guest's TF when it completes an exiting instruction.")


class _StiShadowIgnoredVM(HardwareVM):
    def _offer_interrupt(self) -> None:
        # The bug: the interruptibility field is never read — an interrupt goes in right
        # after `sti` (§6.5: the boundary after sti is in its shadow).
        v = self.vmcs
        shadow = v[F.GUEST_INTERRUPTIBILITY]
        if shadow & 1 and v[F.GUEST_FLAGS] & FLAGS_IF and self.cpu.intr_vector >= 0:
            v[F.GUEST_INTERRUPTIBILITY] = shadow & ~1
        super()._offer_interrupt()


StiShadowIgnored = _vmm("StiShadowIgnored", _StiShadowIgnoredVM, "Injects an interrupt inside the sti shadow.")


class _TprIgnoredVM(HardwareVM):
    def tpr(self) -> int:
        return 0  # the bug: injection never compares the vector's class with the guest's CR8


TprIgnored = _vmm("TprIgnored", _TprIgnoredVM, "Injects external interrupts whatever the guest's TPR (CR8).")


def _on_cr_access_cr8_dropped(vm: HardwareVM) -> None:
    q = vm.vmcs[F.EXIT_QUALIFICATION]
    if q & 15 == 8 and not q >> 4 & 3:
        vm.skip()  # the bug: the CR8 load is "emulated" without storing the value: mfcr cr8 reads 0
        return
    HANDLERS[VmExitReason.CR_ACCESS](vm)


class _Cr8DroppedVM(HardwareVM):
    handlers = _handlers({VmExitReason.CR_ACCESS: _on_cr_access_cr8_dropped})


Cr8WriteDropped = _vmm(
    "Cr8WriteDropped", _Cr8DroppedVM, "A CR8 load exit is skipped without storing: CR8 reads back 0."
)


def _lose_on_shadow(vm: HardwareVM) -> None:
    """The bug: with the interrupt blocked only by the sti shadow, the VMM takes the vector
    from the PIC now ("the window exit will inject it") and forgets it."""
    v = vm.vmcs
    vector = vm.cpu.intr_vector
    if vector >= 0 and v[F.GUEST_FLAGS] & FLAGS_IF and v[F.GUEST_INTERRUPTIBILITY] & 1:
        vm.cpu.intr_acked, vm.cpu.intr_vector = vector, -1


class _StiHltLostVM(HardwareVM):
    def _offer_interrupt(self) -> None:
        _lose_on_shadow(self)
        super()._offer_interrupt()


LostInterruptStiHlt = _vmm(
    "LostInterruptStiHlt", _StiHltLostVM, "Acknowledges an interrupt held back by the sti shadow, and drops it."
)


# ---- time ----------------------------------------------------------------------------------------


def _on_msr_tsc_off_by_one(vm: HardwareVM) -> None:
    insn = vm.instruction()
    if insn is not None and insn.insn.mnemonic == "wrmsr" and vm.vmcs.regs[insn.rs1] == MSR_TSC:
        # The bug: the offset is taken against the clock after the wrmsr's tick, not before it
        # (architecture §9: the TSC reads the value written "now", the ticks before this one).
        vm.tsc_offset = (vm.vmcs.regs[insn.rs2] - vm.clock) & ((1 << 64) - 1)
        vm.skip()
        return
    guest_mode.on_msr(vm)


class _TscWrmsrVM(HardwareVM):
    handlers = _handlers({VmExitReason.WRMSR: _on_msr_tsc_off_by_one})


TscOffByOneAfterWrmsr = _vmm(
    "TscOffByOneAfterWrmsr", _TscWrmsrVM, "After wrmsr TSC the guest's TSC reads one tick late."
)


class _TickPerExitVM(HardwareVM):
    def _enter(self, ticks: int) -> Exit:
        ex = super()._enter(ticks)
        if ex.reason is guest_mode.ExitReason.VM:
            self.clock += 1  # the bug: the VMM's own work is charged to the guest's clock (§9)
        return ex


TickPerExit = _vmm("TickPerExit", _TickPerExitVM, "Adds one tick to the guest's clock per VM exit.")


# ---- vmcall and invalid operands -----------------------------------------------------------------


def _on_vmcall_raises(vm: HardwareVM) -> None:
    raise RuntimeError(f"unknown hypercall {vm.vmcs[F.EXIT_QUALIFICATION]}")  # the bug: #UD expected


class _VmcallRaisesVM(HardwareVM):
    handlers = _handlers({VmExitReason.VMCALL: _on_vmcall_raises})


VmcallRaises = _vmm("VmcallRaises", _VmcallRaisesVM, "vmcall raises in the VMM instead of giving the guest #UD.")


class _VmcallSkippedVM(HardwareVM):
    handlers = _handlers({VmExitReason.VMCALL: lambda vm: vm.skip()})  # the bug: a no-op, no #UD


VmcallSkipped = _vmm("VmcallSkipped", _VmcallSkippedVM, "vmcall is skipped as a no-op instead of raising #UD.")


class _CrReservedVM(HardwareVM):
    def write_cr(self, crn: int, value: int) -> None:
        # The bug: no check of the value (architecture §2: reserved bits, PE = 0, bad PL are
        # #GP(0)); the owned bits are simply taken.
        self.pull_registers()
        c = self.vcpu
        if crn == 0:
            c.cr0 = value & 0xFFFF
        elif crn == 3:
            c.cr3 = value
        else:
            c.cr4 = value & 0xFF
        self.load_paging()
        self.skip()


CrReservedBitsAccepted = _vmm(
    "CrReservedBitsAccepted", _CrReservedVM, "A CR0/CR3/CR4 load with reserved bits is taken, not #GP(0)."
)


def _on_cr_access_cr8_masked(vm: HardwareVM) -> None:
    q = vm.vmcs[F.EXIT_QUALIFICATION]
    if q & 15 == 8 and not q >> 4 & 3:
        vm.vmcs[F.GUEST_CR8] = vm.vmcs.regs[q >> 8 & 15] & 15  # the bug: CR8 > 15 truncated, no #GP(0)
        vm.skip()
        return
    HANDLERS[VmExitReason.CR_ACCESS](vm)


class _Cr8MaskedVM(HardwareVM):
    handlers = _handlers({VmExitReason.CR_ACCESS: _on_cr_access_cr8_masked})


Cr8Above15Truncated = _vmm(
    "Cr8Above15Truncated", _Cr8MaskedVM, "mtcr cr8 with a value above 15 is truncated, not #GP(0)."
)


def _on_msr_ud(vm: HardwareVM) -> None:
    insn = vm.instruction()
    if insn is not None and vm.vmcs.regs[insn.rs1] > 16383:
        vm.reflect(V_UD)  # the bug: #UD for an MSR beyond the bitmap, where P64 says #GP(0)
        return
    guest_mode.on_msr(vm)


class _MsrUdVM(HardwareVM):
    handlers = _handlers({VmExitReason.RDMSR: _on_msr_ud, VmExitReason.WRMSR: _on_msr_ud})


MsrAboveBitmapUd = _vmm("MsrAboveBitmapUd", _MsrUdVM, "rdmsr/wrmsr of an MSR above 16383 gets #UD instead of #GP(0).")


# ---- shadow paging -------------------------------------------------------------------------------


class _OneRootPager(ShadowPager):
    """The bug: shadow roots are cached by space alone, so a CR3 switch keeps the previous
    address space's shadow (architecture §8.1: a CR3 load flushes non-global translations)."""

    def root(self, cpu, space: Space) -> int:
        saved = cpu.cr3
        try:
            cpu.cr3 = self._first_cr3.setdefault(space, saved) if cpu.cr0 & CR0_PG else saved
            return super().root(cpu, space)
        finally:
            cpu.cr3 = saved

    @property
    def _first_cr3(self) -> dict:
        if not hasattr(self, "_first"):
            self._first: dict = {}
        return self._first

    def flush(self) -> None:
        super().flush()
        self._first_cr3.clear()


class _OneRootVM(HardwareVM):
    def __init__(self, monitor, image, config, base) -> None:
        super().__init__(monitor, image, config, base)
        old = self.shadow
        self.shadow = _OneRootPager(self.host, self.memory, old.pool, old.reserved)
        self.memory.on_write = self.shadow.guest_wrote
        self.load_paging()


Cr3SwitchKeepsShadow = _vmm(
    "Cr3SwitchKeepsShadow", _OneRootVM, "A CR3 switch between two address spaces keeps the first one's shadow."
)


class _InvlpgIgnoredVM(HardwareVM):
    handlers = _handlers({VmExitReason.INVLPG: lambda vm: vm.skip()})  # the bug: the shadow entry stays


InvlpgIgnored = _vmm("InvlpgIgnored", _InvlpgIgnoredVM, "invlpg exits and is skipped: the stale shadow entry stays.")


# ---- efficiency: needless host entries -----------------------------------------------------------


class _RunPerInstructionVM(HardwareVM):
    def _enter(self, ticks: int) -> Exit:
        # The bug: "to keep time exact" the guest is entered for one tick at a time — every
        # instruction a host entry, though no VM exit is counted.
        return super()._enter(1)


HostRunPerInstruction = _vmm(
    "HostRunPerInstruction",
    _RunPerInstructionVM,
    "Enters guest mode for one tick at a time: a host run per instruction.",
)


class _TprShadowUnusedVM(HardwareVM):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._fields = monitor._FIELDS_CR8  # the guest's TPR is then GUEST_CR8, as without the shadow

    def set_controls(self, proc: int) -> None:
        # the bug: the host's TPR shadow left unused, so every CR8 load exits (as on vtx-2006)
        super().set_controls(proc & ~ProcControl.USE_TPR_SHADOW | ProcControl.CR8_LOAD_EXITING)


TprShadowUnused = _vmm(
    "TprShadowUnused", _TprShadowUnusedVM, "Leaves the host's TPR shadow unused: every CR8 load exits."
)


class _BusyIdleVM(HardwareVM):
    def _idle(self, ticks: int) -> None:
        # The bug: halted time is "waited for" by re-entering the halted guest, and the clock
        # is never advanced to the device's deadline, so the timer never fires.
        pass


BusyIdle = _vmm("BusyIdle", _BusyIdleVM, "Idles a halted guest by re-entering it without advancing its clock.")


# ---- safety: memory outside the guest ------------------------------------------------------------


class _UnboundedDMA:
    """The bug: the disk's DMA goes to ``base + address`` in host RAM with no check against
    the guest's size (docs/devices.md: a DMA beyond RAM ends in the disk's error status)."""

    def __init__(self, vm: HardwareVM) -> None:
        self._host, self._base = vm.host, vm.memory.base

    def read(self, addr: int, size: int) -> bytes:
        return self._host.read(self._base + addr, size)

    def write(self, addr: int, data: bytes) -> None:
        self._host.write(self._base + addr, data)


class _UnboundedDmaVM(HardwareVM):
    def __init__(self, monitor, image, config, base) -> None:
        super().__init__(monitor, image, config, base)
        from cffi_core.devices import standard_devices

        old = self.devices
        self.bus, self.devices = standard_devices(
            guest_mode._Clock(self), _UnboundedDMA(self), disk=config.disk, console_input=config.console_input,
            disk2=config.disk2,
        )  # fmt: skip
        self._loop.bus, self._loop.devices = self.bus, self.devices
        del old


UnboundedDma = _vmm(
    "UnboundedDma", _UnboundedDmaVM, "Disk DMA is not bounded by the guest's RAM: it reaches host memory."
)


SCRATCH_OFFSET = 1 << 20  # past the first guest's region, below the VMM's own pages


class _ScratchMonitor(HardwareVMM):
    """The bug: the VMM keeps a scratch page of its own at a fixed host address instead of
    asking its ``HostMap`` for one — wherever the next guest's RAM or free host RAM is."""

    def run(self, budget: int) -> None:
        address = self.map.low + SCRATCH_OFFSET
        self.host.write(address, b"popek scratch page".ljust(4096, b"\0"))
        super().run(budget)


ScratchPageInHostRam = type(
    "ScratchPageInHostRam",
    (_ScratchMonitor,),
    {"__doc__": "Writes a scratch page at a fixed host address outside every region it owns.", "__module__": __name__},
)


# ---- what a multi-process guest OS exposes (the os category, conformance/test_os.py) -------------


def _on_page_fault_forgets_event(vm: HardwareVM) -> Exit | None:
    """``monitor.on_page_fault`` with one change in its hidden-fault path (marked)."""
    v = vm.vmcs
    va, code = v[F.EXIT_QUALIFICATION], v[F.EXIT_INTR_ERROR_CODE]
    access = spec.ACCESS_FETCH if code & PF_I else spec.ACCESS_WRITE if code & PF_W else spec.ACCESS_READ
    c = vm.vcpu
    c.cpl = 3 if code & PF_U else 0
    resolution = vm.shadow.fault(c, va, access)
    if resolution is Resolution.HIDDEN:
        vm.clock -= 1
        # The bug: IDT_VECTORING_INFO is not looked at — "the guest retries the instruction,
        # so the event comes again".  True of a fault (raised again) and of `int n` (executed
        # again); an external interrupt was taken from the PIC already, and its delivery,
        # cut short by a hidden fault on the IDT or the kernel stack, is lost (V.5, V.9).
        vm.shadow.needs_flush = False
        return None
    if resolution is Resolution.EMULATE:
        return vm.emulate()
    w = spec.walk(c, vm.memory, va, access, c.cpl, set_ad=True)
    if w.fault == V_PF:
        v[F.GUEST_CR2] = va
        return vm.reflect_delivery_fault(V_PF, w.error_code)
    return vm.reflect_delivery_fault(w.fault, 0 if w.fault == V_GP else None)


def _on_exception_forgets_event(vm: HardwareVM) -> Exit | None:
    if vm.vmcs[F.EXIT_INTR_INFO] & 0xFF == V_PF:  # V.5: the vector in bits 7:0
        return _on_page_fault_forgets_event(vm)
    return HANDLERS[VmExitReason.EXCEPTION](vm)


class _EventLostVM(HardwareVM):
    handlers = _handlers({VmExitReason.EXCEPTION: _on_exception_forgets_event})


InterruptLostInHiddenFault = _vmm(
    "InterruptLostInHiddenFault",
    _EventLostVM,
    "Forgets the event whose delivery a hidden page fault cut short: an external interrupt is lost.",
)


class _DirtyFreeTablePager(ShadowPager):
    def _alloc(self) -> int:
        if self._free:
            # The bug: a shadow table freed by a dropped directory entry is handed out again
            # as it is — "it was emptied when it was dropped" — but dropping clears only the
            # entry above it: its own entries still map the old frames.
            return self._free.pop()
        return super()._alloc()


class _DirtyFreeTableVM(HardwareVM):
    def make_pager(self) -> ShadowPager:
        old = super().make_pager()
        return _DirtyFreeTablePager(self.host, self.memory, old.pool)


FreedShadowTableNotCleared = _vmm(
    "FreedShadowTableNotCleared",
    _DirtyFreeTableVM,
    "Reuses a freed shadow page table without clearing it: its old entries map stale frames.",
)


class _CurrentRootWriteProtectPager(ShadowPager):
    def _write_protect(self, frame: int) -> None:
        # The bug: a frame that just became a traced page table loses W in the current shadow
        # only — "the other address spaces are not running" — yet the cached shadows of other
        # CR3s keep writable mappings of it, and the guest's stores through them go untraced.
        users = self._writers.get(frame)
        if users:
            self._writers[frame] = {(root, page) for root, page in users if root == self._current}
        super()._write_protect(frame)


class _CurrentRootWriteProtectVM(HardwareVM):
    def make_pager(self) -> ShadowPager:
        old = super().make_pager()
        return _CurrentRootWriteProtectPager(self.host, self.memory, old.pool)


WriteProtectCurrentShadowOnly = _vmm(
    "WriteProtectCurrentShadowOnly",
    _CurrentRootWriteProtectVM,
    "Write-protects a new page-table page in the current shadow only: other CR3s' shadows keep it writable.",
)


class _UntracedStoreVM(HardwareVM):
    def _store(self, c: spec.State) -> bool:
        # The bug: the emulation's fast path for a plain store writes guest RAM without
        # ``GuestMemory``'s report to the pager — "the guest invalidates what it changes (§8.1),
        # and invlpg drops the shadow entry" — but a CR3 load of the current value (fork's
        # copy-on-write protection) and the tables of another address space (exit's teardown)
        # are invalidated by no invlpg in the current shadow: their shadows keep the old entries.
        hook, self.memory.on_write = self.memory.on_write, None
        try:
            return super()._store(c)
        finally:
            self.memory.on_write = hook


UntracedFastStore = _vmm(
    "UntracedFastStore",
    _UntracedStoreVM,
    "The fast path of an emulated store does not tell the shadow pager which traced entry changed.",
)
