"""``BinaryTranslationVMM``: binary translation, Adams & Agesen (2006) §3 — guest kernel code from a translation cache, user code directly.

VMware's VMM for 32-bit x86 ran guest *user* code directly and guest *kernel* code (CPL 0)
from a translation cache (TC): the kernel's code is translated, on demand and one translation
unit at a time, into code that does the same on the virtual CPU, and that code runs on the
real CPU at ring 1.  This VMM is ``reference_vmm/trap_emulate`` (read it first: the virtual
CPU, the host-gate IDT, the shadow pager, the devices and the run loop are all its) plus the
translator of ``translator.py``.  What it changes:

- **Guest CPL 0 runs from the TC** (``_translated``), at real ring 1 with the guest's IF, TPR,
  interrupt shadow and pending vector, IOPL 1 (so that ``cli``/``sti`` run for real on the
  guest's IF; port I/O never runs in the TC) and no TF; a guest that single-steps its kernel
  runs it in the spec instead.  Every sensitive instruction is translated (``translator.RULES``):
  ``iret``, ``smsw``, ``sidt`` never run on the real CPU, ``pushf`` shows the virtual IOPL and
  ``popf`` runs for real only where it means what the guest's does, so the obstacles of the
  x86-like P64 (docs/architecture.md §4.3) are gone, and ``iret`` to ring 1 is seen.
- **Callouts** (``hcall``, §10): the VMM executes the one guest instruction with the spec on the
  virtual CPU (``_emulate``, as trap-and-emulate does for a trapped one) and goes on at the pc
  it leaves — from the TC if that is still guest CPL 0, directly if the guest went to user mode.
- **Chaining**: a branch to an untranslated target goes to a stub; the first time it runs the
  target is translated and the branch patched (``TranslationCache.chain``).
- **In-TC sequences through GS** (``translator.py``): ``call``, ``callr``, ``jr``, ``ret``,
  ``rdtsc``, ``pushf``, ``popf`` and ``mtcr cr8`` become short sequences of TC words that run
  on the real CPU without an exit: the guest return address pushed, the target looked up
  inline in the TC hash and jumped to (``jgs``), the TSC read less what the sequences cost, the
  virtual IOPL and TPR kept in GS.  ``smsw``, ``sidt`` and ``mfcr`` become one word each on the
  virtual CPU's copy, ``cli`` and ``sti`` one real word each.  They reach the VMM's data — the
  virtual CPU's fields, spill slots, the hash — through the GS segment (``MSR_GSBASE``,
  ``MSR_GSLIMIT``, docs/architecture.md §5.4), as VMware's TC did through %gs, past the data
  limit that keeps the guest kernel out.
- **Precise state and exact time**: every other guest instruction is one TC word (or a
  ``hcall``), and every word of a sequence has a ``Step``: an exit anywhere in the TC names a
  guest instruction boundary — before a sequence's guest instruction (its spilled registers
  restored, the sequence run again) or after it — a fault there is emulated at that pc with the
  guest's state, and the host ticks that sequences spend beyond their guest tick are counted in
  ledgers in GS (read at every exit) and taken off the guest's clock: timer interrupts arrive
  at the native instruction, and the ledgers count the sequences' runs exactly.
- **Coherence with the guest's address space**: the TC is keyed by guest-virtual address; the
  guest's ``mtcr`` and ``invlpg`` (both callouts) flush it, which §8.1 allows (a translation
  changed without invalidation may be used old or new until the invalidation).
- **Coherence with the guest's code**: every guest frame holding a translated instruction is
  write-protected in every shadow (``ShadowPager.protect_code``); a guest store there faults
  and is emulated, and a device's DMA there is seen too (``GuestMemory.on_code_write``).  A
  write that touches a translated instruction flushes the TC (``invalidations``), so
  self-modifying code runs its new instructions exactly as natively.
- **User code directly, but never a sensitive instruction**: guest CPL 1-3 code runs on the
  real CPU as under trap-and-emulate, except that a frame is mapped executable only after it
  has been scanned and holds no sensitive instruction that would show the VMM there
  (``_exec_policy``; ``smsw`` and ``sidt``: the "Red Pill" — ``rdcs``, ``pushf``, ``popf`` and
  ``iret`` behave as natively, the real ring, IOPL and IF being the guest's): a frame that
  holds one is run by the spec instead (``frames_tainted``), and a scanned frame stays write-protected so that
  writing such an instruction into it later takes its execute permission back.  VMware's VMM
  ran user code directly without this scan and was visible to the Red Pill; P64's suite asks
  for equivalence at every ring, and the scan costs one pass over each user code page.

**The design question: where the TC lives and what protects it.**  The TC is VMM code that
must run at ring 1 (so that guest kernel data accesses stay checked) from addresses the guest
cannot reach.  On P64 before this VMM, one segment limit (MSR_SEGLIMIT) bounded fetch *and*
data at CPL ≥ 1 (§5.3): a TC above the limit could not be fetched at ring 1, and a limit above
the TC let the guest kernel read and write it.  The alternatives weighed:

1. *A code segment limit* separate from the data limit (taken): ``MSR_CSLIMIT`` bounds fetch,
   ``MSR_SEGLIMIT`` data, stack and frame accesses (docs/architecture.md §2, §5.3).  This is
   what VMware's 32-bit VMM had on x86: CS covered the TC while the guest's data segments were
   truncated below the VMM (Adams & Agesen 2006 §3.1).  Here ring 1 runs with MSR_SEGLIMIT just
   below ``TC_VA`` and MSR_CSLIMIT all ones; the TC pages are supervisor and read-only in every
   shadow, so guest user code cannot touch them either, and every guest kernel access above the
   limit faults and is emulated on the guest's own memory.  Cost: one MSR in the core and the
   spec (in guest mode fetch stays bounded by MSR_SEGLIMIT, docs/vmx.md having one limit).
2. *The TC below the limit, protected by supervisor read-only pages*: the guest kernel runs at
   a supervisor ring, so it could read the TC and any address it maps there would be shadowed
   by the VMM's: address-space compression made visible, the very failure the suite excuses
   only where the profile has no segment limit (``x86-64-2005``).  Rejected for ``x86-2005``.
3. *Software checks* before every translated load and store: each guest access becomes several
   TC instructions, which breaks "one word per guest instruction" (the guest's clock would no
   longer be the real CPU's) and needs scratch registers the guest does not have.  It is what a
   VMM without segmentation is left with (Adams & Agesen's 64-bit case); not needed here.

On ``x86-64-2005``, without ``seglimit``, the TC is protected by paging alone (supervisor,
read-only), as trap-and-emulate's IDT page, and the VMM's data that the TC writes (GS: spill
slots, ledgers, the hash) is supervisor and writable: guest kernel *reads* of the reserved range
see the VMM's pages and its *writes* there reach the VMM's data.  That is Adams & Agesen's
64-bit safety problem (the suite's expected deviation says so); a guest that forges the hash so
that the real CPU leaves the TC stops itself alone (``_TCLost``: the VM shuts down, the VMM
goes on).

**On ``classic-1974`` the guest kernel is not translated.**  That machine has no segment limit
either, so a TC there would be as exposed as on ``x86-64-2005``; but it is classically
virtualizable (every sensitive instruction traps at CPL > 0, §4.4), so the reason for binary
translation is gone: "only guest kernel code needs BT" (Adams & Agesen 2006 §3) because x86
kernel code cannot run directly, and P64's classic kernel code can.  The VMM runs it directly
at real ring 3 with a shadow address space of its own (ring compression, trap-and-emulate's
``RING_COMPRESSION`` plan), where the supervisor pages of the reserved range are out of its
reach: safe where a TC could not be (``kernel_translated`` is False, and the TC stays empty).
Nor are user frames scanned for ``smsw`` and ``sidt`` there: they trap at ring 3.

Callouts as in Adams & Agesen: ``iret``, ``int``, port I/O, ``hlt``, CR0/CR3/CR4 and IDTR
loads, MSRs, ``invlpg``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import ClassVar

from cffi_core import spec
from cffi_core.exits import EventKind, ExitReason
from cffi_core.image import GuestImage
from cffi_core.isa.encoding import Decoded
from cffi_core.isa.table import INSTRUCTIONS, Sensitivity
from cffi_core.machine import PAGE_SIZE, Machine
from cffi_core.spec.events import interrupt_deliverable
from cffi_core.spec.insns_system import SMSW_MASK
from cffi_core.spec.state import CR4_TSD, FLAGS_IF, FLAGS_IOPL, FLAGS_IOPL_SHIFT, FLAGS_TF, MASK64, PF_I, PF_W
from conformance.api import COUNTER_DIRECT, COUNTER_INTERVENTIONS, VMConfig
from reference_vmm.binary_translation.translator import (
    GS_CR,
    GS_IOPL,
    GS_LEDGER,
    GS_SIZE,
    GS_SPILL,
    GS_TARGET,
    GS_VA,
    HC_CALLOUT,
    HC_CHAIN,
    HC_CONTINUE,
    HC_MISS,
    SEQUENCE_LENGTHS,
    SEQUENCES,
    TC_SIZE,
    TC_VA,
    TranslationCache,
    WordKind,
)
from reference_vmm.shadow import GuestMemory, Resolution, ShadowPager, pool_size
from reference_vmm.trap_emulate.monitor import _REAL_CR0, _SHUTDOWN, TrapEmulateVM, TrapEmulateVMM
from reference_vmm.trap_emulate.rings import RESERVED_VA, RingPlan, ring_plan

__all__ = ["BinaryTranslationVM", "BinaryTranslationVMM", "TCPager"]

_TC_LIMIT = GS_VA - 1
"""MSR_SEGLIMIT at real ring 1-3: data stops just below the VMM's data and the TC (limits are
4 KiB granular)."""
_OURS = frozenset({HC_CALLOUT, HC_CHAIN, HC_CONTINUE, HC_MISS})
_WORDS = struct.Struct("<I")
_BLOCK = struct.Struct(f"<{10 + len(SEQUENCES) + 1}Q")
"""``GS_TARGET`` .. ``GS_IOPL``: what the VMM writes at every entry into the TC and reads back
(target, jump, pending, smsw, idtr, cr0, cr2, cr3, cr4, cr8, the ledgers, IOPL)."""
assert GS_LEDGER + 8 * len(SEQUENCES) == GS_IOPL == GS_TARGET + 8 * (_BLOCK.size // 8 - 1)
assert GS_CR[8] == GS_TARGET + 8 * 9
_SPILLS = struct.Struct("<16Q")
_NO_LEDGERS = (0,) * len(SEQUENCES)


class TCPager(ShadowPager):
    """The shadow pager with the TC's pages executable: reserved pages are mapped supervisor,
    read-only and not executable (the VMM's IDT); the TC's are fetched at real ring 1."""

    def __init__(self, *args: object, tc_frames: frozenset[int], gs_frames: frozenset[int], **kwargs: object) -> None:
        self._tc_frames = tc_frames
        self._gs_frames = gs_frames
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def _map_reserved(self, root: int, va: int, frame: int) -> None:
        if frame in self._tc_frames:
            self._install(root, va, frame | spec.PTE_P)  # supervisor, read-only, executable
        elif frame in self._gs_frames:
            # Supervisor, writable, not executable: the TC's data, reached through GS (ring 1).
            self._install(root, va, frame | spec.PTE_P | spec.PTE_W | spec.PTE_A | spec.PTE_D | spec.PTE_NX)
        else:
            super()._map_reserved(root, va, frame)


class _TCLost(Exception):
    """The TC did what no translation does because the guest kernel wrote the VMM's data."""


class BinaryTranslationVM(TrapEmulateVM):
    """One guest: trap-and-emulate's VM with its kernel code run from a translation cache."""

    tc_class: ClassVar[type[TranslationCache]] = TranslationCache
    """The translation cache this VM builds (a hook: a variant names its subclass here)."""
    pager_class: ClassVar[type[TCPager]] = TCPager
    """The shadow pager this VM builds (``TCPager``; a hook as ``tc_class``)."""

    hidden_share = 2
    """The host ticks that are no guest's (hidden faults, and in-TC sequences beyond their guest
    tick) may reach half a slice's guest ticks: the host runs at most 1.5 times the slice, so
    150,000 ticks for a ``run(HOST_TIMER_PERIOD)``, docs/vmm-api.md §9's bound.  Beyond that the
    rest of the slice runs in the spec: a guest dense in indirect transfers pays for them in
    emulated instructions, not in host time it may not take."""

    def __init__(
        self,
        monitor: BinaryTranslationVMM,
        image: GuestImage,
        config: VMConfig,
        base: int,
        pool: tuple[int, int],
        tc: int,
        gs: int,
    ) -> None:
        self.tc = self.tc_class(monitor.host, tc, gs, protect=self._protect_code, release=self._release_code)
        self._tc_frames = {TC_VA + off: tc + off for off in range(0, TC_SIZE, PAGE_SIZE)}
        self._gs_frames = {GS_VA + off: gs + off for off in range(0, GS_SIZE, PAGE_SIZE)}
        self._gs = gs
        self._view = monitor.host.memory
        """Host RAM, for the VMM's data in GS (data, never code: read and written in place)."""
        self._target = 0  # GS_TARGET as read at the last exit from the TC
        self._ledgers = [0] * len(SEQUENCES)
        """Ticks each kind of in-TC sequence has cost beyond its guest tick, over the run."""
        self._resume: tuple[int, int] | None = None  # (guest pc, TC address) of the last exit
        self._real: tuple[int, int, int, int, int, list[int]] | None = None
        """After a budget exit from this VM's TC, what the real CPU holds of the fields each
        entry loads: (pc, FLAGS, interrupt shadow, TSC offset, pending vector, registers);
        halted 0 and no vector acknowledged (taking one exits through a host gate).  None after
        any other exit."""
        self._left: tuple[int, int, list[int]] = (0, 0, [])  # the real FLAGS, shadow, registers
        self._gs_block: tuple[int, ...] | None = None  # GS_TARGET..GS_IOPL as the last exit read them
        self._loaded: tuple[int, int] = (0, -1)  # the TSC offset and vector _enter_tc loaded
        self._callouts: dict[str, int] = {}
        self._exec: dict[int, bool] = {}
        """Guest frames scanned for direct execution at guest CPL 1-3: True when the frame holds
        no instruction that would show the VMM there (it may run on the real CPU), False when
        it does (the spec runs it, and ``_tainted`` holds it)."""
        self._tainted: set[int] = set()
        self._coherence = dict.fromkeys(("invalidations", "code_writes", "frames_scanned", "frames_tainted"), 0)
        super().__init__(monitor, image, config, base, pool)
        self._stats["tc_data_overwritten"] = 0  # stops by _TCLost (profiles without seglimit)
        if monitor.kernel_translated:  # classic-1974: smsw and sidt trap at ring 3, no scan needed
            self.shadow.exec_policy = self._exec_policy
        self.memory.on_code_write = self._code_written

    def make_pager(self) -> ShadowPager:
        reserved = {RESERVED_VA: self.monitor.idt, **self._tc_frames, **self._gs_frames}
        return self.pager_class(
            self.monitor.host,
            self.memory,
            self.pool,
            reserved=reserved,
            tc_frames=frozenset(self._tc_frames.values()),
            gs_frames=frozenset(self._gs_frames.values()),
        )

    @property
    def counters(self) -> Mapping[str, int]:
        """Trap-and-emulate's counters plus the translator's: fragments and guest instructions
        translated, TC hits and misses, chains patched, flushes, callouts by mnemonic."""
        out = dict(super().counters)
        out.update(self.tc.counters)
        out.update({f"callout_{k}": n for k, n in self._callouts.items()})
        out["callouts"] = sum(self._callouts.values())
        out.setdefault("adaptations", 0)
        out.update(self._coherence)
        # A ledger holds (words - 1) ticks per run of its sequence: runs are counted exactly.
        for mnemonic, ticks, length in zip(SEQUENCES, self._ledgers, SEQUENCE_LENGTHS, strict=True):
            out[f"in_tc_{mnemonic}"] = ticks // (length - 1)
            out[f"in_tc_{mnemonic}_ticks"] = ticks
        out["in_tc_sequences"] = sum(out[f"in_tc_{m}"] for m in SEQUENCES)
        out["tc_lookup_hits"] = sum(out[f"in_tc_{m}"] for m in ("callr", "jr", "ret"))
        out.setdefault("tc_lookup_misses", 0)
        return out

    # -- coherence: what is derived from guest code follows the guest's writes ---------------
    def _protect_code(self, frame: int) -> None:
        self.shadow.protect_code(frame)

    def _release_code(self, frame: int) -> None:
        """No translation is left in ``frame``: protect it only if it was scanned for direct
        execution."""
        if frame not in self._exec:
            self.shadow.release_code(frame)

    def _code_written(self, gpa: int, length: int) -> None:
        """A store the VMM emulated, or a device's DMA, changed guest code frame ``gpa >> 12``
        (``GuestMemory.on_code_write``).  A translation of a changed instruction is stale: the
        TC is flushed (its fragments are chained to one another, and a flush is what drops a
        fragment with every branch into it).  A frame cleared for direct execution stays so
        only while no sensitive instruction has been written into it."""
        self._coherence["code_writes"] += 1
        frame = gpa >> 12
        if self.tc.written(gpa, length):
            self._coherence["invalidations"] += 1
            self.tc.flush("code_write")
            self._resume = None
        verdict = self._exec.get(frame)
        if verdict is False:
            # Its sensitive instruction may be gone: scanned again at its next fetch, and its
            # writes no longer trap meanwhile unless it holds translations.
            del self._exec[frame]
            self._tainted.discard(frame)
            if frame not in self.tc.code:
                self.shadow.release_code(frame)
        elif verdict and _sensitive_word(self.memory, gpa & ~3, ((gpa & 3) + length + 3) & ~3):
            self._exec[frame] = False
            self._tainted.add(frame)
            self._coherence["frames_tainted"] += 1
            self.shadow.revoke_exec(frame)

    def _exec_policy(self, frame: int, fetch: bool) -> bool:
        """May the shadows map ``frame`` executable for direct execution (``ShadowPager.exec_policy``)?
        Only once scanned and found without a sensitive instruction that would show the VMM
        there (``_SHOWS_THE_VMM``: ``smsw``, ``sidt``): it runs unseen at every ring, so a frame
        that holds one is run by the spec.  Scanned frames are write-protected, so that the answer
        follows the guest's writes."""
        known = self._exec.get(frame)
        if known is not None or not fetch:
            return bool(known)
        clean = not _sensitive_word(self.memory, frame << 12, PAGE_SIZE)
        self._exec[frame] = clean
        self._coherence["frames_scanned"] += 1
        if not clean:
            self._tainted.add(frame)
            self._coherence["frames_tainted"] += 1
        self.shadow.protect_code(frame)
        return clean

    def _runs_in_spec(self, v: spec.State) -> bool:
        """Is the guest (at CPL 1-3) at a pc in a frame the spec must run?"""
        if not self._tainted:
            return False
        w = spec.walk(v, self.memory, v.pc, spec.ACCESS_FETCH, v.cpl)
        return not w.fault and w.physical >> 12 in self._tainted

    # -- where the guest runs --------------------------------------------------------------
    def _direct(self, ticks: int) -> spec.Exit | None:
        v = self.cpu
        if not self.monitor.kernel_translated:
            return super()._direct(ticks)  # classic-1974: trap-and-emulate's ring compression
        if v.cpl == 0 and not v.flags & FLAGS_TF:
            try:
                return self._translated(ticks)
            except _TCLost:
                # The guest kernel wrote the VMM's data (no segment limit here): the VM shuts
                # down, as after a triple fault; the VMM and its other VMs go on.
                self._stats["tc_data_overwritten"] += 1
                v.shutdown = True
                return _SHUTDOWN
        self._resume = None
        if v.cpl == 0 or self._runs_in_spec(v):
            # A frame the spec must run (the Red Pill), or guest kernel code single-stepping
            # (TF): every instruction of that would trap after one tick anyway, and run
            # directly at ring 1 its rdcs would tell ring 1.
            self._stats[COUNTER_INTERVENTIONS] += 1
            return self._emulate()
        return super()._direct(ticks)

    def _emulate(self) -> spec.Exit | None:
        """One tick of the spec, as trap-and-emulate's.  A guest write of CR0, CR3 or CR4, or an
        ``invlpg``, may change what a guest-virtual address holds (§8.1): the TC is kept only
        if every page it was translated from still maps the same frame (``revalidate``)."""
        v = self.cpu
        self._resume = None
        d = self._peek(v)
        page = None
        if d is not None and d.insn.mnemonic == "invlpg":
            page = (v.r[d.rs1] + d.imm) & MASK64 & ~(PAGE_SIZE - 1)
        ex = super()._emulate()
        if d is not None:
            if d.insn.mnemonic == "mtcr" and d.crn != 8:
                self.tc.revalidate(v, self.memory)
            elif page is not None:
                self.tc.revalidate(v, self.memory, page)
        return ex

    def _peek(self, v: spec.State) -> Decoded | None:
        """The instruction the spec will execute at pc, if it executes one."""
        if not (v.int_shadow or not (v.halted or interrupt_deliverable(v))):
            return None
        try:
            entry = spec.decode_word(spec.fetch(v, self.memory, v.pc))
        except spec.Fault:
            return None
        return None if entry is None else entry[0]

    # -- the translation cache ---------------------------------------------------------------
    def _translated(self, ticks: int) -> spec.Exit | None:
        """Run guest CPL 0 from the TC for at most ``ticks`` guest ticks and answer its exit."""
        host = self.monitor.host
        v = self.cpu
        if self._resume is not None and self._resume[0] == v.pc:
            start_va = self._resume[1]
        else:
            found = self.tc.translate(v, self.memory, v.pc)
            if found is None:
                return self._emulate()  # nothing fetchable there: the spec raises the guest's fault
            start_va = found
        self._resume = None
        step = self.tc.steps.get((start_va - TC_VA) // 4)
        if step is not None and not step.done and (v.int_shadow or ticks < step.length):
            # An in-TC sequence from its start: the real CPU's sti shadow would cover only its
            # first word, and a budget shorter than it would stop it before it takes effect
            # every time: the spec runs this one instruction.
            return self._emulate()
        # The host ticks that are no guest's are bounded per slice: a run starts only while
        # ``_hidden_left`` is positive (the run loop goes to the spec otherwise), and lasts at
        # most the slice's remaining guest ticks.  So the slice's host ticks stay below its guest
        # ticks plus the share: those before the last run are at most its guest ticks before
        # plus less than the share, and the last run at most the rest of its guest ticks.
        start = self._enter_tc(host, start_va)
        ex = host.run(ticks)
        reason = ex.reason
        # A budget exit ran every tick of its budget (docs/architecture.md §10): the host's
        # clock is read only after the other exits.
        elapsed = ticks if reason is ExitReason.BUDGET else host.clock - start
        self._leave_tc(host)
        self._stats["host_ticks"] += elapsed
        overhead = self._from_gs(host)
        pc = host.cpu.pc
        if reason is ExitReason.BUDGET:
            flags, shadow, values = self._left
            self._real = (pc, flags, shadow, *self._loaded, values)
            self._account(elapsed, overhead + self._settle(pc))
            return None
        self._stats[COUNTER_INTERVENTIONS] += 1
        if reason is ExitReason.HCALL and ex.number in _OURS:
            # The exit's own tick is a hcall's: the VMM's.
            hcall_pc = (pc - 4) & MASK64
            word = self.tc.word_of(hcall_pc)
            if word is None:
                raise self._lost(f"hcall {ex.number:#x} outside the TC at {pc:#x}")
            self._account(elapsed - 1, overhead + self._settle(hcall_pc))
            self._resume = None
            kind = self.tc.kind[word]
            # The real CPU passed this guest boundary before the hcall (taking no interrupt,
            # or spending an interrupt shadow): give the shadow back, as after a fault.
            self._restore_shadow(v)
            if kind is WordKind.CALLOUT:
                d = self._peek(v)
                mnemonic = "?" if d is None else d.insn.mnemonic
                self._callouts[mnemonic] = self._callouts.get(mnemonic, 0) + 1
                if word not in self.tc.adapted:
                    return self._emulate()
                # An adapted IDENT instruction (adaptive BT): did it store into a traced page
                # (changed or not: the IDENT store would have trapped either way) or a code page?
                before = self.memory.watched_stores + self._coherence["code_writes"]
                ex = self._emulate()
                trapped = self.memory.watched_stores + self._coherence["code_writes"] != before
                self.tc.judged(word, trapped=trapped)
                return ex
            if kind is WordKind.STUB:
                dest = self.tc.chain(word, v, self.memory)
                if dest is not None:
                    self._resume = (v.pc, dest)
                return None
            if kind is WordKind.MISS:
                # An inline lookup missed: the transfer took effect; its target is translated
                # (and entered in the TC hash) by the next entry.
                self.tc.counters["tc_lookup_misses"] += 1
            return None  # and WordKind.CONTINUE: go on at the fall-through
        if reason is not ExitReason.HOST_GATE:
            raise self._lost(f"unexpected exit {reason.name} from the TC at {pc:#x}")
        if ex.kind is EventKind.SOFTWARE:
            raise RuntimeError(f"{self.monitor.name}: int n ran in the TC at {pc:#x}")
        if ex.kind is EventKind.TRAP:
            raise RuntimeError(f"{self.monitor.name}: a single step in the TC at {pc:#x}")
        # A fault or an interrupt at pc: the exit's own tick is the emulated instruction's (or
        # delivery's), or nobody's if the fault was hidden.
        word = self.tc.word_of(pc)
        step = None if word is None else self.tc.steps.get(word)
        self._account(elapsed - 1, overhead + self._settle(pc))
        if ex.kind is EventKind.EXTERNAL:
            self._stats["virtual_interrupts"] += 1
            return self._emulate()
        if step is not None and step.done:
            raise self._lost(f"a fault in the TC at {pc:#x} after its guest instruction took effect")
        resume = self._resume
        self._restore_shadow(v)
        if ex.vector == spec.PF:
            access = (
                spec.ACCESS_FETCH
                if ex.error_code & PF_I
                else (spec.ACCESS_WRITE if ex.error_code & PF_W else spec.ACCESS_READ)
            )
            resolution = self.shadow.fault(v, ex.address, access)
            if resolution is Resolution.HIDDEN:
                self._hidden_left -= 1
                key = (v.pc, ex.address)
                if key != self._repeat:
                    self._repeat = key
                    self._resume = resume
                    return None
                self.shadow.needs_flush = True
            elif resolution is Resolution.EMULATE and word is not None:
                # A store to a traced page table or to translated code, or an access to the
                # reserved range: the VMM's trap, not the guest's.  Often enough, and the word
                # becomes a callout (adaptive BT).
                self.tc.guilty(word)
        elif ex.vector == spec.GP and word is not None and self.monitor.seglimit:
            self.tc.guilty(word)  # above the segment limit: the reserved range, emulated
        self._repeat = None
        self._resume = None
        return self._emulate()

    def _lost(self, what: str) -> Exception:
        """What stops the TC when it did what no translation does: a bug of this VMM's, raised as
        one; or, where no segment limit guards the VMM's data (the hash table of fragments, the
        spill slots), the guest kernel's own doing — it wrote them, as it can there (Adams &
        Agesen 2006's problem of 64-bit guests) — which stops that guest alone (``_TCLost``)."""
        if self.monitor.seglimit:
            return RuntimeError(f"{self.monitor.name}: {what}")
        return _TCLost(what)

    def _account(self, ticks: int, overhead: int) -> None:
        """``ticks`` host ticks in the TC, ``overhead`` of them spent by in-TC sequences beyond
        their guest ticks: the rest are the guest's, run directly.  The ledgers are in memory
        the guest kernel can write where no segment limit guards it: never more than ``ticks``."""
        overhead = min(overhead, ticks)
        guest = ticks - overhead
        self.cpu.clock += guest
        self._stats[COUNTER_DIRECT] += guest
        self._hidden_left -= overhead

    def _from_gs(self, host: Machine) -> int:
        """Read back what the TC changed in the VMM's data: the virtual TPR (``mtcr cr8``), the
        ledgers (returns their total: the ticks of in-TC sequences beyond their guest ticks),
        and the guest pc of the last indirect transfer (for ``_settle``)."""
        del host  # GS is read in place (``_view``)
        block = self._gs_block = _BLOCK.unpack_from(self._view, self._gs + GS_TARGET)
        self._target = block[0]
        self.cpu.cr8 = block[9] & 0xF  # what the sequence stored, checked there (§2: 4 bits)
        ledgers = block[10 : 10 + len(SEQUENCES)]
        total = sum(ledgers)
        if total:  # most runs of a compute-bound kernel ran no sequence
            mine = self._ledgers
            for k, ticks in enumerate(ledgers):
                mine[k] += ticks
        return total

    def _settle(self, pc: int) -> int:
        """The real CPU stopped at TC address ``pc``, before the word there: put the guest at
        the instruction boundary that word stands for, and let the next entry resume there.
        Inside an in-TC sequence (``Step``) that is before its guest instruction (the sequence
        runs again from its start) or after it (the rest was bookkeeping), with the guest's
        registers back from their spill slots.  Returns the ticks of that sequence so far that
        are no guest's and not in its ledger."""
        word = self.tc.word_of(pc)
        if word is None or self.tc.kind[word] is WordKind.FREE:
            raise self._lost(f"the real CPU left the TC at {pc:#x}")
        v = self.cpu
        step = self.tc.steps.get(word)
        if step is None:
            v.pc = self.tc.guest_pc[word]
            self._resume = (v.pc, pc)
            return 0
        if step.restore:
            slots = _SPILLS.unpack_from(self._view, self._gs + GS_SPILL)
            for r in step.restore:
                v.r[r] = slots[r]
        if step.done:
            v.pc = self._target if step.pc is None else step.pc
            self._resume = None
        else:
            assert step.pc is not None
            v.pc = step.pc
            self._resume = (v.pc, self.tc.va(step.start))
        return step.overhead

    def _enter_tc(self, host: Machine, start: int) -> int:
        """Load the real CPU for translated guest CPL 0: ring 1, IOPL 0 (no sensitive instruction
        runs there, and one that did would trap), the guest's IF, TPR, interrupt shadow and
        pending vector; data limited below the VMM's data and the TC, fetch not limited (§5.3),
        GS on the VMM's data, where the virtual CPU's copies are refreshed and the ledgers
        zeroed.  Returns the host's clock."""
        v, cpu = self.cpu, host.cpu
        real, self._real = self._real, None
        gs_block, self._gs_block = self._gs_block, None
        shadow = self.shadow
        root = shadow.root(v, self.plan.space(0))
        if shadow.needs_flush:
            host.tlb_flush()
            shadow.needs_flush = False
        cpu.cpl = 1
        cpu.pending_db = 0
        cr4 = shadow.real_cr4_pl | (v.cr4 & CR4_TSD)
        loaded = (self, root, cr4, v.cr8)
        monitor = self.monitor
        if monitor.real_tc != loaded:
            # Privileged state, which code at rings 1-3 cannot change (its writes trap): it
            # still holds what this VM's last entry into the TC loaded unless the VMM loaded
            # the real CPU otherwise since (``real_tc``).  Writing the same values again would
            # change nothing (the core compares CR0, CR3 and CR4 with what it last ran, §10).
            cpu.cr0 = _REAL_CR0
            cpu.cr4 = cr4
            cpu.cr3 = root
            cpu.cr8 = v.cr8
            cpu.idtr = RESERVED_VA
            if monitor.seglimit:
                cpu.seglimit = _TC_LIMIT
                cpu.cslimit = MASK64
            cpu.gsbase = GS_VA
            cpu.gslimit = GS_SIZE - 1
            monitor.real_tc = loaded
            real = None
        block = (
            0,
            0,
            1 if v.intr_vector >= 0 else 0,
            v.cr0 & SMSW_MASK,
            v.idtr,
            v.cr0,
            v.cr2,
            v.cr3,
            v.cr4,
            v.cr8,
            *_NO_LEDGERS,
            v.flags & FLAGS_IOPL,
        )
        if block != gs_block:  # what the last exit read there (``_from_gs``), unchanged since
            _BLOCK.pack_into(self._view, self._gs + GS_TARGET, *block)
        now = host.clock
        # IOPL 1: cli, sti and popf act on the real IF, which is the guest's (translator.py).
        flags = (v.flags & FLAGS_IF) | (1 << FLAGS_IOPL_SHIFT)
        tsc_offset = (v.clock + v.tsc_offset - now) & MASK64
        shadow_bit = int(v.int_shadow)
        vector = v.intr_vector
        self._loaded = (tsc_offset, vector)
        if real is None:
            cpu.r.load(v.r)
            cpu.pc = start
            cpu.flags = flags
            cpu.tsc_offset = tsc_offset
            cpu.halted = 0
            cpu.int_shadow = shadow_bit
            cpu.intr_vector = vector
            cpu.intr_acked = -1
            return now
        # Right after a budget exit from this TC, with nothing loaded since: only what changed
        # is written (a field written with the value it holds changes nothing).
        real_pc, real_flags, real_shadow, real_tsc_offset, real_vector, real_r = real
        if v.r != real_r:
            cpu.r.load(v.r)
        if start != real_pc:
            cpu.pc = start
        if flags != real_flags:
            cpu.flags = flags
        if tsc_offset != real_tsc_offset:
            cpu.tsc_offset = tsc_offset
        if shadow_bit != real_shadow:
            cpu.int_shadow = shadow_bit
        if vector != real_vector:
            cpu.intr_vector = vector
        return now

    def _leave_tc(self, host: Machine) -> None:
        """Take back the registers, IF (``cli``, ``sti``, ``popf`` ran for real) and the
        interrupt shadow; the ring and the rest only change through callouts."""
        v, cpu = self.cpu, host.cpu
        values = cpu.r.values()
        v.r[:] = values  # r0 reads 0 there, as it is kept here
        flags, shadow = cpu.flags, cpu.int_shadow
        self._left = (flags, shadow, values)
        v.flags = (v.flags & ~FLAGS_IF) | (flags & FLAGS_IF)
        v.int_shadow = bool(shadow)

    def _enter(self, host: Machine) -> None:
        """Direct execution of guest CPL 1-3 (trap-and-emulate's), with the real IOPL the
        guest's own (its kernel runs directly only under ring compression, whose plan gives it
        the guest's IOPL too, so nothing needs a raised IOPL: user ``pushf`` shows the guest's
        IOPL) and both limits below the TC as well."""
        self.monitor.real_tc = None  # the real CPU is loaded otherwise (``_enter_tc``)
        super()._enter(host)
        v, cpu = self.cpu, host.cpu
        cpu.flags = (cpu.flags & ~(3 << FLAGS_IOPL_SHIFT)) | (v.iopl << FLAGS_IOPL_SHIFT)
        cpu.gslimit = 0  # guest code at ring 1-2 must not reach the VMM's data through GS
        if self.monitor.seglimit:
            cpu.seglimit = min(v.seglimit, _TC_LIMIT)
            cpu.cslimit = min(v.cslimit, _TC_LIMIT)


class BinaryTranslationVMM(TrapEmulateVMM):
    """Binary translation with shadow paging (Adams & Agesen 2006 §3): guest kernel code from a
    translation cache at real ring 1, guest user code directly at ring 3.

    Needs no host feature; on ``x86-2005`` the segment limits protect the TC, on ``x86-64-2005``
    paging alone; on the classically virtualizable ``classic-1974`` the kernel runs directly at
    ring 3 instead (ring compression), untranslated."""

    name = "binary-translation"
    technique = "binary translation with shadow paging (Adams & Agesen 2006 §3)"
    requires = frozenset()
    reserved_range: ClassVar[tuple[int, int]] = (GS_VA, 1 << 64)
    """The VMM's data (GS), the TC and the VMM's IDT page, mapped in every guest address space."""
    vm_class: ClassVar[type[BinaryTranslationVM]] = BinaryTranslationVM  # type: ignore[assignment]
    """The VM class ``create_vm`` builds (a hook: a variant names its subclass here)."""

    def __init__(self, host: Machine, plan: RingPlan | None = None) -> None:
        features = host.profile.features
        self.seglimit = "seglimit" in features
        self.kernel_translated = "classic" not in features
        """False on a classically virtualizable host, whose guest kernel runs directly at ring 3
        (ring compression): no segment limit would protect a TC there, and none is needed."""
        self.real_tc: tuple[BinaryTranslationVM, int, int, int] | None = None
        """(VM, CR3, CR4, CR8) of the last entry into a TC when the privileged state of the real
        CPU is still what that entry loaded (None once the VMM loaded it otherwise): only
        ``_enter_tc`` and ``_enter`` load the real CPU, and at rings 1-3 nothing else changes
        it.  A VM's next entry into its TC then leaves it as it is."""
        super().__init__(host, plan or ring_plan(features))

    def create_vm(self, image: GuestImage, config: VMConfig) -> TrapEmulateVM:
        pool_bytes = pool_size(config.memory)
        base = self.map.guest_region(config.memory)
        pool = self.map.vmm_pages(pool_bytes)
        tc = self.map.vmm_pages(TC_SIZE)
        gs = self.map.vmm_pages(GS_SIZE)
        vm = self.vm_class(self, image, config, base, (pool, pool + pool_bytes), tc, gs)  # type: ignore[call-arg]
        self.vms.append(vm)
        return vm


# Guest CPL 1-3 run directly at real ring = their CPL, with the guest's own IOPL and IF
# (``_enter``): of the sensitive, unprivileged instructions (docs/architecture.md §4.3) only
# those that read state the VMM changes for its own use show the difference there.  Every
# sensitive instruction is in one of the two tables: a new one stops this module from importing.
_SHOWS_THE_VMM = {
    "smsw": "reads CR0, which the VMM runs with paging and WP on",
    "sidt": "reads IDTR, which points at the VMM's host-gate IDT (the Red Pill)",
}
_SAME_AT_OUTER_RINGS = {
    "rdcs": "the real ring is the guest's CPL",
    "pushf": "the real IF and IOPL are the guest's",
    "popf": "the real CPL, IOPL and IF decide as the guest's would",
    "iret": "the real CPL, IOPL and IF decide as the guest's would",
}
_SENSITIVE = frozenset(i.mnemonic for i in INSTRUCTIONS if i.sensitivity is Sensitivity.SENSITIVE)
if set(_SHOWS_THE_VMM) | set(_SAME_AT_OUTER_RINGS) != _SENSITIVE:
    raise RuntimeError(
        "binary translation: classify every sensitive instruction for direct execution at rings 1-3: "
        + ", ".join(sorted(_SENSITIVE ^ (set(_SHOWS_THE_VMM) | set(_SAME_AT_OUTER_RINGS))))
    )
_SCANNED_FOR = frozenset(_SHOWS_THE_VMM)


def _sensitive_word(memory: GuestMemory, gpa: int, length: int) -> bool:
    """Does guest-physical ``[gpa, gpa + length)`` (word aligned) hold a word that decodes to a
    sensitive instruction that would show the VMM at rings 1-3 (``_SHOWS_THE_VMM``)?  Data that
    happens to look like one counts too: the frame then runs in the spec, slower, never wrong."""
    data = memory.read_bytes(gpa, length)
    for (word,) in _WORDS.iter_unpack(data):
        entry = spec.decode_word(word)
        if entry is not None and entry[0].insn.mnemonic in _SCANNED_FOR:
            return True
    return False
