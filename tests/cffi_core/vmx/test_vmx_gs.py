"""Guest mode has no host segment (docs/vmx.md V.2, V.3; manual §5.4): ``ldgs``/``sdgs``/``jgs``
check their privilege, then raise #UD; MSR_GSBASE and MSR_GSLIMIT raise #GP(0) when the MSR
bitmap lets the access through; the host's GS is kept across guest mode and serves the host
after it."""

from __future__ import annotations

import pytest
from vmx_rig import CODE, Guest, I

from cffi_core.vmx import EventInfo, IntrType, VmcsField, VmExitReason

UD, GP = 6, 13
U64 = (1 << 64) - 1
MSR_GSBASE, MSR_GSLIMIT = 0x202, 0x203
MSR_BITMAP = 0x5000  # host-physical, outside the guest's memory; all clear
VALUE = 0x0123_4567_89AB_CDEF
R = VmExitReason
# Each host-segment instruction at GS offset 0x40; jgs would jump to the quadword there.
WORDS = {
    "ldgs": I("ldgs", rd=2, rs1=0, imm=0x40),
    "sdgs": I("sdgs", rs2=2, rs1=0, imm=0x40),
    "jgs": I("jgs", rs1=0, imm=0x40),
}


@pytest.mark.parametrize(("cpl", "vector"), [(0, UD), (1, UD), (2, GP), (3, GP)])
@pytest.mark.parametrize("mnemonic", list(WORDS))
def test_the_gs_instructions_in_guest_mode_check_privilege_then_raise_ud(mnemonic, cpl, vector):
    g = Guest()
    g.m.cpu.gsbase, g.m.cpu.gslimit = 0, U64  # the host's GS would allow the access
    g.m.write_u64(0x40, CODE + 8)  # and jgs a jump to a word of the guest's code
    g.set(GUEST_CPL=cpl, EXCEPTION_BITMAP=1 << UD | 1 << GP)
    g.code(WORDS[mnemonic])
    assert g.run().number == R.EXCEPTION
    info = EventInfo(True, vector, IntrType.HARDWARE_EXCEPTION, vector == GP)
    assert EventInfo.decode(g.get("EXIT_INTR_INFO")) == info
    assert g.pc == CODE and g.v.regs[2] == 0


@pytest.mark.parametrize("index", [MSR_GSBASE, MSR_GSLIMIT])
@pytest.mark.parametrize("write", [False, True])
def test_the_gs_msrs_do_not_exist_in_guest_mode(index, write):
    g = Guest()
    g.controls("USE_MSR_BITMAPS")  # all clear: the access is not intercepted
    g.set(MSR_BITMAP=MSR_BITMAP, EXCEPTION_BITMAP=1 << GP)
    g.m.cpu.gsbase, g.m.cpu.gslimit = 0x3000, 0x2FFF
    g.v.regs[1], g.v.regs[2] = index, 0x7777
    g.code(I("wrmsr", rs1=1, rs2=2) if write else I("rdmsr", rd=3, rs1=1), I("hlt"))
    assert g.run().number == R.EXCEPTION
    assert EventInfo.decode(g.get("EXIT_INTR_INFO")) == EventInfo(True, GP, IntrType.HARDWARE_EXCEPTION, True)
    assert g.get("EXIT_INTR_ERROR_CODE") == 0 and g.v.regs[3] == 0
    assert (g.m.cpu.gsbase, g.m.cpu.gslimit) == (0x3000, 0x2FFF)


def test_the_host_segment_survives_guest_mode_and_serves_the_host_after_it():
    g = Guest()
    assert not {"GUEST_GSBASE", "GUEST_GSLIMIT"} & set(VmcsField.__members__), "no VMCS field holds GS (V.2)"
    g.m.cpu.gsbase, g.m.cpu.gslimit = 0x3000, 0xFFF
    g.m.write_u64(0x3008, VALUE)
    g.set(GUEST_CPL=0)
    g.code(I("addi", rd=1, imm=1), I("hlt"))
    g.run()
    assert (g.m.cpu.gsbase, g.m.cpu.gslimit) == (0x3000, 0xFFF)
    g.m.write(0x2000, I("ldgs", rd=4, rs1=0, imm=8).to_bytes(4, "little") + I("ud").to_bytes(4, "little"))
    g.m.cpu.pc = 0x2000
    g.m.run(1)
    assert g.m.cpu.r[4] == VALUE
