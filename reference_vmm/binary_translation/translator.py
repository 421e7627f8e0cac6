"""The translator and the translation cache of the binary-translation VMM (Adams & Agesen 2006 §3).

Guest kernel code is decoded one instruction at a time (one ``Decoded`` IR object each, as the
table of ``cffi_core.isa`` gives it) into a *translation unit* (TU) of at most ``TU_LIMIT``
instructions that stops at a control transfer or a callout; each TU becomes one *fragment* of
P64 code in the *translation cache* (TC), a range of host RAM the VMM maps at ``TC_VA`` in
every shadow address space, and a hash table (``TranslationCache.lookup``) leads from a guest
address to its fragment.

**One word per guest instruction.**  Every guest instruction becomes exactly one TC word, and
every TC word stands for one guest pc (``TranslationCache.guest_pc``):

- IDENT: an innocuous instruction is copied (it means the same at real ring 1 as at guest
  CPL 0: paging sees both as supervisor, and where the segment limit refuses an access above
  the TC the fault is emulated, docs/architecture.md §5.3);
- remapped direct control flow: ``beq`` ... ``bgeu`` and ``jmp`` keep their operands with the
  offset recomputed to the fragment of the target, or to a *stub* (``hcall HC_CHAIN``) that
  translates the target the first time it runs and then patches the branch into a direct
  branch to the new fragment (chaining);
- constants: ``rdcs`` at guest CPL c becomes ``addi rd, r0, c``;
- callouts: every other sensitive or privileged instruction, ``call``/``callr``/``ret``/``jr``
  (their return addresses and targets are guest addresses, the TC's are not), ``int``,
  ``hcall``: ``hcall HC_CALLOUT``, after which the VMM executes that one guest instruction with
  the executable spec on the virtual CPU and goes on at the guest pc it leaves.

So the real CPU's position in the TC always names a guest instruction boundary with the guest's
registers exactly as natively (precise state), and every tick the real CPU spends in the TC
outside a ``hcall`` is one guest tick: the guest's clock stays exact, and a timer interrupt
arrives at the very instruction it would natively (docs/architecture.md §9).  That is why a TU
that ends without a control transfer (12 instructions, the end of a guest page) has no
continuation jump: its successor is translated right behind it (``FALLTHROUGH_DEPTH`` fragments
at most; beyond, a ``hcall HC_CONTINUE`` word), a copy if it was translated elsewhere before.

**The rule table** (``RULES``) is driven by the instruction table's sensitivity classes: every
*innocuous* instruction is IDENT unless it is control flow, and every *sensitive*,
*privileged* or *host* instruction must be named in ``_SENSITIVE_RULES``: a new sensitive
instruction without a rule stops this module from importing.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from cffi_core import spec
from cffi_core.isa.encoding import Decoded, encode
from cffi_core.isa.table import INSTRUCTIONS, Sensitivity
from cffi_core.machine import PAGE_SIZE, Machine
from cffi_core.spec.state import MASK64
from reference_vmm.trap_emulate.rings import RESERVED_VA

__all__ = [
    "ADAPT_AFTER",
    "FALLTHROUGH_DEPTH",
    "HC_CALLOUT",
    "HC_CHAIN",
    "HC_CONTINUE",
    "REVERT_AFTER",
    "RULES",
    "TC_SIZE",
    "TC_VA",
    "TU_LIMIT",
    "Rule",
    "TranslationCache",
    "WordKind",
]

TU_LIMIT = 12
"""Guest instructions per translation unit at most (Adams & Agesen 2006 §3.1)."""
TC_SIZE = 128 * 1024
"""Bytes of the translation cache: every remapped branch (imm16 words, ±128 KiB) reaches every
fragment, so a patched branch is always one direct branch."""
TC_VA = RESERVED_VA - TC_SIZE
"""Where the TC is mapped in every shadow address space: just below the VMM's IDT page, in the
reserved top of the linear address space that the segment limit keeps from the guest."""
FALLTHROUGH_DEPTH = 64
"""Fragments translated behind one another for one lookup before a fall-through becomes an exit."""
ADAPT_AFTER = 4
"""Traps of one IDENT word before it is retranslated into a callout (adaptive BT)."""
REVERT_AFTER = 16
"""Innocent runs of an adapted callout in a row before its IDENT word comes back."""
HC_CALLOUT = 0xB700
"""``hcall`` number of a callout: emulate the guest instruction this word stands for."""
HC_CHAIN = 0xB701
"""``hcall`` number of a chaining stub: translate the branch target, patch the branch."""
HC_CONTINUE = 0xB702
"""``hcall`` number of a fall-through continuation beyond ``FALLTHROUGH_DEPTH``."""


class Rule(enum.Enum):
    """How one guest instruction is translated."""

    IDENT = "ident"
    """Copied unchanged."""
    BRANCH = "branch"
    """Conditional direct branch: remapped; the TU ends after it, its fall-through behind it."""
    JUMP = "jump"
    """Unconditional direct jump: remapped; the TU ends."""
    CPL = "cpl"
    """``rdcs rd``: ``addi rd, r0, cpl`` (the guest CPL is a constant of the translation)."""
    CALLOUT = "callout"
    """``hcall HC_CALLOUT``: the VMM executes the instruction with the spec; the TU ends."""


_CONTROL_FLOW = {
    "beq": Rule.BRANCH,
    "bne": Rule.BRANCH,
    "blt": Rule.BRANCH,
    "bge": Rule.BRANCH,
    "bltu": Rule.BRANCH,
    "bgeu": Rule.BRANCH,
    "jmp": Rule.JUMP,
    # The return address a call pushes, and the targets of jr/callr/ret, are guest addresses.
    "call": Rule.CALLOUT,
    "callr": Rule.CALLOUT,
    "jr": Rule.CALLOUT,
    "ret": Rule.CALLOUT,
    # int n at real ring 1 would reach the VMM's host gate anyway; as a callout it costs one exit
    # instead of a fault's.
    "int": Rule.CALLOUT,
}
_SENSITIVE_RULES = {
    # Sensitive, unprivileged on the x86-like P64 (docs/architecture.md §4.3): never copied.
    "iret": Rule.CALLOUT,
    "pushf": Rule.CALLOUT,
    "popf": Rule.CALLOUT,
    "sidt": Rule.CALLOUT,
    "smsw": Rule.CALLOUT,
    "rdcs": Rule.CPL,
    # Privileged: the complex ones are callouts into the VMM.
    "hlt": Rule.CALLOUT,
    "cli": Rule.CALLOUT,
    "sti": Rule.CALLOUT,
    "in": Rule.CALLOUT,
    "out": Rule.CALLOUT,
    "mtcr": Rule.CALLOUT,
    "mfcr": Rule.CALLOUT,
    "lidt": Rule.CALLOUT,
    "rdmsr": Rule.CALLOUT,
    "wrmsr": Rule.CALLOUT,
    "invlpg": Rule.CALLOUT,
    # rdtsc reads the real TSC, offset by the VMM to read the guest's clock; with CR4.TSD it
    # faults at real ring 1 and the fault is emulated at guest CPL 0.
    "rdtsc": Rule.IDENT,
    # Host class: the guest's own hcall must not be taken for the VMM's, nor its GS for the
    # VMM's (the spec runs them on the virtual CPU, whose GS MSRs are the guest's); vmcall
    # raises #UD outside guest mode at every ring.
    "hcall": Rule.CALLOUT,
    "ldgs": Rule.CALLOUT,
    "sdgs": Rule.CALLOUT,
    "vmcall": Rule.IDENT,
}


def _rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for insn in INSTRUCTIONS:
        if insn.sensitivity is Sensitivity.INNOCUOUS:
            rules[insn.mnemonic] = _CONTROL_FLOW.get(insn.mnemonic, Rule.IDENT)
        elif insn.mnemonic in _SENSITIVE_RULES:
            rules[insn.mnemonic] = _SENSITIVE_RULES[insn.mnemonic]
        else:
            raise RuntimeError(f"binary translation: no rule for the {insn.sensitivity} instruction {insn.mnemonic}")
    return rules


RULES: dict[str, Rule] = _rules()
"""The translation rule of every mnemonic of the instruction table."""


class WordKind(enum.IntEnum):
    """What a TC word stands for (``TranslationCache.kind``)."""

    FREE = 0
    GUEST = 1
    """A guest instruction translated to one word (IDENT, remapped, constant)."""
    CALLOUT = 2
    """``hcall HC_CALLOUT`` for the guest instruction at its guest pc."""
    STUB = 3
    """``hcall HC_CHAIN``: its guest pc is the target of the branch that jumps to it."""
    CONTINUE = 4
    """``hcall HC_CONTINUE``: its guest pc is the fall-through of the fragment before it."""


@dataclass
class _Pending:
    """A remapped branch waiting for the fragment of its target."""

    site: int  # word index of the branch
    target: int  # guest address


class TranslationCache:
    """The TC of one guest: host RAM at ``hpa`` mapped at ``TC_VA``, its words' guest pcs, the
    hash from (guest pc, CPL) to fragments, and the stubs waiting to be chained.

    Fragments grow from the bottom of the TC, stubs from the top; when they meet, the whole TC
    is flushed and translation starts again (Adams & Agesen's TC is flushed when full too)."""

    adapt_after: int = ADAPT_AFTER
    """Traps of an IDENT word before its adaptation (``guilty``)."""

    def __init__(
        self,
        host: Machine,
        hpa: int,
        *,
        protect: Callable[[int], None] | None = None,
        release: Callable[[int], None] | None = None,
    ) -> None:
        self.host = host
        self.hpa = hpa
        self.code: dict[int, set[int]] = {}
        """For every guest frame holding translated instructions, their offsets in the frame:
        the guest's writes there are what makes a translation stale (coherence)."""
        self.pages: dict[int, int] = {}
        """For every guest-virtual page holding translated code, the guest frame it was
        translated from: a change of the guest's address space keeps the TC when these stay."""
        self.adapted: dict[int, int] = {}
        """Adaptive BT: TC words retranslated into a callout, with the IDENT word they replaced."""
        self._guilt: Counter[int] = Counter()
        self._innocence: Counter[int] = Counter()
        self._threshold: dict[int, int] = {}
        self._protect = protect
        self._release = release
        self.words = TC_SIZE // 4
        self.guest_pc = [0] * self.words
        """For every word, the guest pc it stands for (see ``WordKind``)."""
        self.kind = [WordKind.FREE] * self.words
        self.counters: Counter[str] = Counter()
        self._hash: dict[tuple[int, int], int] = {}
        self._stubs: dict[int, _Pending] = {}
        self._code = 0  # next free word from the bottom
        self._stub = self.words  # lowest stub word
        self._generation = 0

    # -- addresses -----------------------------------------------------------------------
    @staticmethod
    def va(word: int) -> int:
        """The linear address of TC word ``word``."""
        return TC_VA + 4 * word

    @staticmethod
    def word_of(va: int) -> int | None:
        """The word index of linear address ``va``, or None if it is not in the TC."""
        if TC_VA <= va < TC_VA + TC_SIZE and not va & 3:
            return (va - TC_VA) // 4
        return None

    def contains(self, va: int) -> bool:
        """Is ``va`` a word of the TC?"""
        return self.word_of(va) is not None

    # -- the hash ------------------------------------------------------------------------
    def lookup(self, gpc: int, cpl: int) -> int | None:
        """The TC address of the fragment for guest pc ``gpc`` at ``cpl``, or None."""
        return self._hash.get((gpc, cpl))

    def flush(self, why: str) -> None:
        """Drop every fragment (a change of the guest's address space, or a full TC)."""
        self.counters["tc_flushes"] += 1
        self.counters[f"tc_flushes_{why}"] += 1
        self._hash.clear()
        self._stubs.clear()
        frames, self.code = self.code, {}
        self.pages.clear()
        self.adapted.clear()
        self._guilt.clear()
        self._innocence.clear()
        self._threshold.clear()
        if self._release is not None:
            for frame in frames:
                self._release(frame)
        self._code, self._stub = 0, self.words
        self.kind = [WordKind.FREE] * self.words
        self._generation += 1

    def written(self, gpa: int, length: int) -> bool:
        """Guest-physical ``[gpa, gpa + length)`` (inside one frame) was written: does it touch
        a translated instruction?  (The caller then invalidates: ``flush``.)"""
        offsets = self.code.get(gpa >> 12)
        if not offsets:
            return False
        first = (gpa & (PAGE_SIZE - 1)) & ~3
        last = ((gpa & (PAGE_SIZE - 1)) + length - 1) & ~3
        return any(off in offsets for off in range(first, last + 1, 4))

    def revalidate(self, cpu: spec.State, memory: spec.PhysicalMemory, page: int | None = None) -> bool:
        """The guest changed its address space (a CR write, ``invlpg`` of ``page``): keep the
        TC if every translated page (or ``page``) still maps the frame it was translated from
        — the kernel's code is mapped alike in every address space — else flush it.  Returns
        whether it flushed."""
        pages = self.pages if page is None else ({page: self.pages[page]} if page in self.pages else {})
        for va, frame in pages.items():
            w = spec.walk(cpu, memory, va, spec.ACCESS_FETCH, 0)
            if w.fault or w.physical >> 12 != frame:
                self.flush("remap")
                return True
        if pages:
            self.counters["tc_kept"] += 1
        return False

    # -- adaptive binary translation (Adams & Agesen 2006 §3: "innocent until proven guilty") --
    def guilty(self, word: int) -> bool:
        """The IDENT instruction at TC word ``word`` trapped and was emulated.  After
        ``ADAPT_AFTER`` such traps (doubled each time the word was adapted and reverted before:
        hysteresis) it is retranslated into a callout, in place: one word stands for one guest
        instruction either way.  Returns whether it was adapted now."""
        if self.kind[word] is not WordKind.GUEST or word in self.adapted:
            return False
        self._guilt[word] += 1
        if self._guilt[word] < self._threshold.get(word, self.adapt_after):
            return False
        self.adapted[word] = int.from_bytes(self.host.read(self.hpa + 4 * word, 4), "little")
        self._write(word, encode("hcall", imm=HC_CALLOUT))
        self.kind[word] = WordKind.CALLOUT
        self._guilt[word] = 0
        self._innocence[word] = 0
        self.counters["adaptations"] += 1
        return True

    def judged(self, word: int, *, trapped: bool) -> bool:
        """The adapted callout at ``word`` ran; ``trapped`` says whether its IDENT translation
        would have trapped (it wrote a traced page).  After ``REVERT_AFTER`` innocent runs in a
        row the IDENT word comes back (the behaviour changed), and the next adaptation of the
        word needs twice as many traps.  Returns whether it was reverted now."""
        if word not in self.adapted:
            return False
        if trapped:
            self._innocence[word] = 0
            return False
        self._innocence[word] += 1
        if self._innocence[word] < REVERT_AFTER:
            return False
        self._write(word, self.adapted.pop(word))
        self.kind[word] = WordKind.GUEST
        self._threshold[word] = 2 * self._threshold.get(word, self.adapt_after)
        self.counters["adaptation_reversions"] += 1
        return True

    # -- translation ---------------------------------------------------------------------
    def translate(self, cpu: spec.State, memory: spec.PhysicalMemory, gpc: int) -> int | None:
        """The TC address of a fragment for guest pc ``gpc`` at the CPL of ``cpu``, translated
        if needed (and the fragments behind it); None when the guest cannot fetch at ``gpc``
        (the caller lets the spec execute there, which raises the guest's fault)."""
        found = self.lookup(gpc, cpu.cpl)
        if found is not None:
            self.counters["tc_hits"] += 1
            return found
        self.counters["tc_misses"] += 1
        for _ in range(2):
            generation = self._generation
            first = self._translate_chain(cpu, memory, gpc)
            if generation == self._generation:
                return first
            # The TC filled up and was flushed on the way: start again in the empty TC.
        raise RuntimeError("binary translation: a chain of fragments does not fit in an empty TC")

    def _translate_chain(self, cpu: spec.State, memory: spec.PhysicalMemory, gpc: int) -> int | None:
        first: int | None = None
        depth = 0
        pc: int | None = gpc
        while pc is not None:
            if first is not None and depth >= FALLTHROUGH_DEPTH:
                self._emit(HC_CONTINUE, WordKind.CONTINUE, pc, encode("hcall", imm=HC_CONTINUE))
                break
            start, pc = self._translate_unit(cpu, memory, pc, fallthrough_exit=first is None)
            if start is None:
                return first
            if first is None:
                first = start
            depth += 1
        return first

    def _translate_unit(
        self, cpu: spec.State, memory: spec.PhysicalMemory, gpc: int, *, fallthrough_exit: bool
    ) -> tuple[int | None, int | None]:
        """Translate one TU at ``gpc``; return its first TC address (None: nothing fetchable at
        ``gpc``) and the guest pc of the fall-through successor to lay behind it (None: the TU
        ends with a transfer of control or a callout)."""
        del fallthrough_exit
        cpl = cpu.cpl
        units: list[tuple[int, WordKind, Decoded | None, Rule]] = []
        pc = gpc
        successor: int | None = None
        while True:
            if len(units) == TU_LIMIT or (units and pc % PAGE_SIZE == 0):
                successor = pc
                break
            try:
                word = spec.fetch(cpu, memory, pc)
            except spec.Fault:
                if not units:
                    return None, None
                successor = pc  # its stub will let the spec raise the guest's fault
                break
            entry = spec.decode_word(word)
            if entry is None:
                # An invalid encoding raises #UD at every ring: copied, it faults in the TC and
                # the fault is emulated with the guest's state.
                units.append((word, WordKind.GUEST, None, Rule.IDENT))
                break
            d = entry[0]
            rule = RULES[d.insn.mnemonic]
            units.append((word, WordKind.CALLOUT if rule is Rule.CALLOUT else WordKind.GUEST, d, rule))
            pc = (pc + 4) & MASK64
            if rule is Rule.BRANCH:
                successor = pc
                break
            if rule in (Rule.JUMP, Rule.CALLOUT):
                break
        if self._code + len(units) + 2 * len(units) + 1 > self._stub:
            self.flush("full")
            return None, None
        start = self._code
        self._hash[(gpc, cpl)] = self.va(start)
        self._note_code(cpu, memory, gpc, len(units))
        self.counters["fragments_translated"] += 1
        self.counters["guest_instructions_translated"] += len(units)
        pc = gpc
        for word, kind, d, rule in units:
            site = self._code
            if rule is Rule.IDENT:
                self._emit_word(word, kind, pc)
            elif rule is Rule.CPL:
                assert d is not None
                self._emit_word(encode("addi", rd=d.rd, rs1=0, imm=cpl), kind, pc)
            elif rule is Rule.CALLOUT:
                self._emit_word(encode("hcall", imm=HC_CALLOUT), kind, pc)
            else:
                assert d is not None
                target = (pc + d.imm) & MASK64
                self._emit_word(word, kind, pc)  # patched just below
                self._remap(site, d, target, cpl)
            pc = (pc + 4) & MASK64
        self.counters["tc_words"] = self._code + (self.words - self._stub)
        return self.va(start), successor

    def _note_code(self, cpu: spec.State, memory: spec.PhysicalMemory, gpc: int, count: int) -> None:
        """Remember the guest-physical words of a TU at ``gpc`` (one page: a TU stops at a page
        boundary), and have their frame write-protected the first time."""
        w = spec.walk(cpu, memory, gpc, spec.ACCESS_FETCH, cpu.cpl)
        frame = w.physical >> 12
        self.pages[gpc & ~(PAGE_SIZE - 1) & MASK64] = frame
        offsets = self.code.get(frame)
        if offsets is None:
            self.code[frame] = offsets = set()
            if self._protect is not None:
                self._protect(frame)
        first = w.physical & (PAGE_SIZE - 1)
        offsets.update(range(first, first + 4 * count, 4))

    def _remap(self, site: int, d: Decoded, target: int, cpl: int) -> None:
        """Point the branch at ``site`` to the fragment of ``target``, or to a new stub."""
        dest = self.lookup(target, cpl)
        if dest is None:
            self._stub -= 1
            stub = self._stub
            self._write(stub, encode("hcall", imm=HC_CHAIN))
            self.kind[stub] = WordKind.STUB
            self.guest_pc[stub] = target
            self._stubs[stub] = _Pending(site, target)
            dest = self.va(stub)
        else:
            self.counters["chains_direct"] += 1
        self._write(site, _retarget(d, dest - self.va(site)))

    def chain(self, stub: int, cpu: spec.State, memory: spec.PhysicalMemory) -> int | None:
        """The chaining stub at word ``stub`` ran: translate its target and patch the branch
        that jumped to it into a direct branch to the fragment.  Returns the fragment's TC
        address (None: the target cannot be fetched)."""
        pending = self._stubs.get(stub)
        target = self.guest_pc[stub]
        generation = self._generation
        dest = self.translate(cpu, memory, target)
        if dest is None or pending is None or generation != self._generation:
            return dest
        site_word = int.from_bytes(self.host.read(self.hpa + 4 * pending.site, 4), "little")
        entry = spec.decode_word(site_word)
        assert entry is not None
        self._write(pending.site, _retarget(entry[0], dest - self.va(pending.site)))
        del self._stubs[stub]
        self.counters["chains_patched"] += 1
        return dest

    # -- words ---------------------------------------------------------------------------
    def _emit(self, number: int, kind: WordKind, gpc: int, word: int) -> None:
        del number
        self._emit_word(word, kind, gpc)

    def _emit_word(self, word: int, kind: WordKind, gpc: int) -> None:
        i = self._code
        self._code += 1
        self.kind[i] = kind
        self.guest_pc[i] = gpc
        self._write(i, word)

    def _write(self, i: int, word: int) -> None:
        self.host.write(self.hpa + 4 * i, word.to_bytes(4, "little"))


def _retarget(d: Decoded, offset: int) -> int:
    """The word of the direct branch or jump ``d`` with its offset replaced by ``offset`` bytes."""
    mnemonic = d.insn.mnemonic
    if mnemonic == "jmp":
        return encode("jmp", imm=offset)
    return encode(mnemonic, rs1=d.rs1, rs2=d.rs2, imm=offset)
