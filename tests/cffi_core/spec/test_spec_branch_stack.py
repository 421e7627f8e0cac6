"""Branches, jumps, calls and the stack (manual §3): offsets from the branch itself, faults
at a bad target's fetch, push/pop ordering (push sp, pop sp), and faulting pushes."""

from __future__ import annotations

import pytest
from spec_rig import CODE, DATA, MEMORY, STACK

from cffi_core.isa.encoding import encode
from cffi_core.spec import AC, EXIT_BUDGET, GP, MC, PF, SP, UD

U64 = 2**64 - 1


@pytest.mark.parametrize(
    "mnemonic, a, b, taken",
    [
        ("beq", 5, 5, True), ("beq", 5, 6, False),
        ("bne", 5, 6, True), ("bne", 5, 5, False),
        ("blt", U64, 0, True), ("blt", 0, U64, False),
        ("bge", 0, U64, True), ("bge", U64, 0, False), ("bge", 3, 3, True),
        ("bltu", 0, U64, True), ("bltu", U64, 0, False),
        ("bgeu", U64, 0, True), ("bgeu", 0, U64, False), ("bgeu", 3, 3, True),
    ],
)  # fmt: skip
def test_compare_and_branch(rig, mnemonic, a, b, taken):
    rig.state.r[1], rig.state.r[2] = a, b
    rig.code(encode(mnemonic, rs1=1, rs2=2, imm=-8))
    rig.run(1)
    assert rig.state.pc == (CODE - 8 if taken else CODE + 4)


def test_jmp_counts_words_from_the_jump_itself(rig):
    rig.code(encode("jmp", imm=0x100))
    rig.run(1)
    assert rig.state.pc == CODE + 0x100


def test_jmp_to_itself_loops(rig):
    rig.code(encode("jmp", imm=0))
    assert rig.run(10).reason == EXIT_BUDGET
    assert rig.state.pc == CODE and rig.state.clock == 10


def test_call_and_ret(rig):
    rig.code(encode("call", imm=0x20))
    rig.code(encode("ret"), at=CODE + 0x20)
    rig.run(1)
    assert rig.state.pc == CODE + 0x20
    assert rig.state.r[SP] == STACK - 8
    assert rig.read64(STACK - 8) == CODE + 4
    rig.run(1)
    assert rig.state.pc == CODE + 4 and rig.state.r[SP] == STACK


def test_callr_reads_its_target_before_pushing(rig):
    rig.code(encode("callr", rs1=SP))
    rig.run(1)
    assert rig.state.pc == STACK  # the old sp
    assert rig.read64(STACK - 8) == CODE + 4


def test_jr(rig):
    rig.state.r[4] = 0x5000
    rig.code(encode("jr", rs1=4))
    rig.run(1)
    assert rig.state.pc == 0x5000


@pytest.mark.parametrize("target, vector", [(0x5002, AC), (MEMORY, MC)])
def test_a_jump_to_a_bad_address_succeeds_and_its_fetch_faults(rig, target, vector):
    rig.state.r[4] = target
    rig.code(encode("jr", rs1=4))
    assert rig.run(1).reason == EXIT_BUDGET
    assert rig.state.pc == target
    assert rig.event()[0] == vector
    assert rig.state.pc == target


def test_a_jump_to_a_non_canonical_address_faults_at_the_target(rig):
    rig.paging()
    rig.state.r[4] = 1 << 50
    rig.code(encode("jr", rs1=4))
    assert rig.event() == (GP, 0)
    assert rig.state.pc == 1 << 50


def test_push_reads_rs1_then_decrements_sp(rig):
    rig.state.r[3] = 0x1234
    rig.code(encode("push", rs1=3), encode("push", rs1=SP))
    rig.run(2)
    assert rig.read64(STACK - 8) == 0x1234
    assert rig.read64(STACK - 16) == STACK - 8  # push sp pushes sp as it was
    assert rig.state.r[SP] == STACK - 16


def test_pop_increments_sp_then_writes_rd(rig):
    rig.write64(STACK, 0x4242)
    rig.code(encode("pop", rd=3))
    rig.run(1)
    assert rig.state.r[3] == 0x4242 and rig.state.r[SP] == STACK + 8


def test_pop_sp_leaves_the_loaded_value_in_sp(rig):
    rig.write64(STACK, DATA)
    rig.code(encode("pop", rd=SP))
    rig.run(1)
    assert rig.state.r[SP] == DATA


def test_pop_r0_moves_sp_only(rig):
    rig.write64(STACK, 77)
    rig.code(encode("pop", rd=0))
    rig.run(1)
    assert rig.state.r[0] == 0 and rig.state.r[SP] == STACK + 8


def test_a_misaligned_stack_raises_ac(rig):
    rig.state.r[SP] = STACK - 4
    rig.code(encode("push", rs1=1))
    assert rig.event() == (AC, 0)


def test_a_faulting_push_leaves_sp_unchanged(rig):
    tables = rig.paging()
    tables.map(STACK - 0x1000, 0, 0x1000, flags=0)  # the page below the stack: read-only
    rig.state.cpl = 3
    rig.state.flags = 3 << 12
    rig.code(encode("push", rs1=1))
    vector, _ = rig.event()
    assert vector == PF
    assert rig.state.r[SP] == STACK


def test_a_faulting_call_changes_nothing(rig):
    rig.state.r[SP] = MEMORY + 0x1000  # the push is beyond RAM
    rig.code(encode("call", imm=0x40))
    assert rig.event() == (MC, None)
    assert rig.state.pc == CODE and rig.state.r[SP] == MEMORY + 0x1000


def test_ret_to_the_popped_address(rig):
    rig.write64(STACK, 0x7770)
    rig.code(encode("ret"))
    rig.run(1)
    assert rig.state.pc == 0x7770 and rig.state.r[SP] == STACK + 8


def test_ud_and_the_zero_word_raise_ud(rig):
    rig.code(encode("ud"))
    assert rig.event() == (UD, None)
    rig.state.pc = CODE + 4  # cleared memory
    assert rig.event() == (UD, None)
