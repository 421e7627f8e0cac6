"""Mutants of ``paravirt`` (paravirtualization after Xen): one realistic bug each, in page-table validation, the rings, events or the host side.

Each mutant is a ``ParavirtVMM`` whose VMs are a subclass of ``ParavirtVM`` changing one thing
(docs/mutants.md §3).  Validation (``PageTables``) and the rings (``BlockRing``,
``ConsoleRing``) are objects a VM builds for itself; a mutant of one of them is its subclass,
which the mutant VM gives its own object after the base built it (``_retype``): the bug is in
that class's method, the rest of the VM is the base's.  A hypercall's handler is an entry of the
table ``ParavirtVM.handlers``, which names the base's function: a mutant that overrides an
``hc_*`` method enters it in its own class's copy of the table.

The witnesses are paravirtual guests (conformance/guests/paravirt/lib): safety bugs write host
memory outside every VM (``outside_writes``), efficiency bugs show in the host's exits and
entries, equivalence bugs in a port's or p64os's paravirtual build's observation against the
native run, or against the ABI's own answer where no native run has the figure (a timer's
deadline in SHARED_TIME, the console ring's wrap-around).
"""

from __future__ import annotations

import struct

from cffi_core.devices.disk import SECTOR_SIZE
from cffi_core.exits import ExitReason
from cffi_core.machine import Exit
from cffi_core.vmx import VmcsField, VmExitReason
from conformance.api import VMM, VMConfig
from conformance.guests.paravirt import PARAVIRT_DIR
from conformance.paravirt import (
    BLK_MAX_SECTORS,
    CONS_OUT_SIZE,
    CONSOLE_RING,
    MASK64,
    MMU_UPDATE_MAX,
    PV_UPCALL_VECTOR,
    BlockOp,
    Hypercall,
    Port,
    PvError,
)
from conformance.test_paravirt_interface import console_text
from reference_vmm.paravirt import ParavirtVMM
from reference_vmm.paravirt.devices import BlockRing, ConsoleRing, RingError
from reference_vmm.paravirt.hosts import IntHost, VmcallHost
from reference_vmm.paravirt.monitor import _SHARED_UPCALL, ParavirtVM, _Fault
from reference_vmm.paravirt.pagetables import _PAGE_MASK, PageTables, Refused
from tests.mutants.facts import outside_writes
from tests.mutants.witness import host_run, paravirt_kernel


def _suite_guest(name: str) -> str:
    """The source of the suite's paravirtual guest ``name`` (conformance/guests/paravirt/)."""
    return (PARAVIRT_DIR / f"{name}.s").read_text(encoding="utf-8")

__all__ = [
    "BlockBufferFirstSectorOnly",
    "ConsoleWrapDropped",
    "FastGateThroughVmm",
    "InvlpgIgnored",
    "InvlpgRequestIgnored",
    "OwnedOffByOnePage",
    "PinnedTableWritable",
    "SegmentLimitOff",
    "ShortTurns",
    "TimerOneTickLate",
    "UpcallWhileMasked",
    "UserOnKernelTable",
    "VmcallFromUser",
]

_REQUEST = struct.Struct("<QQ")  # an mmu_update request: ptr | command, val (§7.3)
_OUT_PROD, _OUT_CONS, _OUT = (CONSOLE_RING.offset(f) for f in ("out_prod", "out_cons", "out"))


def _vmm(name: str, vm_class: type[ParavirtVM], doc: str) -> type[ParavirtVMM]:
    """A ``ParavirtVMM`` whose VMs are ``vm_class``: the mutant keeps the base's name, so the
    suite grades it with the base technique's deviations and gives it the paravirtual guests."""
    return type(name, (ParavirtVMM,), {"vm_class": vm_class, "__doc__": doc, "__module__": __name__})


def _retype(obj: object, cls: type) -> None:
    """Give ``obj`` (built by the base VM) the mutant subclass ``cls`` of its class: same state,
    one method changed."""
    assert issubclass(cls, type(obj)), (cls, type(obj))
    obj.__class__ = cls


# ---- safety: page-table validation (docs/paravirt-abi.md §7.2) ----------------------------------------


class _PinnedWritableTables(PageTables):
    def check_entry(self, level: int, slot: int, value: int, pinning: int | None = None) -> PvError | None:
        refusal = super().check_entry(level, slot, value, pinning)
        if refusal is PvError.EWRITABLE and pinning is None:
            # The bug: rule 2 ("no present L1 entry maps a pinned page writable") is checked when
            # a table is pinned, not when an entry of a pinned L1 is updated — "the tables were
            # validated at the pin".  A writable mapping of the guest's own L1 goes through, and
            # through it the guest writes entries naming any machine frame (§7.2 rule 2).
            return None
        return refusal


class _PinnedWritableVM(ParavirtVM):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        _retype(self.tables, _PinnedWritableTables)


PinnedTableWritable = _vmm(
    "PinnedTableWritable",
    _PinnedWritableVM,
    "mmu_update accepts a writable L1 mapping of a pinned page-table page (rule 2 checked at pins only).",
)


class _OffByOneTables(PageTables):
    def owned(self, machine: int, size: int = 4096) -> bool:
        # The bug: the range's last page is compared with the end of the guest's memory by <=,
        # so the page right after it — the next VM's first frame — counts as the guest's
        # (§7.2 rule 3, §9: every frame an entry or a block request names is the guest's own).
        last_page = (machine + size - 1) & ~_PAGE_MASK
        return self.mem_base <= machine and last_page <= self.mem_end


class _OffByOneVM(ParavirtVM):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        _retype(self.tables, _OffByOneTables)


OwnedOffByOnePage = _vmm(
    "OwnedOffByOnePage",
    _OffByOneVM,
    "The ownership check of a frame accepts the page right after the end of the guest's memory.",
)


# ---- safety: the block ring (docs/paravirt-abi.md §9) -------------------------------------------------


class _FirstSectorBlockRing(BlockRing):
    def _transfer(self, op: int, count: int, sector: int, buffer: int) -> int:
        if op not in (BlockOp.READ, BlockOp.WRITE) or count == 0:
            return self._refuse(PvError.EINVAL)
        if count > BLK_MAX_SECTORS:
            return self._refuse(PvError.E2BIG)
        if sector + count > self.sectors:
            return self._refuse(PvError.ERANGE)
        size = count * SECTOR_SIZE
        # The bug: the buffer is checked for its first sector only ("the DMA starts in the
        # guest's memory"), so a multi-sector request that starts in the guest's last sectors
        # moves the rest past its end — into the next VM (§9: 512 · count bytes of guest memory).
        if not self.tables.owned(buffer, SECTOR_SIZE):
            return self._refuse(PvError.ENOTOWNED)
        if op == BlockOp.READ and self.tables.pinned_in(buffer, SECTOR_SIZE):
            return self._refuse(PvError.EWRITABLE)
        start = sector * SECTOR_SIZE
        host = self.page.host
        if op == BlockOp.READ:
            host.write(buffer, bytes(self.disk[start : start + size]))
        else:
            self.disk[start : start + size] = host.read(buffer, size)
        self.served_ok += 1
        return 0


class _FirstSectorVM(ParavirtVM):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        if self.block_ring is not None:
            _retype(self.block_ring, _FirstSectorBlockRing)


BlockBufferFirstSectorOnly = _vmm(
    "BlockBufferFirstSectorOnly",
    _FirstSectorVM,
    "A block request's buffer is checked for its first sector only: the rest of a long read lands past it.",
)


# ---- equivalence: events, the console ring, the TLB ---------------------------------------------------


class _UpcallWhileMaskedVM(ParavirtVM):
    def _upcall_due(self) -> bool:
        # The bug: the guest's event mask (its virtual IF, §5.1) is not consulted — an upcall
        # is delivered whenever one is pending, inside the kernel's critical sections (§5.3:
        # "which the guest may defer by a mask, as it would disable interrupts").
        table = self.trap_table
        return table is not None and table[PV_UPCALL_VECTOR] is not None and self._shared(_SHARED_UPCALL) != 0


UpcallWhileMasked = _vmm(
    "UpcallWhileMasked",
    _UpcallWhileMaskedVM,
    "Delivers an upcall while the guest's event mask is set.",
)


class _WrapDroppedConsoleRing(ConsoleRing):
    def drain(self) -> bool:
        page = self.page
        prod, cons = page.u64(_OUT_PROD), page.u64(_OUT_CONS)
        count = (prod - cons) & MASK64
        if count > CONS_OUT_SIZE:
            raise RingError(f"console ring: out_prod {prod} is {count} bytes past out_cons {cons}")
        if not count:
            return False
        base = page.address + _OUT
        first = cons % CONS_OUT_SIZE
        # The bug: the bytes are copied as one run from out_cons to the ring's end; the part the
        # guest wrapped to the ring's start is lost (§9: byte i at CONS_OUT + i mod CONS_OUT_SIZE).
        self.output += page.host.memory[base + first : base + min(first + count, CONS_OUT_SIZE)]
        page.set_u64(_OUT_CONS, prod)
        return True


class _WrapDroppedVM(ParavirtVM):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        _retype(self.console_ring, _WrapDroppedConsoleRing)


ConsoleWrapDropped = _vmm(
    "ConsoleWrapDropped",
    _WrapDroppedVM,
    "Drops the console ring's output that wrapped around the ring's end.",
)


class _InvlpgIgnoredVM(ParavirtVM):
    def hc_mmu_update(self, requests: int, count: int) -> int:
        if count > MMU_UPDATE_MAX:
            raise Refused(PvError.E2BIG)
        for i in range(count):
            try:
                ptr, val = _REQUEST.unpack(self._vread((requests + 16 * i) & MASK64, 16))
            except _Fault:
                raise Refused(PvError.EFAULT, i) from None
            self._stats["mmu_update_requests"] += 1
            try:
                # The bug: MMU_CMD_INVLPG is validated and then dropped — "the batch's updates
                # are flushed at the next set_cr3 anyway" — so a translation the guest
                # invalidated in the batch (fork's copy-on-write protection) stays in the host's
                # TLB (§7.3: as invlpg, in its place in the batch).
                self.tables.apply(ptr, val)
            except Refused as refusal:
                raise Refused(refusal.code, i) from None
        return 0


_InvlpgIgnoredVM.handlers[Hypercall.MMU_UPDATE] = _InvlpgIgnoredVM.hc_mmu_update  # the table names the function


InvlpgRequestIgnored = _vmm(
    "InvlpgRequestIgnored",
    _InvlpgIgnoredVM,
    "Ignores the MMU_CMD_INVLPG requests of an mmu_update batch.",
)


class _InvlpgIgnoredHypercallVM(ParavirtVM):
    def hc_invlpg(self, _va: int, _r2: int) -> int:
        # The bug: "the host's TLB is flushed at every entry anyway" — it is not (it is kept
        # across hypercalls on x86-2005, and across VM entries with a vpid): the page's old
        # translation stays in use after the guest changed its entry (§4.7, architecture.md §8.1).
        return 0


_InvlpgIgnoredHypercallVM.handlers[Hypercall.INVLPG] = _InvlpgIgnoredHypercallVM.hc_invlpg

InvlpgIgnored = _vmm("InvlpgIgnored", _InvlpgIgnoredHypercallVM, "Ignores the invlpg hypercall.")


class _TimerLateVM(ParavirtVM):
    def hc_set_timer(self, deadline: int, _r2: int) -> int:
        self.timer = 0
        if deadline and deadline <= self.clock:
            self._raise(Port.TIMER)
        elif deadline:
            # The bug: the timer is armed to fire "after" the deadline's tick — one tick late
            # (§4.9: PORT_TIMER becomes pending when the VM's clock reaches the deadline).
            self.timer = deadline + 1
        return 0


_TimerLateVM.handlers[Hypercall.SET_TIMER] = _TimerLateVM.hc_set_timer

TimerOneTickLate = _vmm("TimerOneTickLate", _TimerLateVM, "Raises PORT_TIMER one tick after set_timer's deadline.")


# ---- the host sides (reference_vmm/paravirt/hosts.py) -------------------------------------------------


class _NoSegmentLimitVM(ParavirtVM):
    def _load(self) -> None:
        super()._load()
        # The bug: "the VMM's pages are supervisor and read-only, that is enough" — the segment
        # limits are left at their reset value, all ones, and the kernel at ring 1 (a supervisor
        # ring) reads the VMM's pages above PV_VIRT_LIMIT: its IDT, the host gates' targets
        # (§1 on x86-2005; docs/architecture.md §5.3; Barham et al.: Xen's top 64 MB).
        self.host.cpu.seglimit = MASK64
        self.host.cpu.cslimit = MASK64


SegmentLimitOff = _vmm(
    "SegmentLimitOff", _NoSegmentLimitVM, "Loads no segment limit: the ring-1 kernel reads the VMM's pages."
)


class _UserOnKernelTable(IntHost):
    def enter_user(self) -> None:
        # The bug: the virtual CPL becomes 3 but user mode keeps the kernel's table, in which
        # every present entry is PTE_U so that the ring-3 kernel reaches its pages (§7.2): user
        # mode reads and writes the kernel's memory (§7.4: the user table at every iret to it).
        self.in_user = True


class _UserOnKernelTableVM(ParavirtVM):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        if isinstance(self.side, IntHost):
            _retype(self.side, _UserOnKernelTable)


UserOnKernelTable = _vmm(
    "UserOnKernelTable",
    _UserOnKernelTableVM,
    "On the ring-3 hosts, runs user mode on the kernel's page table, not the user table.",
)


class _VmcallFromUser(VmcallHost):
    def answer(self, ex: Exit) -> None:
        cpu = self.cpu
        if ex.reason is ExitReason.VM and ex.number == VmExitReason.VMCALL and cpu.cpl == 3:
            # The bug: vmcall's exit is taken as a hypercall whatever the guest's CPL — user
            # mode calls the VMM with the kernel's authority (§2.4: from user mode, #UD).
            cpu.pc = (cpu.pc + 4) & MASK64
            self.vm.hypercall(self.vmcs[VmcsField.EXIT_QUALIFICATION])
            return
        super().answer(ex)


class _VmcallFromUserVM(ParavirtVM):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        if isinstance(self.side, VmcallHost):
            _retype(self.side, _VmcallFromUser)


VmcallFromUser = _vmm(
    "VmcallFromUser", _VmcallFromUserVM, "On vmx hosts, takes a vmcall from user mode as a hypercall."
)


# ---- efficiency: the fast gate, the turns -----------------------------------------------------------


class _FastGateThroughVmmVM(ParavirtVM):
    def _write_real_idt(self) -> None:
        # The bug: the fast system-call gate is kept in the trap table only, never written into
        # the IDT the CPU reads — a host gate (or a not-present entry in guest mode) stands
        # there, so every system call enters the VMM, which delivers it through the trap table
        # (§6.3: "called directly by the processor without indirecting via Xen").
        table = self.trap_table
        plain = None if table is None else [g._replace(fast=False) if g is not None else None for g in table]
        self.host.write(self.idt, self.side.real_idt(plain))


FastGateThroughVmm = _vmm(
    "FastGateThroughVmm",
    _FastGateThroughVmmVM,
    "Does not install the fast system-call gate in the real IDT: every system call enters the VMM.",
)


TIME_REFRESH = 32
"""The mutant's "period" of SHARED_TIME refreshes, in guest ticks."""


class _ShortTurnsVM(ParavirtVM):
    def _run(self, ticks: int) -> Exit:
        # The bug: the guest is entered for at most TIME_REFRESH ticks at a time, so that
        # SHARED_TIME (written at each entry, §5.1) "stays current" — a host entry every 32
        # guest instructions, where direct execution is the point (Popek & Goldberg's efficiency).
        return super()._run(min(ticks, TIME_REFRESH))


ShortTurns = _vmm(
    "ShortTurns",
    _ShortTurnsVM,
    "Enters the guest for at most 32 ticks at a time, to keep the shared info page's time current.",
)


# ---- the witnesses' guests and measures (paravirtual kernels: conformance/guests/paravirt/lib) --------

SCRATCH = 0x60000
"""An ordinary page of a witness guest, mapped writable by the bootstrap tables (§3)."""
_SETUP = f"""
        la      r10, start_info
        ld      r10, [r10]
        ld      r11, [r10 + START_MEM_BASE]
        ld      r12, [r10 + START_MEM_SIZE]
        ld      r9, [r10 + START_PT_BASE]
        add     r9, r9, r11            ; the bootstrap L4 (machine); its L3, L2 and L1 follow (§3)
        li      r3, 3 * 4096 + 8 * ({SCRATCH} >> 12)
        add     r8, r9, r3             ; the bootstrap L1's entry of SCRATCH (machine)
"""
_MMU1 = """
        li      r5, REQUESTS
        sd      r3, [r5 + MMU_REQ_PTR]
        sd      r4, [r5 + MMU_REQ_VAL]
        li      r1, REQUESTS
        li      r2, 1
        hypercall HYPERCALL_MMU_UPDATE
"""
_STORE_PAST = f"""
        mov     r6, r1                 ; the refusal
        li      r1, {SCRATCH}
        hypercall HYPERCALL_INVLPG
        li      r3, {SCRATCH}
        li      r4, 0x5a5a5a5a
        sd      r4, [r3]               ; refused: its own scratch page; else the frame past its memory
        mov     r1, r6
"""

# mmu_update maps SCRATCH to the frame right after the guest's memory (§7.2 rule 3: PV_ENOTOWNED),
# then stores through SCRATCH.
MAP_FRAME_PAST_END = f"""
.include "lib/directed.s"
main:
{_SETUP}
        mov     r3, r8
        add     r4, r11, r12
        ori     r4, r4, PTE_P | PTE_W
{_MMU1}
{_STORE_PAST}
        jmp     finish
.include "lib/end.s"
"""

# mmu_update maps SCRATCH to the guest's own pinned L1, writable (§7.2 rule 2: PV_EWRITABLE);
# through it, the entry of SCRATCH + 4 KiB is made to name the frame past its memory, and a store
# goes there.  Refused, the stores land in its scratch pages.
WRITE_THROUGH_OWN_L1 = f"""
.include "lib/directed.s"
main:
{_SETUP}
        mov     r3, r8
        li      r4, 3 * 4096
        add     r4, r9, r4
        ori     r4, r4, PTE_P | PTE_W  ; its L1, writable
{_MMU1}
        mov     r6, r1
        li      r1, {SCRATCH}
        hypercall HYPERCALL_INVLPG
        add     r4, r11, r12
        ori     r4, r4, PTE_P | PTE_W
        li      r3, {SCRATCH}
        sd      r4, [r3 + 8 * (({SCRATCH} + 4096) >> 12)]
        li      r1, {SCRATCH} + 4096
        hypercall HYPERCALL_INVLPG
        li      r3, {SCRATCH} + 4096
        li      r4, 0x5a5a5a5a
        sd      r4, [r3]
        mov     r1, r6
        jmp     finish
.include "lib/end.s"
"""

BLOCK_BUFFER = 0xF1000
"""A block read of 64 KiB here ends one page past a 1 MiB guest's memory."""
# One block request of 128 sectors (64 KiB) into BLOCK_BUFFER: its first sectors are the guest's,
# its last page is past its memory (§9: PV_ENOTOWNED); then the send that serves it.
LONG_READ_PAST_END = f"""
.include "lib/directed.s"
main:
{_SETUP}
        ld      r5, [r10 + START_BLOCK_RING]
        ld      r9, [r5 + BLK_REQ_PROD]
        andi    r3, r9, BLK_RING_SIZE - 1
        shli    r3, r3, 5
        add     r3, r3, r5
        sd      r9, [r3 + BLK_REQUESTS + BLK_REQ_ID]
        li      r4, BLK_OP_READ
        sw      r4, [r3 + BLK_REQUESTS + BLK_REQ_OP]
        li      r4, 128
        sw      r4, [r3 + BLK_REQUESTS + BLK_REQ_COUNT]
        sd      r0, [r3 + BLK_REQUESTS + BLK_REQ_SECTOR]
        li      r4, {BLOCK_BUFFER}
        add     r4, r4, r11
        sd      r4, [r3 + BLK_REQUESTS + BLK_REQ_BUFFER]
        addi    r9, r9, 1
        sd      r9, [r5 + BLK_REQ_PROD]
        li      r1, PORT_BLOCK
        hypercall HYPERCALL_EVTCHN_SEND
        ld      r1, [r5 + BLK_RESPONSES + BLK_RSP_STATUS]
        jmp     finish
.include "lib/end.s"
"""
_LONG_DISK = bytes((7 * i + 1) & 0xFF or 1 for i in range(128 * 512))  # no zero byte: every byte DMA'd shows


def _writes_host(source: str, config: VMConfig):
    def measure(vmm: type[VMM], profile: str) -> str | None:
        run = host_run(vmm, [(source, config)], profile, paravirt=True)
        pages = outside_writes(run)
        if pages:
            return f"{len(pages)} host pages outside every VM and the VMM's pages changed, the first at {pages[0]}"
        return f"the VMM raised: {run.error}" if run.error is not None else None

    return measure


_SMALL = VMConfig(memory=1 << 20, budget=200_000)
frame_past_end_writes_host = _writes_host(MAP_FRAME_PAST_END, _SMALL)
own_l1_writable_writes_host = _writes_host(WRITE_THROUGH_OWN_L1, _SMALL)
long_read_writes_host = _writes_host(LONG_READ_PAST_END, VMConfig(memory=1 << 20, disk=_LONG_DISK, budget=200_000))

SYSCALLS = 64
# User mode makes SYSCALLS system calls through the fast gate (§6.3), each returning at once
# with the iret hypercall (whose exit is a hypercall's, not the gate's).
FAST_SYSCALLS = paravirt_kernel(
    f"""
        call    paging_on
        gate    0x81, h_fast, FAST_GATE
        enter_user back
        li      r3, {SYSCALLS}
loop:   int     0x81
        addi    r3, r3, -1
        bnez    r3, loop
        int     VEC_BACK
back:   li      r3, 0
""",
    """
h_fast: push    r7
        pv_iret
""",
)


def syscalls_enter_the_vmm(vmm: type[VMM], profile: str) -> str | None:
    """The host's exits that are no hypercall (host gates; VM exits but vmcall's) while user
    mode makes SYSCALLS fast system calls: one each means the fast gate is not the CPU's."""
    from cffi_core.vmx import VmExitReason

    run = host_run(vmm, [(FAST_SYSCALLS, _SMALL)], profile, paravirt=True)
    if run.error is not None:
        return f"the VMM raised: {run.error}"
    gates = sum(
        n
        for k, n in run.exits.items()
        if k == "HOST_GATE" or (k.startswith("VM_") and k != f"VM_{VmExitReason.VMCALL}")
    )
    return f"{gates} host exits that are no hypercall for {SYSCALLS} system calls" if gates >= SYSCALLS else None


# A kernel loop of 20,000 iterations and nothing else: no reason to enter the VMM.
LOOP = paravirt_kernel(
    """
        li      r3, 20000
spin:   addi    r3, r3, -1
        bnez    r3, spin
"""
)


def host_entries_per_mille_of_loop(limit: int):
    """More than ``limit`` host entries per 1,000 guest instructions on LOOP (test_paravirt_
    efficiency's bound is 20)."""

    def measure(vmm: type[VMM], profile: str) -> str | None:
        run = host_run(vmm, [(LOOP, _SMALL)], profile, paravirt=True)
        if run.error is not None:
            return f"the VMM raised: {run.error}"
        instructions = run.observations[0].counters.get("guest_insns_direct", 0)
        per_mille = 1000 * run.entries / max(instructions, 1)
        if per_mille > limit:
            return f"{run.entries} host entries for {instructions} guest instructions ({per_mille:.0f} per 1,000)"
        return None

    return measure


# The witnesses of the interface's own answers are the suite's guests (conformance/
# test_paravirt_interface.py), one home: the timer's deadline, the console ring's wrap-around,
# a kernel load from the VMM's top page, a hypercall stub called from user mode.
TIMER_DEADLINE = _suite_guest("abi_timer")
CONSOLE_WRAP = _suite_guest("abi_console_wrap")
CONSOLE_TEXT = console_text()
READ_VMM_IDT = _suite_guest("abi_vmm_pages")
USER_VMCALL = _suite_guest("abi_user_hypercall")
