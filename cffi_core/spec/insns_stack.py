"""Instruction group ``stack`` (docs/architecture.md §3 "Stack"): ``push`` and ``pop``, and
the quadword push and pop that ``call``, ``ret``, ``pushf`` and ``popf`` share.

Stack accesses are 8-byte data accesses at the current CPL through §5.3 (so a misaligned
sp raises #AC).  A push whose store faults leaves sp unchanged; a pop whose load faults
changes nothing.
"""

from __future__ import annotations

from cffi_core.isa.encoding import Decoded
from cffi_core.spec.access import load, store
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.registers import advance, write_rd
from cffi_core.spec.state import MASK64, SP, State

QUAD = 8


def push_quad(state: State, mem: PhysicalMemory, value: int) -> None:
    """sp - 8 is stored to first; sp changes only once the store succeeded."""
    sp = (state.r[SP] - QUAD) & MASK64
    store(state, mem, sp, QUAD, value)
    state.r[SP] = sp


def pop_quad(state: State, mem: PhysicalMemory) -> int:
    """Load from sp, then sp += 8; the caller writes the value last (so ``pop sp`` keeps it)."""
    value = load(state, mem, state.r[SP], QUAD)
    state.r[SP] = (state.r[SP] + QUAD) & MASK64
    return value


# ---- stack ----


def execute_push(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """§3: rs1 is read first, then sp -= 8, then the store (``push sp`` pushes the old sp)."""
    push_quad(state, mem, state.r[d.rs1])
    advance(state)


def execute_pop(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """§3: load from sp, sp += 8, then rd = value (``pop sp`` leaves the loaded value in sp)."""
    write_rd(state, d.rd, pop_quad(state, mem))
    advance(state)
