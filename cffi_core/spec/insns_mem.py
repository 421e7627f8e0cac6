"""Instruction group ``mem`` (docs/architecture.md §3, §5): loads and stores at
``rs1 + sext(imm16)``, naturally aligned (else #AC), through the checks of §5.3; and the
host segment's ``ldgs``/``sdgs``/``jgs`` (host class, CPL <= 1 checked before the body runs), whose
offset ``rs1 + sext(imm16)`` is bounded by MSR_GSLIMIT instead of MSR_SEGLIMIT."""

from __future__ import annotations

from cffi_core.isa.encoding import Decoded
from cffi_core.spec.access import GS_SIZE, gs_linear, load, store
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.registers import advance, effective_address, jump, sext, write_rd
from cffi_core.spec.state import State


def _load(state: State, d: Decoded, mem: PhysicalMemory, size: int, signed: bool) -> None:
    """rd = mem[rs1 + sext(imm16)], sign- or zero-extended from ``size`` bytes."""
    value = load(state, mem, effective_address(state, d), size)
    write_rd(state, d.rd, sext(value, 8 * size) if signed else value)
    advance(state)


def _store(state: State, d: Decoded, mem: PhysicalMemory, size: int) -> None:
    """mem[rs1 + sext(imm16)] = the low ``size`` bytes of rs2."""
    store(state, mem, effective_address(state, d), size, state.r[d.rs2])
    advance(state)


# ---- mem: loads ----


def execute_lb(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = sext(mem8[rs1 + sext(imm16)])."""
    _load(state, d, mem, 1, signed=True)


def execute_lbu(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = zext(mem8[rs1 + sext(imm16)])."""
    _load(state, d, mem, 1, signed=False)


def execute_lh(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = sext(mem16[rs1 + sext(imm16)])."""
    _load(state, d, mem, 2, signed=True)


def execute_lhu(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = zext(mem16[rs1 + sext(imm16)])."""
    _load(state, d, mem, 2, signed=False)


def execute_lw(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = sext(mem32[rs1 + sext(imm16)])."""
    _load(state, d, mem, 4, signed=True)


def execute_lwu(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = zext(mem32[rs1 + sext(imm16)])."""
    _load(state, d, mem, 4, signed=False)


def execute_ld(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = mem64[rs1 + sext(imm16)]."""
    _load(state, d, mem, 8, signed=False)


# ---- mem: stores ----


def execute_sb(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """mem8[rs1 + sext(imm16)] = rs2."""
    _store(state, d, mem, 1)


def execute_sh(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """mem16[rs1 + sext(imm16)] = rs2."""
    _store(state, d, mem, 2)


def execute_sw(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """mem32[rs1 + sext(imm16)] = rs2."""
    _store(state, d, mem, 4)


def execute_sd(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """mem64[rs1 + sext(imm16)] = rs2."""
    _store(state, d, mem, 8)


# ---- mem: the host segment GS (§5.4) ----


def execute_ldgs(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = mem64[MSR_GSBASE + o], o = rs1 + sext(imm16): #GP(0) unless o + 7 <= MSR_GSLIMIT,
    then the checks of §5.3 at the current CPL except the segment limit."""
    va = gs_linear(state, effective_address(state, d))
    write_rd(state, d.rd, load(state, mem, va, GS_SIZE, segmented=False))
    advance(state)


def execute_sdgs(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """mem64[MSR_GSBASE + o] = rs2, o = rs1 + sext(imm16), checked as ``ldgs``."""
    va = gs_linear(state, effective_address(state, d))
    store(state, mem, va, GS_SIZE, state.r[d.rs2], segmented=False)
    advance(state)


def execute_jgs(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """pc = mem64[MSR_GSBASE + o], o = rs1 + sext(imm16), checked as ``ldgs``: the indirect jump
    of VMM-generated code through a table in the host segment (§5.4).  A fault leaves pc on the
    ``jgs``; a bad target faults at its fetch, as for ``jr`` (§3)."""
    va = gs_linear(state, effective_address(state, d))
    jump(state, load(state, mem, va, GS_SIZE, segmented=False))
