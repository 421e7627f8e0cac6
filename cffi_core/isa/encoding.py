"""Table-driven encoding and decoding of P64 instruction words (docs/architecture.md §3).

``decode`` is the Python twin of the C core's generated decoder: the assembler, the
disassembler and the executable spec all go through it, and the core is tested against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cffi_core.isa.table import (
    A_SHIFT,
    B_SHIFT,
    BY_MNEMONIC,
    BY_OPCODE,
    C_SHIFT,
    CONTROL_REGISTERS,
    FIELD_MASK,
    IMM16_MASK,
    IMM20_MASK,
    IMM24_MASK,
    OP_SHIFT,
    Insn,
)

_SHIFTS = {"A": A_SHIFT, "B": B_SHIFT, "C": C_SHIFT}


class EncodingError(ValueError):
    """An operand does not fit its field (the assembler adds file:line)."""


@dataclass(frozen=True)
class Decoded:
    """A decoded word.  ``imm`` is the immediate's value as the semantics use it: sign- or
    zero-extended, and for branches and jumps the byte offset from the instruction."""

    insn: Insn
    word: int
    rd: int = 0
    rs1: int = 0
    rs2: int = 0
    crn: int = 0
    imm: int = 0


def _sext(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


def decode(word: int) -> Decoded | None:
    """Decode a 32-bit word; None when it is not a valid encoding (the machine raises #UD)."""
    insn = BY_OPCODE.get((word >> OP_SHIFT) & 0xFF)
    if insn is None:
        return None
    fmt = insn.format
    if word & ~fmt.used & ((1 << OP_SHIFT) - 1):
        return None
    regs = {role: (word >> _SHIFTS[field]) & FIELD_MASK for role, field in fmt.slots}
    if "crn" in regs and regs["crn"] not in CONTROL_REGISTERS:
        return None
    imm = 0
    if fmt.imm in ("s16", "s16w"):
        imm = _sext(word & IMM16_MASK, 16) * (4 if fmt.imm == "s16w" else 1)
    elif fmt.imm in ("u16", "sh6", "u8"):
        imm = word & IMM16_MASK
    elif fmt.imm == "s20":
        imm = _sext(word & IMM20_MASK, 20)
    elif fmt.imm == "s24w":
        imm = _sext(word & IMM24_MASK, 24) * 4
    return Decoded(insn, word, imm=imm, **regs)


_IMM_RANGES = {
    "s16": (-(1 << 15), (1 << 15) - 1, 1),
    "u16": (0, 0xFFFF, 1),
    "sh6": (0, 63, 1),
    "u8": (0, 255, 1),
    "s20": (-(1 << 19), (1 << 19) - 1, 1),
    "s16w": (-(1 << 17), (1 << 17) - 4, 4),
    "s24w": (-(1 << 25), (1 << 25) - 4, 4),
}


def encode(insn: Insn | str, *, rd: int = 0, rs1: int = 0, rs2: int = 0, crn: int = 0, imm: int = 0) -> int:
    """Encode one instruction; operand values as in ``Decoded``.  Raises EncodingError."""
    if isinstance(insn, str):
        try:
            insn = BY_MNEMONIC[insn]
        except KeyError:
            raise EncodingError(f"unknown instruction {insn!r}") from None
    fmt = insn.format
    values = {"rd": rd, "rs1": rs1, "rs2": rs2, "crn": crn}
    word = insn.opcode << OP_SHIFT
    for role, field in fmt.slots:
        v = values[role]
        if role == "crn":
            if v not in CONTROL_REGISTERS:
                raise EncodingError(f"cr{v} does not exist (control registers: {CONTROL_REGISTERS})")
        elif not 0 <= v <= 15:
            raise EncodingError(f"register r{v} does not exist")
        word |= v << _SHIFTS[field]
    if fmt.imm is not None:
        lo, hi, scale = _IMM_RANGES[fmt.imm]
        if not lo <= imm <= hi:
            raise EncodingError(f"{insn.mnemonic}: immediate {imm} out of range [{lo}, {hi}]")
        if imm % scale:
            raise EncodingError(f"{insn.mnemonic}: offset {imm} is not a multiple of {scale}")
        width = {"s16": 16, "u16": 16, "sh6": 16, "u8": 16, "s20": 20, "s16w": 16, "s24w": 24}[fmt.imm]
        word |= (imm // scale) & ((1 << width) - 1)
    return word
