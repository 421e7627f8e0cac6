"""The instruction boundary and time (manual §6.4, §6.5, §9, §10): single step and
pending_db, the interrupt shadow, TPR, hlt and halted, budgets, and shutdown first."""

from __future__ import annotations

import pytest
from spec_rig import CODE, HANDLER, Rig

from cffi_core.isa.encoding import encode
from cffi_core.spec import (
    DB,
    EVENT_EXTERNAL,
    EVENT_TRAP,
    EXIT_BUDGET,
    EXIT_HLT,
    EXIT_HOST_GATE,
    EXIT_IO_OUT,
    EXIT_SHUTDOWN,
    FLAGS_IF,
    FLAGS_TF,
    SP,
    UD,
    advance_clock,
    counters_of,
)

NOP = encode("addi", rd=0, rs1=0, imm=0)
INC = encode("addi", rd=1, rs1=1, imm=1)


# ---- single step (§6.4) ----


def test_tf_traps_after_the_instruction_with_pc_of_the_next(rig):
    rig.state.flags = FLAGS_TF
    rig.code(INC, INC)
    e = rig.run(5)
    assert (e.reason, e.vector, e.kind) == (EXIT_HOST_GATE, DB, EVENT_TRAP)
    assert rig.state.pc == CODE + 4 and rig.state.r[1] == 1
    assert rig.state.clock == 1  # the #DB took no tick of its own
    assert not rig.state.pending_db


def test_the_pending_db_is_delivered_before_the_budget_check(rig):
    rig.state.flags = FLAGS_TF
    rig.code(INC)
    rig.step()
    assert rig.state.pending_db
    assert rig.run(0).vector == DB


def test_an_exit_is_reported_before_its_single_step_trap(rig):
    rig.state.flags = FLAGS_TF
    rig.code(encode("out", rs2=1, rs1=0, imm=0x3F8), INC)
    assert rig.run(5).reason == EXIT_IO_OUT
    assert rig.state.pending_db
    assert rig.run(5).vector == DB


def test_popf_setting_tf_traps_after_the_following_instruction(rig):
    rig.write64(rig.state.r[SP], FLAGS_TF)
    rig.code(encode("popf"), INC, INC)
    e = rig.run(5)
    assert e.vector == DB and rig.state.pc == CODE + 8 and rig.state.clock == 2


def test_a_faulting_instruction_does_not_single_step(rig):
    rig.gate(UD)
    rig.state.flags = FLAGS_TF
    rig.code(encode("ud"))
    rig.code(INC, at=HANDLER)
    assert rig.run(2).reason == EXIT_BUDGET  # the handler runs with TF clear
    assert rig.state.r[1] == 1 and not rig.state.pending_db


def test_the_db_handler_sees_the_frame_of_a_trap(rig):
    rig.gate(DB)
    rig.state.flags = FLAGS_TF | FLAGS_IF
    rig.code(INC)
    rig.code(encode("iret"), at=HANDLER)
    rig.run(1)  # INC; then the #DB (no tick) is delivered at the next boundary
    rig.step()
    assert rig.state.pc == CODE + 4 and rig.state.r[1] == 1
    assert rig.state.flags == FLAGS_TF | FLAGS_IF  # iret restored TF
    sp = rig.state.r[SP]
    assert rig.read64(sp - 32) == CODE + 4  # the pushed pc was the next instruction


# ---- external interrupts, the shadow and the TPR (§6.5) ----


def interrupting(vector: int = 0x40, flags: int = FLAGS_IF, cr8: int = 0) -> Rig:
    rig = Rig()
    rig.state.flags, rig.state.cr8, rig.state.intr_vector = flags, cr8, vector
    return rig


def test_an_interrupt_is_delivered_at_the_boundary_and_acknowledged():
    rig = interrupting()
    rig.gate(0x40)
    rig.code(INC)
    assert rig.run(1).reason == EXIT_BUDGET  # the delivery is the tick
    assert rig.state.pc == HANDLER and rig.state.r[1] == 0
    assert (rig.state.intr_vector, rig.state.intr_acked) == (-1, 0x40)
    assert counters_of(rig.state)["interrupts"][0x40] == 1


def test_if_clear_holds_interrupts_off():
    rig = interrupting(flags=0)
    rig.code(INC)
    rig.run(1)
    assert rig.state.r[1] == 1 and rig.state.intr_vector == 0x40


@pytest.mark.parametrize("vector, cr8, taken", [(0x35, 2, True), (0x35, 3, False), (0xF0, 14, True),
                                                (0xF0, 15, False), (0x20, 0, True)])  # fmt: skip
def test_the_tpr_blocks_priorities_at_or_below_it(vector, cr8, taken):
    rig = interrupting(vector, cr8=cr8)
    rig.code(INC)
    e = rig.run(1)
    assert (e.reason == EXIT_HOST_GATE and e.kind == EVENT_EXTERNAL) == taken


def test_sti_shadows_one_boundary():
    rig = interrupting(flags=0)
    rig.code(encode("sti"), INC, INC)
    rig.run(2)  # sti, then INC in the shadow
    assert rig.state.r[1] == 1 and not rig.state.int_shadow
    e = rig.run(5)
    assert e.vector == 0x40 and rig.state.pc == CODE + 8


def test_sti_with_if_already_set_makes_no_shadow():
    rig = interrupting(flags=FLAGS_IF)
    rig.state.intr_vector = -1
    rig.code(encode("sti"), INC)
    rig.run(1)
    assert not rig.state.int_shadow


def test_sti_hlt_cannot_lose_the_interrupt():
    rig = interrupting(flags=0)
    rig.code(encode("sti"), encode("hlt"))
    e = rig.run(5)
    assert e.reason == EXIT_HLT and rig.state.halted and rig.state.pc == CODE + 8
    e = rig.run(5)
    assert e.vector == 0x40 and not rig.state.halted and rig.state.pc == CODE + 8


# ---- hlt and halted ----


def test_hlt_exits_with_pc_after_it_and_stays_halted_without_ticks(rig):
    rig.code(encode("hlt"))
    assert rig.run(5).reason == EXIT_HLT
    assert (rig.state.pc, rig.state.clock, rig.state.halted) == (CODE + 4, 1, True)
    assert rig.run(5).reason == EXIT_HLT
    assert rig.step().reason == EXIT_HLT
    assert rig.state.clock == 1


def test_advance_clock_counts_halted_ticks(rig):
    rig.code(encode("hlt"))
    rig.run(5)
    advance_clock(rig.state, 100)
    c = counters_of(rig.state)
    assert (rig.state.clock, c["ticks"], c["halted_ticks"]) == (101, 1, 100)
    with pytest.raises(ValueError):
        advance_clock(rig.state, -1)


def test_an_interrupt_wakes_a_halted_cpu():
    rig = interrupting(flags=FLAGS_IF, vector=-1)
    rig.gate(0x40)
    rig.code(encode("hlt"))
    rig.run(5)
    rig.state.intr_vector = 0x40
    assert rig.run(1).reason == EXIT_BUDGET
    assert rig.state.pc == HANDLER and not rig.state.halted and rig.state.clock == 2


def test_a_host_gate_delivery_wakes_a_halted_cpu():
    rig = interrupting(vector=-1)
    rig.code(encode("hlt"))
    rig.run(5)
    rig.state.intr_vector = 0x40
    assert rig.run(5).reason == EXIT_HOST_GATE
    assert not rig.state.halted


def test_a_pending_db_wakes_a_halted_cpu(rig):
    rig.state.flags = FLAGS_TF
    rig.code(encode("hlt"))
    assert rig.run(5).reason == EXIT_HLT
    assert rig.run(5).vector == DB
    assert not rig.state.halted


# ---- budgets and shutdown ----


@pytest.mark.parametrize("budget", [0, 1, 7, 100])
def test_run_executes_exactly_budget_ticks(rig, budget):
    rig.code(INC, encode("jmp", imm=-4))
    assert rig.run(budget).reason == EXIT_BUDGET
    assert rig.state.clock == budget
    assert counters_of(rig.state)["ticks"] == budget
    assert sum(counters_of(rig.state)["insn"][0]) == budget


def test_step_is_one_boundary_and_one_tick(rig):
    rig.code(INC, INC)
    assert rig.step() is None
    assert rig.state.clock == 1 and rig.state.pc == CODE + 4


def test_shutdown_is_reported_before_a_pending_db(rig):
    rig.state.shutdown = True
    rig.state.pending_db = True
    assert rig.run(5).reason == EXIT_SHUTDOWN
    assert rig.state.pending_db


def test_negative_budgets_are_refused(rig):
    with pytest.raises(ValueError):
        rig.run(-1)
