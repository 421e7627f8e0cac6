"""Interrupts and exceptions on the core (§6): int n and iret with ring switches, the frame,
gate checks, host gates, nested faults (#DF, triple fault), the single-step trap, the sti
shadow, the TPR, hlt and the clock."""

from __future__ import annotations

import pytest
from core_rig import (
    AC,
    CODE,
    DB,
    DF,
    GATE_HOST,
    GATE_INT,
    GATE_RSVD,
    GATE_TRAP,
    GP,
    HANDLER,
    HLT,
    HOST_GATE,
    IDT,
    IF,
    IO_OUT,
    MEMORY,
    RSP,
    SHUTDOWN,
    SP,
    STACK,
    TF,
    UD,
    USER_STACK,
    Core,
    I,
    iopl,
)  # fmt: skip

from cffi_core._binding import lib


def user_core(features: int = 0) -> Core:
    c = Core(features)
    c.cpu.cpl = 3
    c.cpu.r[SP] = USER_STACK
    return c


# ---- §6.3 delivery and §6.4 iret ----


@pytest.mark.parametrize(("ring", "gate_type", "flags"), [
    (0, GATE_INT, IF), (0, GATE_TRAP, IF | iopl(3)), (1, GATE_INT, 0), (2, GATE_TRAP, TF | IF),
])  # fmt: skip
def test_int_from_ring_3_switches_stack_and_pushes_the_frame(ring, gate_type, flags):
    c = user_core()
    c.cpu.flags = flags
    c.cpu.r[SP] = USER_STACK - 8
    c.gate(0x80, HANDLER, gate_type, dpl=3, ring=ring)
    c.code(I("int", imm=0x80))
    c.code(I("ud"), at=HANDLER)
    c.run()
    sp = RSP[ring]
    assert c.r(SP) == sp - 32
    assert [c.r64(sp - 8 * i) for i in range(1, 5)] == [USER_STACK - 8, flags, 3, CODE + 4]
    assert (c.cpu.cpl, c.cpu.pc) == (ring, HANDLER)
    want = flags & ~TF & ~(IF if gate_type == GATE_INT else 0)
    assert c.cpu.flags == want
    assert c.counters()["exceptions"][0x80] == 1


def test_same_ring_event_aligns_the_stack_down_to_16_bytes():
    c = Core()
    c.cpu.r[SP] = STACK - 4 * 2 - 8
    c.gate(0x40, HANDLER)
    c.code(I("int", imm=0x40))
    c.code(I("ud"), at=HANDLER)
    c.run()
    assert c.r(SP) == STACK - 16 - 32
    assert c.r64(STACK - 24) == STACK - 16  # the old sp, unaligned


def test_iret_returns_to_ring_3_with_the_popf_rules():
    c = user_core()
    c.cpu.flags = IF
    c.gate(0x80, HANDLER, dpl=3)
    c.code(I("int", imm=0x80), I("pushf"), I("pop", rd=2), I("rdcs", rd=3), I("ud"))
    # the handler makes the frame's FLAGS ask for IOPL 3 (ignored: judged at CPL 0 it is allowed!)
    c.code(I("ld", rd=1, rs1=SP, imm=16), I("ori", rd=1, rs1=1, imm=iopl(3)), I("sd", rs2=1, rs1=SP, imm=16),
           I("iret"), at=HANDLER)  # fmt: skip
    c.run()
    assert c.event()[2] == CODE + 16
    assert (c.r(2), c.r(3), c.r(SP)) == (IF | iopl(3), 3, USER_STACK)


def test_iret_to_an_inner_ring_raises_gp():
    c = user_core()
    for i, v in enumerate((CODE + 0x100, 0, 0, USER_STACK)):
        c.w64(USER_STACK + 8 * i, v)
    c.code(I("iret"))
    c.run()
    assert c.event() == (GP, 0, CODE)
    assert (c.cpu.cpl, c.r(SP)) == (3, USER_STACK)


def test_iret_may_return_to_an_outer_ring_and_sets_tf():
    c = Core()
    for i, v in enumerate((CODE + 0x100, 3, TF, USER_STACK)):
        c.w64(STACK + 8 * i, v)
    c.code(I("iret"))
    c.code(I("addi", rd=1, imm=1), I("addi", rd=1, rs1=1, imm=1), at=CODE + 0x100)
    c.run()
    # TF set by iret traps after the *following* instruction
    assert c.event() == (DB, None, CODE + 0x104)
    assert (c.cpu.cpl, c.r(1), c.exit.kind) == (3, 1, lib.P64_EVENT_TRAP)


def test_int_checks_the_gate_dpl():
    c = user_core()
    c.gate(0x80, HANDLER, dpl=2)
    c.code(I("int", imm=0x80))
    c.run()
    assert c.event() == (GP, 8 * 0x80 + 2, CODE)
    assert c.counters()["instructions"] == 0


@pytest.mark.parametrize(
    "attrs", [{"present": False}, {"gate_type": GATE_RSVD}, {"ring": 1}], ids=["not present", "type 3", "outer ring"]
)
def test_bad_gate_for_int_is_the_ints_own_fault_without_ext(attrs):
    c = Core()
    c.gate(0x21, HANDLER, **{"dpl": 3, **attrs})
    c.code(I("int", imm=0x21))
    c.run()
    assert c.event() == (GP, 8 * 0x21 + 2, CODE)
    assert c.counters()["double_faults"] == 0


def test_bad_gate_for_an_external_interrupt_sets_ext():
    c = Core()
    c.cpu.flags = IF
    c.cpu.intr_vector = 0x30
    c.gate(0x30, HANDLER, present=False)
    c.code(I("ud"))
    c.run()
    assert c.event() == (GP, 8 * 0x30 + 3, CODE)
    assert (c.cpu.intr_vector, c.cpu.intr_acked) == (-1, 0x30)


def test_host_gate_exit_pushes_nothing():
    c = user_core()
    c.cpu.flags = IF
    c.code(I("addi", rd=1, imm=1), I("int", imm=0x55))
    c.run()
    assert (c.exit.reason, c.exit.vector, c.exit.kind, c.exit.has_error) == (HOST_GATE, 0x55, lib.P64_EVENT_SOFTWARE, 0)
    assert (c.cpu.pc, c.cpu.cpl, c.cpu.flags, c.r(SP)) == (CODE + 8, 3, IF, USER_STACK)
    assert c.counters()["host_gate_exits"] == 1 and c.counters()["instructions"] == 2


@pytest.mark.parametrize(("word", "vector", "code", "pc"), [
    (I("ud"), UD, None, CODE), (I("hlt"), GP, 0, CODE), (I("int", imm=3), 3, None, CODE + 4),
    (I("ld", rd=1, rs1=0, imm=1), AC, 0, CODE),
])  # fmt: skip
def test_host_gate_pc_rules(word, vector, code, pc):
    c = user_core()
    c.code(word)
    c.run()
    assert c.event() == (vector, code, pc)


def test_external_interrupt_at_a_host_gate():
    c = Core()
    c.cpu.flags = IF
    c.cpu.intr_vector = 0x40
    c.code(I("ud"))
    c.run()
    assert (c.exit.vector, c.exit.kind, c.cpu.pc) == (0x40, lib.P64_EVENT_EXTERNAL, CODE)
    assert c.counters()["interrupts"][0x40] == 1 and c.counters()["ticks"] == 1


# ---- §6.6 nested faults ----


def test_fault_while_pushing_the_frame_becomes_a_double_fault():
    c = user_core()
    c.cpu.rsp[0] = MEMORY + 0x1000  # the ring 0 stack is beyond RAM: the first push raises #MC
    c.gate(UD, HANDLER)
    c.code(I("ud"))
    c.run()
    assert c.event() == (DF, 0, CODE)
    assert c.exit.kind == lib.P64_EVENT_ABORT
    assert (c.counters()["double_faults"], c.counters()["exceptions"][UD]) == (1, 0)


def test_fault_while_delivering_a_double_fault_shuts_down():
    c = user_core()
    c.gate(UD, HANDLER, present=False)
    c.gate(DF, HANDLER, present=False)
    c.code(I("ud"))
    assert c.run() == SHUTDOWN
    assert c.cpu.shutdown == 1
    assert c.run() == SHUTDOWN
    counters = c.counters()
    assert (counters["double_faults"], counters["triple_faults"], counters["ticks"]) == (1, 1, 1)
    lib.p64_reset(c.m)
    assert c.cpu.shutdown == 0 and c.counters()["triple_faults"] == 0


def test_idt_beyond_ram_shuts_down():
    c = Core()
    c.cpu.idtr = MEMORY
    c.code(I("ud"))
    assert c.run() == SHUTDOWN


# ---- §6.4 single step ----


def test_single_step_traps_after_each_instruction_with_no_tick_of_its_own():
    c = Core()
    c.cpu.flags = TF
    c.code(I("addi", rd=1, imm=1), I("addi", rd=1, rs1=1, imm=1))
    c.run()
    assert c.event() == (DB, None, CODE + 4)
    assert c.counters()["ticks"] == 1
    assert c.cpu.pending_db == 0


def test_pending_db_after_an_exit_is_delivered_when_the_host_resumes():
    c = Core()
    c.cpu.flags = TF
    c.code(I("out", rs1=0, rs2=1, imm=0x3F8), I("ud"))
    assert c.run() == IO_OUT
    assert c.cpu.pending_db == 1
    assert c.run(0) == HOST_GATE  # the #DB comes before the budget check
    assert c.event() == (DB, None, CODE + 4)


def test_popf_setting_tf_traps_after_the_following_instruction():
    c = Core()
    c.set_r(r2=TF)
    c.code(I("push", rs1=2), I("popf"), I("addi", rd=1, imm=1), I("addi", rd=1, rs1=1, imm=1))
    c.run()
    assert c.event() == (DB, None, CODE + 12)
    assert c.r(1) == 1


def test_a_faulting_instruction_does_not_single_step():
    c = Core()
    c.cpu.flags = TF
    c.code(I("ud"))
    c.run()
    assert c.event() == (UD, None, CODE)
    assert c.cpu.pending_db == 0


@pytest.mark.parametrize("gate_type", [GATE_TRAP, GATE_HOST])
def test_int_raises_no_single_step_trap(gate_type):
    c = Core()
    c.cpu.flags = TF | IF
    c.gate(0x40, HANDLER, gate_type)
    c.code(I("int", imm=0x40))
    c.code(I("ud"), at=HANDLER)
    c.run()
    assert c.cpu.pending_db == 0
    if gate_type == GATE_TRAP:  # delivery cleared TF; the handler runs on to its ud
        assert c.event() == (UD, None, HANDLER) and c.cpu.flags == IF
    else:
        assert c.event() == (0x40, None, CODE + 4)


# ---- §6.5 external interrupts, sti shadow, TPR, hlt ----


def test_sti_shadow_delays_the_interrupt_by_one_instruction():
    c = Core()
    c.cpu.intr_vector = 0x40
    c.code(I("sti"), I("addi", rd=1, imm=1), I("addi", rd=1, rs1=1, imm=1))
    c.run()
    assert c.exit.vector == 0x40 and c.cpu.pc == CODE + 8 and c.r(1) == 1


def test_sti_hlt_does_not_lose_the_interrupt():
    c = Core()
    c.cpu.intr_vector = 0x40
    c.code(I("sti"), I("hlt"))
    assert c.run() == HLT
    assert c.cpu.halted == 1 and c.cpu.pc == CODE + 8
    assert c.run() == HOST_GATE
    assert c.exit.vector == 0x40 and c.cpu.halted == 0 and c.cpu.pc == CODE + 8


def test_sti_with_if_already_set_makes_no_shadow():
    c = Core()
    c.cpu.flags = IF
    c.code(I("sti"), I("addi", rd=1, imm=1))
    c.run(1)
    assert c.cpu.int_shadow == 0
    c.cpu.intr_vector = 0x40
    c.run()
    assert c.exit.vector == 0x40 and c.cpu.pc == CODE + 4


@pytest.mark.parametrize(("vector", "cr8", "delivered"), [(0x40, 3, True), (0x40, 4, False), (0xFF, 14, True),
                                                           (0xFF, 15, False), (0x20, 0, True)])  # fmt: skip
def test_tpr_holds_back_interrupts_of_lower_class(vector, cr8, delivered):
    c = Core()
    c.cpu.flags = IF
    c.cpu.cr8 = cr8
    c.cpu.intr_vector = vector
    c.code(I("addi", rd=1, imm=1), I("ud"))
    c.run()
    assert (c.exit.vector == vector and c.cpu.pc == CODE) == delivered


def test_lowering_cr8_lets_the_interrupt_in_after_the_mtcr():
    c = Core()
    c.cpu.flags = IF
    c.cpu.cr8 = 15
    c.cpu.intr_vector = 0x40
    c.code(I("mtcr", crn=8, rs1=0), I("addi", rd=1, imm=1))
    c.run()
    assert c.exit.vector == 0x40 and c.cpu.pc == CODE + 4


def test_cleared_if_holds_interrupts_back():
    c = Core()
    c.cpu.intr_vector = 0x40
    c.code(I("addi", rd=1, imm=1), I("ud"))
    c.run()
    assert c.event() == (UD, None, CODE + 4)
    assert c.cpu.intr_vector == 0x40


def test_hlt_while_halted_exits_without_ticks_and_advance_clock_counts_halted_ticks():
    c = Core()
    c.code(I("hlt"))
    assert c.run() == HLT
    assert c.run() == HLT
    assert lib.p64_clock(c.m) == 1
    lib.p64_advance_clock(c.m, 500)
    assert (lib.p64_clock(c.m), c.counters()["halted_ticks"], c.counters()["ticks"]) == (501, 500, 1)


def test_interrupt_wakes_a_halted_cpu_and_the_handler_returns_after_hlt():
    c = Core()
    c.cpu.flags = IF
    c.gate(0x40, HANDLER)
    c.code(I("hlt"), I("addi", rd=2, imm=2), I("ud"))
    c.code(I("addi", rd=1, imm=1), I("iret"), at=HANDLER)
    assert c.run() == HLT
    c.cpu.intr_vector = 0x40
    c.run()
    assert c.event() == (UD, None, CODE + 8)
    assert (c.r(1), c.r(2), c.cpu.halted, c.cpu.intr_acked) == (1, 2, 0, 0x40)
    assert c.counters()["interrupts"][0x40] == 1


def test_interrupt_delivery_is_a_tick_within_the_budget():
    c = Core()
    c.cpu.flags = IF
    c.cpu.intr_vector = 0x40
    c.gate(0x40, HANDLER)
    c.code(I("addi", rd=1, rs1=1, imm=1), I("jmp", imm=-4), at=HANDLER)
    c.run(10)
    assert c.counters()["ticks"] == 10 and c.r(1) == 5


def test_page_fault_at_a_host_gate_reports_the_address_and_cr2():
    c = Core()
    c.paging(4)
    c.set_r(r1=0x100000)
    c.code(I("ld", rd=2, rs1=1, imm=8))
    c.run()
    assert c.event() == (14, 0, CODE)
    assert c.exit.address == 0x100008 == c.cpu.cr2


def test_nested_page_fault_updates_cr2():
    c = user_core()
    c.paging(4)
    c.cpu.rsp[0] = 0x200000  # not mapped: pushing the #UD frame faults
    c.gate(UD, HANDLER)
    c.code(I("ud"))
    c.run()
    assert c.event() == (DF, 0, CODE)
    assert c.cpu.cr2 == 0x200000 - 8


def test_idt_read_at_misaligned_idtr_is_a_double_fault():
    c = Core()
    c.cpu.idtr = IDT + 4
    c.gate(DF - 0, 0, GATE_HOST, dpl=3)
    c.code(I("ud"))
    assert c.run() == SHUTDOWN  # #AC reading the #UD gate, #AC again reading the #DF gate
