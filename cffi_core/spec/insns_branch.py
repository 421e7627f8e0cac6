"""Instruction group ``branch`` (docs/architecture.md §3): compare-and-branch, jumps, calls
and ``ret``.

Offsets count from the branch itself (``d.imm`` is already in bytes).  Jumps to bad
addresses succeed: the fault comes from the fetch at the target, with pc = the target.
"""

from __future__ import annotations

from cffi_core.isa.encoding import Decoded
from cffi_core.spec.insns_stack import pop_quad, push_quad
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.registers import INSN_SIZE, advance, jump, signed
from cffi_core.spec.state import MASK64, State


def _branch(state: State, d: Decoded, taken: bool) -> None:
    """pc = pc + 4 * sext(imm16) if taken, else the next instruction."""
    if taken:
        jump(state, state.pc + d.imm)
    else:
        advance(state)


# ---- branch: compare and branch ----


def execute_beq(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """if rs1 == rs2: pc = pc + 4 * sext(imm16)."""
    _branch(state, d, state.r[d.rs1] == state.r[d.rs2])


def execute_bne(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """if rs1 != rs2: pc = pc + 4 * sext(imm16)."""
    _branch(state, d, state.r[d.rs1] != state.r[d.rs2])


def execute_blt(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """if rs1 < rs2 signed: pc = pc + 4 * sext(imm16)."""
    _branch(state, d, signed(state.r[d.rs1]) < signed(state.r[d.rs2]))


def execute_bge(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """if rs1 >= rs2 signed: pc = pc + 4 * sext(imm16)."""
    _branch(state, d, signed(state.r[d.rs1]) >= signed(state.r[d.rs2]))


def execute_bltu(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """if rs1 < rs2 unsigned: pc = pc + 4 * sext(imm16)."""
    _branch(state, d, state.r[d.rs1] < state.r[d.rs2])


def execute_bgeu(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """if rs1 >= rs2 unsigned: pc = pc + 4 * sext(imm16)."""
    _branch(state, d, state.r[d.rs1] >= state.r[d.rs2])


# ---- branch: jumps, calls and return ----


def execute_jmp(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """pc = pc + 4 * sext(imm24)."""
    jump(state, state.pc + d.imm)


def execute_call(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """push(pc + 4); pc = pc + 4 * sext(imm24).  If the push faults nothing changes."""
    push_quad(state, mem, (state.pc + INSN_SIZE) & MASK64)
    jump(state, state.pc + d.imm)


def execute_jr(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """pc = rs1."""
    jump(state, state.r[d.rs1])


def execute_callr(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """t = rs1; push(pc + 4); pc = t (so ``callr sp`` jumps to the old sp)."""
    target = state.r[d.rs1]
    push_quad(state, mem, (state.pc + INSN_SIZE) & MASK64)
    jump(state, target)


def execute_ret(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """pc = pop()."""
    jump(state, pop_quad(state, mem))
