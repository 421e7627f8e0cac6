"""System instructions and host-visible state (manual §2, §3, §9, §10): control-register
write rules, MSRs and the TSC, the sensitive reads, port I/O and hcall exits, vmcall, and the
state the host may not write."""

from __future__ import annotations

import pytest
from spec_rig import CODE, IDT, Rig

from cffi_core.isa.encoding import encode
from cffi_core.spec import (
    CR0_PE,
    CR0_PG,
    CR0_TS,
    CR0_WP,
    CR4_PGE,
    CR4_TSD,
    EXIT_BUDGET,
    EXIT_HCALL,
    EXIT_IO_IN,
    EXIT_IO_OUT,
    GP,
    MSR_RSP0,
    MSR_RSP2,
    MSR_TSC,
    UD,
    State,
    StateError,
    counters_of,
    step,
)

U64 = 2**64 - 1


def write_cr(crn: int, value: int) -> object:
    rig = Rig()
    rig.state.r[1] = value
    rig.code(encode("mtcr", crn=crn, rs1=1), encode("mfcr", rd=2, crn=crn))
    e = rig.run(2)
    if e.reason != EXIT_BUDGET:
        return e.vector, e.error_code
    assert rig.state.r[2] == value
    return "ok"


@pytest.mark.parametrize(
    "crn, value, outcome",
    [
        (0, CR0_PE | CR0_TS | CR0_WP, "ok"),
        (0, 0, (GP, 0)),  # PE is always 1
        (0, CR0_PE | 1 << 1, (GP, 0)),
        (0, CR0_PE | 1 << 16, (GP, 0)),
        (2, U64, "ok"),
        (3, 0xF_FFFF_FFFF_F000, "ok"),
        (3, 0x1008, (GP, 0)),
        (3, 1 << 52, (GP, 0)),
        (4, 0 | CR4_TSD | CR4_PGE, "ok"),
        (4, 3, (GP, 0)),  # PL = 3 is reserved
        (4, 2 | 1 << 3, (GP, 0)),
        (8, 15, "ok"),
        (8, 16, (GP, 0)),
    ],
)
def test_control_register_write_rules(crn, value, outcome):
    assert write_cr(crn, value) == outcome


def test_a_refused_cr_write_changes_nothing(rig):
    rig.state.r[1] = 0
    rig.code(encode("mtcr", crn=0, rs1=1))
    rig.event()
    assert rig.state.cr0 == CR0_PE


def test_smsw_sidt_rdcs_read_the_real_state_at_cpl_3(rig):
    s = rig.state
    s.cpl, s.cr0 = 3, CR0_PE | CR0_PG | CR0_WP
    rig.code(encode("smsw", rd=1), encode("sidt", rd=2), encode("rdcs", rd=3))
    rig.paging()  # CR0.PG must be backed by tables for the fetches
    rig.run(3)
    assert (s.r[1], s.r[2], s.r[3]) == (CR0_PE | CR0_PG | CR0_WP, IDT, 3)


def test_lidt(rig):
    rig.state.r[1] = 0x9000
    rig.code(encode("lidt", rs1=1))
    rig.run(1)
    assert rig.state.idtr == 0x9000


def test_rdtsc_reads_the_ticks_before_it_plus_the_offset(rig):
    rig.state.tsc_offset = 1000
    rig.code(encode("addi", rd=0, rs1=0, imm=0), encode("rdtsc", rd=1))
    rig.run(2)
    assert rig.state.r[1] == 1001


def test_writing_msr_tsc_makes_the_tsc_read_that_value_now(rig):
    rig.state.r[1], rig.state.r[2] = MSR_TSC, 5
    rig.code(encode("wrmsr", rs1=1, rs2=2), encode("rdtsc", rd=3), encode("rdmsr", rd=4, rs1=1))
    rig.run(3)
    assert (rig.state.r[3], rig.state.r[4]) == (6, 7)
    assert rig.state.tsc_offset == 5


@pytest.mark.parametrize("index", [MSR_RSP0, MSR_RSP0 + 1, MSR_RSP2])
def test_msr_rspn(rig, index):
    rig.state.r[1], rig.state.r[2] = index, 0xABC0
    rig.code(encode("wrmsr", rs1=1, rs2=2), encode("rdmsr", rd=3, rs1=1))
    rig.run(2)
    assert rig.state.rsp[index - MSR_RSP0] == 0xABC0 == rig.state.r[3]


@pytest.mark.parametrize("index", [0, 0x11, 0x103, 0x200, U64])
def test_unknown_msrs_raise_gp(rig, index):
    rig.state.r[1] = index
    rig.code(encode("rdmsr", rd=3, rs1=1))
    assert rig.event() == (GP, 0)
    rig.code(encode("wrmsr", rs1=1, rs2=1))
    assert rig.event() == (GP, 0)


def test_in_retires_and_exits_naming_port_and_register(rig):
    rig.state.r[2] = 0xFFFF
    rig.code(encode("in", rd=5, rs1=2, imm=0x3F9))  # the port wraps at 16 bits
    e = rig.run(5)
    assert (e.reason, e.port, e.reg) == (EXIT_IO_IN, 0x3F8, 5)
    assert rig.state.pc == CODE + 4 and rig.state.clock == 1
    assert counters_of(rig.state)["port_reads"] == 1


def test_out_exits_with_port_and_value(rig):
    rig.state.r[3] = 0x41
    rig.code(encode("out", rs2=3, rs1=0, imm=0x3F8))
    e = rig.run(5)
    assert (e.reason, e.port, e.value) == (EXIT_IO_OUT, 0x3F8, 0x41)
    assert counters_of(rig.state)["port_writes"] == 1


def test_hcall_exits_with_its_number(rig):
    rig.state.cpl = 1
    rig.code(encode("hcall", imm=0x1234))
    e = rig.run(5)
    assert (e.reason, e.number, rig.state.pc) == (EXIT_HCALL, 0x1234, CODE + 4)
    assert counters_of(rig.state)["hcalls"] == 1


def test_vmcall_raises_ud_outside_guest_mode(rig):
    rig.code(encode("vmcall", imm=1))
    assert rig.event() == (UD, None)
    assert counters_of(rig.state)["vmcalls"] == 0


def test_invlpg_only_advances_pc(rig):
    rig.state.r[1] = 1 << 63  # not even canonical
    rig.code(encode("invlpg", rs1=1, imm=0))
    rig.paging()
    assert rig.run(1).reason == EXIT_BUDGET
    assert rig.state.pc == CODE + 4


# ---- the state the host hands over ----


def test_reset_values():
    s = State.reset(entry=0x2000)
    assert (s.pc, s.cr0, s.cr4, s.seglimit, s.intr_vector, s.intr_acked) == (0x2000, CR0_PE, 2, U64, -1, -1)
    assert s.r == [0] * 16 and s.rsp == [0] * 3 and s.clock == 0
    with pytest.raises(ValueError):
        State.reset(features={"turbo"})


def test_copy_is_deep():
    s = State.reset()
    t = s.copy()
    t.r[1] = 5
    t.counters.ticks = 3
    assert s.r[1] == 0 and s.counters.ticks == 0
    assert s != t


@pytest.mark.parametrize(
    "field, value",
    [("cpl", 4), ("cr0", 0), ("cr3", 0x10), ("cr4", 3), ("cr8", 16), ("intr_vector", 256), ("intr_vector", -2),
     ("flags", 1), ("pc", -4), ("pc", 1 << 64)],
)  # fmt: skip
def test_impossible_host_state_is_refused_naming_the_field(field, value):
    rig = Rig()
    setattr(rig.state, field, value)
    with pytest.raises(StateError, match=field):
        rig.run(1)
    with pytest.raises(StateError, match=field):
        step(rig.state, rig.mem)


def test_a_host_write_to_r0_is_cleared(rig):
    rig.state.r[0] = 7
    rig.code(encode("add", rd=1, rs1=0, rs2=0))
    rig.run(1)
    assert rig.state.r[0] == 0 and rig.state.r[1] == 0
