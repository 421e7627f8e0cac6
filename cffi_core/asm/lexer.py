"""Tokenizer and expression parser/evaluator of the P64 assembly language (64-bit, C precedence)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

MASK64 = (1 << 64) - 1

SYMBOL_RE = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*")
_NUMBER_RE = re.compile(r"[0-9][A-Za-z0-9_]*")
_SPACE_RE = re.compile(r"[ \t\f\v]+")
_OPS2 = ("<<", ">>")
_OPS1 = ",:[]()+-*/%~&|^="
_ESCAPES = {"n": 10, "t": 9, "r": 13, "0": 0, "\\": 92, "'": 39, '"': 34}
_REGISTER_RE = re.compile(r"(?:r|cr)[0-9]+|zero|sp", re.IGNORECASE)

MAX_DEPTH = 100  # expression nesting; deeper input is an error, not a RecursionError


class SourceError(Exception):
    """A problem in the source text; the assembler adds ``file:line:`` and re-raises AssemblyError."""


class UndefinedSymbol(SourceError):
    """An expression names a symbol with no value (yet)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"undefined symbol '{name}'")
        self.name = name


def to_s64(value: int) -> int:
    """``value`` modulo 2^64, as a signed 64-bit integer."""
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def is_register_name(name: str) -> bool:
    """True for every name that looks like a register (r<n>, cr<n>, zero, sp): such names are
    reserved, so ``r16`` is reported as a missing register rather than an undefined symbol."""
    return _REGISTER_RE.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is ident, num, char, str or op; ``value`` the int or bytes it denotes."""

    kind: str
    text: str
    start: int
    end: int
    value: int | bytes | None = None

    def is_op(self, op: str) -> bool:
        return self.kind == "op" and self.text == op


def _escape(text: str, i: int) -> tuple[bytes, int]:
    """Decode the escape starting at text[i] == '\\'; returns (bytes, index after it)."""
    if i + 1 >= len(text):
        raise SourceError("bad escape: backslash at end of line")
    c = text[i + 1]
    if c in _ESCAPES:
        return bytes([_ESCAPES[c]]), i + 2
    if c == "x":
        digits = re.match(r"[0-9A-Fa-f]{2}", text[i + 2 : i + 4])
        if digits:
            return bytes([int(digits.group(), 16)]), i + 4
        raise SourceError("bad escape '\\x': need two hex digits")
    raise SourceError(f"bad escape '\\{c}'")


def _number(text: str) -> int:
    low = text.lower()
    try:
        if low.startswith("0x"):
            value = int(low[2:], 16)
        elif low.startswith("0b"):
            value = int(low[2:], 2)
        elif low.startswith("0o"):
            value = int(low[2:], 8)
        else:
            value = int(low, 10)
    except ValueError:
        raise SourceError(f"bad number '{text}'") from None
    if "_" in text:
        raise SourceError(f"bad number '{text}'")
    if value > MASK64:
        raise SourceError(f"number {text} does not fit in 64 bits")
    return value


# One match per token: leading blanks, then the end of the code (a comment or the line's end),
# a symbol, a number or an operator (two-character operators first).  Quotes, and characters
# that start no token, take the slower path below that also makes the errors.
_TOKEN_RE = re.compile(
    r"[ \t\f\v]*(?:(?P<end>;|//|\Z)|(?P<ident>[A-Za-z_.$][A-Za-z0-9_.$]*)|(?P<num>[0-9][A-Za-z0-9_]*)"
    r"|(?P<op><<|>>|[,:\[\]()+\-*/%~&|^=]))"
)


def tokenize(text: str) -> tuple[list[Token], int]:
    """Split one line into tokens; also returns where the code ends (a comment or the line end)."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    match = _TOKEN_RE.match
    while True:
        m = match(text, i)
        if m is not None:
            kind = m.lastgroup
            start, i = m.span(kind)
            if kind == "end":
                return tokens, start
            word = m.group(kind)
            tokens.append(Token(kind, word, start, i, _number(word) if kind == "num" else None))
            continue
        if blank := _SPACE_RE.match(text, i):
            i = blank.end()
        c = text[i]
        if c == "'":
            j = i + 1
            if j < n and text[j] == "\\":
                raw, j = _escape(text, j)
                value = raw[0]
            elif j < n and text[j] != "'":
                value, j = ord(text[j]), j + 1
            else:
                raise SourceError("empty or unterminated character literal")
            if j >= n or text[j] != "'":
                raise SourceError("unterminated character literal (one character between quotes)")
            tokens.append(Token("char", text[i : j + 1], i, j + 1, value))
            i = j + 1
        elif c == '"':
            out = bytearray()
            j = i + 1
            while True:
                if j >= n:
                    raise SourceError("unterminated string")
                if text[j] == '"':
                    break
                if text[j] == "\\":
                    raw, j = _escape(text, j)
                    out += raw
                else:
                    out += text[j].encode()
                    j += 1
            tokens.append(Token("str", text[i : j + 1], i, j + 1, bytes(out)))
            i = j + 1
        else:
            raise SourceError(f"unexpected character {c!r}")


# ---- expressions ----
# An expression is a small tree of tuples, parsed once and evaluated in every pass:
#   ("num", value) | ("sym", name) | ("dot",) | ("un", op, e) | ("bin", op, a, b)
Expr = tuple

_BINARY = {"|": 1, "^": 2, "&": 3, "<<": 4, ">>": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}


def parse_expression(tokens: list[Token], what: str = "expression") -> Expr:
    """Parse all of ``tokens`` as one expression."""
    if not tokens:
        raise SourceError(f"missing {what}")
    parser = _Parser(tokens)
    expr = parser.binary(1, 0)
    if parser.i < len(tokens):
        raise SourceError(f"unexpected '{tokens[parser.i].text}' in {what}")
    return expr


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.i = 0

    def _peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def binary(self, min_prec: int, depth: int) -> Expr:
        left = self.unary(depth)
        while (tok := self._peek()) is not None and tok.kind == "op" and _BINARY.get(tok.text, 0) >= min_prec:
            self.i += 1
            # Every binary operator is left-associative: the right side binds one level tighter.
            right = self.binary(_BINARY[tok.text] + 1, depth + 1)
            left = ("bin", tok.text, left, right)
        return left

    def unary(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise SourceError("expression nested too deeply")
        tok = self._peek()
        if tok is None:
            raise SourceError("expression ends too early")
        self.i += 1
        if tok.kind == "op" and tok.text in "-~+":
            return ("un", tok.text, self.unary(depth + 1))
        if tok.kind in ("num", "char"):
            return ("num", tok.value)
        if tok.kind == "ident":
            if tok.text == ".":
                return ("dot",)
            if is_register_name(tok.text):
                raise SourceError(f"register '{tok.text}' where a value was expected")
            return ("sym", tok.text)
        if tok.is_op("("):
            inner = self.binary(1, depth + 1)
            close = self._peek()
            if close is None or not close.is_op(")"):
                raise SourceError("missing ')'")
            self.i += 1
            return inner
        if tok.kind == "str":
            raise SourceError("string where a value was expected")
        raise SourceError(f"unexpected '{tok.text}' in expression")


def evaluate(expr: Expr, lookup: Callable[[str], int], dot: int) -> int:
    """Evaluate with 64-bit wrap-around; the result is signed.  ``lookup`` raises UndefinedSymbol."""
    kind = expr[0]
    if kind == "num":
        return to_s64(expr[1])
    if kind == "sym":
        return to_s64(lookup(expr[1]))
    if kind == "dot":
        return to_s64(dot)
    if kind == "un":
        v = evaluate(expr[2], lookup, dot)
        return to_s64(-v if expr[1] == "-" else ~v if expr[1] == "~" else v)
    op, a, b = expr[1], evaluate(expr[2], lookup, dot), evaluate(expr[3], lookup, dot)
    if op in ("/", "%"):
        if b == 0:
            raise SourceError("division by zero")
        q = abs(a) // abs(b)  # C semantics: the quotient truncates toward zero
        if (a < 0) != (b < 0):
            q = -q
        return to_s64(q if op == "/" else a - b * q)
    if op in ("<<", ">>"):
        if not 0 <= b <= 63:
            raise SourceError(f"shift count {b} out of range 0..63")
        return to_s64(a << b if op == "<<" else a >> b)
    return to_s64({"+": a + b, "-": a - b, "*": a * b, "&": a & b, "|": a | b, "^": a ^ b}[op])
