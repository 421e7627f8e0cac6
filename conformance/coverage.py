"""Coverage of the generated guests: which instruction ran at which CPL, paging mode and TF, and which exits met pending events.

A generated guest (``conformance.strategies.GuestProgram``) is read statically, block by block:
each block is assembled alone (the prelude's ``.equ`` constants in front) and its words decoded,
so macros and pseudo-instructions count as the instructions they become.  A small abstract
interpreter follows what the text makes certain: register constants (``li``), the stack of
pushed values, and from them the FLAGS that ``popf`` and ``iret`` load (docs/architecture.md
§6.4: IF only at CPL <= IOPL, IOPL only at CPL 0), ``cli``/``sti``, and the interrupt sources a
body starts (an ``out`` to the timer or a disk, and to the PIC mask, docs/devices.md §3-§6).  A value it cannot
know (a register loaded from memory) counts as clear: the table under-counts, never over-counts.

The cells of one example (``cells``):

- ``insn/<mnemonic>/cpl<c>/<flat|paged>/tf<0|1>``: the body has that instruction, at that CPL
  (the prelude's), paging mode, and with FLAGS.TF as the instructions before it left it;
- ``adjacent/exit-after-sti``: an exiting instruction (privileged, sensitive, ``int``, ``ud``,
  or of the host class: ``vmcall``, ``hcall``, ``ldgs``, ``sdgs``, ``jgs``) right after ``sti``
  (in its interrupt shadow, §6.5);
- ``adjacent/exit-with-pending-db``: an exiting instruction executed with TF set (its #DB
  pending at the exit);
- ``adjacent/exit-with-pending-interrupt``: ``hlt``, or an exiting instruction while IF is
  clear, after the body started an interrupt source (the timer, a disk command) and wrote the
  PIC mask (whose reset value masks every line).

``note(program)`` counts an example's cells into the tally the plugin opens around each test
(``tally``) and labels the example for hypothesis (``event``, and ``target`` on the number of
instruction cells, so that the targeting phase seeks variety).  The counts travel in the results
JSON as a test's ``coverage`` and ``popek report`` tabulates them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache, lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conformance.strategies import Block, GuestProgram

__all__ = [
    "ADJACENT_KINDS",
    "CPLS",
    "adjacent_cell",
    "all_cells",
    "cells",
    "instruction_cell",
    "mode_columns",
    "note",
    "parse_instruction_cell",
    "tally",
]

CPLS = (0, 1, 2, 3)
ADJACENT_KINDS = ("exit-after-sti", "exit-with-pending-db", "exit-with-pending-interrupt")
_MASK64 = (1 << 64) - 1
_FLAGS_TF, _FLAGS_IF, _IOPL_SHIFT = 1 << 8, 1 << 9, 12
_SOURCE_PORTS = frozenset({0x40, 0x41, 0x1F3, 0x173})  # TIMER_COUNT, TIMER_CTRL, the disks' commands
_PIC_MASK = 0x21
_EXITING_EXTRA = frozenset({"int", "ud"})  # and the host class (``_exiting``)


def instruction_cell(mnemonic: str, cpl: int, paging: bool, tf: bool) -> str:
    """The key of an instruction cell."""
    return f"insn/{mnemonic}/cpl{cpl}/{'paged' if paging else 'flat'}/tf{int(tf)}"


def adjacent_cell(kind: str) -> str:
    """The key of an exit-adjacent-to-an-event cell (``ADJACENT_KINDS``)."""
    return f"adjacent/{kind}"


def parse_instruction_cell(key: str) -> tuple[str, int, bool, bool] | None:
    """(mnemonic, cpl, paging, tf) of an instruction cell's key; None for any other key."""
    parts = key.split("/")
    if len(parts) != 5 or parts[0] != "insn" or not parts[2].startswith("cpl") or parts[4] not in ("tf0", "tf1"):
        return None
    try:
        cpl = int(parts[2][3:])
    except ValueError:
        return None
    return parts[1], cpl, parts[3] == "paged", parts[4] == "tf1"


def mode_columns() -> list[tuple[int, bool, bool]]:
    """The (cpl, paging, tf) columns of the coverage table, in order."""
    return [(c, p, t) for c in CPLS for p in (False, True) for t in (False, True)]


@cache
def all_cells() -> tuple[str, ...]:
    """Every cell: each mnemonic of the instruction table in every column, then the adjacent kinds."""
    from cffi_core.isa.table import INSTRUCTIONS

    insns = tuple(instruction_cell(i.mnemonic, c, p, t) for i in INSTRUCTIONS for c, p, t in mode_columns())
    return insns + tuple(adjacent_cell(k) for k in ADJACENT_KINDS)


@cache
def _exiting() -> frozenset[str]:
    from cffi_core.isa.table import INSTRUCTIONS, PRIVILEGED, SENSITIVE_UNPRIVILEGED, Sensitivity

    # The host class (vmcall, hcall, ldgs, sdgs, jgs): every VMM meets them, none lets a guest have them.
    host = frozenset(i.mnemonic for i in INSTRUCTIONS if i.sensitivity is Sensitivity.HOST)
    return PRIVILEGED | SENSITIVE_UNPRIVILEGED | _EXITING_EXTRA | host


@cache
def _constants() -> str:
    """The ``.equ`` lines of the guests' libraries, so that a block naming them assembles alone."""
    from conformance.guests import GUEST_DIR

    lines = []
    for name in ("prelude.s", "generated.s"):
        path = GUEST_DIR / "lib" / name
        if path.exists():
            lines += [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip().startswith(".equ")]
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=4096)
def _block_words(lines: tuple[str, ...]) -> tuple | None:
    """The decoded words of a block assembled alone (None: it does not assemble alone)."""
    from cffi_core.asm import assemble
    from cffi_core.isa.encoding import decode

    text = "\n".join(line.replace("{L}", ".Lcov") for line in lines)
    try:
        image = assemble(_constants() + text + "\n")
    except Exception:  # a block that needs more than the constants: counted from its text instead
        return None
    out = []
    for seg in image.segments:
        for o in range(0, len(seg.data) - 3, 4):
            out.append(decode(int.from_bytes(seg.data[o : o + 4], "little")))
    return tuple(out)


def _sext16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


class _Walk:
    """The abstract state of the walk over a body (values None when unknown)."""

    def __init__(self, cpl: int, flags: int) -> None:
        self.cpl = cpl
        self.flags = flags
        self.regs: list[int | None] = [0] + [None] * 15
        self.stack: list[int | None] = []
        self.source = False  # an interrupt source started (timer, disk command)
        self.unmasked = False  # the PIC mask written (its reset value masks every line)
        self.after_sti = False

    def value(self, r: int) -> int | None:
        return 0 if r == 0 else self.regs[r]

    def set(self, r: int, v: int | None) -> None:
        if r:
            self.regs[r] = None if v is None else v & _MASK64

    def pop(self) -> int | None:
        return self.stack.pop() if self.stack else None

    def load_flags(self, new: int | None) -> None:
        """FLAGS from popf/iret under §6.4's rules (an unknown value: TF and IF taken clear)."""
        v = new or 0
        iopl = (self.flags >> _IOPL_SHIFT) & 3
        keep = 0
        if self.cpl > 0:
            keep |= 3 << _IOPL_SHIFT
        if self.cpl > iopl:
            keep |= _FLAGS_IF
        self.flags = (self.flags & keep) | (v & ~keep & (_FLAGS_TF | _FLAGS_IF | (3 << _IOPL_SHIFT)))

    def step(self, d, found: set[str], paging: bool) -> None:
        """One decoded instruction: its cells, then its effect on the abstract state."""
        m = d.insn.mnemonic
        tf = bool(self.flags & _FLAGS_TF)
        found.add(instruction_cell(m, self.cpl, paging, tf))
        if m in _exiting():
            if self.after_sti:
                found.add(adjacent_cell("exit-after-sti"))
            if tf:
                found.add(adjacent_cell("exit-with-pending-db"))
            if self.source and self.unmasked and (m == "hlt" or not self.flags & _FLAGS_IF):
                found.add(adjacent_cell("exit-with-pending-interrupt"))
        self.after_sti = m == "sti"
        a, b = self.value(d.rs1), self.value(d.rs2)
        if m == "addi":
            self.set(d.rd, None if a is None else a + _sext16(d.imm))
        elif m == "ori":
            self.set(d.rd, None if a is None else a | (d.imm & 0xFFFF))
        elif m == "lui":
            v = ((d.imm & 0xFFFFF) << 12) & 0xFFFFFFFF
            self.set(d.rd, v - (1 << 32) if v & (1 << 31) else v)
        elif m in ("add", "or") and (a == 0 or b == 0):
            self.set(d.rd, (b if a == 0 else a))
        elif m == "push":
            self.stack.append(a)
        elif m == "pushf":
            self.stack.append(self.flags)
        elif m == "pop":
            self.set(d.rd, self.pop())
        elif m == "popf":
            self.load_flags(self.pop())
        elif m == "iret":  # frame (§6.3): pc, cs, FLAGS, sp from the top
            self.pop()
            self.pop()
            self.load_flags(self.pop())
            self.pop()
        elif m == "cli" and self.cpl <= (self.flags >> _IOPL_SHIFT) & 3:
            self.flags &= ~_FLAGS_IF
        elif m == "sti" and self.cpl <= (self.flags >> _IOPL_SHIFT) & 3:
            self.flags |= _FLAGS_IF
        elif m == "out":
            port = ((a or 0) + _sext16(d.imm)) & 0xFFFF
            self.source |= port in _SOURCE_PORTS
            self.unmasked |= port == _PIC_MASK
        elif d.rd:  # anything else that writes a register: its value unknown
            self.set(d.rd, None)


def cells(program: GuestProgram) -> frozenset[str]:
    """The cells one generated example exercises (see the module's docstring)."""
    from cffi_core.isa.table import BY_MNEMONIC

    walk = _Walk(program.cpl, program.flags if program.cpl else 0)
    found: set[str] = set()
    for block in program.body:
        words = _block_words(tuple(block.lines))
        if words is None:
            _text_cells(block, walk, found, program.paging, BY_MNEMONIC)
            continue
        for d in words:
            if d is None:  # an invalid encoding: #UD, an exception like any
                walk.after_sti = False
                continue
            walk.step(d, found, program.paging)
    return frozenset(found)


def _text_cells(block: Block, walk: _Walk, found: set[str], paging: bool, table: dict) -> None:
    """A block that does not assemble alone: the table mnemonics its lines name, at the walk's
    FLAGS (its effects on them unknown)."""
    for line in block.lines:
        head = line.split(";", 1)[0].strip().split(" ", 1)[0].lower()
        if head in table:
            found.add(instruction_cell(head, walk.cpl, paging, bool(walk.flags & _FLAGS_TF)))
    walk.after_sti = False


# ---- the tally of a test ---------------------------------------------------------------------

_tally: Counter[str] | None = None  # the test being run in this process (pytest runs one at a time)


@contextmanager
def tally() -> Iterator[Counter[str]]:
    """While the block runs, ``note`` counts into the Counter yielded (the plugin opens one
    around every test call and files it under the test's ``coverage``)."""
    global _tally
    outer, _tally = _tally, Counter()
    try:
        yield _tally
    finally:
        _tally = outer


def note(program: GuestProgram) -> frozenset[str]:
    """Count ``program``'s cells into the open tally (one per example and cell) and label the
    example for hypothesis; returns the cells."""
    found = cells(program)
    if _tally is not None:
        _tally.update(found)
    try:
        from hypothesis import event, target
        from hypothesis.control import currently_in_test_context
    except ImportError:  # pragma: no cover - hypothesis is a dependency
        return found
    if currently_in_test_context():
        event(f"body at CPL {program.cpl}, paging {'on' if program.paging else 'off'}")
        if any(c.endswith("/tf1") for c in found):
            event("instructions run with TF set")
        for kind in ADJACENT_KINDS:
            if adjacent_cell(kind) in found:
                event(kind)
        target(float(sum(c.startswith("insn/") for c in found)), label="instruction cells")
    return found
