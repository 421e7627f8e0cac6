"""Builder: write P64 programs from Python (one method per table mnemonic), emitted as assembly text.

The builder only writes source lines and hands them to the assembler, so a built program and
the equivalent ``.s`` text can never disagree, and ``text()`` shows a counterexample exactly.
"""

from __future__ import annotations

import builtins
import keyword
from collections.abc import Callable
from typing import TYPE_CHECKING

from cffi_core.asm.assembler import assemble
from cffi_core.asm.syntax import FORMAT_OPERANDS, PSEUDO_OPERANDS
from cffi_core.image import GuestImage
from cffi_core.isa.table import INSTRUCTIONS, Insn

__all__ = ["Builder", "Mem", "Operand"]


class Mem:
    """A memory operand ``[base + offset]``; ``offset`` may be an int or an expression string."""

    def __init__(self, base: str = "r0", offset: int | str = 0) -> None:
        self.base = base
        self.offset = offset

    def __str__(self) -> str:
        if isinstance(self.offset, int):
            if self.offset == 0:
                return f"[{self.base}]"
            sign = "-" if self.offset < 0 else "+"
            return f"[{self.base} {sign} {abs(self.offset)}]"
        return f"[{self.base} + ({self.offset})]"

    def __repr__(self) -> str:
        return f"Mem({self.base!r}, {self.offset!r})"


Operand = int | str | Mem


def _operand(value: Operand) -> str:
    if isinstance(value, bool):
        raise TypeError(f"operand {value!r}: use an int, a register name or an expression string")
    if isinstance(value, int):
        return str(value) if -0x10000 < value < 0x10000 else (f"-{-value:#x}" if value < 0 else f"{value:#x}")
    if isinstance(value, (str, Mem)):
        return str(value)
    raise TypeError(
        f"operand {value!r} is a {type(value).__name__}: use an int, a register name or an expression string"
    )


def _quote(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else bytes(data)
    out = []
    for b in raw:
        if b == 0x22:
            out.append('\\"')
        elif b == 0x5C:
            out.append("\\\\")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x09:
            out.append("\\t")
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    return '"' + "".join(out) + '"'


class Builder:
    """Builds a program line by line.  Every instruction method takes the operands of its table
    format in assembly order (``b.add("r1", "r2", "r3")``, ``b.ld("r1", b.mem("r2", 8))``,
    ``b.beq("r1", "r0", "loop")``); Python keywords and builtins get a trailing underscore
    (``b.and_``, ``b.or_``, ``b.in_``, ``b.int_``, ``b.not_``).  Methods return the builder."""

    def __init__(self, origin: int = 0, name: str = "<builder>") -> None:
        self.origin = origin
        self.name = name
        self._lines: list[str] = []
        self._fresh = 0

    # ---- plumbing ----

    def raw(self, line: str) -> Builder:
        """Append an arbitrary assembly line."""
        self._lines.append(line)
        return self

    def _statement(self, word: str, operands: tuple[Operand, ...]) -> Builder:
        text = ", ".join(_operand(o) for o in operands)
        return self.raw(f"    {word} {text}" if text else f"    {word}")

    def text(self) -> str:
        """The program as assembly source (it starts with ``.org origin``)."""
        return "\n".join([f".org {self.origin:#x}", *self._lines]) + "\n"

    def assemble(self) -> GuestImage:
        """Assemble ``text()``; errors name ``self.name`` and the line of ``text()``."""
        return assemble(self.text(), filename=self.name)

    def __len__(self) -> int:
        return len(self._lines)

    # ---- labels and operands ----

    def label(self, name: str) -> Builder:
        """Define label ``name`` at the current location."""
        return self.raw(f"{name}:")

    def new_label(self, prefix: str = "L") -> str:
        """A fresh label name (not yet placed: pass it to ``label`` where it belongs)."""
        self._fresh += 1
        return f".{prefix}{self._fresh}"

    @staticmethod
    def mem(base: str = "r0", offset: int | str = 0) -> Mem:
        """A memory operand ``[base + offset]``."""
        return Mem(base, offset)

    # ---- directives ----

    def org(self, address: int | str) -> Builder:
        """``.org address``: continue emitting at ``address``."""
        return self._statement(".org", (address,))

    def align(self, n: int | str) -> Builder:
        """``.align n``: pad with zero bytes to a multiple of ``n`` (a power of two)."""
        return self._statement(".align", (n,))

    def byte(self, *values: int | str) -> Builder:
        """``.byte``: 8-bit values."""
        return self._statement(".byte", values)

    def half(self, *values: int | str) -> Builder:
        """``.half``: 16-bit little-endian values."""
        return self._statement(".half", values)

    def word(self, *values: int | str) -> Builder:
        """``.word``: 32-bit little-endian values."""
        return self._statement(".word", values)

    def quad(self, *values: int | str) -> Builder:
        """``.quad``: 64-bit little-endian values."""
        return self._statement(".quad", values)

    def ascii(self, data: str | bytes) -> Builder:
        """``.ascii``: the bytes of ``data`` (str is UTF-8 encoded)."""
        return self.raw(f"    .ascii {_quote(data)}")

    def asciz(self, data: str | bytes) -> Builder:
        """``.asciz``: the bytes of ``data`` and a NUL."""
        return self.raw(f"    .asciz {_quote(data)}")

    def space(self, n: int | str, fill: int | str | None = None) -> Builder:
        """``.space n[, fill]``: ``n`` bytes of ``fill`` (default 0)."""
        return self._statement(".space", (n,) if fill is None else (n, fill))

    def equ(self, name: str, value: int | str) -> Builder:
        """``.equ name, value``: define a constant."""
        return self._statement(".equ", (name, value))

    def entry(self, target: int | str) -> Builder:
        """``.entry target``: the image's entry point."""
        return self._statement(".entry", (target,))

    def global_(self, *names: str) -> Builder:
        """``.global``: accepted for familiarity; every label is exported anyway."""
        return self._statement(".global", names)

    # Instruction and pseudo-instruction methods are attached below, from the table; type
    # checkers learn of them through this stub (it does not exist at run time).
    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Callable[..., Builder]: ...


def _method(word: str, arity: int, doc: str) -> Callable[..., Builder]:
    def method(self: Builder, *operands: Operand) -> Builder:
        if len(operands) != arity:
            raise TypeError(f"{word} takes {arity} operand(s), got {len(operands)}")
        return self._statement(word, operands)

    method.__doc__ = doc
    return method


def _python_names(word: str) -> list[str]:
    if keyword.iskeyword(word):
        return [word + "_"]
    if hasattr(builtins, word):
        return [word, word + "_"]  # b.int works, but b.int_ matches the keyword spelling
    return [word]


def _attach(word: str, arity: int, doc: str) -> None:
    for attr in _python_names(word):
        if attr in Builder.__dict__:
            raise TypeError(f"Builder: mnemonic {word!r} clashes with the builder's own {attr!r}")
        setattr(Builder, attr, _method(word, arity, doc))


def _attach_all() -> None:
    insn: Insn
    for insn in INSTRUCTIONS:
        fmt = insn.format
        _attach(insn.mnemonic, len(FORMAT_OPERANDS[fmt.name]), f"{insn.mnemonic} {fmt.syntax}: {insn.semantics}")
    for name, template in PSEUDO_OPERANDS.items():
        arity = len(template.split(",")) if template else 0
        _attach(name, arity, f"{name} {template}: pseudo-instruction")


_attach_all()
