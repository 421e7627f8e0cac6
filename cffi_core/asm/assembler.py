"""The P64 assembler: source text (with includes and macros) to a GuestImage, by repeated layout passes."""

from __future__ import annotations

import bisect
import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

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

__all__ = ["AssemblyError", "assemble", "assemble_file", "li_sequence"]

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


class AssemblyError(ValueError):
    """One error in the source; ``str()`` is exactly ``file:line: message``."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True)
class _Loc:
    """Where a statement comes from; ``context`` tells which macro expansion, ``dir`` resolves includes."""

    file: str
    line: int
    dir: str
    context: str = ""

    def error(self, message: str) -> AssemblyError:
        return AssemblyError(self.file, self.line, message + self.context)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@contextlib.contextmanager
def _at(loc: _Loc) -> Iterator[None]:
    """Turn a SourceError raised while handling ``loc`` into an AssemblyError naming it."""
    try:
        yield
    except SourceError as exc:
        raise loc.error(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Statements


@dataclass
class _Op:
    """One machine instruction; ``mode`` says how ``imm`` is turned into the encoded immediate."""

    insn: Insn
    regs: dict[str, int]
    imm: Expr | None = None
    mode: str = "imm"  # imm | target | port_abs | port_off


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
    ops: list[_Op]


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
    exprs: list[Expr]


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
        if m := re.fullmatch(r"r([0-9]+)", name):
            n = int(m.group(1))
            if n > 15:
                raise SourceError(f"register '{toks[0].text}' does not exist (r0..r15)")
            return n
        if re.fullmatch(r"cr[0-9]+", name):
            raise SourceError(f"expected a general register for {role}, got control register '{toks[0].text}'")
    raise SourceError(f"expected a register for {role}, got '{operand.text}'")


def _is_control_register(operand: _Operand) -> bool:
    toks = operand.tokens
    return len(toks) == 1 and toks[0].kind == "ident" and re.fullmatch(r"cr[0-9]+", toks[0].text.lower()) is not None


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


def _parse_pseudo(name: str, operands: list[_Operand], loc: _Loc) -> _Stmt:
    template = PSEUDO_OPERANDS[name]
    want = len(template.split(",")) if template else 0
    if len(operands) != want:
        shape = f" ({template})" if template else ""
        raise SourceError(f"{name} takes {want} operand(s){shape}, got {len(operands)}")
    zero: Expr = ("num", 0)
    if name == "nop":
        return _Insns(loc, [_op("addi", zero, rd=0, rs1=0)])
    if name == "mov":
        dst, src = operands
        if _is_control_register(dst):
            return _Insns(loc, [_op("mtcr", crn=_control_register(dst), rs1=_register(src, "the source"))])
        if _is_control_register(src):
            return _Insns(loc, [_op("mfcr", rd=_register(dst, "the destination"), crn=_control_register(src))])
        return _Insns(loc, [_op("addi", zero, rd=_register(dst, "rd"), rs1=_register(src, "rs"))])
    if name in ("not", "neg"):
        rd, rs = _register(operands[0], "rd"), _register(operands[1], "rs")
        ops = [_op("sub", rd=rd, rs1=0, rs2=rs)]
        if name == "not":  # ~x == -x - 1
            ops.append(_op("addi", ("num", -1), rd=rd, rs1=rd))
        return _Insns(loc, ops)
    if name in ("beqz", "bnez"):
        rs = _register(operands[0], "rs")
        target = _expression(operands[1], "target")
        return _Insns(loc, [_op("beq" if name == "beqz" else "bne", target, "target", rs1=rs, rs2=0)])
    if name in SWAPPED_BRANCHES:
        a, b = _register(operands[0], "rs1"), _register(operands[1], "rs2")
        target = _expression(operands[2], "target")
        return _Insns(loc, [_op(SWAPPED_BRANCHES[name], target, "target", rs1=b, rs2=a)])
    # li / la
    return _LoadImm(loc, _register(operands[0], "rd"), _expression(operands[1], "value"))


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
            raise SourceError(problem)
        split = text.splitlines()
        if problem := self.take(len(split), 0):
            raise SourceError(problem)
        if real is not None:
            self.include_stack.append(real)
        self.lines([(line, _Loc(display, n, directory)) for n, line in enumerate(split, 1)], depth)
        if real is not None:
            self.include_stack.pop()

    def include(self, operand_list: list[_Operand], loc: _Loc, depth: int) -> None:
        if len(operand_list) != 1 or len(operand_list[0].tokens) != 1 or operand_list[0].tokens[0].kind != "str":
            raise SourceError('.include takes one string: .include "file"')
        raw = operand_list[0].tokens[0].value
        assert isinstance(raw, bytes)
        rel = raw.decode(errors="replace")
        path = os.path.join(loc.dir, rel) if loc.dir else rel
        display = os.path.normpath(path)
        real = os.path.realpath(path)
        if real in self.include_stack:
            cycle = [*self.include_stack[self.include_stack.index(real) :], real]
            raise SourceError("include cycle: " + " -> ".join(os.path.basename(p) for p in cycle))
        if self.include_depth >= MAX_INCLUDE_DEPTH:
            raise SourceError(f"cannot include '{rel}': includes nested more than {MAX_INCLUDE_DEPTH} deep")
        self.includes += 1
        if self.includes > MAX_INCLUDES:
            raise SourceError(f"cannot include '{rel}': more than the limit of {MAX_INCLUDES} includes in one assembly")
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
            head = _first_word(text)
            if head == ".macro":
                i = self._define_macro(lines, i)
                continue
            if head == ".endm":
                raise loc.error("'.endm' without '.macro'")
            with _at(loc):
                self.line(text, loc, depth)
            i += 1

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
                if t.kind != "ident" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", t.text):
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

    def _expand(self, macro: _Macro, operands: list[_Operand], loc: _Loc, depth: int) -> None:
        if len(operands) != len(macro.params):
            raise SourceError(f"macro '{macro.name}' takes {len(macro.params)} argument(s), got {len(operands)}")
        if depth >= MAX_MACRO_DEPTH:
            raise SourceError(f"macro '{macro.name}': expansion nested too deeply (recursive macro?)")
        self.expansions += 1
        if self.expansions > MAX_MACRO_EXPANSIONS:
            raise SourceError(
                f"macro '{macro.name}': more than the limit of {MAX_MACRO_EXPANSIONS} macro expansions in one assembly"
            )
        values = {p: o.text for p, o in zip(macro.params, operands, strict=True)}
        values["@"] = str(self.expansions)  # \@: a number unique to this expansion, for local labels
        # Odd items are the names after a backslash: a parameter's argument, or the text as written.
        texts = [
            [values.get(part, "\\" + part) if k % 2 else part for k, part in enumerate(parts)]
            for parts, _ in macro.body
        ]
        if problem := self.take(len(texts), sum(len(part) for parts in texts for part in parts)):
            raise SourceError(f"macro '{macro.name}': {problem}")
        context = f" (in macro '{macro.name}' called at {loc}{loc.context})"
        expanded = [
            ("".join(parts), _Loc(bloc.file, bloc.line, bloc.dir, context))
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

    def line(self, text: str, loc: _Loc, depth: int) -> None:
        tokens, _ = tokenize(text)
        pos = 0
        while pos + 1 < len(tokens) and tokens[pos].kind == "ident" and tokens[pos + 1].is_op(":"):
            self.define(tokens[pos].text, loc)
            self.stmts.append(_Label(loc, tokens[pos].text))
            pos += 2
        rest = tokens[pos:]
        if not rest:
            return
        head = rest[0]
        if head.kind != "ident":
            raise SourceError(f"expected an instruction, directive or label, got '{head.text}'")
        if len(rest) > 1 and rest[1].is_op("="):
            self.define(head.text, loc)
            self.stmts.append(_Equ(loc, head.text, parse_expression(rest[2:], f"value of '{head.text}'")))
            return
        operands = _split_operands(rest[1:], text)
        name = head.text.lower()
        if name in DIRECTIVES:
            self.directive(name, operands, loc, depth)
        elif name in self.macros:
            self._expand(self.macros[name], operands, loc, depth)
        elif name in BY_MNEMONIC:
            self.stmts.append(_Insns(loc, [_parse_instruction(BY_MNEMONIC[name], operands)]))
        elif name in PSEUDO_OPERANDS:
            self.stmts.append(_parse_pseudo(name, operands, loc))
        elif len(rest) > 1 and rest[1].is_op(":"):
            raise SourceError(f"bad label '{head.text}'")
        else:
            raise SourceError(f"unknown instruction '{head.text}'")

    def directive(self, name: str, operands: list[_Operand], loc: _Loc, depth: int) -> None:
        def count(lo: int, hi: int, shape: str) -> None:
            if not lo <= len(operands) <= hi:
                raise SourceError(f"{name} takes {shape}, got {len(operands)} operand(s)")

        if name == ".include":
            self.include(operands, loc, depth)
        elif name in (".org", ".align", ".entry"):
            count(1, 1, "one value")
            expr = _expression(operands[0])
            if name == ".entry":
                if self.entry is not None:
                    raise SourceError(f".entry already given at {self.entry}")
                self.entry = loc
                self.stmts.append(_Entry(loc, expr))
            else:
                self.stmts.append((_Org if name == ".org" else _Align)(loc, expr))
        elif name in _DATA_WIDTHS:
            count(1, 1 << 30, "one or more values")
            self.stmts.append(_Data(loc, _DATA_WIDTHS[name], [_expression(o) for o in operands]))
        elif name in (".ascii", ".asciz"):
            count(1, 1 << 30, "one or more strings")
            data = bytearray()
            for o in operands:
                if len(o.tokens) != 1 or o.tokens[0].kind != "str":
                    raise SourceError(f"{name} takes strings in double quotes, got '{o.text}'")
                value = o.tokens[0].value
                assert isinstance(value, bytes)
                data += value + (b"\0" if name == ".asciz" else b"")
            self.stmts.append(_Bytes(loc, bytes(data)))
        elif name == ".space":
            count(1, 2, "a size and an optional fill byte")
            fill = _expression(operands[1], "fill byte") if len(operands) == 2 else None
            self.stmts.append(_Space(loc, _expression(operands[0], "size"), fill))
        elif name == ".equ":
            count(2, 2, "a name and a value: .equ name, value")
            toks = operands[0].tokens
            if len(toks) != 1 or toks[0].kind != "ident":
                raise SourceError(f".equ needs a symbol name, got '{operands[0].text}'")
            self.define(toks[0].text, loc)
            self.stmts.append(_Equ(loc, toks[0].text, _expression(operands[1], f"value of '{toks[0].text}'")))
        elif name in (".global", ".globl"):
            count(1, 1 << 30, "one or more symbol names")
            for o in operands:
                if len(o.tokens) != 1 or o.tokens[0].kind != "ident":
                    raise SourceError(f"{name} takes symbol names, got '{o.text}'")
        else:  # .macro/.endm not at the start of a line (e.g. after a label)
            raise SourceError(f"'{name}' must start its line")


def _read_source(path: str) -> str:
    """A source file's text: a regular UTF-8 file of at most MAX_SOURCE_CHARS bytes."""
    return read_input_file(path, MAX_SOURCE_CHARS, "a source file").decode("utf-8")


def _reason(exc: Exception) -> str:
    if isinstance(exc, InputFileError):
        return exc.reason  # the error names the file already
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def _first_word(text: str) -> str:
    m = re.match(r"\s*(\.?[A-Za-z_]+)", text)
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
        self.cur = {}
        self.grew = False
        self.too_big = None
        lc = self.origin
        total = 0  # bytes emitted so far: the image's size
        for stmt in self.stmts:
            if isinstance(stmt, _Label):
                self.cur[stmt.name] = lc
            elif isinstance(stmt, _Equ):
                v = self.value(stmt.expr, lc, False)
                if v is not None:
                    self.cur[stmt.name] = v
            elif isinstance(stmt, _Org):
                v = self.value(stmt.expr, lc, False)
                if v is not None:
                    lc = v & MASK64
            else:
                n = self.size(stmt, lc, False)
                total += n
                if n and self.too_big is None:
                    if isinstance(stmt, (_Align, _Space)) and n > MAX_FILL:
                        self.too_big = stmt.loc.error(f"{n} bytes of fill is more than the limit {MAX_FILL}")
                    elif total > MAX_IMAGE_BYTES:
                        self.too_big = stmt.loc.error(
                            f"the output grows to {total} bytes here, more than the limit of {MAX_IMAGE_BYTES} bytes of an image"
                        )
                lc += n
        return self.cur

    def size(self, stmt: _Stmt, lc: int, final: bool) -> int:
        if isinstance(stmt, _Insns):
            return 4 * len(stmt.ops)
        if isinstance(stmt, _LoadImm):
            v = self.value(stmt.expr, lc, final)
            if v is not None and len(li_sequence(v)) > stmt.size:
                stmt.size = len(li_sequence(v))
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
        self.cur = {}
        lc = self.origin
        entry = None
        for stmt in self.stmts:
            with _at(stmt.loc):
                if isinstance(stmt, _Label):
                    if lc > MASK64:
                        raise SourceError(f"label '{stmt.name}' is past the end of the 64-bit address space")
                    self.cur[stmt.name] = lc
                elif isinstance(stmt, _Equ):
                    self.cur[stmt.name] = evaluate(stmt.expr, self.lookup, lc)
                elif isinstance(stmt, _Org):
                    target = evaluate(stmt.expr, self.lookup, lc) & MASK64
                    i = memory.containing(target)
                    if i is not None:
                        raise SourceError(
                            f".org {target:#x} moves back into bytes already emitted "
                            f"({memory.starts[i]:#x}-{memory.ends[i] - 1:#x})"
                        )
                    lc = target
                elif isinstance(stmt, _Entry):
                    entry = evaluate(stmt.expr, self.lookup, lc) & MASK64
                else:
                    data = self.encode(stmt, lc)
                    memory.emit(lc, data)
                    lc += len(data)
        return entry

    def encode(self, stmt: _Stmt, pc: int) -> bytes:
        if isinstance(stmt, _Insns):
            return b"".join(self.encode_op(op, pc + 4 * k).to_bytes(4, "little") for k, op in enumerate(stmt.ops))
        if isinstance(stmt, _LoadImm):
            value = evaluate(stmt.expr, self.lookup, pc)
            words = []
            for mnemonic, from_zero, imm in li_sequence(value):
                rs1 = 0 if from_zero else stmt.rd
                words.append(encode(mnemonic, rd=stmt.rd, rs1=rs1, imm=imm))
            if len(words) > stmt.size:
                raise SourceError("internal error: li grew after layout converged")
            # A li whose value shrank after an earlier pass keeps its reserved size: pad with nops.
            words += [encode("addi", rd=0, rs1=0, imm=0)] * (stmt.size - len(words))
            return b"".join(w.to_bytes(4, "little") for w in words)
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

    def encode_op(self, op: _Op, pc: int) -> int:
        imm = 0
        mn = op.insn.mnemonic
        if op.imm is not None:
            v = evaluate(op.imm, self.lookup, pc)
            if op.mode == "target":
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
                    raise SourceError(f"{mn}: port {v} out of range 0..0xffff")
                imm = v
            elif op.mode == "port_off":
                if not -0xFFFF <= v <= 0xFFFF:
                    raise SourceError(f"{mn}: port offset {v} out of range -0xffff..0xffff")
                imm = v & 0xFFFF  # the machine adds imm16 to the base modulo 2^16
            else:
                imm = v
        try:
            return encode(op.insn, imm=imm, **op.regs)
        except EncodingError as exc:
            raise SourceError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# Public API


def _assemble(text: str, display: str, directory: str, real: str | None, origin: int) -> GuestImage:
    front = _Frontend()
    try:
        front.source(text, display, directory, real)
    except SourceError as exc:  # the text as a whole is past a limit: no line to blame
        raise AssemblyError(display, 0, str(exc)) from None
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
