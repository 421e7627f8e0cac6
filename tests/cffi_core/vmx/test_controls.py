"""Every control of docs/vmx.md V.2 x the instruction or event it governs: the VM exit it makes
(reason, qualification, GUEST_PC at the instruction, nothing retired) or the native behaviour
without it; the read shadows and the TPR shadow (V.3); event injection of every type (V.9);
IDT-vectoring information (V.5); interrupt exits."""

from __future__ import annotations

import pytest
from vmx_rig import CODE, DATA, GATE_HOST, HANDLER, HANDLER_VMCALL, IDT, IF, RSP, STACK, Guest, I

from cffi_core.machine import ExitReason
from cffi_core.pagetables import EPT_R, PTE_U
from cffi_core.vmx import EventInfo, IntrType, VmExitReason, intr_info

R = VmExitReason
MFCR, MTCR = 1, 0
UD, GP, PF, DF, DB = 6, 13, 14, 8, 1


def reg(i: int) -> int:
    return i << 8


# (control, instruction, registers, exit reason, qualification)
INSTRUCTION_EXITS = [
    ("HLT_EXITING", I("hlt"), {}, R.HLT, 0),
    ("INVLPG_EXITING", I("invlpg", rs1=1, imm=8), {1: 0x5000}, R.INVLPG, 0x5008),
    ("RDTSC_EXITING", I("rdtsc", rd=2), {}, R.RDTSC, 0),
    ("CR3_LOAD_EXITING", I("mtcr", crn=3, rs1=1), {1: 0x9000}, R.CR_ACCESS, 3 | MTCR << 4 | reg(1)),
    ("CR3_STORE_EXITING", I("mfcr", rd=2, crn=3), {}, R.CR_ACCESS, 3 | MFCR << 4 | reg(2)),
    ("CR8_LOAD_EXITING", I("mtcr", crn=8, rs1=4), {4: 5}, R.CR_ACCESS, 8 | MTCR << 4 | reg(4)),
    ("CR8_STORE_EXITING", I("mfcr", rd=7, crn=8), {}, R.CR_ACCESS, 8 | MFCR << 4 | reg(7)),
    ("UNCONDITIONAL_IO_EXITING", I("in", rd=3, rs1=1, imm=2), {1: 0x70}, R.IO_INSTRUCTION, 8 | reg(3) | 0x72 << 16),
    ("UNCONDITIONAL_IO_EXITING", I("out", rs1=1, rs2=5, imm=0), {1: 0x3F8}, R.IO_INSTRUCTION, reg(5) | 0x3F8 << 16),
    ("DESCRIPTOR_TABLE_EXITING", I("lidt", rs1=6), {6: 0x9000}, R.DESCRIPTOR_TABLE, reg(6)),
    ("DESCRIPTOR_TABLE_EXITING", I("sidt", rd=9), {}, R.DESCRIPTOR_TABLE, 1 | reg(9)),
    (None, I("rdmsr", rd=2, rs1=1), {1: 0x100}, R.RDMSR, 0x100),  # no MSR bitmaps: every access exits
    (None, I("wrmsr", rs1=1, rs2=2), {1: 0x101, 2: 7}, R.WRMSR, 0x101),
    (None, I("vmcall", imm=0x1234), {}, R.VMCALL, 0x1234),
]


def _ids(rows):
    return [f"{r[0] or 'always'}-{r[3].name}-{i}" for i, r in enumerate(rows)]


@pytest.mark.parametrize(("control", "word", "regs", "reason", "qual"), INSTRUCTION_EXITS, ids=_ids(INSTRUCTION_EXITS))
def test_a_control_makes_its_instruction_exit_before_it_executes(control, word, regs, reason, qual):
    g = Guest()
    if control:
        g.controls(control)
    g.code(I("addi", rd=10, rs1=10, imm=1), word)
    for i, v in regs.items():
        g.v.regs[i] = v
    before = g.m.counters
    e = g.run()
    assert e.reason is ExitReason.VM and e.number == reason
    assert g.get("EXIT_REASON") == reason
    assert g.get("EXIT_QUALIFICATION") == qual
    assert g.pc == CODE + 4, "fault-like: GUEST_PC is the exiting instruction"
    assert g.get("EXIT_INSTRUCTION_LENGTH") == 4
    assert g.get("EXIT_INSTRUCTION_WORD") == word
    after = g.m.counters
    assert after["insn_guest_cpl0"] - before["insn_guest_cpl0"] == 1, "only the addi retired"
    assert after[f"vm_exit_{int(reason)}"] == 1
    assert after["vm_entries"] == 1


NO_EXIT = [
    ("HLT_EXITING", I("hlt"), ExitReason.HLT),
    ("INVLPG_EXITING", I("invlpg", rs1=1, imm=0), ExitReason.BUDGET),
    ("RDTSC_EXITING", I("rdtsc", rd=2), ExitReason.BUDGET),
    ("CR3_LOAD_EXITING", I("mtcr", crn=3, rs1=0), ExitReason.BUDGET),
    ("CR3_STORE_EXITING", I("mfcr", rd=2, crn=3), ExitReason.BUDGET),
    ("CR8_LOAD_EXITING", I("mtcr", crn=8, rs1=0), ExitReason.BUDGET),
    ("CR8_STORE_EXITING", I("mfcr", rd=2, crn=8), ExitReason.BUDGET),
    ("UNCONDITIONAL_IO_EXITING", I("out", rs1=0, rs2=0, imm=0x80), ExitReason.IO_OUT),
    ("DESCRIPTOR_TABLE_EXITING", I("sidt", rd=2), ExitReason.BUDGET),
]


@pytest.mark.parametrize(("control", "word", "host_exit"), NO_EXIT, ids=[r[0] for r in NO_EXIT])
def test_without_its_control_the_instruction_runs_natively(control, word, host_exit):
    g = Guest()
    g.code(word, I("addi", rd=10, rs1=10, imm=1))
    e = g.run(budget=1)
    assert e.reason is host_exit
    assert g.m.counters["vm_exits"] == 0
    assert g.m.counters["insn_guest_cpl0"] == 1
    if host_exit is ExitReason.HLT:
        assert g.get("GUEST_ACTIVITY") == 1, "a halted guest stays halted in the VMCS"


def test_instruction_effects_without_exits_are_the_guests():
    g = Guest()
    g.code(I("mtcr", crn=3, rs1=1), I("mfcr", rd=2, crn=3), I("lidt", rs1=3), I("sidt", rd=4), I("mtcr", crn=8, rs1=5),
           I("mfcr", rd=6, crn=8), I("hlt"))  # fmt: skip
    for i, v in {1: 0x7000, 3: 0x9000, 5: 9}.items():
        g.v.regs[i] = v
    assert g.run().reason is ExitReason.HLT
    assert (g.v.regs[2], g.v.regs[4], g.v.regs[6]) == (0x7000, 0x9000, 9)
    assert (g.get("GUEST_CR3"), g.get("GUEST_IDTR"), g.get("GUEST_CR8")) == (0x7000, 0x9000, 9)
    assert g.m.cpu.cr3 == 0 and g.m.cpu.idtr == 0 and g.m.cpu.cr8 == 0, "the host's own state is restored"


def test_vmcall_exits_at_every_cpl_and_hcall_is_ud_in_guest_mode():
    g = Guest()
    g.set(GUEST_CPL=3, EXCEPTION_BITMAP=1 << UD)
    g.code(I("vmcall", imm=7), I("hcall", imm=1))
    assert g.run().number == R.VMCALL and g.get("EXIT_QUALIFICATION") == 7
    g.set(GUEST_PC=g.pc + 4)
    g.set(GUEST_CPL=1)  # hcall is allowed at CPL <= 1 natively; guest mode has no host software
    assert g.run().number == R.EXCEPTION
    assert EventInfo.decode(g.get("EXIT_INTR_INFO")) == EventInfo(True, UD, IntrType.HARDWARE_EXCEPTION, False)
    assert g.m.counters["hcalls"] == 0 and g.m.counters["vmcalls"] == 1


@pytest.mark.parametrize(("cpl", "vector"), [(0, UD), (1, UD), (2, GP), (3, GP)])
def test_hcall_in_guest_mode_checks_its_privilege_before_its_ud(cpl, vector):
    """docs/vmx.md V.2, V.3: hcall's privilege check (#GP(0) at CPL > 1, architecture §4.2)
    comes first, as for every privileged-class instruction; only then guest mode's #UD."""
    g = Guest()
    g.set(GUEST_CPL=cpl, EXCEPTION_BITMAP=1 << UD | 1 << GP)
    g.code(I("hcall", imm=1))
    assert g.run().number == R.EXCEPTION
    info = EventInfo(True, vector, IntrType.HARDWARE_EXCEPTION, vector == GP)
    assert EventInfo.decode(g.get("EXIT_INTR_INFO")) == info
    assert g.pc == CODE and g.m.counters["hcalls"] == 0
    if vector == GP:
        assert g.get("EXIT_INTR_ERROR_CODE") == 0


def test_privilege_faults_come_before_exits():
    """VT-x: faults based on privilege level take priority over VM exits."""
    g = Guest()
    g.controls("HLT_EXITING", "UNCONDITIONAL_IO_EXITING")
    g.set(GUEST_CPL=3, EXCEPTION_BITMAP=1 << GP)
    g.code(I("hlt"))
    assert g.run().number == R.EXCEPTION and g.get("EXIT_INTR_INFO") & 0xFF == GP


# -- V.3: the I/O and MSR bitmaps ---------------------------------------------------------------

IO_BITMAP, MSR_BITMAP = 0x3000, 0x5000  # host-physical, outside the guest's memory


@pytest.mark.parametrize("port", [0, 7, 8, 0x3F8, 0xFFFF])
@pytest.mark.parametrize("bit_set", [False, True])
def test_io_bitmap_selects_ports_and_overrides_unconditional_exiting(port, bit_set):
    g = Guest()
    g.controls("USE_IO_BITMAPS", "UNCONDITIONAL_IO_EXITING")
    g.set(IO_BITMAP=IO_BITMAP)
    if bit_set:
        g.m.write(IO_BITMAP + port // 8, bytes([1 << (port % 8)]))
    g.v.regs[1] = port
    g.code(I("in", rd=2, rs1=1, imm=0))
    e = g.run()
    if bit_set:
        assert e.number == R.IO_INSTRUCTION and g.get("EXIT_QUALIFICATION") >> 16 == port
    else:
        assert e.reason is ExitReason.IO_IN and e.port == port and e.reg == 2, "passthrough: a host exit"
        assert g.pc == CODE + 4, "the in retired; the host fills vmcs.regs[2]"


@pytest.mark.parametrize(("index", "write", "bit_set", "exits"), [
    (0x100, False, False, False), (0x100, False, True, True), (0x100, True, False, False), (0x100, True, True, True),
    (0x10, False, False, False), (16383, True, True, True), (16384, False, False, True), (1 << 40, True, False, True),
])  # fmt: skip
def test_msr_bitmaps_read_and_write_halves(index, write, bit_set, exits):
    g = Guest()
    g.controls("USE_MSR_BITMAPS")
    g.set(MSR_BITMAP=MSR_BITMAP, EXCEPTION_BITMAP=1 << GP)
    if bit_set:
        g.m.write(MSR_BITMAP + (2048 if write else 0) + index // 8, bytes([1 << (index % 8)]))
    g.v.regs[1], g.v.regs[2] = index, 0x22000
    g.code(I("wrmsr", rs1=1, rs2=2) if write else I("rdmsr", rd=3, rs1=1), I("hlt"))
    e = g.run()
    if exits:
        assert e.number == (R.WRMSR if write else R.RDMSR) and g.get("EXIT_QUALIFICATION") == index
    else:
        assert e.reason is ExitReason.HLT, "the MSR access ran in the guest"


def test_tsc_offset_applies_to_rdtsc_and_the_tsc_msr():
    g = Guest()
    g.controls("USE_TSC_OFFSET")
    g.set(TSC_OFFSET=1_000_000)
    g.code(I("addi", rd=1, rs1=0, imm=0), I("rdtsc", rd=2), I("hlt"))
    g.run()
    assert g.v.regs[2] == 1 + 1_000_000, "one tick before rdtsc, plus the offset"
    g2 = Guest()
    g2.code(I("addi", rd=1, rs1=0, imm=0), I("rdtsc", rd=2), I("hlt"))
    g2.run()
    assert g2.v.regs[2] == 1, "without the control: the machine's TSC"
    g2.m.cpu.tsc_offset = 500
    g2.set(GUEST_PC=CODE, GUEST_ACTIVITY=0)
    g2.run()
    assert g2.v.regs[2] == 4 + 500, "the machine's TSC includes the host's own offset"


# -- V.3: CR0/CR4 guest/host masks and read shadows ---------------------------------------------

CR0_TS, CR0_WP = 1 << 3, 1 << 4


def test_owned_bits_read_from_the_shadow_smsw_included():
    g = Guest()
    g.set(CR0_GUEST_HOST_MASK=CR0_TS, CR0_READ_SHADOW=CR0_TS, GUEST_CR0=1, CR4_GUEST_HOST_MASK=1 << 2,
          CR4_READ_SHADOW=0, GUEST_CR4=2 | 1 << 2)  # fmt: skip
    g.code(I("mfcr", rd=1, crn=0), I("smsw", rd=2), I("mfcr", rd=3, crn=4), I("hlt"))
    g.run()
    assert g.v.regs[1] == 1 | CR0_TS and g.v.regs[2] == 1 | CR0_TS, "smsw's obstacle is removed (Fisher-Ogden §3.1.1)"
    assert g.v.regs[3] == 2, "owned CR4.TSD reads the shadow's 0"
    assert g.get("GUEST_CR0") == 1 and g.get("GUEST_CR4") == 2 | 1 << 2


@pytest.mark.parametrize(("crn", "mask", "shadow", "value", "exits"), [
    (0, CR0_TS, 0, 1 | CR0_TS, True),  # differs from the shadow in an owned bit
    (0, CR0_TS, CR0_TS, 1 | CR0_TS, False),  # equals the shadow: the owned bit keeps its real value
    (0, CR0_TS, 0, 1 | CR0_WP, False),  # an unowned bit changes the real register
    (4, 1 << 2, 0, 2 | 1 << 2, True),
    (4, 1 << 2, 0, 2, False),
])  # fmt: skip
def test_writes_to_owned_bits_exit_only_when_they_differ_from_the_shadow(crn, mask, shadow, value, exits):
    g = Guest()
    if crn == 0:
        g.set(CR0_GUEST_HOST_MASK=mask, CR0_READ_SHADOW=shadow)
    else:
        g.set(CR4_GUEST_HOST_MASK=mask, CR4_READ_SHADOW=shadow)
    g.v.regs[1] = value
    g.code(I("mtcr", crn=crn, rs1=1), I("hlt"))
    real_before = g.get(f"GUEST_CR{crn}")
    e = g.run()
    if exits:
        assert e.number == R.CR_ACCESS and g.get("EXIT_QUALIFICATION") == crn | MTCR << 4 | reg(1)
        assert g.get(f"GUEST_CR{crn}") == real_before, "without effect"
    else:
        assert e.reason is ExitReason.HLT
        assert g.get(f"GUEST_CR{crn}") == (value & ~mask) | (real_before & mask)


# -- V.3: the TPR shadow ------------------------------------------------------------------------


def test_tpr_shadow_reads_and_writes_virtual_tpr_without_exiting():
    g = Guest()
    g.controls("USE_TPR_SHADOW")
    g.set(VIRTUAL_TPR=3, TPR_THRESHOLD=0, GUEST_CR8=11)
    g.v.regs[1] = 7
    g.code(I("mfcr", rd=2, crn=8), I("mtcr", crn=8, rs1=1), I("mfcr", rd=3, crn=8), I("hlt"))
    assert g.run().reason is ExitReason.HLT
    assert (g.v.regs[2], g.v.regs[3]) == (3, 7)
    assert g.get("VIRTUAL_TPR") == 7 and g.get("GUEST_CR8") == 11, "the guest's CR8 field is untouched"


def test_tpr_below_threshold_is_a_trap_like_exit_after_the_write():
    g = Guest()
    g.controls("USE_TPR_SHADOW")
    g.set(VIRTUAL_TPR=8, TPR_THRESHOLD=5)
    g.v.regs[1], g.v.regs[2] = 6, 4
    g.code(I("mtcr", crn=8, rs1=1), I("mtcr", crn=8, rs1=2), I("hlt"))
    e = g.run()
    assert e.number == R.TPR_BELOW_THRESHOLD
    assert g.get("VIRTUAL_TPR") == 4 and g.pc == CODE + 8, "the write retired; pc after it"
    assert g.m.counters["insn_guest_cpl0"] == 2


def test_tpr_shadow_governs_interrupt_delivery():
    g = Guest()
    g.controls("USE_TPR_SHADOW")
    g.set(VIRTUAL_TPR=5, GUEST_FLAGS=IF)
    g.code(*[I("addi", rd=1, rs1=1, imm=1)] * 8)
    g.m.cpu.intr_vector = 0x50  # priority 5: blocked by a TPR of 5 (architecture §6.5)
    assert g.run(budget=4).reason is ExitReason.BUDGET
    assert g.m.cpu.intr_vector == 0x50
    g.set(VIRTUAL_TPR=4)
    e = g.run(budget=4)
    assert e.number == R.VMCALL and g.get("EXIT_QUALIFICATION") == HANDLER_VMCALL, "delivered to the guest handler"
    assert g.m.cpu.intr_acked == 0x50 and g.m.cpu.intr_vector == -1


# -- V.4: the exception bitmap, #PF mask/match ---------------------------------------------------


@pytest.mark.parametrize(("bit14", "mask", "match", "exits"), [
    (True, 0, 0, True), (True, 2, 2, True), (True, 2, 0, False),  # write fault: error code 2 | U
    (False, 0, 0, False), (False, 2, 0, True), (False, 2, 2, False),
])  # fmt: skip
def test_page_fault_exits_by_the_error_code_mask_and_match(bit14, mask, match, exits):
    g = Guest()
    tables = g.paging()
    tables.map(DATA, DATA, 0x1000, flags=PTE_U)  # a read-only page
    g.set(GUEST_CR0=1 | 1 << 15 | CR0_WP, EXCEPTION_BITMAP=(1 << PF) if bit14 else 0, PF_ERROR_CODE_MASK=mask,
          PF_ERROR_CODE_MATCH=match, GUEST_CR2=0x77)  # fmt: skip
    g.v.regs[1] = DATA
    g.code(I("sd", rs1=1, rs2=0, imm=0))
    e = g.run()
    if exits:
        assert e.number == R.EXCEPTION
        assert EventInfo.decode(g.get("EXIT_INTR_INFO")) == EventInfo(True, PF, IntrType.HARDWARE_EXCEPTION, True)
        assert g.get("EXIT_INTR_ERROR_CODE") == 3 and g.get("EXIT_QUALIFICATION") == DATA
        assert g.get("GUEST_CR2") == 0x77, "guest CR2 is not written by an exiting #PF"
        assert g.pc == CODE
    else:
        assert e.number == R.VMCALL and g.get("EXIT_QUALIFICATION") == HANDLER_VMCALL, "delivered to the guest"
        assert g.get("GUEST_CR2") == DATA


@pytest.mark.parametrize("vector", [0, 1, 6, 13, 17, 18])
def test_exception_bitmap_selects_each_vector(vector):
    programs = {
        0: ([I("div", rd=1, rs1=1, rs2=0)], {}),
        1: ([I("addi", rd=1, rs1=0, imm=1), I("hlt")], {"GUEST_FLAGS": 1 << 8}),
        6: ([I("ud")], {}),
        13: ([I("hlt")], {"GUEST_CPL": 3}),
        17: ([I("ld", rd=1, rs1=2, imm=1)], {}),
        18: ([I("ld", rd=1, rs1=2, imm=0)], {}),
    }
    words, fields = programs[vector]
    for selected in (True, False):
        g = Guest(ept=False) if vector == 18 else Guest()
        g.code(*words)
        g.set(**fields, EXCEPTION_BITMAP=(1 << vector) if selected else 0)
        g.v.regs[2] = 0xFFFF_F000 if vector == 18 else DATA
        e = g.run()
        if selected:
            assert e.number == R.EXCEPTION and g.get("EXIT_INTR_INFO") & 0xFF == vector
            assert g.m.counters.exceptions.get(vector, 0) == 0, "not delivered"
        else:
            assert e.number == R.VMCALL, "delivered through the guest IDT to the handler"
            assert g.m.counters.exceptions[vector] == 1


def test_software_interrupts_never_exit_by_the_bitmap():
    g = Guest()
    g.set(EXCEPTION_BITMAP=0xFFFF_FFFF)
    g.code(I("int", imm=3))
    assert g.run().number == R.VMCALL, "delivered through the guest IDT"
    assert g.r64(STACK - 32) == CODE + 4, "pushed pc: the next instruction"
    assert g.m.counters.exceptions == {3: 1}


def test_a_host_gate_is_a_reserved_gate_type_in_guest_mode():
    g = Guest()
    g.gate(6, 0, GATE_HOST)
    g.set(EXCEPTION_BITMAP=1 << GP)
    g.code(I("ud"))
    assert g.run().number == R.EXCEPTION
    info = EventInfo.decode(g.get("EXIT_INTR_INFO"))
    assert info.vector == GP and g.get("EXIT_INTR_ERROR_CODE") == 8 * 6 + 2 + 1
    assert EventInfo.decode(g.get("IDT_VECTORING_INFO")) == EventInfo(True, UD, IntrType.HARDWARE_EXCEPTION, False)


def test_triple_fault_exits_and_the_guest_cannot_be_entered_again():
    g = Guest()
    for v in range(256):
        g.gate(v, present=False)
    g.code(I("ud"))
    e = g.run()
    assert e.number == R.TRIPLE_FAULT and g.get("GUEST_ACTIVITY") == 2
    assert g.get("IDT_VECTORING_INFO") == 0
    assert g.m.counters["triple_faults"] == 1 and g.m.counters["double_faults"] == 1
    with pytest.raises(ValueError, match="GUEST_ACTIVITY"):
        g.run()


# -- V.5: IDT-vectoring information ---------------------------------------------------------


def test_an_ept_violation_while_pushing_a_frame_reports_the_event_being_delivered():
    g = Guest()
    # the guest's ring-0 stack page is not readable/writable in the nested tables
    g.nested.map(0x21000 - 0x1000, 2 << 20 | 0x21000 - 0x1000, 0x1000, flags=EPT_R)
    g.m.invept()
    g.set(GUEST_CPL=3)
    g.code(I("int", imm=0x40))
    e = g.run()
    assert e.number == R.EPT_VIOLATION
    assert g.get("EXIT_QUALIFICATION") & 7 == 2, "a write (the frame push)"
    assert EventInfo.decode(g.get("IDT_VECTORING_INFO")) == EventInfo(True, 0x40, IntrType.SOFTWARE_INTERRUPT, False)
    assert g.pc == CODE and g.get("GUEST_CPL") == 3, "nothing of the int happened"


# -- V.3: external interrupts and the interrupt window -----------------------------------------


def test_external_interrupt_exiting_takes_the_vector_whatever_if():
    g = Guest()
    g.v[0x10] = 1  # PIN_CONTROLS: external-interrupt exiting
    g.code(*[I("addi", rd=1, rs1=1, imm=1)] * 8)
    g.m.cpu.intr_vector = 0x41
    e = g.run()
    assert e.number == R.EXTERNAL_INTERRUPT
    assert EventInfo.decode(g.get("EXIT_INTR_INFO")) == EventInfo(True, 0x41, IntrType.EXTERNAL, False)
    assert g.m.cpu.intr_acked == 0x41 and g.m.cpu.intr_vector == -1
    assert g.pc == CODE and g.m.counters.interrupts == {}


def test_without_interrupt_exiting_the_guest_takes_the_interrupt_through_its_idt():
    g = Guest()
    g.set(GUEST_FLAGS=IF)
    g.code(*[I("addi", rd=1, rs1=1, imm=1)] * 8)
    g.m.cpu.intr_vector = 0x41
    assert g.run().number == R.VMCALL
    assert g.m.counters.interrupts == {0x41: 1}
    assert g.r64(STACK - 8 * 4) == CODE, "the frame's pc: the interrupted instruction"


def test_interrupt_window_exits_at_the_first_boundary_with_if_and_no_shadow():
    g = Guest()
    g.controls("INTERRUPT_WINDOW_EXITING")
    g.code(I("addi", rd=1, rs1=1, imm=1), I("sti"), I("addi", rd=1, rs1=1, imm=1), I("addi", rd=1, rs1=1, imm=1))
    e = g.run()
    assert e.number == R.INTERRUPT_WINDOW
    assert g.pc == CODE + 12, "after sti, the shadow lets one more instruction run"
    g2 = Guest()
    g2.controls("INTERRUPT_WINDOW_EXITING")
    g2.set(GUEST_FLAGS=IF)
    g2.code(I("addi", rd=1, rs1=1, imm=1))
    assert g2.run().number == R.INTERRUPT_WINDOW and g2.pc == CODE, "open at entry: exits before anything runs"


# -- V.9: event injection ---------------------------------------------------------------------


def _frame(g: Guest, sp: int, n: int) -> list[int]:
    return [g.r64(sp + 8 * i) for i in range(n)]


def test_injected_external_interrupt_is_delivered_as_natively_from_ring_3():
    g = Guest()
    g.set(GUEST_CPL=3, GUEST_FLAGS=0, ENTRY_INTR_INFO=intr_info(0x60, IntrType.EXTERNAL))
    g.v.regs[15] = 0x30008
    g.code(I("addi", rd=1, rs1=1, imm=1))
    e = g.run()
    assert e.number == R.VMCALL and g.get("GUEST_CPL") == 0
    sp = RSP[0] - 32
    assert _frame(g, sp, 4) == [CODE, 3, 0, 0x30008], "pc, cs, flags, sp (architecture §6.3)"
    assert not g.get("ENTRY_INTR_INFO") >> 31, "the valid bit is cleared once delivered"
    assert g.m.counters.interrupts == {0x60: 1}


def test_injected_hardware_exception_pushes_its_error_code():
    g = Guest()
    g.set(ENTRY_INTR_INFO=intr_info(GP, IntrType.HARDWARE_EXCEPTION, has_error=True), ENTRY_ERROR_CODE=0x18)
    g.code(I("ud"))
    assert g.run().number == R.VMCALL
    assert _frame(g, STACK - 40, 5) == [0x18, CODE, 0, 0, STACK]
    assert g.m.counters.exceptions == {GP: 1}


def test_injected_software_interrupt_checks_the_gates_dpl():
    g = Guest()
    g.gate(0x80, HANDLER, dpl=0)
    g.set(GUEST_CPL=3, EXCEPTION_BITMAP=1 << GP, ENTRY_INTR_INFO=intr_info(0x80, IntrType.SOFTWARE_INTERRUPT))
    g.code(I("addi", rd=1, rs1=1, imm=1))
    e = g.run()
    assert e.number == R.EXCEPTION and g.get("EXIT_INTR_ERROR_CODE") == 8 * 0x80 + 2
    assert EventInfo.decode(g.get("IDT_VECTORING_INFO")).vector == 0x80


def test_injection_ignores_guest_if_and_happens_before_a_window_exit():
    g = Guest()
    g.controls("INTERRUPT_WINDOW_EXITING")
    g.set(GUEST_FLAGS=0, ENTRY_INTR_INFO=intr_info(0x70, IntrType.EXTERNAL))
    g.code(I("hlt"))
    assert g.run().number == R.VMCALL
    assert g.m.counters.interrupts == {0x70: 1}


def test_injection_wakes_a_halted_guest():
    g = Guest()
    g.code(I("hlt"), I("addi", rd=1, rs1=1, imm=1))
    assert g.run().reason is ExitReason.HLT and g.get("GUEST_ACTIVITY") == 1
    g.set(ENTRY_INTR_INFO=intr_info(0x70, IntrType.EXTERNAL))
    assert g.run().number == R.VMCALL and g.get("GUEST_ACTIVITY") == 0
    assert g.r64(STACK - 32) == CODE + 4


@pytest.mark.parametrize(
    ("vector", "kind", "kept"),
    [(DB, IntrType.HARDWARE_EXCEPTION, 1), (GP, IntrType.HARDWARE_EXCEPTION, 0), (0x70, IntrType.EXTERNAL, 0)],
)
def test_an_injected_db_keeps_the_sti_shadow_and_every_other_event_spends_it(vector, kind, kept):
    """Architecture §6.5: a pending #DB is delivered at step 2, before step 3 spends the shadow;
    every other event comes after it (V.9: an injected event replays its native delivery)."""
    g = Guest()
    g.set(GUEST_INTERRUPTIBILITY=1, ENTRY_INTR_INFO=intr_info(vector, kind, kind == IntrType.HARDWARE_EXCEPTION and vector == GP))
    g.code(I("addi", rd=1, rs1=1, imm=1))
    assert g.run(1).reason is ExitReason.BUDGET and g.pc == HANDLER
    assert g.get("GUEST_INTERRUPTIBILITY") == kept


UNMAPPED_STACK = 0x100000  # above the guest tables' identity map: a frame pushed here faults


def test_a_fault_in_a_double_faults_delivery_is_checked_against_the_bitmap_before_it_shuts_down():
    """docs/vmx.md V.5: #GP for the missing #UD gate makes #DF; #DF's frame push faults (#PF)
    — the bitmap takes it, with #DF as the vectoring event; without the bit, a triple fault."""
    for bitmap, reason in ((1 << PF, R.EXCEPTION), (0, R.TRIPLE_FAULT)):
        g = Guest()
        g.paging()  # maps [0, GUEST_TABLES) only
        g.v.regs[15] = UNMAPPED_STACK
        g.gate(UD, present=False)
        g.set(EXCEPTION_BITMAP=bitmap)
        g.code(I("ud"))
        assert g.run().number == reason
        assert g.m.counters["double_faults"] == 1
        if reason == R.EXCEPTION:
            assert EventInfo.decode(g.get("IDT_VECTORING_INFO")).vector == DF
            assert g.get("EXIT_QUALIFICATION") == UNMAPPED_STACK - 8


def test_a_fault_in_an_injected_double_faults_delivery_shuts_the_guest_down():
    """Architecture §6.6: a fault in #DF's delivery shuts down — an injected #DF's too, with no
    second #DF counted (V.9)."""
    g = Guest()
    g.gate(DF, present=False)
    g.set(ENTRY_INTR_INFO=intr_info(DF, IntrType.HARDWARE_EXCEPTION, has_error=True), ENTRY_ERROR_CODE=0)
    g.code(I("addi", rd=1, rs1=1, imm=1))
    assert g.run().number == R.TRIPLE_FAULT and g.get("GUEST_ACTIVITY") == 2
    assert (g.m.counters["double_faults"], g.m.counters["triple_faults"]) == (0, 1)


# -- V.1: the host's state is the machine's, restored at every exit --------------------------------


def test_host_state_survives_guest_mode_and_the_guest_resumes_from_the_vmcs():
    g = Guest()
    g.m.cpu.pc, g.m.cpu.cpl, g.m.cpu.cr8 = 0x4444, 2, 6
    g.m.cpu.r[5] = 55
    g.code(I("addi", rd=5, rs1=5, imm=1), I("vmcall", imm=1), I("addi", rd=5, rs1=5, imm=1), I("vmcall", imm=2))
    g.run()
    assert (g.m.cpu.pc, g.m.cpu.cpl, g.m.cpu.cr8, g.m.cpu.r[5]) == (0x4444, 2, 6, 55)
    assert g.v.regs[5] == 1
    g.set(GUEST_PC=g.pc + 4)
    g.run()
    assert g.v.regs[5] == 2 and g.get("EXIT_QUALIFICATION") == 2
    assert g.m.counters["insn_host_cpl2"] == 0
    assert g.m.counters["insn_guest_cpl0"] == 2, "an exiting vmcall does not retire (V.3)"


def test_budget_returns_keep_the_guest_in_the_vmcs():
    g = Guest()
    g.code(*[I("addi", rd=1, rs1=1, imm=1)] * 10, I("hlt"))
    for _ in range(5):
        assert g.run(budget=2).reason is ExitReason.BUDGET
    assert g.v.regs[1] == 10 and g.pc == CODE + 40
    assert g.m.counters["vm_entries"] == 5 and g.m.counters["vm_exits"] == 0


def test_vmcs_accesses_are_counted_and_registers_are_not():
    g = Guest()
    c0 = g.m.counters
    g.v.regs[3] = 9
    _ = g.v.regs[3]
    g.set(GUEST_PC=CODE)
    g.get("GUEST_PC")
    c1 = g.m.counters
    assert (c1["vmcs_writes"] - c0["vmcs_writes"], c1["vmcs_reads"] - c0["vmcs_reads"]) == (1, 1)


def test_a_guest_at_ring_3_with_paging_under_ept_uses_its_own_page_tables():
    g = Guest()
    g.paging()
    g.set(GUEST_CPL=3)
    g.v.regs[1] = DATA
    g.code(I("addi", rd=2, rs1=0, imm=77), I("sd", rs1=1, rs2=2, imm=0), I("ld", rd=3, rs1=1, imm=0), I("vmcall", imm=0))
    assert g.run().number == R.VMCALL
    assert g.v.regs[3] == 77 and g.r64(DATA) == 77
    assert g.m.read_u64((2 << 20) + DATA) == 77, "the store landed in the guest's host-physical memory"
    assert g.m.read_u64(DATA) == 0
    assert g.m.counters["insn_guest_cpl3"] == 3


def test_idt_is_the_guests():
    g = Guest(ept=False)
    g.set(EXCEPTION_BITMAP=0)
    g.code(I("ud"))
    g.run()
    assert g.get("EXIT_QUALIFICATION") == HANDLER_VMCALL
    assert g.m.read_u64(IDT + 16 * UD) == HANDLER, "the gate the guest used"
    assert g.m.cpu.idtr == 0, "the host's IDTR is not the guest's"


def test_a_fault_like_exit_keeps_the_sti_shadow_it_ran_in():
    """sti; hlt with the hlt exiting: re-entered, the hlt still runs in the shadow (no lost wakeup)."""
    g = Guest()
    g.controls("HLT_EXITING")
    g.code(I("sti"), I("hlt"))
    assert g.run().number == R.HLT
    assert g.get("GUEST_INTERRUPTIBILITY") == 1 and g.pc == CODE + 4
    g.m.cpu.intr_vector = 0x41
    g.controls()
    g.set(PROC_CONTROLS=g.get("PROC_CONTROLS") & ~(1 << 7))
    assert g.run().reason is ExitReason.HLT, "the hlt ran before the interrupt could be taken"
    assert g.m.cpu.intr_vector == 0x41
    e = g.run()
    assert e.number == R.VMCALL and g.m.counters.interrupts == {0x41: 1}, "the halt is woken by it"
