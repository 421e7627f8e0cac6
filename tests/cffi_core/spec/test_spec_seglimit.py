"""The ``seglimit`` feature (manual §5.3 step 2, §2 MSRs): data and stack at CPL >= 1 are
bounded by MSR_SEGLIMIT | 0xfff, fetch by MSR_CSLIMIT | 0xfff; CPL 0 never is; event delivery is checked at the
handler's ring; the order of checks around it."""

from __future__ import annotations

import pytest
from spec_rig import CODE, DATA, HANDLER, IDT, Rig

from cffi_core.isa.encoding import encode
from cffi_core.spec import AC, DF, EXIT_BUDGET, GP, MSR_CSLIMIT, MSR_SEGLIMIT, PF, SP

LIMIT = 0x40000  # limit | 0xfff = 0x40fff: DATA's first page is the last one allowed
TOP = LIMIT | 0xFFF


def limited(cpl: int = 3, features: tuple[str, ...] = ("seglimit",)) -> Rig:
    rig = Rig(features=features)
    rig.state.seglimit = LIMIT
    rig.state.cpl = cpl
    rig.state.flags = 3 << 12
    return rig


def load_byte(rig: Rig, address: int, mnemonic: str = "lbu") -> object:
    rig.state.r[1] = address
    rig.state.pc = CODE
    rig.code(encode(mnemonic, rd=2, rs1=1))
    e = rig.run(1)
    return "ok" if e.reason == EXIT_BUDGET else (e.vector, e.error_code if e.has_error else None)


def test_the_limit_resets_to_all_ones():
    assert Rig(features=("seglimit",)).state.seglimit == 2**64 - 1


@pytest.mark.parametrize("cpl", [1, 2, 3])
def test_the_last_byte_must_be_within_the_limit_at_cpl_1_to_3(cpl):
    assert load_byte(limited(cpl), TOP) == "ok"
    assert load_byte(limited(cpl), TOP + 1) == (GP, 0)
    assert load_byte(limited(cpl), TOP - 7, "ld") == "ok"


def test_cpl_0_has_no_limit():
    assert load_byte(limited(0), TOP + 1) == "ok"


def test_without_the_feature_there_is_no_limit():
    assert load_byte(limited(3, features=()), TOP + 1) == "ok"


def test_alignment_is_checked_before_the_limit():
    assert load_byte(limited(), TOP + 1 + 2, "lw") == (AC, 0)


def test_the_limit_is_checked_before_the_walk():
    rig = limited()
    rig.paging()
    assert load_byte(rig, 0x400000) == (GP, 0)  # beyond the limit and unmapped
    assert load_byte(rig, TOP) == "ok"
    rig.state.seglimit = 2**64 - 1
    assert load_byte(rig, 0x400000) == (PF, 4)


def test_fetch_is_bounded_by_the_code_limit():
    rig = limited()
    rig.state.cslimit = LIMIT
    rig.state.pc = TOP + 1
    assert rig.event() == (GP, 0)


def test_the_data_limit_does_not_bound_fetch():
    # MSR_SEGLIMIT bounds data alone: code beyond it runs, and its load beyond it faults there.
    rig = limited()
    rig.state.pc = TOP + 1
    rig.state.r[1] = TOP + 1
    rig.code(encode("lbu", rd=2, rs1=1), at=TOP + 1)
    assert rig.event() == (GP, 0)
    assert rig.state.pc == TOP + 1
    rig.state.r[1] = TOP
    assert rig.run(1).reason == EXIT_BUDGET and rig.state.pc == TOP + 5


def test_the_code_limit_does_not_bound_data():
    rig = limited()
    rig.state.seglimit = 2**64 - 1
    rig.state.cslimit = CODE
    assert load_byte(rig, TOP + 1) == "ok"


def test_the_code_limit_resets_to_all_ones():
    assert Rig(features=("seglimit",)).state.cslimit == 2**64 - 1


def test_stack_pushes_are_limited():
    rig = limited()
    rig.state.r[SP] = TOP + 1 + 8  # the push stores at TOP + 1
    rig.code(encode("push", rs1=1))
    assert rig.event() == (GP, 0)


def test_ring_0_handlers_are_never_limited():
    rig = limited()
    rig.state.idtr = IDT
    rig.state.rsp[0] = 0x60000  # beyond the limit
    rig.gate(0x40, dpl=3, ring=0)
    rig.code(encode("int", imm=0x40))
    rig.run(1)
    assert (rig.state.cpl, rig.state.pc) == (0, HANDLER)


def test_frame_pushes_are_limited_at_the_handler_ring():
    rig = limited(cpl=3)
    rig.state.rsp[1] = 0x60000  # beyond the limit, and the handler runs at ring 1
    rig.gate(0x40, dpl=3, ring=1)
    rig.code(encode("int", imm=0x40))
    assert rig.event() == (GP, 0)  # the int instruction's fault
    assert rig.state.pc == CODE


def test_idt_reads_are_never_limited():
    # Manual §5.3: as on x86, the IDT is read without the segment-limit check.
    rig = limited(cpl=3)
    rig.state.seglimit = 0x7000  # the IDT at 0x8000 is beyond it
    rig.state.rsp[1] = 0x6000
    rig.gate(0x40, dpl=3, ring=1)
    rig.code(encode("int", imm=0x40))
    rig.run(1)
    assert (rig.state.cpl, rig.state.pc) == (1, HANDLER)


def test_a_limited_fault_delivery_double_faults():
    rig = limited(cpl=3)
    rig.state.rsp[1] = 0x60000
    rig.gate(6, ring=1)
    rig.code(encode("ud"))
    assert rig.event() == (DF, 0)


@pytest.mark.parametrize(("index", "field"), [(MSR_SEGLIMIT, "seglimit"), (MSR_CSLIMIT, "cslimit")])
def test_msr_limits_exist_only_with_the_feature(index, field):
    for features, outcome in ((("seglimit",), "ok"), ((), (GP, 0))):
        rig = Rig(features=features)
        rig.state.r[1], rig.state.r[2] = index, DATA
        rig.code(encode("wrmsr", rs1=1, rs2=2), encode("rdmsr", rd=3, rs1=1))
        e = rig.run(2)
        got = "ok" if e.reason == EXIT_BUDGET else (e.vector, e.error_code)
        assert got == outcome
        if got == "ok":
            assert getattr(rig.state, field) == DATA and rig.state.r[3] == DATA


def test_msr_seglimit_exists_only_with_the_feature():
    for features, outcome in ((("seglimit",), "ok"), ((), (GP, 0))):
        rig = Rig(features=features)
        rig.state.r[1], rig.state.r[2] = MSR_SEGLIMIT, DATA
        rig.code(encode("wrmsr", rs1=1, rs2=2), encode("rdmsr", rd=3, rs1=1))
        e = rig.run(2)
        got = "ok" if e.reason == EXIT_BUDGET else (e.vector, e.error_code)
        assert got == outcome
        if got == "ok":
            assert rig.state.seglimit == DATA and rig.state.r[3] == DATA
