"""Mutants of ``binary-translation`` (guest kernel code from a translation cache, in-TC sequences): one realistic bug each; all keep the name "binary-translation".

The translator's pieces are reached through the base's hooks: the VM builds its translation
cache from ``tc_class`` and the VMM its VMs from ``vm_class``.  Each mutant then changes one
method of the VM, the translation cache or the pager.
The measures at the end are the witnesses of the efficiency and safety mutants
(docs/mutants.md §4).
"""

from __future__ import annotations

from dataclasses import replace

from cffi_core import spec
from cffi_core.isa.encoding import encode
from cffi_core.machine import Machine
from cffi_core.profiles import PROFILES
from conformance.api import HOST_TIMER_PERIOD, VMConfig
from reference_vmm.binary_translation import BinaryTranslationVMM
from reference_vmm.binary_translation.monitor import BinaryTranslationVM, TCPager
from reference_vmm.binary_translation.translator import (
    GS_LEDGER,
    GS_SPILL,
    HC_CALLOUT,
    SEQUENCES,
    TranslationCache,
    WordKind,
    _decoded,
    _Sequence,
)
from tests.mutants.witness import _image

_RDTSC = SEQUENCES.index("rdtsc")
_TRANSFERS = frozenset(SEQUENCES.index(m) for m in ("call", "callr", "jr", "ret"))
_LEDGERS = range(GS_LEDGER, GS_LEDGER + 8 * len(SEQUENCES), 8)


class _MutantVM(BinaryTranslationVM):
    """The base VM; a mutant's names its own translation cache in ``tc_class``."""


class _MutantVMM(BinaryTranslationVMM):
    """The base VMM; a mutant's names its own VM in ``vm_class``."""


def _vmm(name: str, vm_class: type[BinaryTranslationVM], doc: str) -> type[BinaryTranslationVMM]:
    """A ``BinaryTranslationVMM`` whose VMs are ``vm_class``.  The name "binary-translation" is
    kept: the technique's expected deviations apply, and must not hide the bug."""
    return type(name, (_MutantVMM,), {"vm_class": vm_class, "__doc__": doc, "__module__": __name__})


def _tc_vmm(name: str, tc_class: type[TranslationCache], doc: str) -> type[BinaryTranslationVMM]:
    """A ``BinaryTranslationVMM`` whose VMs translate with ``tc_class``."""
    vm = type(f"_{name}VM", (_MutantVM,), {"tc_class": tc_class, "__module__": __name__})
    return _vmm(name, vm, doc)


# ---- exact time: the ledgers and rdtsc (docs/architecture.md §9) ---------------------------------


class _LedgerCountsGuestTickTC(TranslationCache):
    def _place(self, seq: _Sequence, cpl: int) -> None:
        start = self._code
        super()._place(seq, cpl)
        if seq.ledger_at >= 0:
            # The bug: the ledger adds every word of the sequence — its guest tick too, not the
            # words *beyond* it — so each run takes one tick off the guest's clock (§9).
            site = start + seq.ledger_at
            d = _decoded(self._read(site))
            self._write(site, encode("addi", rd=d.rd, rs1=d.rs1, imm=len(seq.words)))


LedgerOffByOne = _tc_vmm(
    "LedgerOffByOne", _LedgerCountsGuestTickTC, "Each in-TC sequence's ledger counts its guest tick too."
)


class _RdtscOwnWordsOnlyTC(TranslationCache):
    def _place(self, seq: _Sequence, cpl: int) -> None:
        if seq.kind == _RDTSC:
            # The bug: rdtsc's sequence takes off the real TSC only its own words, not the
            # ledgers of the sequences that ran before it since the VMM entered the TC: the
            # TSC runs ahead of the guest's clock by every call and ret before it (§9).
            words = []
            before = True
            for word, state in seq.words:
                d = _decoded(word)
                if d.insn.mnemonic == "rdtsc":
                    before = False
                elif before and d.insn.mnemonic == "ldgs" and d.rs1 == 0 and d.imm in _LEDGERS:
                    word = encode("addi", rd=d.rd, rs1=0, imm=0)
                words.append((word, state))
            seq = replace(seq, words=words)
        super()._place(seq, cpl)


RdtscIgnoresLedgers = _tc_vmm(
    "RdtscIgnoresLedgers", _RdtscOwnWordsOnlyTC, "rdtsc in the TC subtracts its own words but not the ledgers."
)


# ---- precise state: a stop inside a sequence, the virtual IF -------------------------------------


class _SpillsLostVM(_MutantVM):
    def _settle(self, pc: int) -> int:
        # The bug: a stop inside an in-TC sequence (a hidden fault on call's push, the host
        # timer) puts the guest at the instruction boundary with the sequence's scratch values
        # in the registers it spilled to GS: the base's settling, its ``Step.restore`` ignored.
        word = self.tc.word_of(pc)
        step = None if word is None else self.tc.steps.get(word)
        if step is None or not step.restore:
            return super()._settle(pc)
        self.tc.steps[word] = replace(step, restore=())
        try:
            return super()._settle(pc)
        finally:
            self.tc.steps[word] = step


SpillsNotRestored = _vmm(
    "SpillsNotRestored", _SpillsLostVM, "A stop inside an in-TC sequence leaves the spilled registers unrestored."
)


class _VcpuNotReadBackVM(_MutantVM):
    def _from_gs(self, host: Machine) -> int:
        # The bug: the ledgers and the transfer target are read back from GS, the virtual CPU's
        # state that translated code wrote there is not (the virtual IF of a translated cli, the
        # TPR of a translated mtcr cr8): the virtual CPU keeps its values from before the run,
        # and the next entry writes them over the guest's (§6.5: pushf, mfcr cr8 and interrupt
        # delivery then see the stale ones).
        v = self.cpu
        flags, cr8 = v.flags, v.cr8
        total = super()._from_gs(host)
        v.flags, v.cr8 = flags, cr8
        return total


VcpuNotReadBack = _vmm(
    "VcpuNotReadBack", _VcpuNotReadBackVM, "The virtual IF and TPR that translated code writes in GS are not read back."
)


# ---- the TC hash -----------------------------------------------------------------------------------


class _UntaggedHashTC(TranslationCache):
    def _place(self, seq: _Sequence, cpl: int) -> None:
        start = self._code
        super()._place(seq, cpl)
        if seq.miss_at >= 0:
            # The bug: the inline lookup trusts the direct-mapped entry without comparing its
            # key with the guest pc: two targets 16 KiB apart (the same bits 13:2) share one
            # fragment, the first translated (Adams & Agesen 2006 §3.1: the lookup's compare).
            site = start + seq.miss_at
            d = _decoded(self._read(site))
            self._write(site, encode("bne", rs1=0, rs2=0, imm=d.imm))


HashKeyUnchecked = _tc_vmm(
    "HashKeyUnchecked", _UntaggedHashTC, "The inline TC-hash lookup does not compare the entry's key."
)


# ---- efficiency: the transfers ---------------------------------------------------------------------


class _TransfersCalloutTC(TranslationCache):
    def _place(self, seq: _Sequence, cpl: int) -> None:
        if seq.kind in _TRANSFERS:
            # The bug: call, callr, jr and ret translated as the first translator did, one
            # callout each (a VMM exit per transfer), not as in-TC sequences (Adams & Agesen
            # 2006 §3.2); they end their unit either way.
            self._emit_word(encode("hcall", imm=HC_CALLOUT), WordKind.CALLOUT, seq.gpc)
            return
        super()._place(seq, cpl)


TransfersAsCallouts = _tc_vmm(
    "TransfersAsCallouts", _TransfersCalloutTC, "call, callr, jr and ret are callouts, not in-TC sequences."
)


class _WholeRegisterFileTC(TranslationCache):
    def _place(self, seq: _Sequence, cpl: int) -> None:
        if seq.kind not in _TRANSFERS:
            super()._place(seq, cpl)
            return
        # The bug: the sequences of call, callr, jr and ret begin by saving the whole register
        # file to its spill slots and loading it back — a translator that spills every
        # register, not the few its sequence uses.  Equivalent (the values are the guest's, and
        # every word has its Step), but each is 30 words longer: no longer short (Adams &
        # Agesen 2006 §3.2).
        regs = range(1, 16)
        pad = [encode("sdgs", rs2=r, rs1=0, imm=GS_SPILL + 8 * r) for r in regs]
        pad += [encode("ldgs", rd=r, rs1=0, imm=GS_SPILL + 8 * r) for r in regs]
        n = len(pad)
        words = [(word, (k, False, frozenset(), False)) for k, word in enumerate(pad)]
        words += [(word, (ran + n, *rest)) for word, (ran, *rest) in seq.words]

        def shift(at: int) -> int:
            return at + n if at >= 0 else at

        padded = replace(
            seq,
            words=words,
            spilled=set(seq.spilled),
            ledger_at=shift(seq.ledger_at),
            miss_at=shift(seq.miss_at),
            bails=[at + n for at in seq.bails],
            jump_at=shift(seq.jump_at),
            pool_at=shift(seq.pool_at),
        )
        super()._place(padded, cpl)


SequencesSpillEverything = _tc_vmm(
    "SequencesSpillEverything",
    _WholeRegisterFileTC,
    "The transfers' in-TC sequences save and reload the whole register file: 30 words longer each.",
)


# ---- safety: host time, the VMM's data -------------------------------------------------------------


class _SequencesUnchargedVM(_MutantVM):
    def _account(self, ticks: int, overhead: int) -> None:
        # The bug: the sequences' host ticks beyond their guest ticks are taken off the guest's
        # clock but not charged to the slice's share of host ticks that are no guest's
        # (``_hidden_left``): a guest dense in calls keeps the host for several slices' worth
        # per ``VMM.run`` (docs/vmm-api.md §9).
        left = self._hidden_left
        super()._account(ticks, overhead)
        self._hidden_left = left


SequencesNotCharged = _vmm(
    "SequencesNotCharged", _SequencesUnchargedVM, "The in-TC sequences' host ticks are not charged to the slice."
)


class _UserGsPager(TCPager):
    def _map_reserved(self, root: int, va: int, frame: int) -> None:
        if frame in self._gs_frames:
            # The bug: the VMM's data is mapped user-accessible ("the TC reaches it through GS
            # anyway"): without a segment limit guest ring 3 reads and writes the virtual CPU's
            # copies, the ledgers and the TC hash (Popek & Goldberg 1974, resource control).
            self._install(
                root, va, frame | spec.PTE_P | spec.PTE_W | spec.PTE_U | spec.PTE_A | spec.PTE_D | spec.PTE_NX
            )
        else:
            super()._map_reserved(root, va, frame)


class _UserGsVM(_MutantVM):
    pager_class = _UserGsPager


GsUserAccessible = _vmm("GsUserAccessible", _UserGsVM, "The VMM's data (GS) is mapped user-accessible.")


# ---- the measures that witness the efficiency and safety mutants -----------------------------------

# A kernel loop of calls and returns, with a callr and a jr each round: all in-TC sequences
# under a correct binary translator, no exit; r1 counts the rounds.
CALL_DENSE = """
_start: li      sp, 0x9000
        li      r4, {rounds}
loop:   call    f1
        la      r2, f2
        callr   r2
        la      r2, back
        jr      r2
back:   addi    r4, r4, -1
        bnez    r4, loop
        out     0x500, r0
f1:     addi    r1, r1, 1
        ret
f2:     addi    r3, r3, 1
        ret
"""
CALL_DENSE_CONFIG = VMConfig(memory=1 << 20, budget=200_000)
CALL_DENSE_ROUNDS = 2_000


def _run_call_dense(vmm: type[BinaryTranslationVMM], profile: str, rounds: int) -> tuple[list[int], int, dict]:
    """Run ``CALL_DENSE`` on a fresh host in ``VMM.run(HOST_TIMER_PERIOD)`` slices: the host
    ticks of each ``VMM.run``, the host's run/vmrun calls, and the VM's counters."""
    from conformance.api import default_host_memory

    host = Machine(profile, default_host_memory(CALL_DENSE_CONFIG.memory))
    calls = [0]
    original = host.run

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    host.run = counted
    monitor = vmm(host)
    vm = monitor.create_vm(_image(CALL_DENSE.format(rounds=rounds)), CALL_DENSE_CONFIG)
    spent = []
    for _ in range(CALL_DENSE_CONFIG.budget // HOST_TIMER_PERIOD + 2):
        if vm.stopped:
            break
        clock = host.clock
        monitor.run(HOST_TIMER_PERIOD)
        spent.append(host.clock - clock)
    return spent, calls[0], dict(vm.observation().counters)


def host_entries_on_transfers(limit: int):
    """More than ``limit`` host entries per 1,000 guest instructions on ``CALL_DENSE``: a
    translator that runs transfers in the TC needs about one per slice."""

    def measure(vmm: type[BinaryTranslationVMM], profile: str) -> str | None:
        _, entries, counters = _run_call_dense(vmm, profile, CALL_DENSE_ROUNDS)
        instructions = counters.get("guest_insns_direct", 0) + counters.get("guest_insns_emulated", 0)
        per_mille = 1000 * entries / max(instructions, 1)
        if per_mille > limit:
            return f"{entries} host entries for {instructions} guest instructions ({per_mille:.0f} per 1,000)"
        return None

    return measure


def host_ticks_per_run_above(limit: int):
    """A ``VMM.run(HOST_TIMER_PERIOD)`` that ran the host more than ``limit`` ticks on
    ``CALL_DENSE`` (docs/vmm-api.md §9: at most ``HOST_TIMER_PERIOD + CONTROL_LATENCY``)."""

    def measure(vmm: type[BinaryTranslationVMM], profile: str) -> str | None:
        spent, _, _ = _run_call_dense(vmm, profile, CALL_DENSE_ROUNDS)
        longest = max(spent, default=0)
        return f"one VMM.run({HOST_TIMER_PERIOD}) ran the host for {longest} ticks" if longest > limit else None

    return measure


def eff_calls_shortfalls():
    """The efficiency suite's thresholds on its call-dense guest (``conformance/guests/eff_calls.s``)
    that the run misses, as ``conformance.test_efficiency`` grades them: the share run directly,
    host entries and the VMM's own instructions retired deprivileged per 1,000 guest instructions."""

    def measure(vmm: type[BinaryTranslationVMM], profile: str) -> str | None:
        from conformance.api import COUNTER_DIRECT, run_alone
        from conformance.test_efficiency import GUESTS, Measured, _image, _native, measured_direct, shortfalls

        guest = next(g for g in GUESTS if g.name == "eff_calls")
        native = _native(guest.name, guest.config, profile)
        run = run_alone(vmm, _image(guest.name), guest.config, profile=profile)
        admitted = run.observation.counters.get(COUNTER_DIRECT)
        m = Measured(native.counters["instructions"], measured_direct(run.host.counters), run.host.entries, admitted)
        features = frozenset(PROFILES[profile].features)
        missed = shortfalls(
            guest, m, guest.entry_bound(native.counters, features), guest.overhead_bound(native.counters, features)
        )
        return "; ".join(missed) or None

    return measure
