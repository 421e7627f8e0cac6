"""Privilege classes (manual §4.2) and the ``classic`` feature (§4.4), for every row of the
instruction table × CPL × IOPL × CR4.TSD × {x86-like, classic}: the instruction executes,
or raises #GP(0), or raises #UD, as its classes say.  The silent failures of popf/iret are
in test_spec_flags.py."""

from __future__ import annotations

import pytest
from spec_rig import CODE, STACK, Rig

from cffi_core.isa.encoding import encode
from cffi_core.isa.table import INSTRUCTIONS, Insn, Privilege, Sensitivity
from cffi_core.spec import CR4_TSD, EVENT_FAULT, EXIT_HOST_GATE, GP, UD, Exit

OPERAND = 0x100  # a data address, a non-zero divisor and MSR_RSP0 at once


def expected_outcome(insn: Insn, cpl: int, classic: bool, iopl: int, tsd: bool) -> str:
    """The manual's tables, read directly."""
    if insn.privilege in (Privilege.VMX, Privilege.NEVER):
        return "#UD"
    if classic and cpl > 0 and insn.sensitivity in (Sensitivity.SENSITIVE, Sensitivity.PRIVILEGED):
        return "#GP"
    refused = {
        Privilege.USER: False,
        Privilege.KERNEL: cpl > 0,
        Privilege.IOPL: cpl > iopl,
        Privilege.TSD: cpl > 0 and tsd,
        Privilege.HOST: cpl > 1,
    }[insn.privilege]
    return "#GP" if refused else "executes"


def outcome(insn: Insn, cpl: int, classic: bool, iopl: int, tsd: bool) -> str:
    rig = Rig(features={"classic"} if classic else ())
    s = rig.state
    s.cpl, s.flags = cpl, iopl << 12
    s.cr4 |= CR4_TSD if tsd else 0
    s.r[2] = s.r[3] = OPERAND
    s.gslimit = 2**64 - 1  # ldgs/sdgs/jgs at GS offset OPERAND reach linear OPERAND (§5.4)
    for i, value in enumerate((CODE, cpl, s.flags, STACK)):  # an iret frame; ret and popf read it too
        rig.write64(STACK + 8 * i, value)
    rig.code(encode(insn, rd=1, rs1=2, rs2=3, crn=2, imm=0))
    e = rig.step()
    if isinstance(e, Exit) and e.reason == EXIT_HOST_GATE and e.kind == EVENT_FAULT:
        assert s.pc == CODE and s.counters.insn[0][cpl] == 0, "a refused instruction has no effect"
        return {GP: "#GP", UD: "#UD"}[e.vector] if e.error_code == 0 or e.vector == UD else f"vector {e.vector}"
    assert s.counters.insn[0][cpl] == 1, f"{insn.mnemonic} neither faulted nor retired"
    return "executes"


@pytest.mark.parametrize("classic", [False, True], ids=["x86-like", "classic"])
@pytest.mark.parametrize("insn", INSTRUCTIONS, ids=lambda i: i.mnemonic)
def test_privilege_class_outcomes(insn, classic):
    for cpl in range(4):
        for iopl in (0, 2):
            for tsd in (False, True):
                got = outcome(insn, cpl, classic, iopl, tsd)
                want = expected_outcome(insn, cpl, classic, iopl, tsd)
                assert got == want, f"{insn.mnemonic} at CPL {cpl}, IOPL {iopl}, TSD {tsd}: {got}, should be {want}"


def test_the_obstacles_execute_at_cpl_3_on_the_x86_like_machine():
    for mnemonic in ("smsw", "sidt", "rdcs", "pushf", "popf", "iret"):
        insn = next(i for i in INSTRUCTIONS if i.mnemonic == mnemonic)
        assert outcome(insn, 3, False, 0, False) == "executes", mnemonic
        assert outcome(insn, 3, True, 0, False) == "#GP", mnemonic
