"""The small vocabulary instruction bodies are written in (after Spike's ``WRITE_RD`` and
``set_pc``): register writes, pc updates, and sign handling (docs/architecture.md §1-§3)."""

from __future__ import annotations

from cffi_core.isa.encoding import Decoded
from cffi_core.spec.state import MASK64, State

INSN_SIZE = 4
SIGN64 = 1 << 63


def write_rd(state: State, rd: int, value: int) -> None:
    """rd = value mod 2^64; r0 ignores writes (§1)."""
    if rd:
        state.r[rd] = value & MASK64


def advance(state: State) -> None:
    """pc moves to the next instruction."""
    state.pc = (state.pc + INSN_SIZE) & MASK64


def jump(state: State, target: int) -> None:
    """pc = target; a bad target faults at its fetch, not here (§3)."""
    state.pc = target & MASK64


def effective_address(state: State, d: Decoded) -> int:
    """rs1 + sext(imm16), mod 2^64."""
    return (state.r[d.rs1] + d.imm) & MASK64


def signed(value: int) -> int:
    """The 64-bit value read as two's complement."""
    return value - (1 << 64) if value & SIGN64 else value


def sext(value: int, bits: int) -> int:
    """Sign-extend the low ``bits`` of ``value`` to 64 bits (unsigned result)."""
    sign = 1 << (bits - 1)
    return ((value & (sign - 1)) - (value & sign)) & MASK64
