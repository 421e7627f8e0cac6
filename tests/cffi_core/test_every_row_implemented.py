"""Every row of the instruction table has semantics in the C core and in the spec: a valid
word of each instruction, run at CPL 0, never raises #UD unless the table says it must."""

from __future__ import annotations

import pytest

from cffi_core import spec
from cffi_core.isa.encoding import encode
from cffi_core.isa.table import INSTRUCTIONS, Privilege
from cffi_core.machine import ExitReason, Machine

CODE, IDT, DATA = 0x1000, 0x8000, 0x10000
UD = 6
HOST_GATE_ATTR = 1 | 2 << 1  # present host gate: every event comes back to the test


def _word(insn) -> int:
    roles = {role for role, _ in insn.format.slots}
    return encode(insn, **{r: 2 for r in roles if r != "crn"}, **({"crn": 2} if "crn" in roles else {}))


def _ud_expected(insn) -> bool:
    return insn.privilege in (Privilege.NEVER, Privilege.VMX)


def _memory() -> bytearray:
    mem = bytearray(0x20000)
    for v in range(256):
        mem[IDT + 16 * v + 8 : IDT + 16 * v + 16] = HOST_GATE_ATTR.to_bytes(8, "little")
    return mem


@pytest.mark.parametrize("insn", INSTRUCTIONS, ids=lambda i: i.mnemonic)
def test_core_has_a_body_for_every_row(insn):
    m = Machine("x86-64-2005", memory=0x20000)
    mem = _memory()
    mem[CODE : CODE + 4] = _word(insn).to_bytes(4, "little")
    m.write(0, bytes(mem))
    m.cpu.pc, m.cpu.idtr, m.cpu.r[2], m.cpu.r[15] = CODE, IDT, DATA, DATA + 0x100
    ex = m.run(1)
    raised_ud = ex.reason is ExitReason.HOST_GATE and ex.vector == UD
    assert raised_ud == _ud_expected(insn)


@pytest.mark.parametrize("insn", INSTRUCTIONS, ids=lambda i: i.mnemonic)
def test_spec_has_a_body_for_every_row(insn):
    mem = _memory()
    mem[CODE : CODE + 4] = _word(insn).to_bytes(4, "little")
    state = spec.State.reset(entry=CODE)
    state.idtr, state.r[2], state.r[15] = IDT, DATA, DATA + 0x100
    ex = spec.run(state, spec.ByteMemory(mem), 1)
    raised_ud = ex.reason == spec.EXIT_HOST_GATE and ex.vector == UD
    assert raised_ud == _ud_expected(insn)
