"""The translator and the translation cache of the binary-translation VMM (Adams & Agesen 2006 §3).

Guest kernel code is decoded one instruction at a time (one ``Decoded`` IR object each, as the
table of ``cffi_core.isa`` gives it) into a *translation unit* (TU) of at most ``TU_LIMIT``
instructions that stops at a control transfer or a callout; each TU becomes one *fragment* of
P64 code in the *translation cache* (TC), a range of host RAM the VMM maps at ``TC_VA`` in
every shadow address space, and a hash table (``TranslationCache.lookup``) leads from a guest
address to its fragment.

**Translation rules.**

- IDENT: an innocuous instruction is copied (it means the same at real ring 1 as at guest
  CPL 0: paging sees both as supervisor, and where the segment limit refuses an access above
  the TC the fault is emulated, docs/architecture.md §5.3);
- remapped direct control flow: ``beq`` ... ``bgeu`` and ``jmp`` keep their operands with the
  offset recomputed to the fragment of the target, or to a *stub* (``hcall HC_CHAIN``) that
  translates the target the first time it runs and then patches the branch into a direct
  branch to the new fragment (chaining);
- constants and the virtual CPU: ``rdcs`` at guest CPL c becomes ``addi rd, r0, c``;
  ``smsw``/``sidt``/``mfcr`` one ``ldgs`` of the virtual CPU's copy in the VMM's data (GS,
  docs/architecture.md §5.4); ``cli`` and ``sti`` are copied: the TC runs at real ring 1 with
  IOPL 1 and the guest's IF, so they act on the virtual IF and the real CPU delivers a pending
  interrupt (and honours sti's shadow) at the native boundary;
- in-TC sequences (``_sequence``): ``call`` pushes the *guest* return address (a constant in
  GS) and jumps, remapped, to the target's fragment; ``callr``, ``jr`` and ``ret`` look their
  guest target up inline in the TC hash kept in GS and jump to its fragment with ``jgs``, or
  reach the VMM through a miss word (``hcall HC_MISS``) that has the target translated;
  ``rdtsc`` reads the real TSC less what the sequences cost (the ledgers); ``pushf`` pushes the
  real FLAGS with the virtual IOPL; ``popf`` runs the real one when the popped TF and IOPL are
  the current ones (only IF changes), else calls out; ``mtcr cr8`` stores the virtual TPR in
  GS unless an interrupt was pending at entry (a lower TPR could let it in: a callout) or the
  value is refused (#GP).  Each spills the registers it uses to GS and restores them before
  it ends;
- callouts: every other sensitive or privileged instruction, ``int`` and the host class:
  ``hcall HC_CALLOUT``, after which the VMM executes that one guest instruction with the
  executable spec on the virtual CPU and goes on at the guest pc it leaves.

**Precise state, exact time.**  A word that is not part of a sequence stands for one guest pc
(``TranslationCache.guest_pc``) and one guest tick.  A word of a sequence has a ``Step``: the
guest is before the instruction (nothing of it visible yet; the spilled registers are in GS) or
after it (the rest is bookkeeping), and the ticks run so far that are no guest's.  Each sequence
adds its words beyond its guest tick to its kind's ledger in GS when it completes.  So wherever
the real CPU stops, the VMM names a guest instruction boundary with the guest's registers
exactly as natively, and the guest's clock is the real CPU's ticks less the ledgers: a timer
interrupt arrives at the very instruction it would natively (docs/architecture.md §9).  A TU
that ends without a control transfer (12 instructions, the end of a guest page) has no
continuation jump: its successor is translated right behind it (``FALLTHROUGH_DEPTH`` fragments
at most; beyond, a ``hcall HC_CONTINUE`` word), a copy if it was translated elsewhere before.

**The rule table** (``RULES``) is driven by the instruction table's sensitivity classes: every
*innocuous* instruction is IDENT unless it is control flow, and every *sensitive*,
*privileged* or *host* instruction must be named in ``_SENSITIVE_RULES``: a new sensitive
instruction without a rule stops this module from importing.

**Emission.**  The translator is Python and translates on the guest's critical path, so it
keeps a copy of the TC's words (``TranslationCache._mirror``) where it lays and patches
fragments, and writes what changed into host memory once per ``translate``, ``chain`` or
adaptation (``_sync``: one ``Machine.write``, which keeps the core's decoded code coherent,
per contiguous range).  An in-TC sequence is encoded once per kind and registers
(``_template``); an instance only fills in its guest pcs, its target and its constant's GS
offset (``_sequence``).
"""

from __future__ import annotations

import enum
import struct
import sys
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

from cffi_core import spec
from cffi_core.isa.encoding import Decoded, encode
from cffi_core.isa.table import INSTRUCTIONS, Sensitivity
from cffi_core.machine import PAGE_SIZE, Machine
from cffi_core.spec.state import FLAGS_IF, FLAGS_IOPL, FLAGS_TF, MASK64
from reference_vmm.trap_emulate.rings import RESERVED_VA

__all__ = [
    "ADAPT_AFTER",
    "FALLTHROUGH_DEPTH",
    "GS_SIZE",
    "GS_VA",
    "HC_CALLOUT",
    "HC_CHAIN",
    "HC_CONTINUE",
    "HC_MISS",
    "REVERT_AFTER",
    "RULES",
    "SEQUENCES",
    "SEQUENCE_LENGTHS",
    "TC_SIZE",
    "TC_VA",
    "TU_LIMIT",
    "Rule",
    "Step",
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
HC_MISS = 0xB703
"""``hcall`` number of an inline lookup that missed: translate the target of the transfer."""

# -- the VMM's data, reached from the TC through GS (docs/architecture.md §5.4) ---------------
GS_SIZE = 0x17000
"""Bytes of the VMM's data of one guest: vCPU fields, spill slots, constants, the TC hash."""
GS_VA = TC_VA - GS_SIZE
"""Where it is mapped in every shadow address space (supervisor, writable, not executable),
below the TC and above the guest's data segment limit (MSR_GSBASE)."""
GS_SPILL = 0x000
"""Spill slots: guest register n is saved at ``GS_SPILL + 8 n`` while a sequence uses it."""
GS_TARGET = 0x080
"""The guest pc an indirect transfer goes to, once it has taken effect."""
GS_JUMP = 0x088
"""The TC address ``jgs`` jumps to at the end of an inline lookup."""
GS_PENDING = 0x090
"""1 when the virtual CPU had an interrupt pending at entry into the TC, else 0: ``popf`` and
``mtcr cr8`` then call out, since what they change may let it in (none arrives during a run:
the devices only move between runs)."""
GS_SMSW = 0x098
GS_IDTR = 0x0A0
GS_CR = {0: 0x0A8, 2: 0x0B0, 3: 0x0B8, 4: 0x0C0, 8: 0x0C8}
"""The virtual CPU's copies that ``smsw``, ``sidt`` and ``mfcr`` read in the TC."""
GS_LEDGER = 0x0D0
"""One ledger per kind of in-TC sequence (``SEQUENCES``): the ticks its runs cost beyond one
guest tick each, zeroed at every entry into the TC and read at every exit (exact guest time)."""
GS_IOPL = 0x110
"""The virtual FLAGS.IOPL (FLAGS_IOPL's bits): the real IOPL in the TC is 1, not the guest's."""
GS_POOL = 0x200
"""Constants of the TC (the guest return addresses that ``call`` pushes), 8 bytes each."""
GS_POOL_END = 0x7000
GS_HASH = 0x7000
"""The TC hash that inline lookups read: ``HASH_ENTRIES`` entries of (guest pc, TC address),
direct-mapped by guest pc bits 13:2."""
HASH_ENTRIES = 4096
HASH_EMPTY = MASK64
"""The key of an empty hash entry, whose TC address is the *stray* word: a transfer to this
guest pc (not a multiple of 4: its fetch faults) reaches the VMM there as after a miss."""
SEQUENCES = ("call", "callr", "jr", "ret", "rdtsc", "pushf", "popf", "mtcr")
"""The in-TC sequences; the ledger of kind i is at ``GS_LEDGER + 8 i``."""
_SP = 15


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
    VCPU_READ = "vcpu-read"
    """``smsw``/``sidt``/``mfcr rd``: ``ldgs rd`` of the virtual CPU's copy in GS (one word)."""
    RDTSC = "rdtsc"
    """An in-TC sequence: the real TSC less the ticks of in-TC sequences (the ledger)."""
    CALL = "call"
    """An in-TC sequence: push the guest return address, jump (remapped) to the target."""
    CALLR = "callr"
    """An in-TC sequence: push the guest return address, inline lookup of the target."""
    JR = "jr"
    """An in-TC sequence: inline lookup of the target in the TC hash."""
    RET = "ret"
    """An in-TC sequence: pop the guest return address, inline lookup of its fragment."""
    PUSHF = "pushf"
    """An in-TC sequence: the real FLAGS pushed, their IOPL replaced by the virtual one."""
    POPF = "popf"
    """An in-TC sequence: the real ``popf`` when only IF may change, else a callout."""
    MTCR8 = "mtcr8"
    """``mtcr cr8``: an in-TC sequence storing the virtual TPR, unless an interrupt is pending."""


_CONTROL_FLOW = {
    "beq": Rule.BRANCH,
    "bne": Rule.BRANCH,
    "blt": Rule.BRANCH,
    "bge": Rule.BRANCH,
    "bltu": Rule.BRANCH,
    "bgeu": Rule.BRANCH,
    "jmp": Rule.JUMP,
    # The return address a call pushes, and the targets of jr/callr/ret, are guest addresses:
    # in-TC sequences with an inline lookup in the TC hash (Adams & Agesen 2006 §3.1).
    "call": Rule.CALL,
    "callr": Rule.CALLR,
    "jr": Rule.JR,
    "ret": Rule.RET,
    # int n at real ring 1 would reach the VMM's host gate anyway; as a callout it costs one exit
    # instead of a fault's.
    "int": Rule.CALLOUT,
}
_SENSITIVE_RULES = {
    # Sensitive, unprivileged on the x86-like P64 (docs/architecture.md §4.3): never copied.
    "iret": Rule.CALLOUT,
    # The real FLAGS in the TC are the guest's but for IOPL (1, so that cli/sti run at real
    # ring 1): pushf pushes them with the virtual IOPL; popf runs for real when it leaves TF and
    # IOPL as they are, and calls out when it would change them.
    "pushf": Rule.PUSHF,
    "popf": Rule.POPF,
    # Reads of the virtual CPU: one load from its copy in the VMM's data (GS), kept current at
    # every entry into the TC (only callouts change what they read).
    "sidt": Rule.VCPU_READ,
    "smsw": Rule.VCPU_READ,
    "mfcr": Rule.VCPU_READ,
    "rdcs": Rule.CPL,
    # Privileged: cli and sti are copied.  The VMM runs the TC at real ring 1 with IOPL 1 and the
    # guest's IF, TPR, interrupt shadow and pending vector in the real CPU, so the real cli and
    # sti act on the virtual IF as VMware's in-TC "vcpu.flags.IF := 0" does (Adams & Agesen
    # 2006 §3.2), and sti's shadow and a pending interrupt come at the native boundary.  P64's
    # VMM has no interrupts of its own for them to hold back: it regains control by its budget.
    "cli": Rule.IDENT,
    "sti": Rule.IDENT,
    "hlt": Rule.CALLOUT,
    "in": Rule.CALLOUT,
    "out": Rule.CALLOUT,
    # mtcr cr8 (the TPR) is an in-TC sequence; the other control registers are callouts.
    "mtcr": Rule.MTCR8,
    "lidt": Rule.CALLOUT,
    "rdmsr": Rule.CALLOUT,
    "wrmsr": Rule.CALLOUT,
    "invlpg": Rule.CALLOUT,
    # rdtsc reads the real TSC, offset by the VMM to read the guest's clock, less the ticks
    # in-TC sequences spent (the ledger); with CR4.TSD it faults at real ring 1 and the fault
    # is emulated at guest CPL 0.
    "rdtsc": Rule.RDTSC,
    # Host class: the guest's own hcall must not be taken for the VMM's, nor its GS for the
    # VMM's (the spec runs them on the virtual CPU, whose GS MSRs are the guest's); vmcall
    # raises #UD outside guest mode at every ring.
    "hcall": Rule.CALLOUT,
    "ldgs": Rule.CALLOUT,
    "sdgs": Rule.CALLOUT,
    "jgs": Rule.CALLOUT,
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
    """A guest instruction translated to one word (IDENT, remapped, constant, vCPU access)."""
    CALLOUT = 2
    """``hcall HC_CALLOUT`` for the guest instruction at its guest pc."""
    STUB = 3
    """``hcall HC_CHAIN``: its guest pc is the target of the branch that jumps to it."""
    CONTINUE = 4
    """``hcall HC_CONTINUE``: its guest pc is the fall-through of the fragment before it."""
    SEQUENCE = 5
    """A word of an in-TC sequence for the guest instruction at its guest pc (``steps``)."""
    MISS = 6
    """``hcall HC_MISS``: an inline lookup missed (or the stray word was reached) (``steps``)."""


@dataclass(frozen=True)
class Step:
    """Where the guest stands when the real CPU is at one word of an in-TC sequence, before it
    runs that word.  The VMM that stops the real CPU there (a fault, the host timer) puts the
    guest at an instruction boundary with it: *before* the guest instruction (``done`` false:
    nothing of it is visible yet, and the sequence runs again from ``start``) or *after* it
    (``done``: the rest of the sequence is bookkeeping)."""

    start: int
    """TC word of the sequence's first word."""
    done: bool
    """The guest instruction has taken effect."""
    restore: tuple[int, ...]
    """Guest registers whose guest value is in their spill slot, not in the register."""
    overhead: int
    """Ticks of this sequence run so far that are not the guest's and not yet in the ledger."""
    pc: int | None
    """The guest pc here (None: the one in ``GS_TARGET``)."""
    length: int
    """Words of the sequence (its miss word aside)."""


@dataclass
class _Sequence:
    """An in-TC sequence being emitted for one guest instruction: its words, and for each the
    state the VMM needs to stop there (``Step``)."""

    gpc: int
    kind: int  # index in SEQUENCES
    words: list[tuple[int, tuple[int, bool, frozenset[int], bool]]]
    spilled: set[int]
    done: bool = False
    ledgered: bool = False
    after: int | None = None
    ledger_at: int = -1
    miss_at: int = -1  # word index of the bne to the miss word
    bails: list[int] = field(default_factory=list)  # word indices of the bne to a callout
    jump_at: int = -1  # word index of a final remapped jmp
    target: int = 0  # its guest target
    constant: tuple[int, int] | None = None  # (GS offset, value) of the return address
    pool_at: int = -1  # word index of the ldgs of that constant

    def _state(self) -> tuple[int, bool, frozenset[int], bool]:
        return (len(self.words), self.done, frozenset(self.spilled), self.ledgered)

    def emit(self, mnemonic: str, **operands: int) -> int:
        self.words.append((encode(mnemonic, **operands), self._state()))
        return len(self.words) - 1

    def commit(self, mnemonic: str, *, after: int | None, keep: tuple[int, ...] = (), **operands: int) -> None:
        """Emit the word with which the guest instruction takes effect; ``keep``: spilled
        registers whose new value is the guest's from then on."""
        self.emit(mnemonic, **operands)
        self.done = True
        self.after = after
        self.spilled -= set(keep)

    def spill(self, *regs: int) -> None:
        for r in regs:
            self.emit("sdgs", rs2=r, rs1=0, imm=GS_SPILL + 8 * r)
            self.spilled.add(r)

    def refill(self, *regs: int) -> None:
        for r in regs:
            self.emit("ldgs", rd=r, rs1=0, imm=GS_SPILL + 8 * r)
            self.spilled.discard(r)

    def ledger(self, scratch: int) -> None:
        """Add this sequence's ticks beyond the guest's one to its ledger (patched in ``steps``)."""
        slot = GS_LEDGER + 8 * self.kind
        self.emit("ldgs", rd=scratch, rs1=0, imm=slot)
        self.ledger_at = self.emit("addi", rd=scratch, rs1=scratch, imm=0)
        self.emit("sdgs", rs2=scratch, rs1=0, imm=slot)
        self.ledgered = True

    def lookup(self, key: int, b: int, c: int) -> None:
        """The inline lookup of guest pc ``key`` in the TC hash; leaves its TC address in
        ``GS_JUMP`` or branches to the miss word."""
        self.emit("shri", rd=b, rs1=key, imm=2)
        self.emit("andi", rd=b, rs1=b, imm=HASH_ENTRIES - 1)
        self.emit("shli", rd=b, rs1=b, imm=4)
        self.emit("ldgs", rd=c, rs1=b, imm=GS_HASH)
        self.miss_at = self.emit("bne", rs1=c, rs2=key, imm=0)  # patched to the miss word
        self.emit("ldgs", rd=c, rs1=b, imm=GS_HASH + 8)
        self.emit("sdgs", rs2=c, rs1=0, imm=GS_JUMP)

    def bail(self, a: int, b: int) -> None:
        """Leave the sequence for a callout of its guest instruction when ``a != b``: nothing of
        it has taken effect, and the VMM runs it in the spec (patched in ``_place``)."""
        self.bails.append(self.emit("bne", rs1=a, rs2=b, imm=0))

    def step(self, state: tuple[int, bool, frozenset[int], bool], start: int) -> Step:
        length = len(self.words)
        done, restore, overhead = _step_parts(state, length)
        return _new_step(start, done, restore, overhead, self.after if done else self.gpc, length)

    def branched(self, at: int) -> tuple[int, bool, frozenset[int], bool]:
        """The state at the word the ``bne`` at ``at`` branches to: everything up to it ran."""
        ran, done, spilled, ledgered = self.words[at][1]
        return (ran + 1, done, spilled, ledgered)


def _new_step(start: int, done: bool, restore: tuple[int, ...], overhead: int, pc: int | None, length: int) -> Step:
    """``Step(start, done, restore, overhead, pc, length)``, the same record, made without the
    frozen dataclass's ``__init__`` (one attribute write at a time, half the cost): the
    translator makes one for every word of every in-TC sequence it lays."""
    step = _object_new(Step)
    step.__dict__.update(start=start, done=done, restore=restore, overhead=overhead, pc=pc, length=length)
    return step


_object_new = object.__new__
if hasattr(Step, "__slots__") or _new_step(1, True, (2,), 3, 4, 5) != Step(1, True, (2,), 3, 4, 5):
    raise RuntimeError("binary translation: Step is no longer a frozen dataclass with a __dict__")


@cache
def _step_parts(state: tuple[int, bool, frozenset[int], bool], length: int) -> tuple[bool, tuple[int, ...], int]:
    """What a ``Step`` at a word in ``state`` of a sequence of ``length`` words says, but where
    the sequence is: the same for every instance of a sequence kind (memoized)."""
    ran, done, spilled, ledgered = state
    return done, tuple(sorted(spilled)), ran - done - (length - 1 if ledgered else 0)


@dataclass
class _Pending:
    """A remapped branch waiting for the fragment of its target."""

    site: int  # word index of the branch
    target: int  # guest address


def _lengths() -> tuple[int, ...]:
    """Words of each kind of in-TC sequence: the same whatever its registers, so that a ledger's
    ticks divided by its kind's ticks beyond the guest's one count that kind's runs."""
    lengths = []
    for mnemonic in SEQUENCES:
        operands = {"crn": 8} if mnemonic == "mtcr" else {}
        sizes = {
            len(_sequence(_decoded(encode(mnemonic, rd=r, rs1=r, **operands)), 0, GS_POOL).words) for r in range(1, 15)
        }
        if len(sizes) != 1:
            raise RuntimeError(f"binary translation: the {mnemonic} sequence's length depends on its registers")
        lengths.append(sizes.pop())
    return tuple(lengths)


_SEQUENCE_RULES = frozenset({Rule.CALL, Rule.CALLR, Rule.JR, Rule.RET, Rule.RDTSC, Rule.PUSHF, Rule.POPF, Rule.MTCR8})
_ENDS_UNIT = frozenset({Rule.JUMP, Rule.CALLOUT, Rule.CALL, Rule.CALLR, Rule.JR, Rule.RET})


def _how(rule: Rule) -> tuple[Rule, bool, bool]:
    return rule, rule in _SEQUENCE_RULES, rule in _ENDS_UNIT


_HOW: dict[str, tuple[Rule, bool, bool]] = {mnemonic: _how(rule) for mnemonic, rule in RULES.items()}
"""``RULES`` as the translator reads it for every instruction: (rule, whether it is an in-TC
sequence, whether it ends the TU), by mnemonic — no hashing of a ``Rule`` on the way."""
_HOW_IDENT = _how(Rule.IDENT)
_HOW_CALLOUT = _how(Rule.CALLOUT)
_HCALL_CALLOUT = encode("hcall", imm=HC_CALLOUT)
_HCALL_CHAIN = encode("hcall", imm=HC_CHAIN)
_HCALL_CONTINUE = encode("hcall", imm=HC_CONTINUE)
_HCALL_MISS = encode("hcall", imm=HC_MISS)
_SEQUENCE_COUNTERS = tuple(f"sequences_translated_{m}" for m in SEQUENCES)
_HASH_ENTRY = struct.Struct("<QQ")
_U64 = struct.Struct("<Q")
_INSN_SIZE = 4  # bytes of an instruction (spec.fetch's access)
_SYNC_GAP = 16
"""Unchanged TC words that one write of the TC to host memory may carry to join two changed
ranges (``TranslationCache._sync``): fewer calls into the core."""


def _scratch(n: int, *avoid: int) -> list[int]:
    """``n`` registers for a sequence's own use, none of ``avoid`` (nor r0, nor sp)."""
    return [r for r in range(1, 15) if r not in avoid][:n]


def _sequence(d: Decoded, gpc: int, pool: int | None) -> _Sequence:
    """The in-TC sequence of guest instruction ``d`` at ``gpc`` (``pool``: the GS offset of
    its constant, the return address, for ``call``/``callr``): its kind's template for ``d``'s
    registers (``_template``, encoded once) with this instance's fields filled in — its guest
    pcs, the target of a ``call``, the constant's GS offset in the word that loads it."""
    mnemonic = d.insn.mnemonic
    t = _template(mnemonic, d.rd, d.rs1)
    ret_pc = (gpc + 4) & MASK64
    target = (gpc + d.imm) & MASK64 if mnemonic == "call" else t.target
    words = list(t.words)
    if t.pool_at >= 0:
        word, state = words[t.pool_at]
        words[t.pool_at] = (_with_imm16(word, pool or 0), state)
    # A template's ``after`` is None (the guest pc in GS_TARGET), its target's (``call``) or the
    # next instruction's.
    after = None if t.after is None else target if mnemonic == "call" else ret_pc
    return _Sequence(
        gpc,
        t.kind,
        words,
        set(t.spilled),
        done=t.done,
        ledgered=t.ledgered,
        after=after,
        ledger_at=t.ledger_at,
        miss_at=t.miss_at,
        bails=list(t.bails),
        jump_at=t.jump_at,
        target=target,
        constant=None if pool is None else (pool, ret_pc),
        pool_at=t.pool_at,
    )


def _with_imm16(word: int, imm: int) -> int:
    """``word`` (an ``s16`` format: ``ldgs``) with its immediate replaced by ``imm`` >= 0."""
    assert 0 <= imm < 1 << 15
    return (word & ~0xFFFF) | imm


_TEMPLATE_POOL = GS_POOL
"""The constant's GS offset in a template's ``ldgs`` (each instance patches in its own)."""
if _with_imm16(encode("ldgs", rd=1, rs1=0, imm=_TEMPLATE_POOL), GS_POOL_END - 8) != encode(
    "ldgs", rd=1, rs1=0, imm=GS_POOL_END - 8
):
    raise RuntimeError("binary translation: ldgs no longer has a plain 16-bit immediate")


@cache
def _template(mnemonic: str, rd: int, rs1: int) -> _Sequence:
    """The in-TC sequence of ``mnemonic`` with registers ``rd``/``rs1``, built once: as at guest
    pc 0, a ``call`` to offset 0, its constant at ``_TEMPLATE_POOL`` (``_sequence`` makes the
    instances).  Its words and their states depend on nothing else."""
    seq = _Sequence(0, SEQUENCES.index(mnemonic), [], set())
    ret_pc = 4
    if mnemonic == "call":
        (a,) = _scratch(1)
        seq.spill(a, _SP)
        seq.pool_at = seq.emit("ldgs", rd=a, rs1=0, imm=_TEMPLATE_POOL)
        seq.emit("addi", rd=_SP, rs1=_SP, imm=-8)
        # The push is the instruction's effect: if it faults nothing of it is visible (§3).
        seq.target = 0
        seq.commit("sd", after=seq.target, keep=(_SP,), rs2=a, rs1=_SP, imm=0)
        seq.ledger(a)
        seq.refill(a)
        seq.jump_at = seq.emit("jmp", imm=0)  # remapped to the target's fragment
    elif mnemonic == "callr":
        a, b, c = _scratch(3, rs1)
        seq.spill(a, b, c, _SP)
        seq.emit("add", rd=a, rs1=rs1, rs2=0)  # the target, read before sp changes
        seq.emit("sdgs", rs2=a, rs1=0, imm=GS_TARGET)
        seq.pool_at = seq.emit("ldgs", rd=b, rs1=0, imm=_TEMPLATE_POOL)
        seq.emit("addi", rd=_SP, rs1=_SP, imm=-8)
        seq.commit("sd", after=None, keep=(_SP,), rs2=b, rs1=_SP, imm=0)
        seq.lookup(a, b, c)
        seq.ledger(c)
        seq.refill(a, b, c)
        seq.emit("jgs", rs1=0, imm=GS_JUMP)
    elif mnemonic == "jr":
        b, c = _scratch(2, rs1)
        seq.spill(b, c)
        seq.commit("sdgs", after=None, rs2=rs1, rs1=0, imm=GS_TARGET)
        seq.lookup(rs1, b, c)
        seq.ledger(c)
        seq.refill(b, c)
        seq.emit("jgs", rs1=0, imm=GS_JUMP)
    elif mnemonic == "ret":
        a, b, c = _scratch(3)
        seq.spill(a, b, c)
        seq.emit("ld", rd=a, rs1=_SP, imm=0)
        seq.emit("sdgs", rs2=a, rs1=0, imm=GS_TARGET)
        seq.commit("addi", after=None, rd=_SP, rs1=_SP, imm=8)
        seq.lookup(a, b, c)
        seq.ledger(c)
        seq.refill(a, b, c)
        seq.emit("jgs", rs1=0, imm=GS_JUMP)
    elif mnemonic == "rdtsc":
        (s,) = _scratch(1, rd)
        seq.spill(rd, s)
        # The real TSC runs ahead of the guest's clock by the ledgers (the VMM zeroes them when
        # it enters the TC and sets the TSC offset to the guest's clock then) and by this
        # sequence's own words before the rdtsc: subtract both.
        seq.emit("ldgs", rd=s, rs1=0, imm=GS_LEDGER)
        for k in range(1, len(SEQUENCES)):
            seq.emit("ldgs", rd=rd, rs1=0, imm=GS_LEDGER + 8 * k)
            seq.emit("add", rd=s, rs1=s, rs2=rd)
        seq.emit("addi", rd=s, rs1=s, imm=len(seq.words) + 1)
        seq.emit("rdtsc", rd=rd)
        seq.commit("sub", after=ret_pc, keep=(rd,), rd=rd, rs1=rd, rs2=s)
        seq.ledger(s)
        seq.refill(s)
    elif mnemonic == "pushf":
        a, b = _scratch(2)
        seq.spill(a, b, _SP)
        # The real pushf (the guest's IF; a fault of its push changes nothing, §3), then the
        # virtual IOPL over the real one in the pushed quadword: the push is complete once
        # that store is.
        seq.emit("pushf")
        seq.emit("ld", rd=a, rs1=_SP, imm=0)
        seq.emit("andi", rd=a, rs1=a, imm=FLAGS_IF)
        seq.emit("ldgs", rd=b, rs1=0, imm=GS_IOPL)
        seq.emit("or", rd=a, rs1=a, rs2=b)
        seq.commit("sd", after=ret_pc, keep=(_SP,), rs2=a, rs1=_SP, imm=0)
        seq.ledger(a)
        seq.refill(a, b)
    elif mnemonic == "popf":
        a, b = _scratch(2)
        seq.spill(a, b)
        # At guest CPL 0 popf writes TF, IF and IOPL (§6.4).  When TF and IOPL stay as they
        # are, the real popf at ring 1 (IOPL 1: it writes IF and TF, not IOPL) does exactly
        # that; otherwise the VMM does (single-stepping and IOPL are its business).
        seq.emit("ld", rd=a, rs1=_SP, imm=0)
        seq.emit("andi", rd=a, rs1=a, imm=FLAGS_TF | FLAGS_IOPL)
        seq.emit("ldgs", rd=b, rs1=0, imm=GS_IOPL)
        seq.bail(a, b)
        seq.commit("popf", after=ret_pc)
        seq.ledger(a)
        seq.refill(a, b)
    elif mnemonic == "mtcr":
        (a,) = _scratch(1, rs1)
        seq.spill(a)
        # A lower TPR may let in an interrupt pending at entry (the real TPR is not written):
        # then, and for a value the TPR refuses (#GP, §2), the VMM runs it.
        seq.emit("ldgs", rd=a, rs1=0, imm=GS_PENDING)
        seq.bail(a, 0)
        seq.emit("shri", rd=a, rs1=rs1, imm=4)
        seq.bail(a, 0)
        seq.commit("sdgs", after=ret_pc, rs2=rs1, rs1=0, imm=GS_CR[8])
        seq.ledger(a)
        seq.refill(a)
    else:
        raise ValueError(f"binary translation: no in-TC sequence for {mnemonic}")
    return seq


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
        gs: int,
        *,
        protect: Callable[[int], None] | None = None,
        release: Callable[[int], None] | None = None,
    ) -> None:
        self.host = host
        self.hpa = hpa
        self.gs = gs
        """Host-physical address of the VMM's data that the TC reaches through GS."""
        self.steps: dict[int, Step] = {}
        """For every word of an in-TC sequence (and miss word), where the guest stands there."""
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
        self._view = host.memory
        """Host RAM, for the VMM's data in GS (data, never code: no decoded copy to keep coherent)."""
        self._mirror = array("I", bytes(TC_SIZE))
        """The TC's words as the translator wrote them: it reads and patches them here, and
        ``_sync`` writes what changed into host memory in a few calls, before the TC runs."""
        self._dirty: list[tuple[int, int]] = []  # word ranges written since the last _sync
        self._synced = 0  # words below _code already in host memory
        self.counters: Counter[str] = Counter()
        self._hash: dict[tuple[int, int], int] = {}
        self._stubs: dict[int, _Pending] = {}
        self._code = 0  # next free word from the bottom
        self._stub = self.words  # lowest stub word
        self._pool = GS_POOL  # next free constant
        self._generation = 0
        self._reset_gs()
        self._sync()

    def _reset_gs(self) -> None:
        """An empty TC hash in GS whose every entry leads to the *stray* word, the top word of
        the TC: a transfer to ``HASH_EMPTY`` reaches the VMM there with its guest pc in
        ``GS_TARGET`` (a complete transfer: ``Step`` done, nothing spilled)."""
        self._stub -= 1
        stray = self._stub
        self._write(stray, _HCALL_MISS)
        self.kind[stray] = WordKind.MISS
        self.steps[stray] = Step(stray, True, (), 0, None, 0)
        entry = _HASH_ENTRY.pack(HASH_EMPTY, self.va(stray))
        self._view[self.gs + GS_HASH : self.gs + GS_HASH + len(entry) * HASH_ENTRIES] = entry * HASH_ENTRIES

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
        self._code, self._stub, self._pool = 0, self.words, GS_POOL
        self._synced = 0
        self.kind = [WordKind.FREE] * self.words
        self.steps.clear()
        self._generation += 1
        self._reset_gs()
        self._sync()

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
        self.adapted[word] = self._read(word)
        self._write(word, _HCALL_CALLOUT)
        self._sync()
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
        self._sync()
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
            self._sync()
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
                self._emit(HC_CONTINUE, WordKind.CONTINUE, pc, _HCALL_CONTINUE)
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
        units: list[tuple[int, Decoded | None, Rule, _Sequence | None]] = []  # word, decoded, rule, sequence
        pc = gpc
        successor: int | None = None
        pool = self._pool
        extra = 0  # words beyond one per guest instruction: sequences, their miss words and bails
        fetch, decode_word = spec.fetch, spec.decode_word
        physical = 0  # of gpc, where the TU's instructions are (one page)
        while True:
            if len(units) == TU_LIMIT or (units and pc % PAGE_SIZE == 0):
                successor = pc
                break
            try:
                if units:
                    word = fetch(cpu, memory, pc)
                else:  # what spec.fetch does, keeping the physical address for _note_code
                    physical = spec.translate(cpu, memory, pc, _INSN_SIZE, spec.ACCESS_FETCH, cpl)
                    word = memory.read(physical, _INSN_SIZE)
            except spec.Fault:
                if not units:
                    return None, None
                successor = pc  # its stub will let the spec raise the guest's fault
                break
            entry = decode_word(word)
            if entry is None:
                # An invalid encoding raises #UD at every ring: copied, it faults in the TC and
                # the fault is emulated with the guest's state.
                units.append((word, None, Rule.IDENT, None))
                break
            d = entry[0]
            how = _HOW[d.insn.mnemonic]
            rule = how[0]
            if rule is Rule.RDTSC and d.rd == 0:
                how = _HOW_IDENT  # reads nothing into anything
            elif rule is Rule.MTCR8 and d.crn != 8:
                how = _HOW_CALLOUT
            rule, sequence, ends = how
            seq = None
            if sequence:
                constant = None
                if rule is Rule.CALL or rule is Rule.CALLR:
                    constant, pool = pool, pool + 8
                seq = _sequence(d, pc, constant)
                extra += len(seq.words) - 1 + (seq.miss_at >= 0) + len(seq.bails)
            units.append((word, d, rule, seq))
            pc = (pc + 4) & MASK64
            if rule is Rule.BRANCH:
                successor = pc
                break
            if ends:
                break
        if self._code + extra + 3 * len(units) + 1 > self._stub or pool > GS_POOL_END:
            self.flush("full")
            return None, None
        start = self._code
        va = self.va(start)
        self._hash[(gpc, cpl)] = va
        if cpl == 0:
            _HASH_ENTRY.pack_into(self._view, self.gs + GS_HASH + 16 * ((gpc >> 2) & (HASH_ENTRIES - 1)), gpc, va)
        self._note_code(cpu, memory, gpc, len(units), physical)
        counters = self.counters
        counters["fragments_translated"] += 1
        counters["guest_instructions_translated"] += len(units)
        pc = gpc
        guest = WordKind.GUEST
        for word, d, rule, seq in units:
            if rule is Rule.IDENT:
                self._emit_word(word, guest, pc)
            elif rule is Rule.BRANCH or rule is Rule.JUMP:
                assert d is not None
                site = self._code
                self._emit_word(word, guest, pc)  # patched just below
                self._remap(site, d, (pc + d.imm) & MASK64, cpl)
            elif rule is Rule.CALLOUT:
                self._emit_word(_HCALL_CALLOUT, WordKind.CALLOUT, pc)
            elif rule is Rule.CPL:
                assert d is not None
                self._emit_word(encode("addi", rd=d.rd, rs1=0, imm=cpl), guest, pc)
            elif rule is Rule.VCPU_READ:
                assert d is not None
                mnemonic = d.insn.mnemonic
                slot = GS_SMSW if mnemonic == "smsw" else GS_IDTR if mnemonic == "sidt" else GS_CR[d.crn]
                self._emit_word(encode("ldgs", rd=d.rd, rs1=0, imm=slot), guest, pc)
            else:
                assert seq is not None
                self._place(seq, cpl)
            pc = (pc + 4) & MASK64
        self._pool = pool
        counters["tc_words"] = self._code + (self.words - self._stub)
        return va, successor

    def _place(self, seq: _Sequence, cpl: int) -> None:
        """Lay the in-TC sequence ``seq`` at the next free words, its miss word among the stubs."""
        start = self._code
        steps, step = self.steps, seq.step
        for k, (_, state) in enumerate(seq.words):
            steps[start + k] = step(state, start)
        self._emit_words([word for word, _ in seq.words], WordKind.SEQUENCE, seq.gpc)
        if seq.ledger_at >= 0:
            site = start + seq.ledger_at
            self._write(site, _ledger_word(self._read(site), len(seq.words) - 1))
        if seq.miss_at >= 0:
            self._stub -= 1
            miss = self._stub
            self._write(miss, _HCALL_MISS)
            self.kind[miss] = WordKind.MISS
            self.guest_pc[miss] = seq.gpc
            self.steps[miss] = seq.step(seq.branched(seq.miss_at), start)
            site = start + seq.miss_at
            self._write(site, _retarget(_decoded(self._read(site)), self.va(miss) - self.va(site)))
        for at in seq.bails:
            self._stub -= 1
            bail = self._stub
            self._write(bail, _HCALL_CALLOUT)
            self.kind[bail] = WordKind.CALLOUT
            self.guest_pc[bail] = seq.gpc
            self.steps[bail] = seq.step(seq.branched(at), start)
            site = start + at
            self._write(site, _retarget(_decoded(self._read(site)), self.va(bail) - self.va(site)))
        if seq.jump_at >= 0:
            site = start + seq.jump_at
            self._remap(site, _decoded(self._read(site)), seq.target, cpl)
        if seq.constant is not None:
            offset, value = seq.constant
            _U64.pack_into(self._view, self.gs + offset, value)
        self.counters[_SEQUENCE_COUNTERS[seq.kind]] += 1

    def _note_code(
        self, cpu: spec.State, memory: spec.PhysicalMemory, gpc: int, count: int, physical: int | None = None
    ) -> None:
        """Remember the guest-physical words of a TU at ``gpc`` (one page: a TU stops at a page
        boundary; ``physical``: where ``gpc`` is, as its fetch found it, else walked), and have
        their frame write-protected the first time."""
        if physical is None:
            physical = spec.walk(cpu, memory, gpc, spec.ACCESS_FETCH, cpu.cpl).physical
        frame = physical >> 12
        self.pages[gpc & ~(PAGE_SIZE - 1) & MASK64] = frame
        offsets = self.code.get(frame)
        if offsets is None:
            self.code[frame] = offsets = set()
            if self._protect is not None:
                self._protect(frame)
        first = physical & (PAGE_SIZE - 1)
        offsets.update(range(first, first + 4 * count, 4))

    def _remap(self, site: int, d: Decoded, target: int, cpl: int) -> None:
        """Point the branch at ``site`` to the fragment of ``target``, or to a new stub."""
        dest = self.lookup(target, cpl)
        if dest is None:
            self._stub -= 1
            stub = self._stub
            self._write(stub, _HCALL_CHAIN)
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
        self._write(pending.site, _retarget(_decoded(self._read(pending.site)), dest - self.va(pending.site)))
        self._sync()
        del self._stubs[stub]
        self.counters["chains_patched"] += 1
        return dest

    # -- words ---------------------------------------------------------------------------
    def _emit(self, number: int, kind: WordKind, gpc: int, word: int) -> None:
        del number
        self._emit_word(word, kind, gpc)

    def _emit_word(self, word: int, kind: WordKind, gpc: int) -> None:
        i = self._code
        self._code = i + 1
        self.kind[i] = kind
        self.guest_pc[i] = gpc
        self._mirror[i] = word

    def _emit_words(self, words: list[int], kind: WordKind, gpc: int) -> None:
        """``_emit_word`` of each of ``words``, all of ``kind`` for guest pc ``gpc``."""
        i = self._code
        j = self._code = i + len(words)
        self.kind[i:j] = [kind] * len(words)
        self.guest_pc[i:j] = [gpc] * len(words)
        self._mirror[i:j] = array("I", words)

    def _read(self, i: int) -> int:
        return self._mirror[i]

    def _write(self, i: int, word: int) -> None:
        self._mirror[i] = word
        self._dirty.append((i, i + 1))

    def _sync(self) -> None:
        """Write the TC words changed since the last call into host memory (``host.write``
        keeps the core's decoded code coherent), in as few calls as ``_SYNC_GAP`` allows: the
        fragments laid since (one range), the stubs and patched branches."""
        ranges = self._dirty
        if self._code > self._synced:
            ranges.append((self._synced, self._code))
        if not ranges:
            return
        ranges.sort()
        lo, hi = ranges[0]
        for a, b in ranges[1:]:
            if a > hi + _SYNC_GAP:
                self._put(lo, hi)
                lo = a
            if b > hi:
                hi = b
        self._put(lo, hi)
        ranges.clear()
        self._synced = self._code

    def _put(self, lo: int, hi: int) -> None:
        words = self._mirror[lo:hi]
        if sys.byteorder != "little":
            words.byteswap()
        self.host.write(self.hpa + 4 * lo, words)


def _decoded(word: int) -> Decoded:
    entry = spec.decode_word(word)
    assert entry is not None
    return entry[0]


def _retarget(d: Decoded, offset: int) -> int:
    """The word of the direct branch or jump ``d`` with its offset replaced by ``offset`` bytes:
    the word ``encode`` gives, from its operands' word encoded once (``_branch_base``)."""
    mnemonic = d.insn.mnemonic
    if mnemonic == "jmp":
        if not -(1 << 25) <= offset < 1 << 25 or offset & 3:
            return encode("jmp", imm=offset)  # raises EncodingError
        return _branch_base("jmp", 0, 0) | ((offset >> 2) & 0xFFFFFF)
    if not -(1 << 17) <= offset < 1 << 17 or offset & 3:
        return encode(mnemonic, rs1=d.rs1, rs2=d.rs2, imm=offset)  # raises EncodingError
    return _branch_base(mnemonic, d.rs1, d.rs2) | ((offset >> 2) & 0xFFFF)


@cache
def _branch_base(mnemonic: str, rs1: int, rs2: int) -> int:
    """The direct branch or jump ``mnemonic`` with offset 0; its offset field is the low 16
    (``s16w``) or 24 (``s24w``) bits, in words."""
    return encode(mnemonic, rs1=rs1, rs2=rs2, imm=0)


@cache
def _ledger_word(word: int, ticks: int) -> int:
    """The ``addi`` word of a sequence's ledger (``_Sequence.ledger``) adding ``ticks``."""
    d = _decoded(word)
    return encode("addi", rd=d.rd, rs1=d.rs1, imm=ticks)


SEQUENCE_LENGTHS: tuple[int, ...] = _lengths()
"""Words of each kind of in-TC sequence (``SEQUENCES``), its miss word aside."""
