"""Branches, jumps, calls and the stack on the core (§3): conditions, targets inside and across
pages, bad targets (the fault comes from the fetch at the target), push/pop/call/ret rules."""

from __future__ import annotations

import pytest
from core_rig import AC, CODE, DATA, GP, SP, STACK, U64, UD, Core, I

NEG = U64  # -1


def run_words(*words: int, at: int = CODE, budget: int = 1000, **regs: int) -> Core:
    c = Core()
    c.cpu.pc = at
    c.set_r(**regs)
    c.code(*words, at=at)
    c.run(budget)
    return c


# (mnemonic, rs1, rs2, taken)
CONDITIONS = [
    ("beq", 3, 3, True), ("beq", 3, 4, False), ("bne", 3, 4, True), ("bne", 3, 3, False),
    ("blt", NEG, 0, True), ("blt", 0, NEG, False), ("blt", 2, 2, False),
    ("bge", 0, NEG, True), ("bge", 2, 2, True), ("bge", NEG, 0, False),
    ("bltu", 0, NEG, True), ("bltu", NEG, 0, False), ("bgeu", NEG, 0, True), ("bgeu", 1, 2, False),
]  # fmt: skip


@pytest.mark.parametrize(("mn", "a", "b", "taken"), CONDITIONS)
@pytest.mark.parametrize("offset", [8, 0x1000, -0x800, -0x2000])
def test_compare_and_branch(mn, a, b, taken, offset):
    at = CODE + 0x1800  # middle of a page: 8 and -0x800 stay in it, the others leave it
    c = Core()
    c.cpu.pc = at
    c.set_r(r1=a, r2=b)
    c.code(I(mn, rs1=1, rs2=2, imm=offset), I("ud"), at=at)
    c.code(I("ud"), at=at + offset)
    c.run()
    assert c.cpu.pc == (at + offset if taken else at + 4)
    assert c.counters()["instructions"] == 1


def test_loop_inside_a_page_counts_every_iteration():
    c = run_words(I("addi", rd=1, rs1=1, imm=1), I("bltu", rs1=1, rs2=2, imm=-4), I("ud"), budget=5000, r2=1000)
    assert c.r(1) == 1000
    assert c.counters()["instructions"] == 2000


@pytest.mark.parametrize(("at", "offset"), [(CODE + 0xFFC, -0xFFC), (CODE, 0xFFC), (CODE + 0xFFC, 4), (CODE, -8)])
def test_jmp_to_page_edges(at, offset):
    c = Core()
    c.cpu.pc = at
    c.code(I("jmp", imm=offset), at=at)
    c.code(I("addi", rd=1, imm=7), I("ud"), at=at + offset)
    c.run()
    assert c.r(1) == 7 and c.event()[2] == at + offset + 4


def test_execution_falls_through_into_the_next_page():
    at = CODE + 0xFF8
    c = run_words(I("addi", rd=1, imm=1), I("addi", rd=1, rs1=1, imm=2), I("addi", rd=1, rs1=1, imm=4), I("ud"), at=at)
    assert c.r(1) == 7
    assert c.event() == (UD, None, CODE + 0x1004)


@pytest.mark.parametrize("call_offset", [0x40, 0x3000, -0x800])
def test_call_pushes_the_return_address_and_ret_pops_it(call_offset):
    at = CODE + 0x1000
    c = Core()
    c.cpu.pc = at
    c.code(I("call", imm=call_offset), I("addi", rd=2, imm=9), I("ud"), at=at)
    c.code(I("addi", rd=1, imm=5), I("ret"), at=at + call_offset)
    c.run()
    assert (c.r(1), c.r(2), c.r(SP)) == (5, 9, STACK)
    assert c.r64(STACK - 8) == at + 4
    assert c.event() == (UD, None, at + 8)


def test_callr_reads_its_target_before_the_push():
    c = run_words(I("callr", rs1=SP), I("ud"), r15=DATA)  # callr sp: jumps to the old sp
    assert c.r64(DATA - 8) == CODE + 4
    assert c.event() == (UD, None, DATA)  # zeroed memory at DATA: the all-zero word
    assert c.r(SP) == DATA - 8


def test_jr_and_callr_to_registers():
    c = Core()
    c.code(I("jr", rs1=1))
    c.code(I("callr", rs1=2), at=CODE + 0x2000)
    c.code(I("pop", rd=3), I("ud"), at=CODE + 0x3000)
    c.set_r(r1=CODE + 0x2000, r2=CODE + 0x3000)
    c.run()
    assert c.r(3) == CODE + 0x2004 and c.r(SP) == STACK


def test_push_reads_rs1_first_and_pop_writes_rd_last():
    c = run_words(I("push", rs1=SP), I("pop", rd=1), I("push", rs1=2), I("pop", rd=SP), I("ud"), r2=0xABC0)
    assert c.r(1) == STACK  # push sp pushed the old sp
    assert c.r(SP) == 0xABC0  # pop sp leaves the loaded value


@pytest.mark.parametrize("word", [I("push", rs1=1), I("call", imm=0x100), I("callr", rs1=1), I("pushf")])
def test_a_push_that_faults_changes_nothing(word):
    c = run_words(word, r1=CODE + 0x200, r15=STACK + 4)
    assert c.event() == (AC, 0, CODE)
    assert c.r(SP) == STACK + 4


@pytest.mark.parametrize("word", [I("pop", rd=1), I("ret"), I("popf"), I("iret")])
def test_a_pop_that_faults_changes_nothing(word):
    c = run_words(word, r1=7, r15=STACK + 4)
    assert c.event() == (AC, 0, CODE)
    assert (c.r(SP), c.r(1)) == (STACK + 4, 7)


@pytest.mark.parametrize("target", [CODE + 2, CODE + 0x2001, 7])
def test_jump_to_a_misaligned_target_faults_at_the_target(target):
    c = run_words(I("jr", rs1=1), r1=target)
    assert c.event() == (AC, 0, target)
    assert c.counters()["instructions"] == 1  # the jump retired; the fetch at the target faulted
    assert c.counters()["ticks"] == 2


def test_jump_to_a_non_canonical_target_faults_at_the_target():
    c = Core()
    c.paging(4)
    c.set_r(r1=1 << 47)
    c.code(I("jr", rs1=1))
    c.run()
    assert c.event() == (GP, 0, 1 << 47)


def test_ret_to_a_bad_target_faults_at_the_target():
    c = Core()
    c.w64(STACK, 0x3)
    c.code(I("ret"))
    c.run()
    assert c.event() == (AC, 0, 3)
    assert c.r(SP) == STACK + 8
