"""Interrupts and exceptions (manual §6): the IDT, delivery steps 1-8, frames with and
without a ring change, interrupt and trap gates, host gates, gate checks and their error
codes, iret, nested faults, #DF and shutdown."""

from __future__ import annotations

from spec_rig import CODE, DATA, HANDLER, IDT, MEMORY, RSP, STACK, USER_STACK, Rig

from cffi_core.isa.encoding import encode
from cffi_core.spec import (
    BP,
    DF,
    EVENT_ABORT,
    EVENT_EXTERNAL,
    EVENT_FAULT,
    EVENT_SOFTWARE,
    EXIT_BUDGET,
    EXIT_HOST_GATE,
    EXIT_SHUTDOWN,
    FLAGS_IF,
    FLAGS_IOPL,
    FLAGS_TF,
    GATE_RESERVED,
    GATE_TRAP,
    GP,
    MC,
    PF,
    SP,
    UD,
    counters_of,
)

VECTOR = 0x40


def frame(rig: Rig, n: int) -> list[int]:
    """The n quadwords from sp upward."""
    return [rig.read64(rig.state.r[SP] + 8 * i) for i in range(n)]


# ---- frames ----


def test_int_from_ring_3_switches_to_rsp0_and_pushes_sp_flags_cs_pc(rig):
    rig.gate(VECTOR, dpl=3)
    s = rig.state
    s.cpl, s.flags, s.r[SP] = 3, FLAGS_IF, USER_STACK - 8
    rig.code(encode("int", imm=VECTOR))
    assert rig.run(1).reason == EXIT_BUDGET
    assert (s.cpl, s.pc, s.r[SP]) == (0, HANDLER, RSP[0] - 32)
    assert frame(rig, 4) == [CODE + 4, 3, FLAGS_IF, USER_STACK - 8]
    assert not s.flags & FLAGS_IF  # an interrupt gate


def test_the_new_stack_is_aligned_down_to_16_bytes(rig):
    rig.gate(VECTOR, dpl=3)
    rig.state.r[SP] = STACK - 8
    rig.code(encode("int", imm=VECTOR))
    rig.run(1)
    assert rig.state.r[SP] == STACK - 16 - 32  # same ring: sp itself, aligned
    assert frame(rig, 4)[3] == STACK - 8


def test_the_stack_of_the_handler_ring_comes_from_its_msr(rig):
    rig.gate(VECTOR, dpl=3, ring=1)
    rig.state.cpl = 2
    rig.code(encode("int", imm=VECTOR))
    rig.run(1)
    assert rig.state.cpl == 1 and rig.state.r[SP] == RSP[1] - 32


def test_faults_with_an_error_code_push_it_last(rig):
    rig.gate(GP)
    rig.state.cpl = 3
    rig.code(encode("hlt"))
    rig.run(1)
    assert rig.state.r[SP] == RSP[0] - 40
    assert frame(rig, 5) == [0, CODE, 3, 0, STACK]


def test_int_n_pushes_no_error_code_even_for_an_exception_vector(rig):
    rig.gate(GP, dpl=3)
    rig.code(encode("int", imm=GP))
    rig.run(1)
    assert rig.state.r[SP] == STACK - 32
    assert frame(rig, 1) == [CODE + 4]


def test_a_trap_gate_keeps_if_and_both_clear_tf(rig):
    rig.gate(VECTOR, gate_type=GATE_TRAP, dpl=3)
    rig.state.flags = FLAGS_IF | FLAGS_TF
    rig.code(encode("int", imm=VECTOR))
    rig.run(1)
    assert rig.state.flags == FLAGS_IF
    assert frame(rig, 3)[2] == FLAGS_IF | FLAGS_TF  # the pushed FLAGS are the old ones


def test_iret_returns_to_the_outer_ring(rig):
    rig.gate(VECTOR, dpl=3)
    rig.code(encode("iret"), at=HANDLER)
    s = rig.state
    s.cpl, s.flags, s.r[SP] = 3, FLAGS_IF, USER_STACK
    rig.code(encode("int", imm=VECTOR))
    rig.run(2)
    assert (s.cpl, s.pc, s.r[SP], s.flags) == (3, CODE + 4, USER_STACK, FLAGS_IF)


def test_iret_to_an_inner_ring_raises_gp(rig):
    s = rig.state
    s.cpl = 3
    for i, value in enumerate((DATA, 0, 0, STACK)):
        rig.write64(STACK + 8 * i, value)
    rig.code(encode("iret"))
    assert rig.event() == (GP, 0)
    assert (s.cpl, s.pc, s.r[SP]) == (3, CODE, STACK)


def test_iret_with_a_faulting_load_changes_nothing(rig):
    rig.state.r[SP] = MEMORY - 16  # pc and cs load fine, FLAGS and sp are beyond RAM
    rig.code(encode("iret"))
    assert rig.event() == (MC, None)
    assert rig.state.r[SP] == MEMORY - 16 and rig.state.pc == CODE


# ---- host gates ----


def test_a_fault_at_a_host_gate_exits_with_pc_at_the_instruction(rig):
    s = rig.state
    s.cpl, s.flags, s.r[SP] = 3, FLAGS_IF, USER_STACK
    rig.code(encode("ud"))
    e = rig.run(5)
    assert (e.reason, e.vector, e.kind, e.has_error) == (EXIT_HOST_GATE, UD, EVENT_FAULT, False)
    assert (s.pc, s.cpl, s.flags, s.r[SP]) == (CODE, 3, FLAGS_IF, USER_STACK)  # nothing pushed
    assert s.clock == 1 and counters_of(s)["host_gate_exits"] == 1


def test_int_n_at_a_host_gate_exits_with_pc_after_it(rig):
    rig.code(encode("int", imm=BP))
    e = rig.run(5)
    assert (e.vector, e.kind, rig.state.pc) == (BP, EVENT_SOFTWARE, CODE + 4)
    assert counters_of(rig.state)["insn"][0][0] == 1  # int retires


def test_an_external_interrupt_at_a_host_gate_exits_before_the_instruction(rig):
    rig.state.flags = FLAGS_IF
    rig.state.intr_vector = 0x30
    rig.code(encode("ud"))
    e = rig.run(5)
    assert (e.vector, e.kind, rig.state.pc) == (0x30, EVENT_EXTERNAL, CODE)
    assert (rig.state.intr_vector, rig.state.intr_acked) == (-1, 0x30)


def test_a_page_fault_at_a_host_gate_reports_its_address(rig):
    rig.paging()
    rig.state.r[1] = 0x400000  # beyond the identity map: not present
    rig.code(encode("ld", rd=2, rs1=1))
    e = rig.run(5)
    assert (e.vector, e.has_error, e.error_code, e.address) == (PF, True, 0, 0x400000)
    assert rig.state.cr2 == 0x400000


def test_a_host_gate_ignores_the_ring_of_the_gate(rig):
    rig.gate(VECTOR, 0, gate_type=2, dpl=3, ring=3)
    rig.code(encode("int", imm=VECTOR))
    assert rig.run(5).vector == VECTOR


# ---- gate checks (§6.3 steps 2, 3, 5) ----


def test_int_through_a_not_present_gate_raises_gp_8v_plus_2(rig):
    rig.gate(VECTOR, present=False)
    rig.code(encode("int", imm=VECTOR))
    assert rig.event() == (GP, 8 * VECTOR + 2)
    assert rig.state.pc == CODE  # the int instruction faulted
    assert counters_of(rig.state)["insn"][0][0] == 0


def test_an_interrupt_through_a_not_present_gate_raises_gp_with_ext(rig):
    rig.gate(0x50, present=False)
    rig.state.flags = FLAGS_IF
    rig.state.intr_vector = 0x50
    rig.code(encode("ud"))
    assert rig.event() == (GP, 8 * 0x50 + 3)
    assert rig.state.pc == CODE and rig.state.intr_acked == 0x50


def test_a_reserved_gate_type_is_like_a_not_present_gate(rig):
    rig.gate(VECTOR, gate_type=GATE_RESERVED, dpl=3)
    rig.code(encode("int", imm=VECTOR))
    assert rig.event() == (GP, 8 * VECTOR + 2)


def test_int_n_checks_the_gate_dpl(rig):
    rig.gate(VECTOR, 0, gate_type=2, dpl=2)  # even a host gate
    rig.state.cpl = 3
    rig.code(encode("int", imm=VECTOR))
    assert rig.event() == (GP, 8 * VECTOR + 2)


def test_exceptions_ignore_the_gate_dpl(rig):
    rig.gate(UD, dpl=0)
    rig.state.cpl = 3
    rig.code(encode("ud"))
    rig.run(1)
    assert (rig.state.cpl, rig.state.pc) == (0, HANDLER)


def test_a_gate_to_an_outer_ring_raises_gp(rig):
    rig.gate(VECTOR, dpl=3, ring=3)
    rig.state.cpl = 1
    rig.code(encode("int", imm=VECTOR))
    assert rig.event() == (GP, 8 * VECTOR + 2)


# ---- nested faults (§6.6) ----


def test_a_fault_while_delivering_a_fault_is_a_double_fault(rig):
    rig.gate(UD, present=False)
    rig.code(encode("ud"))
    e = rig.run(5)
    assert (e.vector, e.kind, e.has_error, e.error_code) == (DF, EVENT_ABORT, True, 0)
    assert rig.state.pc == CODE  # the instruction of the first event
    assert counters_of(rig.state)["double_faults"] == 1


def test_a_failed_frame_push_is_a_double_fault(rig):
    rig.gate(UD)
    rig.state.cpl = 3
    rig.state.rsp[0] = MEMORY + 64  # the ring 0 stack is beyond RAM
    rig.code(encode("ud"))
    assert rig.event() == (DF, 0)
    assert rig.state.cpl == 3  # nothing of the first delivery stuck


def test_a_nested_page_fault_still_writes_cr2(rig):
    rig.paging()
    rig.gate(UD)
    rig.state.cpl = 3
    rig.state.rsp[0] = 0x400000  # unmapped
    rig.code(encode("ud"))
    assert rig.event() == (DF, 0)
    assert rig.state.cr2 == 0x400000 - 8


def test_the_double_fault_handler_gets_error_code_0_and_the_first_pc(rig):
    rig.gate(UD, present=False)
    rig.gate(DF)
    rig.code(encode("ud"))
    rig.run(1)
    assert rig.state.pc == HANDLER
    assert frame(rig, 2) == [0, CODE]


def test_a_fault_while_delivering_the_double_fault_shuts_down(rig):
    rig.gate(UD, present=False)
    rig.gate(DF, present=False)
    rig.code(encode("ud"))
    assert rig.run(5).reason == EXIT_SHUTDOWN
    assert rig.state.shutdown and rig.state.clock == 1
    assert rig.run(5).reason == EXIT_SHUTDOWN  # every later run, with no tick
    assert rig.step().reason == EXIT_SHUTDOWN
    assert rig.state.clock == 1
    assert counters_of(rig.state)["triple_faults"] == 1


def test_no_idt_at_all_shuts_down():
    rig = Rig()
    rig.state.idtr = MEMORY  # every IDT read is beyond RAM
    rig.code(encode("ud"))
    assert rig.run(5).reason == EXIT_SHUTDOWN


def test_a_bad_gate_of_int_n_is_an_ordinary_gp_and_can_itself_double_fault(rig):
    rig.gate(VECTOR, present=False)
    rig.gate(GP, present=False)
    rig.code(encode("int", imm=VECTOR))
    assert rig.event() == (DF, 0)


def test_delivery_counters_by_vector(rig):
    rig.gate(VECTOR, dpl=3)
    rig.code(encode("int", imm=VECTOR))
    rig.run(1)
    c = counters_of(rig.state)
    assert c["exceptions"][VECTOR] == 1 and sum(c["interrupts"]) == 0


def test_the_idt_is_read_through_paging(rig):
    tables = rig.paging()
    tables.map(0x200000, IDT, 0x1000)  # the IDT seen at another linear address
    rig.gate(VECTOR, dpl=3)
    rig.state.idtr = 0x200000
    rig.code(encode("int", imm=VECTOR))
    rig.run(1)
    assert rig.state.pc == HANDLER


def test_a_misaligned_idt_is_a_nested_fault(rig):
    rig.state.idtr = IDT + 4
    rig.code(encode("ud"))
    assert rig.run(5).reason == EXIT_SHUTDOWN


def test_iret_at_cpl_0_restores_iopl_and_if(rig):
    rig.gate(VECTOR, dpl=3)
    rig.code(encode("iret"), at=HANDLER)
    rig.state.flags = FLAGS_IOPL | FLAGS_IF
    rig.code(encode("int", imm=VECTOR))
    rig.run(2)
    assert rig.state.flags == FLAGS_IOPL | FLAGS_IF
