"""The P64 assembler: source text (with includes and macros) to a GuestImage, by repeated layout passes."""

from __future__ import annotations

import bisect
import contextlib
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from cffi_core.asm import lexer
from cffi_core.asm.lexer import (
    MASK64,
    Expr,
    SourceError,
    Token,
    UndefinedSymbol,
    evaluate,
    is_register_name,
    parse_expression,
    to_s64,
    tokenize,
)
from cffi_core.asm.syntax import DIRECTIVES, FORMAT_OPERANDS, PSEUDO_OPERANDS, SWAPPED_BRANCHES
from cffi_core.image import MAX_IMAGE_BYTES, MAX_SEGMENTS, GuestImage, InputFileError, Segment, read_input_file
from cffi_core.isa.encoding import EncodingError, encode
from cffi_core.isa.table import BY_MNEMONIC, CONTROL_REGISTERS, Insn

__all__ = ["AssemblyError", "assemble", "assemble_file", "clear_caches", "li_sequence"]

# Limits (docs/limits.md): each turns an input that would exhaust time, memory or the Python
# stack into one ``file:line: message`` error.  The suite's own sources are some 2,300 lines
# (80 KB) in all, with includes two deep and a few dozen macro calls.
MAX_PASSES = 64  # layout passes before giving up on labels that never settle
# Macro calls nested in macro bodies, and .include nested in included files: each level of
# either is a few Python frames, and together with expression nesting (lexer.MAX_DEPTH) they
# must stay well inside Python's default recursion limit of 1000.
MAX_MACRO_DEPTH = 64
MAX_INCLUDE_DEPTH = 32
# Macro calls expanded and .include directives followed in one assembly: a macro calling
# another twice, 30 deep, would expand 2^30 times, and a file including another twice, 30
# deep, would read 2^30 files; these stop such sources early, far above any real use.
MAX_MACRO_EXPANSIONS = 1 << 16
MAX_INCLUDES = 1 << 10
# Source handled in one assembly, counted over every file read (as often as it is included)
# and every line a macro expansion produces.  Assembling costs some 50 us per line and some
# 300 bytes of memory per character of dense data (.byte 1,1,...), and a source that never
# settles is laid out MAX_PASSES times: these bound the worst to seconds and a few hundred
# MiB.  MAX_SOURCE_CHARS is also the largest source file read.
MAX_SOURCE_LINES = 1 << 16
MAX_SOURCE_CHARS = 1 << 20
MAX_FILL = 1 << 28  # one .space/.align may not emit more than this many bytes
# The whole output is at most cffi_core.image.MAX_IMAGE_BYTES in at most MAX_SEGMENTS runs.

_BRANCH_RANGES = {"s16w": (-(1 << 17), (1 << 17) - 4), "s24w": (-(1 << 25), (1 << 25) - 4)}
_DATA_WIDTHS = {".byte": 1, ".half": 2, ".word": 4, ".quad": 8}


MAX_ERRORS = 20
"""Errors one assembly reports at most (then it says how many more lines it did not read)."""


class AssemblyError(ValueError):
    """The errors of an assembly: ``file``, ``line``, ``message`` and ``column`` (1-based, None
    when unknown) are the first's, ``errors`` all of them (the first included, in source order
    within each phase: every line's syntax first, then what laying out and encoding found).
    ``str()`` is exactly ``file:line: message``, one line per error; ``render()`` adds columns and
    the source line with a caret, as a compiler prints them."""

    def __init__(
        self, file: str, line: int, message: str, *, column: int | None = None, source: str | None = None
    ) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message
        self.column = column
        self.source = source
        self.errors: tuple[AssemblyError, ...] = (self,)
        self.truncated = False
        """True when the assembly stopped collecting at ``MAX_ERRORS``."""

    @classmethod
    def of(cls, errors: list[AssemblyError], truncated: bool = False) -> AssemblyError:
        """One exception for several errors: the first, carrying them all."""
        first = errors[0]
        first.errors = tuple(errors)
        first.truncated = truncated
        if len(errors) > 1 or truncated:
            more = "\n".join(f"{e.file}:{e.line}: {e.message}" for e in errors[1:])
            text = f"{first.file}:{first.line}: {first.message}" + (f"\n{more}" if more else "")
            if truncated:
                text += f"\n(stopped after {len(errors)} errors)"
            first.args = (text,)
        return first

    def render(self, prefix: str = "") -> str:
        """Every error as ``prefix`` + ``file:line:column: message``, then its source line and a
        caret under the column when they are known."""
        out = []
        for e in self.errors:
            where = f"{e.file}:{e.line}" + (f":{e.column}" if e.column else "")
            out.append(f"{prefix}{where}: {e.message}")
            if e.source is not None and e.source.strip():
                out.append(f"    {e.source.expandtabs(8)}")
                if e.column:
                    caret = len(e.source[: e.column - 1].expandtabs(8))
                    out.append("    " + " " * caret + "^")
        if self.truncated:
            out.append(f"(stopped after {len(self.errors)} errors)")
        return "\n".join(out)


class _Loc:
    """Where a statement comes from; ``context`` tells which macro expansion, ``dir`` resolves includes.

    One is made for every line read and every line a macro expansion produces: a plain class
    with slots is made several times faster than a frozen dataclass.  Never changed once made.
    """

    __slots__ = ("context", "dir", "file", "line", "text")

    def __init__(self, file: str, line: int, dir: str, context: str = "", text: str | None = None) -> None:
        self.file = file
        self.line = line
        self.dir = dir
        self.context = context
        self.text = text  # the line as read (a macro's body line as expanded): for the column

    def error(self, message: str) -> AssemblyError:
        return AssemblyError(
            self.file, self.line, message + self.context, column=_column(self.text, message), source=self.text
        )

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


def _column(text: str | None, message: str) -> int | None:
    """Where on its line an error points (1-based): the first quoted name or number of the
    message found in the line, else the statement's first character; None without the line."""
    if text is None:
        return None
    code = text.split(";", 1)[0]
    for quoted in re.findall(r"'([^']+)'", message):
        at = code.find(quoted)
        if at >= 0:
            return at + 1
    for number in re.findall(r"(?<![\w.])(?:0x[0-9a-fA-F]+|-?\d+)(?![\w.])", message):
        found = re.search(rf"(?<![\w.]){re.escape(number)}(?![\w.])", code)  # a token, not r2's 2
        if found:
            return found.start() + 1
    stripped = len(code) - len(code.lstrip())
    return stripped + 1 if code.strip() else None


@contextlib.contextmanager
def _at(loc: _Loc) -> Iterator[None]:
    """Turn a SourceError raised while handling ``loc`` into an AssemblyError naming it."""
    try:
        yield
    except SourceError as exc:
        raise loc.error(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Statements


@dataclass(eq=False)
class _Op:
    """One machine instruction; ``mode`` says how ``imm`` is turned into the encoded immediate.

    An _Op belongs to a line's cached plan and is shared by every assembly of that line, so it
    never changes after parsing, except ``words``: the encodings already made, by immediate
    value (an instruction word depends on its fields alone), at most _OP_WORDS of them.
    """

    insn: Insn
    regs: dict[str, int]
    imm: Expr | None = None
    mode: str = "imm"  # imm | target | port_abs | port_off
    words: dict[int, bytes] = field(default_factory=dict, repr=False)


_OP_WORDS = 8


@dataclass
class _Stmt:
    loc: _Loc


@dataclass
class _Label(_Stmt):
    name: str


@dataclass
class _Equ(_Stmt):
    name: str
    expr: Expr


@dataclass
class _Insns(_Stmt):
    ops: tuple[_Op, ...]  # shared by every line of the same text (a cached plan): never changed


@dataclass
class _LoadImm(_Stmt):
    rd: int
    expr: Expr
    size: int = 1  # instructions reserved; only grows between passes, so layout converges


@dataclass
class _Org(_Stmt):
    expr: Expr


@dataclass
class _Align(_Stmt):
    expr: Expr


@dataclass
class _Space(_Stmt):
    count: Expr
    fill: Expr | None


@dataclass
class _Data(_Stmt):
    width: int
    exprs: tuple[Expr, ...]


@dataclass
class _Bytes(_Stmt):
    data: bytes


@dataclass
class _Entry(_Stmt):
    expr: Expr


@dataclass
class _Macro:
    """A macro; each body line is split at its ``\\name`` references (odd items: the names), so
    that an expansion's size is known before it is built."""

    name: str
    params: list[str]
    body: list[tuple[list[str], _Loc]]
    loc: _Loc


_MACRO_REF = re.compile(r"\\(@|[A-Za-z_][A-Za-z0-9_]*)")
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIRST_WORD = re.compile(r"\s*(\.?[A-Za-z_]+)")
_GENERAL_REGISTER = re.compile(r"r([0-9]+)")
_CONTROL_REGISTER = re.compile(r"cr[0-9]+")


@dataclass
class _Operand:
    tokens: list[Token]
    text: str


# ---------------------------------------------------------------------------------------------
# li


def li_sequence(value: int) -> list[tuple[str, bool, int]]:
    """The instructions ``li rd, value`` emits, as (mnemonic, reads r0 instead of rd, imm).

    The shortest of: addi from r0; ori from r0; lui (+ addi) for signed 32-bit values;
    otherwise the upper half by the 32-bit rule, then shli 16 / ori / shli 16 / ori.
    """
    v = to_s64(value)
    if -0x8000 <= v <= 0x7FFF:
        return [("addi", True, v)]
    if 0 <= v <= 0xFFFF:
        return [("ori", True, v)]
    if -(1 << 31) <= v < (1 << 31):
        hi = (v + 0x800) >> 12
        if hi > 0x7FFFF:
            # Rounding up would overflow lui's signed 20 bits (v >= 0x7ffff800); addi's 16-bit
            # immediate can take the whole low 12 bits instead.
            hi = v >> 12
        lo = v - (hi << 12)
        seq = [("lui", False, hi)]
        if lo:
            seq.append(("addi", False, lo))
        return seq
    seq = li_sequence(v >> 32)
    seq.append(("shli", False, 16))
    if mid := (v >> 16) & 0xFFFF:
        seq.append(("ori", False, mid))
    seq.append(("shli", False, 16))
    if low := v & 0xFFFF:
        seq.append(("ori", False, low))
    return seq


# ---------------------------------------------------------------------------------------------
# Front end: lines, includes, macros -> statements


def _split_operands(tokens: list[Token], text: str) -> list[_Operand]:
    """Split at top-level commas (commas inside brackets or parentheses do not count)."""
    if not tokens:
        return []
    groups: list[list[Token]] = [[]]
    depth = 0
    for tok in tokens:
        if tok.kind == "op" and tok.text in "([":
            depth += 1
        elif tok.kind == "op" and tok.text in ")]":
            depth -= 1
        if depth == 0 and tok.is_op(","):
            groups.append([])
        else:
            groups[-1].append(tok)
    out = []
    for g in groups:
        if not g:
            raise SourceError("empty operand")
        out.append(_Operand(g, text[g[0].start : g[-1].end]))
    return out


def _register(operand: _Operand, role: str = "register") -> int:
    toks = operand.tokens
    if len(toks) == 1 and toks[0].kind == "ident":
        name = toks[0].text.lower()
        if name == "zero":
            return 0
        if name == "sp":
            return 15
        if m := _GENERAL_REGISTER.fullmatch(name):
            n = int(m.group(1))
            if n > 15:
                raise SourceError(f"register '{toks[0].text}' does not exist (r0..r15)")
            return n
        if _CONTROL_REGISTER.fullmatch(name):
            raise SourceError(f"expected a general register for {role}, got control register '{toks[0].text}'")
    raise SourceError(f"expected a register for {role}, got '{operand.text}'")


def _is_control_register(operand: _Operand) -> bool:
    toks = operand.tokens
    return len(toks) == 1 and toks[0].kind == "ident" and _CONTROL_REGISTER.fullmatch(toks[0].text.lower()) is not None


def _control_register(operand: _Operand) -> int:
    if not _is_control_register(operand):
        raise SourceError(f"expected a control register, got '{operand.text}'")
    n = int(operand.tokens[0].text[2:])
    if n not in CONTROL_REGISTERS:
        names = ", ".join(f"cr{c}" for c in CONTROL_REGISTERS)
        raise SourceError(f"control register '{operand.text}' does not exist ({names})")
    return n


def _expression(operand: _Operand, what: str = "expression") -> Expr:
    return parse_expression(operand.tokens, what)


def _is_register_token(tok: Token) -> bool:
    return tok.kind == "ident" and is_register_name(tok.text)


def _base_offset(tokens: list[Token], text: str, what: str) -> tuple[int, Expr, bool]:
    """``reg``, ``reg + expr``, ``reg - expr`` or ``expr``: (base, offset expression, had a base)."""
    if tokens and _is_register_token(tokens[0]):
        base = _register(_Operand(tokens[:1], tokens[0].text), f"the {what} base")
        rest = tokens[1:]
        if not rest:
            return base, ("num", 0), True
        if not (rest[0].is_op("+") or rest[0].is_op("-")):
            raise SourceError(f"expected '+' or '-' after the base register in {what} '{text}'")
        # Parse "0 + rest" so that "r1 - 8 + 4" means r1 + (0 - 8 + 4), as it reads.
        zero = Token("num", "0", rest[0].start, rest[0].start, 0)
        return base, parse_expression([zero, *rest], what), True
    return 0, parse_expression(tokens, what), False


def _memory(operand: _Operand) -> tuple[int, Expr]:
    toks = operand.tokens
    if not (toks[0].is_op("[") and toks[-1].is_op("]")) or len(toks) < 3:
        raise SourceError(f"expected a memory operand like [reg + offset], got '{operand.text}'")
    base, offset, _ = _base_offset(toks[1:-1], operand.text, "memory operand")
    return base, offset


def _op(mnemonic: str, imm: Expr | None = None, mode: str = "imm", **regs: int) -> _Op:
    return _Op(BY_MNEMONIC[mnemonic], regs, imm, mode)


def _parse_instruction(insn: Insn, operands: list[_Operand]) -> _Op:
    specs = FORMAT_OPERANDS[insn.fmt]
    if len(operands) != len(specs):
        shape = f" ({insn.format.syntax})" if specs else ""
        raise SourceError(f"{insn.mnemonic} takes {len(specs)} operand(s){shape}, got {len(operands)}")
    op = _Op(insn, {})
    for spec, operand in zip(specs, operands, strict=True):
        if spec.kind == "reg":
            op.regs[spec.role] = _register(operand, spec.role)
        elif spec.kind == "cr":
            op.regs["crn"] = _control_register(operand)
        elif spec.kind in ("imm", "target"):
            if operand.tokens[0].is_op("["):
                raise SourceError(
                    f"{insn.mnemonic}: expected a value for {spec.template}, got memory operand '{operand.text}'"
                )
            op.imm, op.mode = _expression(operand, spec.template), spec.kind
        elif spec.kind == "mem":
            op.regs[spec.role], op.imm = _memory(operand)
        elif spec.kind == "port":
            base, op.imm, had_base = _base_offset(operand.tokens, operand.text, "port")
            op.regs[spec.role] = base
            op.mode = "port_off" if had_base else "port_abs"
    return op


def _parse_pseudo(name: str, operands: list[_Operand]) -> tuple[type[_Stmt], tuple[object, ...]]:
    """The statement a pseudo-instruction line makes: its class and its fields after ``loc``."""
    template = PSEUDO_OPERANDS[name]
    want = len(template.split(",")) if template else 0
    if len(operands) != want:
        shape = f" ({template})" if template else ""
        raise SourceError(f"{name} takes {want} operand(s){shape}, got {len(operands)}")
    zero: Expr = ("num", 0)
    if name == "nop":
        return _Insns, ((_op("addi", zero, rd=0, rs1=0),),)
    if name == "mov":
        dst, src = operands
        if _is_control_register(dst):
            return _Insns, ((_op("mtcr", crn=_control_register(dst), rs1=_register(src, "the source")),),)
        if _is_control_register(src):
            return _Insns, ((_op("mfcr", rd=_register(dst, "the destination"), crn=_control_register(src)),),)
        return _Insns, ((_op("addi", zero, rd=_register(dst, "rd"), rs1=_register(src, "rs")),),)
    if name in ("not", "neg"):
        rd, rs = _register(operands[0], "rd"), _register(operands[1], "rs")
        ops = [_op("sub", rd=rd, rs1=0, rs2=rs)]
        if name == "not":  # ~x == -x - 1
            ops.append(_op("addi", ("num", -1), rd=rd, rs1=rd))
        return _Insns, (tuple(ops),)
    if name in ("beqz", "bnez"):
        rs = _register(operands[0], "rs")
        target = _expression(operands[1], "target")
        return _Insns, ((_op("beq" if name == "beqz" else "bne", target, "target", rs1=rs, rs2=0),),)
    if name in SWAPPED_BRANCHES:
        a, b = _register(operands[0], "rs1"), _register(operands[1], "rs2")
        target = _expression(operands[2], "target")
        return _Insns, ((_op(SWAPPED_BRANCHES[name], target, "target", rs1=b, rs2=a),),)
    # li / la
    return _LoadImm, (_register(operands[0], "rd"), _expression(operands[1], "value"))


# ---- one line: a plan from its text alone, then the steps that need the assembly's state ----
#
# What a line means depends on its text alone, except for the steps that read or change the
# assembly's state: defining a symbol (a second definition is an error), .entry (given once),
# .include (reads a file) and a macro call (the macros defined so far).  _plan does everything
# else -- tokens, operands, expressions, instructions, and the first error they hold -- and
# _Frontend.line takes the state steps in the order the line would have, raising the plan's
# error where parsing would have raised it, so a line's first error is the same either way.
# The suite assembles the same lines again and again (every generated guest includes the same
# library files, and every call of a macro with the same arguments expands to the same text),
# so plans are cached by text: a plan holds nothing that depends on where the line is or what
# came before it.  The cache holds at most _PLAN_CACHE_SIZE plans (least recently used
# first out) of lines of at most _PLAN_MAX_CHARS characters; longer lines, rare and costly to
# keep, are parsed every time.  That bounds it to some 17 MiB (lines of dense data, such as
# ".byte 1,2,3,..."; instruction lines take some 1 KB a plan), and the suite's own sources,
# some 4,000 distinct lines, fit.  Every source limit (docs/limits.md) still counts each line
# as it is assembled, cached or not; files are read at every .include (see _Frontend.include).
_PLAN_CACHE_SIZE = 4096
_PLAN_MAX_CHARS = 128


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one line does apart from the assembly's state.

    ``head`` is the line's first word (``.macro``/``.endm`` lines are the caller's); ``labels``
    the labels it defines, in order; then by ``kind``: ``""`` nothing more; ``error`` raise
    ``error``; ``stmt`` append ``make(loc, *args)``; ``equ`` define ``name``, then raise
    ``error`` if any, else append an _Equ of ``args[0]``; ``entry`` an _Entry of ``args[0]``
    unless one was given; ``include`` include the file ``name``; ``call`` expand macro ``name``
    with the argument texts ``args``, or raise ``error`` if no macro has that name.
    """

    head: str
    labels: tuple[str, ...] = ()
    kind: str = ""
    name: str = ""
    make: type[_Stmt] | None = None
    args: tuple[object, ...] = ()
    error: str | None = None


def _make_plan(text: str) -> _Plan:
    head = _first_word(text)
    if head in (".macro", ".endm"):
        return _Plan(head)
    labels: list[str] = []
    try:
        tokens, _ = tokenize(text)
        pos = 0
        while pos + 1 < len(tokens) and tokens[pos].kind == "ident" and tokens[pos + 1].is_op(":"):
            labels.append(tokens[pos].text)
            pos += 2
        rest = tokens[pos:]
        if not rest:
            return _Plan(head, tuple(labels))
        first = rest[0]
        if first.kind != "ident":
            raise SourceError(f"expected an instruction, directive or label, got '{first.text}'")
        if len(rest) > 1 and rest[1].is_op("="):
            return _equ_plan(head, tuple(labels), first.text, rest[2:])
        operands = _split_operands(rest[1:], text)
        name = first.text.lower()
        if name in DIRECTIVES:
            return _directive_plan(head, tuple(labels), name, operands)
        if name in BY_MNEMONIC:
            return _Plan(
                head, tuple(labels), "stmt", make=_Insns, args=((_parse_instruction(BY_MNEMONIC[name], operands),),)
            )
        if name in PSEUDO_OPERANDS:
            make, args = _parse_pseudo(name, operands)
            return _Plan(head, tuple(labels), "stmt", make=make, args=args)
        # A macro's name is never a directive's or an instruction's (_define_macro refuses
        # those), so looking it up last finds what looking it up first would.
        error = (
            f"bad label '{first.text}'"
            if len(rest) > 1 and rest[1].is_op(":")
            else f"unknown instruction '{first.text}'"
        )
        return _Plan(head, tuple(labels), "call", name, args=tuple(o.text for o in operands), error=error)
    except SourceError as exc:
        return _Plan(head, tuple(labels), "error", error=str(exc))


def _equ_plan(head: str, labels: tuple[str, ...], name: str, tokens: list[Token]) -> _Plan:
    """``name = value`` and ``.equ name, value``: the name is defined before the value is parsed."""
    try:
        expr = parse_expression(tokens, f"value of '{name}'")
    except SourceError as exc:
        return _Plan(head, labels, "equ", name, error=str(exc))
    return _Plan(head, labels, "equ", name, args=(expr,))


def _directive_plan(head: str, labels: tuple[str, ...], name: str, operands: list[_Operand]) -> _Plan:
    def count(lo: int, hi: int, shape: str) -> None:
        if not lo <= len(operands) <= hi:
            raise SourceError(f"{name} takes {shape}, got {len(operands)} operand(s)")

    def stmt(make: type[_Stmt], *args: object) -> _Plan:
        return _Plan(head, labels, "stmt", make=make, args=args)

    if name == ".include":
        if len(operands) != 1 or len(operands[0].tokens) != 1 or operands[0].tokens[0].kind != "str":
            raise SourceError('.include takes one string: .include "file"')
        raw = operands[0].tokens[0].value
        assert isinstance(raw, bytes)
        return _Plan(head, labels, "include", raw.decode(errors="replace"))
    if name in (".org", ".align", ".entry"):
        count(1, 1, "one value")
        expr = _expression(operands[0])
        if name == ".entry":
            return _Plan(head, labels, "entry", args=(expr,))
        return stmt(_Org if name == ".org" else _Align, expr)
    if name in _DATA_WIDTHS:
        count(1, 1 << 30, "one or more values")
        return stmt(_Data, _DATA_WIDTHS[name], tuple(_expression(o) for o in operands))
    if name in (".ascii", ".asciz"):
        count(1, 1 << 30, "one or more strings")
        data = bytearray()
        for o in operands:
            if len(o.tokens) != 1 or o.tokens[0].kind != "str":
                raise SourceError(f"{name} takes strings in double quotes, got '{o.text}'")
            value = o.tokens[0].value
            assert isinstance(value, bytes)
            data += value + (b"\0" if name == ".asciz" else b"")
        return stmt(_Bytes, bytes(data))
    if name == ".space":
        count(1, 2, "a size and an optional fill byte")
        fill = _expression(operands[1], "fill byte") if len(operands) == 2 else None
        return stmt(_Space, _expression(operands[0], "size"), fill)
    if name == ".equ":
        count(2, 2, "a name and a value: .equ name, value")
        toks = operands[0].tokens
        if len(toks) != 1 or toks[0].kind != "ident":
            raise SourceError(f".equ needs a symbol name, got '{operands[0].text}'")
        return _equ_plan(head, labels, toks[0].text, operands[1].tokens)
    if name in (".global", ".globl"):
        count(1, 1 << 30, "one or more symbol names")
        for o in operands:
            if len(o.tokens) != 1 or o.tokens[0].kind != "ident":
                raise SourceError(f"{name} takes symbol names, got '{o.text}'")
        return _Plan(head, labels)
    # .macro/.endm not at the start of a line (e.g. after a label)
    raise SourceError(f"'{name}' must start its line")


@functools.lru_cache(maxsize=_PLAN_CACHE_SIZE)
def _cached_plan(text: str, max_depth: int) -> _Plan:
    return _make_plan(text)  # max_depth (lexer.MAX_DEPTH, which parsing reads) keys the cache


def _plan(text: str) -> _Plan:
    """The plan of one line, cached.  An expression's nesting limit (lexer.MAX_DEPTH) is part
    of the key: a plan made under another limit may hold an error, or lack one, that this
    limit would not."""
    if len(text) > _PLAN_MAX_CHARS:
        return _make_plan(text)
    return _cached_plan(text, lexer.MAX_DEPTH)


def _note(errors: list[AssemblyError], error: AssemblyError) -> None:
    """Add an error of the emit pass; at MAX_ERRORS, raise them all."""
    errors.append(error)
    if len(errors) >= MAX_ERRORS:
        raise AssemblyError.of(errors, truncated=True)


class _StopReading(Exception):
    """Stop reading the source: MAX_ERRORS errors found (``truncated``), or a limit passed."""

    def __init__(self, truncated: bool) -> None:
        super().__init__()
        self.truncated = truncated


class _Limit(SourceError):
    """A limit of the whole assembly passed (source size, includes, macro expansions): reported
    once, at the line where it happened, and the reading stops there."""


class _Frontend:
    """Reads lines, expands includes and macros, and parses each line into statements."""

    def __init__(self) -> None:
        self.stmts: list[_Stmt] = []
        self.macros: dict[str, _Macro] = {}
        self.defined: dict[str, _Loc] = {}
        self.entry: _Loc | None = None
        self.include_stack: list[str] = []
        self.include_depth = 0
        self.includes = 0
        self.expansions = 0
        self.lines_read = 0
        self.chars_read = 0
        self.errors: list[AssemblyError] = []

    # ---- sources ----

    def take(self, lines: int, chars: int) -> str | None:
        """Count source handled; the limit it would pass (MAX_SOURCE_LINES/CHARS), or None."""
        self.lines_read += lines
        self.chars_read += chars
        if self.lines_read > MAX_SOURCE_LINES:
            return f"more than the limit of {MAX_SOURCE_LINES} source lines in one assembly"
        if self.chars_read > MAX_SOURCE_CHARS:
            return f"more than the limit of {MAX_SOURCE_CHARS} source characters in one assembly"
        return None

    def source(self, text: str, display: str, directory: str, real: str | None, depth: int = 0) -> None:
        """Handle a file's text; ``depth`` is the macro nesting of the .include that read it."""
        if problem := self.take(0, len(text)):  # characters first: splitting costs more than the text
            raise _Limit(problem)
        split = text.splitlines()
        if problem := self.take(len(split), 0):
            raise _Limit(problem)
        if real is not None:
            self.include_stack.append(real)
        self.lines([(line, _Loc(display, n, directory, text=line)) for n, line in enumerate(split, 1)], depth)
        if real is not None:
            self.include_stack.pop()

    def include(self, rel: str, loc: _Loc, depth: int) -> None:
        path = os.path.join(loc.dir, rel) if loc.dir else rel
        display = os.path.normpath(path)
        real = os.path.realpath(path)
        if real in self.include_stack:
            cycle = [*self.include_stack[self.include_stack.index(real) :], real]
            raise SourceError("include cycle: " + " -> ".join(os.path.basename(p) for p in cycle))
        if self.include_depth >= MAX_INCLUDE_DEPTH:
            raise _Limit(f"cannot include '{rel}': includes nested more than {MAX_INCLUDE_DEPTH} deep")
        self.includes += 1
        if self.includes > MAX_INCLUDES:
            raise _Limit(f"cannot include '{rel}': more than the limit of {MAX_INCLUDES} includes in one assembly")
        # The file is read at every .include, never from a cache: what is assembled is what the
        # file holds now, and a file that is no longer a readable regular file is an error now.
        try:
            text = _read_source(path)
        except (InputFileError, OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot include '{rel}': {_reason(exc)}") from None
        self.include_depth += 1
        try:
            self.source(text, display, os.path.dirname(path), real, depth)
        except SourceError as exc:  # the included text as a whole is too much: say which
            raise SourceError(f"cannot include '{rel}': {exc}") from None
        self.include_depth -= 1

    def lines(self, lines: list[tuple[str, _Loc]], depth: int) -> None:
        i = 0
        while i < len(lines):
            text, loc = lines[i]
            plan = _plan(text)
            if plan.head == ".macro":
                try:
                    i = self._define_macro(lines, i)
                except AssemblyError as exc:  # the rest of these lines is the macro's: stop here
                    self.fail(exc)
                    return
                continue
            if plan.head == ".endm":
                self.fail(loc.error("'.endm' without '.macro'"))
            else:
                try:
                    self.line(plan, loc, depth)
                except _Limit as exc:
                    self.fail(loc.error(str(exc)))
                    raise _StopReading(truncated=False) from None
                except SourceError as exc:
                    self.fail(loc.error(str(exc)))
            i += 1

    def fail(self, error: AssemblyError) -> None:
        """Note an error of a line and go on with the next (every line's error is reported,
        up to MAX_ERRORS; then ``_StopReading`` ends the reading)."""
        self.errors.extend(error.errors)
        if len(self.errors) >= MAX_ERRORS:
            raise _StopReading(truncated=True)

    def _define_macro(self, lines: list[tuple[str, _Loc]], i: int) -> int:
        text, loc = lines[i]
        with _at(loc):
            tokens, _ = tokenize(text)
            args = [t for t in tokens[1:] if not t.is_op(",")]
            if not args or args[0].kind != "ident":
                raise SourceError(".macro needs a name: .macro name arg1, arg2")
            name = args[0].text
            low = name.lower()
            if low in BY_MNEMONIC or low in PSEUDO_OPERANDS or low in DIRECTIVES:
                raise SourceError(f"macro name '{name}' is already an instruction or directive")
            if low in self.macros:
                raise SourceError(f"macro '{name}' already defined at {self.macros[low].loc}")
            params = []
            for t in args[1:]:
                if t.kind != "ident" or not _PARAMETER.fullmatch(t.text):
                    raise SourceError(f"bad macro parameter '{t.text}'")
                if t.text in params:
                    raise SourceError(f"macro parameter '{t.text}' given twice")
                params.append(t.text)
        body = []
        j = i + 1
        while j < len(lines):
            btext, bloc = lines[j]
            head = _first_word(btext)
            if head == ".endm":
                self.macros[low] = _Macro(name, params, body, loc)
                return j + 1
            if head == ".macro":
                raise bloc.error("nested '.macro' (macros cannot define macros)")
            body.append((_MACRO_REF.split(btext), bloc))
            j += 1
        raise loc.error(f"unterminated '.macro {name}' (no '.endm')")

    def _expand(self, macro: _Macro, arguments: tuple[str, ...], loc: _Loc, depth: int) -> None:
        if len(arguments) != len(macro.params):
            raise SourceError(f"macro '{macro.name}' takes {len(macro.params)} argument(s), got {len(arguments)}")
        if depth >= MAX_MACRO_DEPTH:
            raise _Limit(f"macro '{macro.name}': expansion nested too deeply (recursive macro?)")
        self.expansions += 1
        if self.expansions > MAX_MACRO_EXPANSIONS:
            raise _Limit(
                f"macro '{macro.name}': more than the limit of {MAX_MACRO_EXPANSIONS} macro expansions in one assembly"
            )
        values = dict(zip(macro.params, arguments, strict=True))
        values["@"] = str(self.expansions)  # \@: a number unique to this expansion, for local labels
        # Odd items are the names after a backslash: a parameter's argument, or the text as written.
        texts = [
            [values.get(part, "\\" + part) if k % 2 else part for k, part in enumerate(parts)]
            for parts, _ in macro.body
        ]
        if problem := self.take(len(texts), sum(len(part) for parts in texts for part in parts)):
            raise _Limit(f"macro '{macro.name}': {problem}")
        context = f" (in macro '{macro.name}' called at {loc}{loc.context})"
        expanded = [
            (expanded := "".join(parts), _Loc(bloc.file, bloc.line, bloc.dir, context, expanded))
            for parts, (_, bloc) in zip(texts, macro.body, strict=True)
        ]
        self.lines(expanded, depth + 1)

    # ---- one line ----

    def define(self, name: str, loc: _Loc) -> None:
        if name == "." or is_register_name(name):
            raise SourceError(f"'{name}' is a reserved name and cannot be a symbol")
        if name in self.defined:
            raise SourceError(f"symbol '{name}' already defined at {self.defined[name]}")
        self.defined[name] = loc

    def line(self, plan: _Plan, loc: _Loc, depth: int) -> None:
        """Take one line's plan at ``loc``: its state steps, in the line's order (see _plan)."""
        for name in plan.labels:
            self.define(name, loc)
            self.stmts.append(_Label(loc, name))
        kind = plan.kind
        if kind == "stmt":
            assert plan.make is not None
            self.stmts.append(plan.make(loc, *plan.args))
        elif kind == "error":
            raise SourceError(plan.error)
        elif kind == "equ":
            self.define(plan.name, loc)
            if plan.error is not None:
                raise SourceError(plan.error)
            self.stmts.append(_Equ(loc, plan.name, *plan.args))
        elif kind == "entry":
            if self.entry is not None:
                raise SourceError(f".entry already given at {self.entry}")
            self.entry = loc
            self.stmts.append(_Entry(loc, *plan.args))
        elif kind == "include":
            self.include(plan.name, loc, depth)
        elif kind == "call":
            macro = self.macros.get(plan.name)
            if macro is None:
                raise SourceError(plan.error)
            self._expand(macro, plan.args, loc, depth)


def _read_source(path: str) -> str:
    """A source file's text: a regular UTF-8 file of at most MAX_SOURCE_CHARS bytes."""
    return read_input_file(path, MAX_SOURCE_CHARS, "a source file").decode("utf-8")


def _reason(exc: Exception) -> str:
    if isinstance(exc, InputFileError):
        return exc.reason  # the error names the file already
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _first_word(text: str) -> str:
    m = _FIRST_WORD.match(text)
    return m.group(1).lower() if m else ""


# ---------------------------------------------------------------------------------------------
# Back end: layout passes and emission


class _Memory:
    """Emitted bytes as sorted, merged, non-overlapping runs."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.data: list[bytearray] = []

    def containing(self, address: int) -> int | None:
        i = bisect.bisect_right(self.starts, address) - 1
        return i if i >= 0 and address < self.ends[i] else None

    def emit(self, address: int, data: bytes) -> None:
        if not data:
            return
        end = address + len(data)
        if address < 0 or end > MASK64 + 1:
            raise SourceError(
                f"{len(data)} byte(s) at {address & MASK64:#x} run past the end of the 64-bit address space"
            )
        if self.ends and self.ends[-1] == address:
            # The usual case, code laid out in order: the bytes extend the last run, and no run
            # lies after it to overlap or merge with.
            self.data[-1] += data
            self.ends[-1] = end
            return
        i = bisect.bisect_right(self.starts, address) - 1
        for j in (i, i + 1):
            if 0 <= j < len(self.starts) and self.starts[j] < end and address < self.ends[j]:
                lo, hi = max(address, self.starts[j]), min(end, self.ends[j])
                raise SourceError(
                    f"bytes at {lo:#x}-{hi - 1:#x} overlap bytes already emitted at {self.starts[j]:#x}-{self.ends[j] - 1:#x}"
                )
        if i >= 0 and self.ends[i] == address:
            self.data[i] += data
            self.ends[i] = end
            if i + 1 < len(self.starts) and self.starts[i + 1] == end:
                self.data[i] += self.data.pop(i + 1)
                self.ends[i] = self.ends.pop(i + 1)
                self.starts.pop(i + 1)
        elif i + 1 < len(self.starts) and self.starts[i + 1] == end:
            self.data[i + 1][:0] = data
            self.starts[i + 1] = address
        else:
            if len(self.starts) == MAX_SEGMENTS:
                raise SourceError(
                    f"bytes at {address:#x} would start a new segment, more than the limit of {MAX_SEGMENTS} segments"
                )
            self.starts.insert(i + 1, address)
            self.ends.insert(i + 1, end)
            self.data.insert(i + 1, bytearray(data))


class _Layout:
    """Runs layout passes until every symbol is stable, then a final pass that emits bytes."""

    def __init__(self, stmts: list[_Stmt], origin: int) -> None:
        self.stmts = stmts
        self.origin = origin & MASK64
        self.prev: dict[str, int] = {}
        self.cur: dict[str, int] = {}
        self.grew = False  # a li reserved more room during the current layout pass
        self.too_big: AssemblyError | None = None  # the first statement past a size limit in this pass

    def lookup(self, name: str) -> int:
        if name in self.cur:
            return self.cur[name]
        if name in self.prev:
            return self.prev[name]
        raise UndefinedSymbol(name)

    def value(self, expr: Expr, dot: int, final: bool) -> int | None:
        """Evaluate; in a layout pass any failure means "not known yet" (None)."""
        if final:
            return evaluate(expr, self.lookup, dot)
        try:
            return evaluate(expr, self.lookup, dot)
        except SourceError:
            return None

    def run(self) -> tuple[_Memory, dict[str, int], int | None]:
        for _ in range(MAX_PASSES):
            symbols = self.layout_pass()
            # Settled when nothing moved: the emit pass then sees exactly this pass's layout.
            settled = symbols == self.prev and not self.grew
            self.prev = symbols
            if settled:
                break
        else:
            moving = self._moving_symbol()
            raise moving.error("symbol addresses do not settle (each layout pass moves them again)")
        if self.too_big is not None:  # sizes are final: refuse before a byte is allocated
            raise self.too_big
        memory = _Memory()
        entry = self.emit_pass(memory)
        return memory, self.cur, entry

    def _moving_symbol(self) -> _Loc:
        before = dict(self.prev)
        after = self.layout_pass()
        for stmt in self.stmts:
            if isinstance(stmt, (_Label, _Equ)) and before.get(stmt.name) != after.get(stmt.name):
                return stmt.loc
        return self.stmts[0].loc

    def layout_pass(self) -> dict[str, int]:
        self.cur = cur = {}
        self.grew = False
        self.too_big = None
        lc = self.origin
        total = 0  # bytes emitted so far: the image's size
        for stmt in self.stmts:
            # Dispatch on the exact class (no statement class has subclasses), commonest first.
            kind = type(stmt)
            if kind is _Insns:
                n = 4 * len(stmt.ops)
            elif kind is _Label:
                cur[stmt.name] = lc
                continue
            elif kind is _Equ:
                v = self.value(stmt.expr, lc, False)
                if v is not None:
                    cur[stmt.name] = v
                continue
            elif kind is _Org:
                v = self.value(stmt.expr, lc, False)
                if v is not None:
                    lc = v & MASK64
                continue
            else:
                n = self.size(stmt, lc, False)
            total += n
            if n and self.too_big is None:
                if kind in (_Align, _Space) and n > MAX_FILL:
                    self.too_big = stmt.loc.error(f"{n} bytes of fill is more than the limit {MAX_FILL}")
                elif total > MAX_IMAGE_BYTES:
                    self.too_big = stmt.loc.error(
                        f"the output grows to {total} bytes here, more than the limit of {MAX_IMAGE_BYTES} bytes of an image"
                    )
            lc += n
        return cur

    def size(self, stmt: _Stmt, lc: int, final: bool) -> int:
        if isinstance(stmt, _Insns):
            return 4 * len(stmt.ops)
        if isinstance(stmt, _LoadImm):
            v = self.value(stmt.expr, lc, final)
            if v is not None and (need := _li_length(v)) > stmt.size:
                stmt.size = need
                self.grew = True
            return 4 * stmt.size
        if isinstance(stmt, _Data):
            return stmt.width * len(stmt.exprs)
        if isinstance(stmt, _Bytes):
            return len(stmt.data)
        if isinstance(stmt, _Align):
            n = self.value(stmt.expr, lc, final)
            if n is None or n <= 0 or n & (n - 1):
                if final:
                    raise SourceError(f".align {n}: the alignment must be a power of two")
                return 0
            return -lc % n
        if isinstance(stmt, _Space):
            n = self.value(stmt.count, lc, final)
            if n is None or n < 0:
                if final:
                    raise SourceError(f".space {n}: the size may not be negative")
                return 0
            return n
        return 0

    def emit_pass(self, memory: _Memory) -> int | None:
        self.cur = cur = {}
        lookup = self.lookup
        lc = self.origin
        entry = None
        stmt = None
        errors: list[AssemblyError] = []
        try:
            for stmt in self.stmts:
                kind = type(stmt)
                if kind is _Insns:
                    ops = stmt.ops
                    try:
                        if len(ops) == 1:
                            data = self.encode_op(ops[0], lc)
                        else:
                            data = b"".join(self.encode_op(op, lc + 4 * k) for k, op in enumerate(ops))
                    except SourceError as exc:  # its size is known: note it and go on with the next
                        _note(errors, stmt.loc.error(str(exc)))
                        lc += 4 * len(ops)
                        continue
                    memory.emit(lc, data)
                    lc += len(data)
                elif kind is _Label:
                    if lc > MASK64:
                        raise SourceError(f"label '{stmt.name}' is past the end of the 64-bit address space")
                    cur[stmt.name] = lc
                elif kind is _Equ:
                    cur[stmt.name] = evaluate(stmt.expr, lookup, lc)
                elif kind is _Org:
                    target = evaluate(stmt.expr, lookup, lc) & MASK64
                    i = memory.containing(target)
                    if i is not None:
                        raise SourceError(
                            f".org {target:#x} moves back into bytes already emitted "
                            f"({memory.starts[i]:#x}-{memory.ends[i] - 1:#x})"
                        )
                    lc = target
                elif kind is _Entry:
                    entry = evaluate(stmt.expr, lookup, lc) & MASK64
                elif kind is _LoadImm:
                    try:
                        data = self.encode(stmt, lc)
                    except SourceError as exc:  # its size is known too
                        _note(errors, stmt.loc.error(str(exc)))
                        lc += 4 * stmt.size
                        continue
                    memory.emit(lc, data)
                    lc += len(data)
                else:
                    data = self.encode(stmt, lc)
                    memory.emit(lc, data)
                    lc += len(data)
        except SourceError as exc:  # the statement being emitted is the one to blame
            assert stmt is not None
            errors.append(stmt.loc.error(str(exc)))  # where the next one starts is unknown: stop
        if errors:
            raise AssemblyError.of(errors)
        return entry

    def encode(self, stmt: _Stmt, pc: int) -> bytes:
        if isinstance(stmt, _Insns):
            return b"".join(self.encode_op(op, pc + 4 * k) for k, op in enumerate(stmt.ops))
        if isinstance(stmt, _LoadImm):
            return _li_bytes(stmt.rd, evaluate(stmt.expr, self.lookup, pc), stmt.size)
        if isinstance(stmt, _Data):
            out = bytearray()
            bits = 8 * stmt.width
            for expr in stmt.exprs:
                v = evaluate(expr, self.lookup, pc)
                if not -(1 << (bits - 1)) <= v < (1 << bits):
                    raise SourceError(f"value {v} does not fit in {bits} bits")
                out += (v & ((1 << bits) - 1)).to_bytes(stmt.width, "little")
            return bytes(out)
        if isinstance(stmt, _Bytes):
            return stmt.data
        if isinstance(stmt, (_Align, _Space)):
            n = self.size(stmt, pc, True)  # at most MAX_FILL: the settled layout pass checked it
            fill = 0
            if isinstance(stmt, _Space) and stmt.fill is not None:
                fill = evaluate(stmt.fill, self.lookup, pc)
                if not -128 <= fill <= 255:
                    raise SourceError(f"fill value {fill} does not fit in a byte")
            return bytes([fill & 0xFF]) * n
        raise AssertionError(stmt)

    def encode_op(self, op: _Op, pc: int) -> bytes:
        """The instruction word's four bytes (little-endian)."""
        imm = 0
        if op.imm is not None:
            v = evaluate(op.imm, self.lookup, pc)
            if op.mode == "imm":
                imm = v
            elif op.mode == "target":
                mn = op.insn.mnemonic
                target = v & MASK64
                offset = to_s64(target - pc)
                lo, hi = _BRANCH_RANGES[op.insn.format.imm or ""]
                if offset % 4:
                    raise SourceError(f"{mn}: target {target:#x} is not a multiple of 4 bytes from {pc:#x}")
                if not lo <= offset <= hi:
                    raise SourceError(f"{mn}: target {target:#x} is out of range (offset {offset}, range {lo}..{hi})")
                imm = offset
            elif op.mode == "port_abs":
                if not 0 <= v <= 0xFFFF:
                    raise SourceError(f"{op.insn.mnemonic}: port {v} out of range 0..0xffff")
                imm = v
            else:  # port_off
                if not -0xFFFF <= v <= 0xFFFF:
                    raise SourceError(f"{op.insn.mnemonic}: port offset {v} out of range -0xffff..0xffff")
                imm = v & 0xFFFF  # the machine adds imm16 to the base modulo 2^16
        word = op.words.get(imm)
        if word is None:
            try:
                word = encode(op.insn, imm=imm, **op.regs).to_bytes(4, "little")
            except EncodingError as exc:
                raise SourceError(str(exc)) from None
            if len(op.words) < _OP_WORDS:
                op.words[imm] = word
        return word


@functools.lru_cache(maxsize=4096)
def _li_length(value: int) -> int:
    """How many instructions ``li rd, value`` needs (li_sequence's length)."""
    return len(li_sequence(value))


@functools.lru_cache(maxsize=4096)
def _li_bytes(rd: int, value: int, size: int) -> bytes:
    """The bytes of ``li rd, value`` in ``size`` reserved instructions."""
    words = []
    for mnemonic, from_zero, imm in li_sequence(value):
        rs1 = 0 if from_zero else rd
        words.append(encode(mnemonic, rd=rd, rs1=rs1, imm=imm))
    if len(words) > size:
        raise SourceError("internal error: li grew after layout converged")
    # A li whose value shrank after an earlier pass keeps its reserved size: pad with nops.
    words += [encode("addi", rd=0, rs1=0, imm=0)] * (size - len(words))
    return b"".join(w.to_bytes(4, "little") for w in words)


# ---------------------------------------------------------------------------------------------
# Public API


def _assemble(text: str, display: str, directory: str, real: str | None, origin: int) -> GuestImage:
    front = _Frontend()
    try:
        front.source(text, display, directory, real)
    except SourceError as exc:  # the text as a whole is past a limit: no line to blame
        raise AssemblyError(display, 0, str(exc)) from None
    except _StopReading as stop:
        raise AssemblyError.of(front.errors, truncated=stop.truncated) from None
    if front.errors:  # laying out what is left would only add errors these explain
        raise AssemblyError.of(front.errors)
    if not front.stmts:
        return GuestImage((), origin & MASK64, {}, name=display)
    layout = _Layout(front.stmts, origin)
    memory, symbols, entry = layout.run()
    if entry is None:
        if "_start" in symbols:
            entry = symbols["_start"] & MASK64
        else:
            entry = memory.starts[0] if memory.starts else origin & MASK64
    constants = frozenset(s.name for s in front.stmts if isinstance(s, _Equ))
    segments = tuple(Segment(a, bytes(d)) for a, d in zip(memory.starts, memory.data, strict=True))
    return GuestImage(segments, entry, {k: v & MASK64 for k, v in symbols.items()}, name=display, constants=constants)


def clear_caches() -> None:
    """Forget every line's parse and every instruction's encoding kept from earlier assemblies.

    Results never depend on these caches (a line's plan and an instruction word depend on its
    text alone); this is for measuring an assembly from nothing, and for freeing their memory.
    """
    _cached_plan.cache_clear()  # the instruction words kept are the cached plans' (_Op.words)
    _li_length.cache_clear()
    _li_bytes.cache_clear()


def assemble(text: str, *, filename: str = "<string>", origin: int = 0) -> GuestImage:
    """Assemble source text.  ``filename`` names it in errors; ``.include`` paths are relative to
    its directory (the current directory for ``<string>``).  ``origin`` is the initial location."""
    directory = "" if filename.startswith("<") else os.path.dirname(filename)
    real = None if filename.startswith("<") else os.path.realpath(filename)
    return _assemble(text, filename, directory, real, origin)


def assemble_file(path: str | os.PathLike[str], *, origin: int = 0) -> GuestImage:
    """Assemble a ``.s`` file; errors name it as given."""
    name = os.fspath(path)
    try:
        text = _read_source(name)
    except (InputFileError, OSError, UnicodeDecodeError) as exc:
        raise AssemblyError(name, 0, f"cannot read: {_reason(exc)}") from None
    return _assemble(text, name, os.path.dirname(name), os.path.realpath(name), origin)
