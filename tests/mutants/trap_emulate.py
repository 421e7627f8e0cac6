"""Mutants of ``trap-and-emulate`` (deprivileged direct execution, shadow paging): one realistic bug each; all keep the name "trap-and-emulate"."""

from __future__ import annotations

from cffi_core import spec
from cffi_core.exits import ExitReason
from cffi_core.machine import PAGE_SIZE
from cffi_core.spec.events import interrupt_deliverable
from cffi_core.spec.state import MASK64, PTE_FRAME
from reference_vmm.shadow import ShadowPager, Space
from reference_vmm.trap_emulate import TrapEmulateVMM
from reference_vmm.trap_emulate.monitor import TrapEmulateVM
from reference_vmm.trap_emulate.rings import RESERVED_VA, RingPlan

CR0_PG = 1 << 15  # docs/architecture.md §2


def _vmm(name: str, vm_class: type[TrapEmulateVM], doc: str) -> type[TrapEmulateVMM]:
    """A ``TrapEmulateVMM`` whose VMs are ``vm_class``.  The name "trap-and-emulate" is kept:
    the technique's expected deviations apply, and must not hide the bug."""
    return type(name, (TrapEmulateVMM,), {"vm_class": vm_class, "__doc__": doc, "__module__": __name__})


# ---- rings ----------------------------------------------------------------------------------------


class _FoldingPlan(RingPlan):
    """The bug: "rings 1 and 2 are kernel rings" — after direct execution a guest at CPL 1 or
    2 is taken back as CPL 0, so the spec emulates its privileged instructions as the kernel's."""

    def guest_cpl(self, real: int, before: int) -> int:
        cpl = super().guest_cpl(real, before)
        return 0 if cpl in (1, 2) else cpl


class _Ring1KernelVM(TrapEmulateVM):
    def __init__(self, monitor, image, config, base, pool) -> None:
        super().__init__(monitor, image, config, base, pool)
        p = self.plan
        self.plan = _FoldingPlan(p.name, compression=p.compression, seglimit=p.seglimit)


Ring1KeepsKernelRights = _vmm(
    "Ring1KeepsKernelRights", _Ring1KernelVM, "Takes guest CPL 1-2 back as CPL 0 after direct execution."
)


class _KernelAtRing0Plan(RingPlan):
    def real_ring(self, cpl: int) -> int:
        return 0 if cpl == 0 else super().real_ring(cpl)  # the bug: the guest kernel is not deprivileged


class _KernelAtRing0VM(TrapEmulateVM):
    def __init__(self, monitor, image, config, base, pool) -> None:
        super().__init__(monitor, image, config, base, pool)
        p = self.plan
        self.plan = _KernelAtRing0Plan(p.name, compression=p.compression, seglimit=p.seglimit)


GuestKernelAtRing0 = _vmm("GuestKernelAtRing0", _KernelAtRing0VM, "Runs the guest kernel at real ring 0.")


# ---- shadow paging ----------------------------------------------------------------------------------


class _InvlpgDropsReservedPager(ShadowPager):
    def invlpg(self, va: int) -> None:
        # The bug: invlpg clears the named page's shadow entry even when it is the reserved page
        # that holds the VMM's IDT in every address space (address-space compression).
        page = va & MASK64 & ~(PAGE_SIZE - 1)
        if page in self.reserved and self._current is not None:
            table = self._table(self._current, page, 1, create=False)
            if table is not None:
                self._write(table + 8 * ((page >> 12) & 511), 0)
                self.needs_flush = True
        super().invlpg(va)


class _InvlpgReservedVM(TrapEmulateVM):
    def make_pager(self) -> ShadowPager:
        return _InvlpgDropsReservedPager(
            self.monitor.host, self.memory, self.pool, reserved={RESERVED_VA: self.monitor.idt}
        )


InvlpgDropsReservedPage = _vmm(
    "InvlpgDropsReservedPage", _InvlpgReservedVM, "invlpg of the top page unmaps the VMM's IDT from the shadow."
)


class _CurrentRootOnlyPager(ShadowPager):
    def guest_wrote(self, gpa: int, old: int, new: int) -> None:
        # The bug: a changed guest entry drops the shadow entries derived from it in the
        # current shadow only; the guest user's shadow (ring compression) keeps the old one.
        if old | new == new and (old ^ new) & ~(spec.PTE_A | spec.PTE_D) == 0:
            return
        self.counters["traced_writes"] += 1
        for root, level, va in self._derived.pop(gpa, ()):
            if root == self._current:
                self._clear(root, level, va)


class _StaleUserShadowVM(TrapEmulateVM):
    def make_pager(self) -> ShadowPager:
        return _CurrentRootOnlyPager(
            self.monitor.host, self.memory, self.pool, reserved={RESERVED_VA: self.monitor.idt}
        )


StaleUserShadow = _vmm(
    "StaleUserShadow", _StaleUserShadowVM, "A page-table write drops only the current shadow's entries."
)


class _OneRootPager(ShadowPager):
    """The bug: shadow roots are cached by space alone, so a CR3 switch keeps the previous
    address space's shadow (architecture §8.1)."""

    def root(self, cpu, space: Space) -> int:
        if not hasattr(self, "_first"):
            self._first: dict = {}
        saved = cpu.cr3
        try:
            if cpu.cr0 & CR0_PG:
                cpu.cr3 = self._first.setdefault(space, saved)
            return super().root(cpu, space)
        finally:
            cpu.cr3 = saved

    def flush(self) -> None:
        super().flush()
        self._first = {}


class _OneRootVM(TrapEmulateVM):
    def make_pager(self) -> ShadowPager:
        return _OneRootPager(self.monitor.host, self.memory, self.pool, reserved={RESERVED_VA: self.monitor.idt})


Cr3SwitchKeepsShadow = _vmm(
    "Cr3SwitchKeepsShadow", _OneRootVM, "A CR3 switch between two address spaces keeps the first one's shadow."
)


class _NoAccessedBitsOnMcVM(TrapEmulateVM):
    """The bug: a true page fault is reflected by hand from the guest's walk, without letting
    the spec execute the instruction — so a walk that completes and then finds its frame past
    RAM (#MC) never sets the A bits it would natively (architecture §7.5, §6.1)."""

    def _emulate(self) -> spec.Exit | None:
        v = self.cpu
        if not v.int_shadow and not v.halted and not interrupt_deliverable(v):
            try:
                entry = spec.decode_word(spec.fetch(v, self.memory, v.pc))
            except spec.Fault:
                entry = None
            if entry is not None and entry[0].insn.group == "mem" and v.cr0 & CR0_PG:
                d = entry[0]
                va = (v.r[d.rs1] + d.imm) & MASK64
                access = spec.ACCESS_WRITE if entry[0].insn.mnemonic.startswith("s") else spec.ACCESS_READ
                w = spec.walk(v, self.memory, va, access, v.cpl)
                if w.fault == spec.MC:
                    ex = spec.deliver_exception(v, self.memory, spec.Event(spec.MC, spec.EVENT_FAULT, v.pc, None))
                    v.clock += 1
                    return ex
        return super()._emulate()


NoAccessedBitsOnMcWalk = _vmm(
    "NoAccessedBitsOnMcWalk", _NoAccessedBitsOnMcVM, "Reflects #MC of a completed walk by hand, without its A bits."
)


# ---- interrupts, time, devices -------------------------------------------------------------------


class _WakeWithoutDeliveryVM(TrapEmulateVM):
    def _emulate(self) -> spec.Exit | None:
        ex = super()._emulate()
        v = self.cpu
        if v.halted and v.intr_vector >= 0 and interrupt_deliverable(v):
            # The bug: "an interrupt wakes a halted CPU" taken literally — the pending vector
            # clears the halt and is acknowledged, but never delivered through the guest's IDT
            # (§6.5: the delivery is what wakes it); after `sti; hlt` the interrupt is lost.
            v.halted = False
            v.intr_acked, v.intr_vector = v.intr_vector, -1
            return None
        return ex


LostInterruptStiHlt = _vmm(
    "LostInterruptStiHlt", _WakeWithoutDeliveryVM, "A pending interrupt wakes an emulated hlt without being delivered."
)


class _TscIgnoresOffsetVM(TrapEmulateVM):
    def _enter(self, host) -> None:
        super()._enter(host)
        # The bug: the real TSC is set to the guest's clock, forgetting the offset its own
        # wrmsr of the TSC gave it (architecture §9).
        host.cpu.tsc_offset = (self.cpu.clock - host.clock) & MASK64


TscIgnoresGuestWrmsr = _vmm(
    "TscIgnoresGuestWrmsr", _TscIgnoresOffsetVM, "rdtsc run directly ignores the TSC value the guest wrote."
)


class _OutByteVM(TrapEmulateVM):
    def _direct(self, ticks: int) -> spec.Exit | None:
        ex = super()._direct(ticks)
        if ex is not None and ex.reason is ExitReason.IO_OUT:
            # The bug, an x86 habit (`out dx, al`): the port value the guest kernel wrote is
            # truncated to its low byte.  Not a sensitive instruction: no deviation excuses it.
            return spec.Exit(ex.reason, number=ex.number, port=ex.port, value=ex.value & 0xFF, reg=ex.reg)
        return ex


OutTruncatedToByte = _vmm("OutTruncatedToByte", _OutByteVM, "Port output of the guest kernel truncated to 8 bits.")


class _NoSliceVM(TrapEmulateVM):
    def run_slice(self, budget: int) -> None:
        # The bug: "slices only cost switches" — a VM runs to its whole allowance at each turn,
        # so a guest that spins with interrupts off keeps the host for as long as it likes.
        super().run_slice(self.config.budget)


SliceIgnored = _vmm("SliceIgnored", _NoSliceVM, "Runs each VM to its whole budget per turn: no host timer.")


# ---- what a multi-process guest OS exposes (the os category, conformance/test_os.py) -------------


class _LazyWriteProtectPager(ShadowPager):
    def guest_wrote(self, gpa: int, old: int, new: int) -> None:
        # The bug: a write protection (same frame, still present, W taken away) is left to the
        # guest's own invalidation — "§8.1: a changed entry may be used old or new until
        # invlpg or a CR3 load" — but a CR3 load of the current value finds the cached root
        # and drops nothing: after fork's copy-on-write protection and CR3 reload the parent
        # keeps writing the shared frames.
        if (old ^ new) & PTE_FRAME == 0 and new & spec.PTE_P and old & spec.PTE_W and not new & spec.PTE_W:
            return
        super().guest_wrote(gpa, old, new)


class _LazyWriteProtectVM(TrapEmulateVM):
    def make_pager(self) -> ShadowPager:
        return _LazyWriteProtectPager(
            self.monitor.host, self.memory, self.pool, reserved={RESERVED_VA: self.monitor.idt}
        )


LazyWriteProtect = _vmm(
    "LazyWriteProtect", _LazyWriteProtectVM, "Leaves a PTE's write protection to the guest's invalidation."
)
