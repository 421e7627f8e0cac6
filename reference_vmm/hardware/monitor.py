"""``HardwareVMM``: first-generation VT-x with shadow paging, Fisher-Ogden (2006) §3.1 — the P4 of Adams & Agesen (2006).

Read ``reference_vmm/trap_emulate`` first: this VMM does the same job with the hardware's
help.  The guest runs in guest mode (docs/vmx.md) at its *own* CPL, so nothing needs
deprivileging, no instruction of the x86-like obstacle list misbehaves (``smsw`` reads the CR0
read shadow, ``pushf`` the guest's own FLAGS...), and the VMM's IDT disappears: the guest
mode's IDT is the guest's (Fisher-Ogden §3.1.1).  What the first generation lacked is MMU
support — so the guest's memory is still virtualized by shadow page tables
(``reference_vmm.shadow``, shared with trap-and-emulate), and everything shadow paging must see
becomes a VM exit:

- every guest **#PF** exits (the exception bitmap, V.4): a *hidden* fault is fixed in the shadow
  and the guest resumes; a *true* one is injected into the guest with its CR2 and error code;
  a store to a traced page-table page is emulated with the executable spec (``cffi_core.spec``,
  the emulator trap-and-emulate uses), which tells the pager what changed;
- with the guest's paging off the real CPU still pages (identity shadows) and so checks that
  addresses are canonical, which a bare machine does not: **#GP** exits then too, and an
  access the check refused runs in the spec, where it is beyond RAM (#MC) as natively;
- **CR3 loads and stores** exit (the guest's CR3 is the VMM's, the real one a shadow root), and
  so does **invlpg** (the shadow entry must go);
- **CR0.PG/WP and CR4.PL/PGE** belong to the host (guest/host masks, V.3): the guest reads its
  own values from the read shadows and a write that changes them exits;
- without a **TPR shadow** (``vtx-2006``) every CR8 load exits; where the host has one
  (``tpr_shadow``, an optional feature) CR8 loads run in guest mode and the TPR threshold says
  when a blocked interrupt may go in (V.3), as Adams & Agesen's hardware VMM ran ``cr8wr``
  without exits ("%cr8 writes exit only if TPR drops below the highest pending interrupt");
- there is **no VPID**, so every entry and exit flushes the TLB (V.7) — the cost the paper
  measured.

The rest — port I/O to the virtual devices, interrupts by injection, the guest's clock and TSC,
``vmcall`` — is ``guest_mode``'s, shared with ``hardware-ept``.  One handler per exit reason,
dispatched by ``HANDLERS``.
"""

from __future__ import annotations

from cffi_core import spec
from cffi_core.image import GuestImage
from cffi_core.machine import Exit
from cffi_core.spec.access import beyond_limit
from cffi_core.spec.events import deliver_interrupt
from cffi_core.spec.execute import EXECUTORS, decode_word
from cffi_core.spec.registers import advance, effective_address
from cffi_core.spec.state import CR0_PE, CR0_PG, CR0_WP, CR4_PGE, CR4_PL, cr_write_error
from cffi_core.vmx import (
    INTR_TYPE_SHIFT,
    INTR_VALID,
    EventInfo,
    IntrType,
    PinControl,
    ProcControl,
    VmcsField,
    VmExitReason,
    intr_info,
)  # fmt: skip
from conformance.api import COUNTER_EMULATED, VMConfig
from reference_vmm.hardware.guest_mode import (
    COMMON_HANDLERS,
    SHUTDOWN,
    GuestModeVM,
    GuestModeVMM,
    Handler,
)
from reference_vmm.shadow import Resolution, ShadowPager, Space, WalkCache, pool_size

__all__ = ["HANDLERS", "HardwareVM", "HardwareVMM"]

F = VmcsField
V_GP, V_PF = 13, 14
PF_W, PF_U, PF_I = 2, 4, 16  # architecture §7.5
CR0_OWNED = CR0_PG | CR0_WP  # what shadow paging depends on (V.3 masks)
CR4_OWNED = CR4_PL | CR4_PGE
CONTROLS = (
    ProcControl.USE_IO_BITMAPS | ProcControl.USE_MSR_BITMAPS | ProcControl.USE_TSC_OFFSET
    | ProcControl.CR3_LOAD_EXITING | ProcControl.CR3_STORE_EXITING | ProcControl.CR8_LOAD_EXITING
    | ProcControl.INVLPG_EXITING
)  # fmt: skip
CONTROLS_TPR_SHADOW = (CONTROLS & ~ProcControl.CR8_LOAD_EXITING) | ProcControl.USE_TPR_SHADOW
"""With the host's TPR shadow: CR8 loads write VIRTUAL_TPR in guest mode (V.3)."""
MTCR, MFCR = 0, 1  # V.5 CR_ACCESS bits 5:4
FLAGS_TF = 1 << 8  # architecture §2
# Field numbers as plain ints (an enum member costs a lookup at each of the exits' accesses).
_SPEC_LOAD = tuple(int(f) for f in (F.GUEST_PC, F.GUEST_FLAGS, F.GUEST_CPL, F.GUEST_CR2, F.GUEST_CR8, F.GUEST_IDTR,
                                    F.GUEST_SEGLIMIT))  # fmt: skip
_RSP_FIELDS = (int(F.GUEST_RSP0), int(F.GUEST_RSP1), int(F.GUEST_RSP2))


def _emulate_fields(tpr: int) -> tuple[tuple[int, ...], ...]:
    """The fields ``emulate`` reads, and writes back after an event, after an instruction (with
    its sti shadow) and after one that leaves a #DB, with the guest's TPR in field ``tpr``."""
    load = tuple(tpr if f == F.GUEST_CR8 else f for f in _SPEC_LOAD)
    store = (*load, *_RSP_FIELDS)
    return (
        (*store, int(F.IDT_VECTORING_INFO)),
        store,
        (*store, int(F.GUEST_INTERRUPTIBILITY)),
        (*store, int(F.GUEST_PENDING_DB), int(F.GUEST_INTERRUPTIBILITY)),
    )


_FIELDS_CR8 = _emulate_fields(int(F.GUEST_CR8))
_FIELDS_TPR_SHADOW = _emulate_fields(int(F.VIRTUAL_TPR))  # the guest's TPR is VIRTUAL_TPR (V.3)
_CR_FIELDS = (int(F.GUEST_CR0), int(F.GUEST_CR4))
_PAGING_FIELDS = tuple(int(f) for f in (F.GUEST_CR3, F.GUEST_CR0, F.GUEST_CR4, F.CR0_READ_SHADOW, F.CR4_READ_SHADOW))
_IDT_VECTORING_INFO = int(F.IDT_VECTORING_INFO)
_EXIT_INTR_INFO = int(F.EXIT_INTR_INFO)
_PF_EXIT_FIELDS = (int(F.EXIT_QUALIFICATION), int(F.EXIT_INTR_ERROR_CODE))
_STORE_SIZE = {EXECUTORS["sb"]: 1, EXECUTORS["sh"]: 2, EXECUTORS["sw"]: 4, EXECUTORS["sd"]: 8}


class HardwareVM(GuestModeVM):
    """One guest in guest mode on shadow page tables."""

    def __init__(self, monitor: HardwareVMM, image: GuestImage, config: VMConfig, base: int) -> None:
        super().__init__(monitor, image, config, base)
        self.shadow = self.make_pager()
        self.memory.on_write = self.shadow.guest_wrote  # the guest's stores that the VMM makes
        # The guest's view of what the host owns, and the registers the spec emulates with.
        self.vcpu = spec.State.reset(entry=image.entry, features=self.host.profile.features)
        # The guest's page walks, remembered: the pager's own cache when it keeps one (the
        # pager walks the store's page at the #PF just before ``emulate`` walks it again).
        walks = getattr(self.shadow, "walks", None)
        self.walks = walks if isinstance(walks, WalkCache) else WalkCache(self.memory)
        v = self.vmcs
        v[F.IO_BITMAP] = monitor.io_bitmap
        v[F.MSR_BITMAP] = monitor.msr_bitmap
        v[F.PIN_CONTROLS] = PinControl.EXTERNAL_INTERRUPT_EXITING
        self._exception_bitmap = -1  # written by load_paging
        v[F.CR0_GUEST_HOST_MASK] = CR0_OWNED
        v[F.CR4_GUEST_HOST_MASK] = CR4_OWNED
        tpr_shadow = "tpr_shadow" in self.host.profile.features
        self._fields = _FIELDS_TPR_SHADOW if tpr_shadow else _FIELDS_CR8
        self.set_controls(CONTROLS_TPR_SHADOW if tpr_shadow else CONTROLS)
        self.load_paging()

    def make_pager(self) -> ShadowPager:
        """The shadow pager of this guest, over a pool of VMM pages taken here.  A hook: a
        subclass returns a pager of its own (a variant, a student's) built the same way."""
        size = pool_size(self.config.memory)
        pool = self.monitor.map.vmm_pages(size)
        return ShadowPager(self.host, self.memory, (pool, pool + size))

    @property
    def counters(self):
        out = dict(super().counters)
        out.update(self.shadow.counters)
        return out

    # -- the host's half of the guest's paging state ------------------------------------------
    def load_paging(self) -> None:
        """Give the real CPU the shadow of the guest's current address space: the real CR3 is a
        shadow root, the real CR0 has paging and WP on, the real CR4.PL is the shadow's; the
        read shadows show the guest its own CR0 and CR4 (V.3)."""
        c, v, shadow = self.vcpu, self.vmcs, self.shadow
        cr0, cr4 = c.cr0, c.cr4
        root = shadow.root(c, Space.SHARED)
        real = (root, CR0_PE | CR0_PG | CR0_WP | (cr0 & ~CR0_OWNED), shadow.real_cr4_pl | (cr4 & ~CR4_OWNED), cr0, cr4)
        v.write_many(_PAGING_FIELDS, real)
        # Every #PF exits (mask 0, match 0, V.4).  With the guest's paging off the real CPU still
        # pages, on identity shadow tables, and so checks that addresses are canonical, which a
        # bare machine does only with paging on (architecture §5.3 step 3): its #GP exits too.
        bitmap = 1 << V_PF | (0 if cr0 & CR0_PG else 1 << V_GP)
        if bitmap != self._exception_bitmap:
            v[F.EXCEPTION_BITMAP] = self._exception_bitmap = bitmap

    def pull_registers(self) -> None:
        """The vcpu's CR0 and CR4 from the VMCS: the guest writes the bits the host does not own
        (TS, TSD) without an exit (V.3), so the VMCS has them and the vcpu only the owned ones."""
        c = self.vcpu
        cr0, cr4 = self.vmcs.read_many(_CR_FIELDS)
        c.cr0 = (cr0 & ~CR0_OWNED) | (c.cr0 & CR0_OWNED)
        c.cr4 = (cr4 & ~CR4_OWNED) | (c.cr4 & CR4_OWNED)

    def write_cr(self, crn: int, value: int) -> None:
        """The guest wrote a control register the host owns (part of): a bad value is the
        guest's #GP(0), as natively; otherwise the shadows follow it."""
        if cr_write_error(crn, value):
            self.reflect(V_GP, 0)
            return
        self.pull_registers()  # a CR3 load keeps the guest's TS and TSD
        c = self.vcpu
        if crn == 0:
            c.cr0 = value
        elif crn == 3:
            c.cr3 = value
        else:
            c.cr4 = value
        self.load_paging()
        self.skip()

    # -- the executable spec as emulator -------------------------------------------------------
    def emulate(self) -> Exit | None:
        """Run the instruction at GUEST_PC (or finish the event delivery the exit interrupted)
        in the spec, over guest-physical memory: the way to make a guest store that no shadow
        entry may allow (a traced page table) and tell the pager.

        The vcpu is loaded from the VMCS and stored back field by field, every time: those
        VMREADs and VMWRITEs are this VMM's cost of an emulation, which Adams & Agesen (2006)
        price and the host counts.  A plain store, the usual instruction here, is done by
        ``_store`` when it can prove the spec would do exactly the same; anything else, by the
        spec."""
        c, v = self.vcpu, self.vmcs
        load, store, store_insn, store_db = self._fields
        (c.pc, c.flags, c.cpl, c.cr2, c.cr8, c.idtr, c.seglimit, rsp0, rsp1, rsp2, info) = v.read_many(load)
        c.rsp[:] = rsp0, rsp1, rsp2
        self.pull_registers()
        c.r[:] = v.regs.values()
        c.int_shadow, c.halted, c.pending_db, c.shutdown = False, False, False, False
        c.clock, c.tsc_offset = self.clock - 1, self.tsc_offset
        mem = self.memory
        instruction = not info & INTR_VALID or info >> INTR_TYPE_SHIFT & 7 == IntrType.SOFTWARE_INTERRUPT
        if instruction:
            ex = None if self._store(c) else spec.execute_instruction(c, mem)  # an `int n` is simply executed again
        else:
            event = EventInfo.decode(info)
            if event.kind == IntrType.EXTERNAL:
                c.intr_vector = event.vector
                ex = deliver_interrupt(c, mem)
            else:
                code = v[F.IDT_VECTORING_ERROR_CODE] if event.has_error else None
                ex = spec.deliver_exception(c, mem, spec.Event(event.vector, spec.EVENT_FAULT, c.pc, code))
        if ex is not None and ex.reason == spec.EXIT_SHUTDOWN:
            return SHUTDOWN
        v.regs.set_values(c.r)
        state = [c.pc, c.flags, c.cpl, c.cr2, c.cr8, c.idtr, c.seglimit, *c.rsp]
        if not instruction:
            v.write_many(store, state)
        elif c.pending_db:
            # What the instruction left for the next boundary, as ``skip`` does for the
            # handlers' instructions: its single-step #DB (§6.4), an sti shadow it set or spent.
            v.write_many(store_db, [*state, 1, int(c.int_shadow)])
        else:
            v.write_many(store_insn, [*state, int(c.int_shadow)])
        self.load_paging()
        self._stats[COUNTER_EMULATED] += 1
        return None

    def _store(self, c: spec.State) -> bool:
        """Do the instruction at ``c.pc`` as ``spec.execute_instruction`` would if it is a plain
        store (``sb``/``sh``/``sw``/``sd``) that completes, and say whether it did; otherwise
        change nothing (the spec then runs it, faults and all).

        The steps are the spec's (architecture §5.3, §6.5): the fetch (alignment, segment
        limit, the walk, RAM), the decode, the store's own checks and walk, the write through
        ``GuestMemory`` (which tells the pager of a traced entry changed), pc, the single-step
        #DB.  Only the walks differ: they come from ``walks``, which answers exactly as
        ``spec.walk`` (a remembered walk only when a fresh one is certain to be equal and to
        set no A/D bit).  When this gives up, the walks it made have done what the spec's
        first walks will do again — set A/D bits (§7.5), which the spec's then find set and
        leave — and nothing else has happened: a walk that faults writes nothing, and the
        store is written last.  (The vcpu's own spec counters — walks, instructions — are no
        figure of this VMM and are not kept here.)"""
        if not c.cr0 & CR0_PG:
            return False  # paging off (a #GP exit's instruction, V.4): rare, the spec's
        pc, cpl, walks, mem = c.pc, c.cpl, self.walks, self.memory
        if pc & 3 or beyond_limit(c, pc, 4, cpl):
            return False
        fetched = walks.physical(c, pc, spec.ACCESS_FETCH, cpl)
        if fetched < 0 or fetched + 4 > mem.size:
            return False
        decoded = decode_word(mem.read(fetched, 4))
        if decoded is None:
            return False
        d, body, needs_check = decoded
        size = _STORE_SIZE.get(body)
        if size is None or needs_check:
            return False
        va = effective_address(c, d)
        if va & (size - 1) or beyond_limit(c, va, size, cpl):
            return False
        target = walks.physical(c, va, spec.ACCESS_WRITE, cpl)
        if target < 0 or target + size > mem.size:
            return False
        mem.write(target, size, c.r[d.rs2])
        advance(c)
        if c.flags & FLAGS_TF:
            c.pending_db = True  # §6.4: TF when the store started (a store leaves FLAGS alone)
        return True


# -- the exit handlers of shadow paging ---------------------------------------------------------


def on_exception(vm: HardwareVM) -> Exit | None:
    """V.4 EXCEPTION: the vectors of the exception bitmap, #PF and (guest paging off) #GP."""
    vector = vm.vmcs.read(_EXIT_INTR_INFO) & 0xFF  # V.5: bits 7:0
    if vector == V_PF:
        return on_page_fault(vm)
    if vector == V_GP:
        return on_general_protection(vm)
    raise RuntimeError(f"unexpected exception exit, vector {vector}")


def on_general_protection(vm: HardwareVM) -> Exit | None:
    """A #GP while the guest's paging is off.  One with an error code is a gate's (architecture
    §6.3 steps 2, 3, 5: 8v + 2 + EXT), raised as natively: it goes to the guest by the nested
    fault rules (§6.6).  One with error code 0 may be the real CPU's canonical check: the
    instruction (or the delivery it was in) runs again in the spec over guest-physical memory,
    which faults as a bare machine does — a non-canonical address is beyond RAM there, #MC
    (§5.1, §5.3) — and raises and delivers a genuine #GP(0) as it was."""
    code = vm.vmcs[F.EXIT_INTR_ERROR_CODE]
    if code:
        return vm.reflect_delivery_fault(V_GP, code)
    return vm.emulate()


def on_page_fault(vm: HardwareVM) -> Exit | None:
    """V.4: a #PF (qualification: the address; error code in EXIT_INTR_ERROR_CODE)."""
    v = vm.vmcs
    va, code = v.read_many(_PF_EXIT_FIELDS)
    access = spec.ACCESS_FETCH if code & PF_I else spec.ACCESS_WRITE if code & PF_W else spec.ACCESS_READ
    c = vm.vcpu
    # The access's privilege is the error code's, not GUEST_CPL's: an event's delivery reads
    # the IDT and pushes a ring-0 frame as a supervisor even from CPL 3 (§6.3, §7.5).
    c.cpl = 3 if code & PF_U else 0
    resolution = vm.shadow.fault(c, va, access)
    if resolution is Resolution.HIDDEN:
        vm.clock -= 1  # the guest never saw this tick: its instruction runs again
        vectoring = v.read(_IDT_VECTORING_INFO)
        if vectoring >> 31:  # the exit cut an event's delivery short: deliver it again (V.5)
            event = EventInfo.decode(vectoring)  # an int n: GUEST_PC is the int (V.5, V.9)
            v[F.ENTRY_INTR_INFO] = intr_info(event.vector, event.kind, event.has_error)
            if event.has_error:
                v[F.ENTRY_ERROR_CODE] = v[F.IDT_VECTORING_ERROR_CODE]
        if vm.shadow.needs_flush:
            vm.shadow.needs_flush = False  # without VPID every entry flushes the TLB anyway (V.7)
        return None
    if resolution is Resolution.EMULATE:
        return vm.emulate()
    # A true fault: what the guest's own MMU says (architecture §5.3, §7.5).  A walk that
    # completes to a frame beyond RAM sets its A (and D) bits before the access takes #MC, as
    # natively: the shadow maps no such frame, so the walk's writes are the VMM's to make.
    w = spec.walk(c, vm.memory, va, access, c.cpl, set_ad=True)
    if w.fault == V_PF:
        v[F.GUEST_CR2] = va
        return vm.reflect_delivery_fault(V_PF, w.error_code)
    return vm.reflect_delivery_fault(w.fault, 0 if w.fault == V_GP else None)


def on_cr_access(vm: HardwareVM) -> None:
    """V.5: bits 3:0 the CR, 5:4 the access, 11:8 the register."""
    v = vm.vmcs
    q = v[F.EXIT_QUALIFICATION]
    crn, access, reg = q & 15, q >> 4 & 3, q >> 8 & 15
    if access == MFCR:  # only CR3 stores exit: the guest's CR3 is the VMM's
        v.regs[reg] = vm.vcpu.cr3
        vm.skip()
    elif crn == 8:  # a host without the TPR shadow: the VMM keeps the guest's TPR in its CR8 field
        value = v.regs[reg]
        if value > 15:
            vm.reflect(V_GP, 0)
        else:
            v[F.GUEST_CR8] = value
            vm.skip()
    else:
        vm.write_cr(crn, v.regs[reg])


def on_invlpg(vm: HardwareVM) -> None:
    vm.shadow.invlpg(vm.vmcs[F.EXIT_QUALIFICATION])
    vm.skip()


def on_ept(vm: HardwareVM) -> None:
    raise RuntimeError("an EPT exit in a VMM that does not enable ept")


HANDLERS: dict[int, Handler] = {
    **COMMON_HANDLERS,
    VmExitReason.EXCEPTION: on_exception,
    VmExitReason.CR_ACCESS: on_cr_access,
    VmExitReason.INVLPG: on_invlpg,
    VmExitReason.EPT_VIOLATION: on_ept,
    VmExitReason.EPT_MISCONFIG: on_ept,
}
HardwareVM.handlers = HANDLERS


class HardwareVMM(GuestModeVMM):
    """First-generation VT-x: guest mode, shadow paging, no VPID; the TPR shadow where the host
    has it (``optional``)."""

    name = "hardware"
    technique = "hardware-assisted, shadow paging (Fisher-Ogden 2006 §3.1; Adams & Agesen 2006)"
    requires = frozenset({"vmx"})
    optional = frozenset({"tpr_shadow"})
    vm_class = HardwareVM
