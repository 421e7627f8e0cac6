"""Instruction group ``alu`` (docs/architecture.md §3, docs/generated/instructions.md):
register-register and register-immediate arithmetic, logic, shifts, compares and ``lui``.

Every body has the signature ``execute_<mnemonic>(state, mem, d)`` where ``d`` is the
``Decoded`` word; it raises ``Fault`` before changing anything, or updates rd and pc.
"""

from __future__ import annotations

from cffi_core.isa.encoding import Decoded
from cffi_core.spec.faults import Fault
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.registers import advance, sext, signed, write_rd
from cffi_core.spec.state import DE, MASK64, State

SHIFT_MASK = 63  # shifts use the low 6 bits of the count (§3)
INT64_MIN = -(1 << 63)


def _rd(state: State, d: Decoded, value: int) -> None:
    write_rd(state, d.rd, value)
    advance(state)


# ---- alu: register-register ----


def execute_add(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 + rs2 (mod 2^64)."""
    _rd(state, d, state.r[d.rs1] + state.r[d.rs2])


def execute_sub(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 - rs2 (mod 2^64)."""
    _rd(state, d, state.r[d.rs1] - state.r[d.rs2])


def execute_and(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 & rs2."""
    _rd(state, d, state.r[d.rs1] & state.r[d.rs2])


def execute_or(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 | rs2."""
    _rd(state, d, state.r[d.rs1] | state.r[d.rs2])


def execute_xor(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 ^ rs2."""
    _rd(state, d, state.r[d.rs1] ^ state.r[d.rs2])


def execute_shl(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 << (rs2 & 63) (§3: the low 6 bits of the count)."""
    _rd(state, d, state.r[d.rs1] << (state.r[d.rs2] & SHIFT_MASK))


def execute_shr(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 >> (rs2 & 63), logical."""
    _rd(state, d, state.r[d.rs1] >> (state.r[d.rs2] & SHIFT_MASK))


def execute_sar(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 >> (rs2 & 63), arithmetic."""
    _rd(state, d, signed(state.r[d.rs1]) >> (state.r[d.rs2] & SHIFT_MASK))


def execute_mul(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = the low 64 bits of rs1 * rs2."""
    _rd(state, d, state.r[d.rs1] * state.r[d.rs2])


def _signed_operands(state: State, d: Decoded) -> tuple[int, int]:
    """§3 Division: #DE for a zero divisor and for -2^63 / -1; rd is unchanged then."""
    a, b = signed(state.r[d.rs1]), signed(state.r[d.rs2])
    if b == 0 or (a == INT64_MIN and b == -1):
        raise Fault(DE)
    return a, b


def _unsigned_operands(state: State, d: Decoded) -> tuple[int, int]:
    """§3 Division: #DE for a zero divisor."""
    a, b = state.r[d.rs1], state.r[d.rs2]
    if b == 0:
        raise Fault(DE)
    return a, b


def _quotient_toward_zero(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def execute_div(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 / rs2 signed, rounded toward zero; #DE if rs2 = 0 or -2^63 / -1."""
    a, b = _signed_operands(state, d)
    _rd(state, d, _quotient_toward_zero(a, b))


def execute_divu(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 / rs2 unsigned; #DE if rs2 = 0."""
    a, b = _unsigned_operands(state, d)
    _rd(state, d, a // b)


def execute_rem(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 % rs2 signed, with the sign of rs1; #DE if rs2 = 0 or -2^63 % -1."""
    a, b = _signed_operands(state, d)
    _rd(state, d, a - b * _quotient_toward_zero(a, b))


def execute_remu(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 % rs2 unsigned; #DE if rs2 = 0."""
    a, b = _unsigned_operands(state, d)
    _rd(state, d, a % b)


def execute_slt(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = 1 if rs1 < rs2 signed else 0."""
    _rd(state, d, int(signed(state.r[d.rs1]) < signed(state.r[d.rs2])))


def execute_sltu(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = 1 if rs1 < rs2 unsigned else 0."""
    _rd(state, d, int(state.r[d.rs1] < state.r[d.rs2]))


# ---- alu: register-immediate (d.imm is already sign- or zero-extended by the format) ----


def execute_addi(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 + sext(imm16); ``addi r0, r0, 0`` is ``nop``."""
    _rd(state, d, state.r[d.rs1] + d.imm)


def execute_andi(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 & zext(imm16)."""
    _rd(state, d, state.r[d.rs1] & d.imm)


def execute_ori(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 | zext(imm16)."""
    _rd(state, d, state.r[d.rs1] | d.imm)


def execute_xori(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 ^ zext(imm16)."""
    _rd(state, d, state.r[d.rs1] ^ d.imm)


def execute_shli(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 << shamt (6-bit immediate)."""
    _rd(state, d, state.r[d.rs1] << d.imm)


def execute_shri(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 >> shamt, logical."""
    _rd(state, d, state.r[d.rs1] >> d.imm)


def execute_sari(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = rs1 >> shamt, arithmetic."""
    _rd(state, d, signed(state.r[d.rs1]) >> d.imm)


def execute_slti(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = 1 if rs1 < sext(imm16) signed else 0."""
    _rd(state, d, int(signed(state.r[d.rs1]) < d.imm))


def execute_sltiu(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = 1 if rs1 < sext(imm16) unsigned else 0 (the immediate is sign-extended first)."""
    _rd(state, d, int(state.r[d.rs1] < (d.imm & MASK64)))


def execute_lui(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """§3: rd = sext64((imm20 << 12) mod 2^32): bits 31:12 = imm20, 63:32 copy bit 31."""
    _rd(state, d, sext((d.imm << 12) & 0xFFFF_FFFF, 32))
