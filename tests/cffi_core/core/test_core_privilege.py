"""Privilege on the core (§4): each privilege class at each CPL, with and without `classic`,
the IOPL and TSD controls, and the silent failures of popf and iret."""

from __future__ import annotations

import pytest
from core_rig import (
    CLASSIC,
    CODE,
    CR4_TSD,
    DATA,
    GP,
    HCALL,
    HLT,
    HOST_GATE,
    IDT,
    IF,
    IO_IN,
    IO_OUT,
    SP,
    STACK,
    UD,
    Core,
    I,
    iopl,
)  # fmt: skip

from cffi_core.isa.table import INSTRUCTIONS, Privilege, Sensitivity

# A harmless instance of every instruction that is not plain user/innocuous.
SAMPLES = {
    "iret": I("iret"), "hlt": I("hlt"), "cli": I("cli"), "sti": I("sti"), "pushf": I("pushf"),
    "popf": I("popf"), "in": I("in", rd=3, rs1=0, imm=0x60), "out": I("out", rs2=0, rs1=0, imm=0x60),
    "mtcr": I("mtcr", crn=2, rs1=0), "mfcr": I("mfcr", rd=3, crn=0), "lidt": I("lidt", rs1=1),
    "sidt": I("sidt", rd=3), "smsw": I("smsw", rd=3), "rdcs": I("rdcs", rd=3), "rdtsc": I("rdtsc", rd=3),
    "rdmsr": I("rdmsr", rd=3, rs1=2), "wrmsr": I("wrmsr", rs1=2, rs2=0), "invlpg": I("invlpg", rs1=0),
    "vmcall": I("vmcall", imm=1), "hcall": I("hcall", imm=1), "ud": I("ud"),
    "ldgs": I("ldgs", rd=3, rs1=0, imm=8), "sdgs": I("sdgs", rs2=0, rs1=0, imm=8), "jgs": I("jgs", rs1=0, imm=8),
}  # fmt: skip
CHECKED = [i for i in INSTRUCTIONS if i.privilege is not Privilege.USER or i.sensitivity is not Sensitivity.INNOCUOUS]
ENV = [(0, 0), (3, 0), (1, 3)]  # (IOPL, CR4.TSD)


def expected(insn, cpl: int, classic: bool, io: int, tsd: int) -> int | None:
    """§4.2/§4.4 restated: the vector the instruction raises, or None when it executes."""
    p = insn.privilege
    if p in (Privilege.NEVER, Privilege.VMX):
        return UD
    if cpl == 0:
        return None
    if classic and insn.sensitivity in (Sensitivity.SENSITIVE, Sensitivity.PRIVILEGED):
        return GP
    refused = {
        Privilege.KERNEL: True, Privilege.IOPL: cpl > io, Privilege.TSD: bool(tsd), Privilege.HOST: cpl > 1,
    }.get(p, False)  # fmt: skip
    return GP if refused else None


def test_every_checked_row_has_a_sample():
    assert {i.mnemonic for i in CHECKED} == set(SAMPLES)


@pytest.mark.parametrize("insn", CHECKED, ids=lambda i: i.mnemonic)
@pytest.mark.parametrize("cpl", [0, 1, 2, 3])
@pytest.mark.parametrize("classic", [False, True], ids=["x86", "classic"])
@pytest.mark.parametrize(("io", "tsd"), ENV, ids=["iopl0", "iopl3", "iopl0-tsd"])
def test_privilege_class_at_each_cpl(insn, cpl, classic, io, tsd):
    c = Core(CLASSIC if classic else 0)
    c.cpu.cpl = cpl
    c.cpu.flags = iopl(io)
    c.cpu.cr4 = 2 | (CR4_TSD if tsd else 0)
    c.set_r(r1=IDT, r2=0x100)
    c.cpu.gsbase, c.cpu.gslimit = DATA, 0xFFF  # ldgs/sdgs/jgs at [DATA + 8] fit in GS (§5.4)
    c.w64(DATA + 8, CODE + 4)  # jgs goes on to the int below, as every other sample does
    for i, v in enumerate((CODE + 4, cpl, iopl(io), STACK + 32)):  # an iret frame back to the same ring
        c.w64(STACK + 8 * i, v)
    c.code(SAMPLES[insn.mnemonic], I("int", imm=0x7F))
    reason = c.run()
    want = expected(insn, cpl, classic, io, tsd)
    if want is None:
        assert reason in (HLT, IO_IN, IO_OUT, HCALL) or c.event() == (0x7F, None, CODE + 8)
    else:
        assert c.event() == (want, 0 if want == GP else None, CODE)


def test_the_sensitive_instructions_read_real_state_at_cpl_3():
    c = Core()
    c.cpu.cpl = 3
    c.cpu.flags = IF | iopl(1)
    c.cpu.cr0 = 1 | 1 << 4
    c.code(I("smsw", rd=1), I("sidt", rd=2), I("rdcs", rd=3), I("pushf"), I("pop", rd=4), I("ud"))
    c.run()
    assert (c.r(1), c.r(2), c.r(3), c.r(4)) == (0x11, IDT, 3, IF | iopl(1))


# (cpl, iopl, popped FLAGS) -> FLAGS after popf, started from IF=0
POPF_CASES = [
    (0, 0, IF | iopl(3), IF | iopl(3)),  # CPL 0: everything
    (3, 0, IF | iopl(3), 0),  # CPL > IOPL: IF kept, IOPL kept (silently)
    (3, 3, IF | iopl(0), IF | iopl(3)),  # CPL <= IOPL: IF changes; IOPL only at CPL 0
    (1, 2, IF | iopl(3) | 0xFF, IF | iopl(2)),  # other bits ignored
]


@pytest.mark.parametrize(("cpl", "io", "popped", "want"), POPF_CASES)
def test_popf_silently_ignores_refused_changes(cpl, io, popped, want):
    c = Core()
    c.cpu.cpl = cpl
    c.cpu.flags = iopl(io)
    c.w64(STACK, popped)
    c.code(I("popf"), I("ud"))
    c.run()
    assert c.cpu.flags == want
    assert c.event()[0] == UD


@pytest.mark.parametrize(("cpl", "io", "popped", "want"), POPF_CASES)
def test_iret_follows_the_popf_rules(cpl, io, popped, want):
    c = Core()
    c.cpu.cpl = cpl
    c.cpu.flags = iopl(io)
    for i, v in enumerate((CODE + 0x40, cpl, popped, STACK + 0x100)):
        c.w64(STACK + 8 * i, v)
    c.code(I("iret"))
    c.code(I("ud"), at=CODE + 0x40)
    c.run()
    assert (c.cpu.flags, c.cpu.pc, c.r(SP)) == (want, CODE + 0x40, STACK + 0x100)


def test_classic_makes_popf_trap_at_cpl_3():
    c = Core(CLASSIC)
    c.cpu.cpl = 3
    c.code(I("popf"))
    c.run()
    assert c.event() == (GP, 0, CODE) and c.r(SP) == STACK


def test_classic_does_not_affect_innocuous_instructions_or_hcall():
    c = Core(CLASSIC)
    c.cpu.cpl = 1
    c.code(I("addi", rd=1, imm=1), I("hcall", imm=7))
    assert c.run() == HCALL
    assert c.exit.number == 7 and c.cpu.pc == CODE + 8


def test_refused_instruction_has_no_other_effect():
    c = Core()
    c.cpu.cpl = 3
    c.code(I("mtcr", crn=8, rs1=1))
    c.set_r(r1=5)
    c.run()
    assert c.event() == (GP, 0, CODE) and c.cpu.cr8 == 0
    assert c.exit.reason == HOST_GATE
