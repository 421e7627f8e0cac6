"""Control registers, MSRs and the frame of faults with error codes on the core (§2, §6.3)."""

from __future__ import annotations

import pytest
from core_rig import (
    CODE,
    CR0_PE,
    CR0_PG,
    CR0_WP,
    CR4_PGE,
    CR4_TSD,
    DF,
    GP,
    HANDLER,
    IDT,
    RSP,
    SEGLIMIT,
    SP,
    STACK,
    UD,
    USER_STACK,
    Core,
    I,
)  # fmt: skip

MSR_TSC, MSR_RSP0, MSR_SEGLIMIT = 0x10, 0x100, 0x200


def run_with(*words: int, features: int = 0, **regs: int) -> Core:
    c = Core(features)
    c.set_r(**regs)
    c.code(*words, I("ud"))
    c.run()
    return c


@pytest.mark.parametrize(("crn", "value"), [
    (0, CR0_PE | CR0_WP), (0, CR0_PE | 1 << 3), (2, 2**64 - 1), (3, 0x12345000), (4, 0), (4, 1 | CR4_TSD | CR4_PGE),
    (8, 15),
])  # fmt: skip
def test_mtcr_then_mfcr_reads_back(crn, value):
    c = run_with(I("mtcr", crn=crn, rs1=1), I("mfcr", rd=2, crn=crn), r1=value)
    assert c.r(2) == value
    assert c.event() == (UD, None, CODE + 8)


@pytest.mark.parametrize(("crn", "value"), [
    (0, 0), (0, CR0_PE | 1 << 1), (0, CR0_PE | 1 << 16), (3, 0x1001), (3, 1 << 52), (4, 3), (4, 1 << 3),
    (4, 1 << 8), (8, 16),
])  # fmt: skip
def test_mtcr_refuses_reserved_values_with_gp(crn, value):
    c = run_with(I("mtcr", crn=crn, rs1=1), r1=value)
    assert c.event() == (GP, 0, CODE)
    assert (c.cpu.cr0, c.cpu.cr3, c.cpu.cr4, c.cpu.cr8) == (CR0_PE, 0, 2, 0)


def test_smsw_sees_pg_and_wp():
    c = Core()
    c.paging(4)
    c.cpu.cr0 |= CR0_WP
    c.code(I("smsw", rd=1), I("ud"))
    c.run()
    assert c.r(1) == CR0_PE | CR0_WP | CR0_PG


@pytest.mark.parametrize("index", [MSR_RSP0, MSR_RSP0 + 1, MSR_RSP0 + 2])
def test_rsp_msrs(index):
    c = run_with(I("wrmsr", rs1=1, rs2=2), I("rdmsr", rd=3, rs1=1), r1=index, r2=0xABCDE0)
    assert c.r(3) == 0xABCDE0 == c.cpu.rsp[index - MSR_RSP0]


@pytest.mark.parametrize("index", [0, 0x11, 0x103, 0x1FF, 0x200, 2**64 - 1])
def test_unknown_msrs_raise_gp(index):
    c = run_with(I("rdmsr", rd=3, rs1=1), r1=index)
    assert c.event() == (GP, 0, CODE)
    c = run_with(I("wrmsr", rs1=1, rs2=0), r1=index)
    assert c.event() == (GP, 0, CODE)


def test_seglimit_msr_with_the_feature():
    c = run_with(I("wrmsr", rs1=1, rs2=2), I("rdmsr", rd=3, rs1=1), features=SEGLIMIT, r1=MSR_SEGLIMIT, r2=0x7000)
    assert c.r(3) == 0x7000 == c.cpu.seglimit


def test_tsc_msr_sets_the_offset():
    c = run_with(I("wrmsr", rs1=1, rs2=2), I("rdmsr", rd=3, rs1=1), I("rdtsc", rd=4), r1=MSR_TSC, r2=1000)
    assert (c.r(3), c.r(4)) == (1001, 1002)
    assert c.cpu.tsc_offset == 1000  # written at clock 0


def test_lidt_and_sidt():
    c = run_with(I("lidt", rs1=1), I("sidt", rd=2), r1=0x5000)
    assert c.r(2) == 0x5000 == c.cpu.idtr


def test_gp_frame_has_the_error_code_on_top():
    c = Core()
    c.cpu.cpl = 3
    c.cpu.r[SP] = USER_STACK
    c.gate(GP, HANDLER)
    c.code(I("hlt"))
    c.code(I("ud"), at=HANDLER)
    c.gate(UD, 0, 2, dpl=3)  # the handler's ud comes back to the host
    c.run()
    sp = RSP[0] - 40
    assert c.r(SP) == sp
    assert [c.r64(sp + 8 * i) for i in range(5)] == [0, CODE, 3, 0, USER_STACK]


def test_int_13_pushes_no_error_code():
    c = Core()
    c.gate(GP, HANDLER, dpl=3)
    c.code(I("int", imm=GP))
    c.code(I("ud"), at=HANDLER)
    c.run()
    assert c.r(SP) == STACK - 32
    assert c.r64(STACK - 32) == CODE + 4


def test_idt_reads_are_never_limited():
    c = Core(SEGLIMIT)
    c.cpu.seglimit = 0x1000  # below the IDT
    c.cpu.cpl = 3
    c.gate(0x80, 0, 2, dpl=3)
    c.code(I("int", imm=0x80))
    c.run()
    assert c.event() == (0x80, None, CODE + 4)


def test_frame_push_at_a_limited_ring_is_a_nested_fault():
    c = Core(SEGLIMIT)
    c.cpu.seglimit = 0x18000
    c.cpu.cpl = 3
    c.cpu.r[SP] = USER_STACK  # above the limit
    c.gate(0x80, HANDLER, dpl=3, ring=3)
    c.gate(GP, 0, 2, dpl=3)
    c.code(I("int", imm=0x80))
    c.run()
    assert c.event() == (GP, 0, CODE)  # int n's own fault (§6.6), not a #DF
    assert c.counters()["double_faults"] == 0


def test_external_interrupt_faulting_delivery_is_one_tick():
    c = Core()
    c.cpu.flags = 1 << 9
    c.cpu.intr_vector = 0x50
    c.gate(0x50, HANDLER, ring=1)  # an outer ring from CPL 0
    c.run()
    assert c.event() == (GP, 8 * 0x50 + 3, CODE)
    assert (c.counters()["ticks"], c.cpu.intr_acked, c.counters()["interrupts"][0x50]) == (1, 0x50, 0)


def test_double_fault_at_a_real_handler():
    c = Core()
    c.cpu.cpl = 3
    c.cpu.rsp[0] = 2**64 - 0x1000  # beyond RAM: the #UD frame cannot be pushed
    c.gate(UD, HANDLER)
    c.gate(DF, HANDLER + 0x100, 1)  # a trap gate with its own... same stack: #DF fails too
    c.code(I("ud"))
    assert c.run() == 6
    assert c.cpu.idtr == IDT
