"""VM entry checks (docs/vmx.md V.8) swept kvm-unit-tests style, and the VMCS access rules (V.2)."""

from __future__ import annotations

import re

import pytest
from vmx_rig import CODE, Guest, I

from cffi_core._binding import StateError, VMXError, check, ffi, lib
from cffi_core.exits import ExitReason
from cffi_core.machine import Machine
from cffi_core.vmx import READ_ONLY_FIELDS, PinControl, ProcControl, VmcsField, VmExitReason

MEMORY = 1 << 20
U64 = (1 << 64) - 1

# V.2, the tables of PIN_CONTROLS and PROC_CONTROLS: bit -> name.  Every other bit is reserved.
PIN_DEFINED = {0: "EXTERNAL_INTERRUPT_EXITING"}
PROC_DEFINED = {
    2: "INTERRUPT_WINDOW_EXITING", 3: "USE_TSC_OFFSET", 7: "HLT_EXITING", 9: "INVLPG_EXITING", 12: "RDTSC_EXITING",
    15: "CR3_LOAD_EXITING", 16: "CR3_STORE_EXITING", 19: "CR8_LOAD_EXITING", 20: "CR8_STORE_EXITING",
    21: "USE_TPR_SHADOW", 24: "UNCONDITIONAL_IO_EXITING", 25: "USE_IO_BITMAPS", 26: "DESCRIPTOR_TABLE_EXITING",
    28: "USE_MSR_BITMAPS", 33: "ENABLE_EPT", 37: "ENABLE_VPID",
}  # fmt: skip
# V.2: the controls that need a feature beyond vmx.
NEEDS_FEATURE = {21: "tpr_shadow", 33: "ept", 37: "vpid"}
# V.2: the exit-information fields, read-only to the host.
EXIT_FIELDS = (
    "EXIT_REASON", "EXIT_QUALIFICATION", "GUEST_LINEAR_ADDRESS", "GUEST_PHYSICAL_ADDRESS", "EXIT_INTR_INFO",
    "EXIT_INTR_ERROR_CODE", "IDT_VECTORING_INFO", "IDT_VECTORING_ERROR_CODE", "EXIT_INSTRUCTION_LENGTH",
    "EXIT_INSTRUCTION_WORD",
)  # fmt: skip
# V.2: the guest-state, execution-control and entry-control fields, written by the host.
WRITABLE_FIELDS = (
    "GUEST_PC", "GUEST_FLAGS", "GUEST_CPL", "GUEST_CR0", "GUEST_CR2", "GUEST_CR3", "GUEST_CR4", "GUEST_CR8",
    "GUEST_IDTR", "GUEST_RSP0", "GUEST_RSP1", "GUEST_RSP2", "GUEST_SEGLIMIT", "GUEST_INTERRUPTIBILITY",
    "GUEST_ACTIVITY", "GUEST_PENDING_DB", "PIN_CONTROLS", "PROC_CONTROLS", "EXCEPTION_BITMAP",
    "PF_ERROR_CODE_MASK", "PF_ERROR_CODE_MATCH", "CR0_GUEST_HOST_MASK", "CR0_READ_SHADOW", "CR4_GUEST_HOST_MASK",
    "CR4_READ_SHADOW", "IO_BITMAP", "MSR_BITMAP", "TSC_OFFSET", "VIRTUAL_TPR", "TPR_THRESHOLD", "EPT_POINTER",
    "VPID", "ENTRY_INTR_INFO", "ENTRY_ERROR_CODE",
)  # fmt: skip
# architecture.md §2: the bits that exist in FLAGS, CR0, CR4.
FLAGS_BITS = (8, 9, 12, 13)
CR0_PE, CR0_BITS = 1, (0, 3, 4, 15)
CR4_BITS = (0, 1, 2, 7)
# V.5, V.9: ENTRY_INTR_INFO.
VALID, HAS_ERROR = 1 << 31, 1 << 11
EXTERNAL, HARDWARE, SOFTWARE = 0, 3, 4
ERROR_CODE_VECTORS = (8, 13, 14, 17)  # architecture.md §6.1


def info(vector: int, kind: int, error: bool = False) -> int:
    return VALID | kind << 8 | (HAS_ERROR if error else 0) | vector


def guest(profile: str = "vtx-2009") -> Guest:
    """A guest without ept whose first instruction would show that it ran (r1 += 1)."""
    g = Guest(profile, ept=False, memory=MEMORY)
    g.code(I("addi", rd=1, rs1=1, imm=1), I("addi", rd=2, rs1=2, imm=1), I("vmcall", imm=1))
    return g


def names(message: str, word: str) -> bool:
    """Does the message name ``word`` as a whole word (GUEST_CR8 does not name CR8)?"""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", message) is not None


def refused(g: Guest, field: str, *, bit: int | None = None, feature: str | None = None) -> str:
    """vmrun fails naming ``field`` (and ``bit``, ``feature``), and nothing runs (V.1, V.8):
    the VMCS, the guest's registers, the machine's CPU, memory and every counter unchanged."""
    fields = {f: g.v[f] for f in VmcsField}
    regs, cpu, memory = list(g.v.regs), g.m.cpu.state(), bytes(g.m.memory)
    counters = dict(g.m.counters)
    with pytest.raises(VMXError) as e:
        g.m.vmrun(g.v, 100)
    assert dict(g.m.counters) == counters, "a refused vmrun changed counters"
    message = str(e.value)
    assert names(message, field), message
    if bit is not None:
        assert re.search(rf"\bbit {bit}\b", message), message
    if feature is not None:
        assert names(message, feature), message
    assert {f: g.v[f] for f in VmcsField} == fields
    assert list(g.v.regs) == regs
    assert g.m.cpu.state() == cpu
    assert bytes(g.m.memory) == memory
    return message


def accepted(g: Guest) -> None:
    """vmrun enters (V.1): with budget 0 it comes back at once with the budget exit."""
    entries = g.m.counters["vm_entries"]
    assert g.m.vmrun(g.v, 0).reason is ExitReason.BUDGET
    assert g.m.counters["vm_entries"] == entries + 1


# ---- V.2: the controls the core knows are the manual's -------------------------------------


def test_control_names_and_bits_are_the_manuals():
    assert {m.value.bit_length() - 1: m.name for m in PinControl} == PIN_DEFINED
    assert {m.value.bit_length() - 1: m.name for m in ProcControl} == PROC_DEFINED


# ---- V.8: reserved bits of PIN_CONTROLS and PROC_CONTROLS ----------------------------------


@pytest.mark.parametrize("bit", [b for b in range(64) if b not in PIN_DEFINED])
def test_reserved_pin_control_bit_is_refused(bit):
    g = guest()
    g.set(PIN_CONTROLS=1 << bit)
    refused(g, "PIN_CONTROLS", bit=bit)


@pytest.mark.parametrize("bit", [b for b in range(64) if b not in PROC_DEFINED])
def test_reserved_proc_control_bit_is_refused(bit):
    g = guest()
    g.set(PROC_CONTROLS=1 << bit)
    refused(g, "PROC_CONTROLS", bit=bit)


@pytest.mark.parametrize("bit", [b for b in range(64) if b not in PROC_DEFINED])
def test_reserved_proc_control_bit_is_refused_beside_defined_ones(bit):
    g = guest()
    g.set(VPID=1, PROC_CONTROLS=sum(1 << b for b in PROC_DEFINED) | 1 << bit)
    refused(g, "PROC_CONTROLS", bit=bit)


@pytest.mark.parametrize("bit", [b for b in range(64) if b not in PIN_DEFINED])
def test_reserved_pin_control_bit_is_refused_beside_the_defined_one(bit):
    g = guest("vtx-2006")
    g.set(PIN_CONTROLS=1 | 1 << bit)
    refused(g, "PIN_CONTROLS", bit=bit)


# ---- V.8: every defined bit alone is accepted --------------------------------------------


@pytest.mark.parametrize("profile", ["vtx-2006", "vtx-2009"])
def test_the_pin_control_alone_is_accepted(profile):
    g = guest(profile)
    g.set(PIN_CONTROLS=1)
    accepted(g)


@pytest.mark.parametrize("bit", sorted(PROC_DEFINED))
def test_defined_proc_control_alone_is_accepted(bit):
    profile = "vtx-2006" if bit not in NEEDS_FEATURE else f"vtx-2006+{NEEDS_FEATURE[bit]}"
    for p in (profile, "vtx-2009"):
        g = guest(p)
        g.set(VPID=1, PROC_CONTROLS=1 << bit)  # V.8: ENABLE_VPID needs a VPID; ignored otherwise
        accepted(g)


def test_every_defined_control_at_once_is_accepted():
    g = guest()
    g.set(VPID=1, PIN_CONTROLS=1, PROC_CONTROLS=sum(1 << b for b in PROC_DEFINED))
    accepted(g)


@pytest.mark.parametrize(
    ("profile", "bit"),
    [
        (p, b)
        for p in ("vtx-2006", "vtx-2006+ept", "vtx-2006+vpid", "vtx-2006+tpr_shadow", "vtx-2006+iommu")
        for b in sorted(NEEDS_FEATURE)
        if not p.endswith("+" + NEEDS_FEATURE[b])
    ],
)
def test_control_needing_a_missing_feature_is_refused_naming_it(profile, bit):
    feature = NEEDS_FEATURE[bit]
    g = guest(profile)
    g.set(VPID=1, PROC_CONTROLS=1 << bit)
    refused(g, "PROC_CONTROLS", feature=feature)


# ---- V.8: VPID --------------------------------------------------------------------------


@pytest.mark.parametrize("vpid", [0, 0x10000, 0x12345, 1 << 32, U64])
def test_vpid_out_of_range_with_enable_vpid_is_refused(vpid):
    g = guest()
    g.set(VPID=vpid, PROC_CONTROLS=ProcControl.ENABLE_VPID)
    refused(g, "VPID")


@pytest.mark.parametrize("vpid", [1, 2, 0x8000, 0xFFFF])
def test_vpid_in_range_is_accepted(vpid):
    g = guest()
    g.set(VPID=vpid, PROC_CONTROLS=ProcControl.ENABLE_VPID)
    accepted(g)


@pytest.mark.parametrize("vpid", [0, 0x10000, U64])
def test_vpid_is_not_checked_without_enable_vpid(vpid):
    for profile in ("vtx-2006", "vtx-2009"):
        g = guest(profile)
        g.set(VPID=vpid)
        accepted(g)


# ---- V.8, V.6: EPT_POINTER --------------------------------------------------------------

EPTP_OK = 0x10000 | 2  # a root in RAM, 4 levels


@pytest.mark.parametrize("bit", [*range(2, 12), *range(52, 64)])
def test_ept_pointer_reserved_bit_is_refused(bit):
    g = guest()
    g.set(EPT_POINTER=EPTP_OK | 1 << bit, PROC_CONTROLS=ProcControl.ENABLE_EPT)
    refused(g, "EPT_POINTER")


def test_ept_pointer_levels_code_3_is_refused():
    g = guest()
    g.set(EPT_POINTER=0x10000 | 3, PROC_CONTROLS=ProcControl.ENABLE_EPT)
    refused(g, "EPT_POINTER")


@pytest.mark.parametrize("root", [MEMORY, MEMORY + 0x1000, 1 << 40, 1 << 51, 0x000F_FFFF_FFFF_F000])
def test_ept_pointer_root_beyond_ram_is_refused(root):
    g = guest()
    g.set(EPT_POINTER=root | 2, PROC_CONTROLS=ProcControl.ENABLE_EPT)
    refused(g, "EPT_POINTER")


@pytest.mark.parametrize("profile", ["vtx-2009", "vtx-2006+ept"])
@pytest.mark.parametrize("eptp", [0, 1, 2, 0x10000, (MEMORY - 0x1000) | 2])
def test_ept_pointer_in_ram_with_2_3_4_levels_is_accepted(profile, eptp):
    g = guest(profile)
    g.set(EPT_POINTER=eptp, PROC_CONTROLS=ProcControl.ENABLE_EPT)
    accepted(g)


@pytest.mark.parametrize("eptp", [3, U64, 1 << 63, MEMORY])
def test_ept_pointer_is_not_checked_without_enable_ept(eptp):
    for profile in ("vtx-2006", "vtx-2009"):
        g = guest(profile)
        g.set(EPT_POINTER=eptp)
        accepted(g)


# ---- V.8: I/O and MSR bitmaps ------------------------------------------------------------

BITMAPS = {"IO_BITMAP": ("USE_IO_BITMAPS", 8192), "MSR_BITMAP": ("USE_MSR_BITMAPS", 4096)}  # V.2 sizes


@pytest.mark.parametrize("field", sorted(BITMAPS))
@pytest.mark.parametrize("offset", [1 << k for k in range(12)] + [0xFFF])
def test_misaligned_bitmap_is_refused_while_used(field, offset):
    g = guest("vtx-2006")
    g.set(**{field: 0x10000 + offset}, PROC_CONTROLS=ProcControl[BITMAPS[field][0]])
    refused(g, field)


@pytest.mark.parametrize("field", sorted(BITMAPS))
def test_bitmap_beyond_ram_is_refused_while_used(field):
    control, size = BITMAPS[field]
    # the whole bitmap must be RAM: an 8 KiB I/O bitmap may not start in RAM's last page
    for address in (MEMORY, MEMORY + 0x1000, MEMORY - size + 0x1000, 1 << 40, 1 << 63, U64 & ~0xFFF):
        g = guest("vtx-2006")
        g.set(**{field: address}, PROC_CONTROLS=ProcControl[control])
        refused(g, field)


@pytest.mark.parametrize("field", sorted(BITMAPS))
def test_bitmap_in_ram_is_accepted_while_used(field):
    control, size = BITMAPS[field]
    for address in (0, 0x1000, 0x10000, MEMORY - size):
        g = guest("vtx-2006")
        g.set(**{field: address}, PROC_CONTROLS=ProcControl[control])
        accepted(g)


@pytest.mark.parametrize("field", sorted(BITMAPS))
def test_bitmap_is_ignored_while_unused(field):
    for value in (1, 0xFFF, MEMORY, U64):
        g = guest("vtx-2006")
        g.set(**{field: value})
        accepted(g)
    # unconditional I/O exiting does not use the I/O bitmap (V.2)
    g = guest("vtx-2006")
    g.set(IO_BITMAP=U64, PROC_CONTROLS=ProcControl.UNCONDITIONAL_IO_EXITING)
    accepted(g)


# ---- V.8: EXCEPTION_BITMAP (vectors 0..31) -------------------------------------------------


@pytest.mark.parametrize("bit", range(32, 64))
def test_exception_bitmap_bit_above_31_is_refused(bit):
    g = guest("vtx-2006")
    g.set(EXCEPTION_BITMAP=1 << bit)
    refused(g, "EXCEPTION_BITMAP")


def test_exception_bitmap_bits_0_to_31_are_accepted():
    for bit in range(32):
        g = guest("vtx-2006")
        g.set(EXCEPTION_BITMAP=1 << bit)
        accepted(g)
    g = guest("vtx-2006")
    g.set(EXCEPTION_BITMAP=0xFFFF_FFFF)
    accepted(g)


# ---- V.8, V.3: the TPR shadow ------------------------------------------------------------


@pytest.mark.parametrize("field", ["VIRTUAL_TPR", "TPR_THRESHOLD"])
@pytest.mark.parametrize("value", [16, 17, 255, 1 << 32, U64])
def test_tpr_above_15_is_refused_with_the_tpr_shadow(field, value):
    g = guest()
    g.set(**{field: value}, PROC_CONTROLS=ProcControl.USE_TPR_SHADOW)
    refused(g, field)


@pytest.mark.parametrize("field", ["VIRTUAL_TPR", "TPR_THRESHOLD"])
def test_tpr_0_to_15_is_accepted_with_the_tpr_shadow(field):
    for value in range(16):
        g = guest()
        g.set(**{field: value}, PROC_CONTROLS=ProcControl.USE_TPR_SHADOW)
        accepted(g)


@pytest.mark.parametrize("field", ["VIRTUAL_TPR", "TPR_THRESHOLD"])
def test_tpr_fields_are_ignored_without_the_tpr_shadow(field):
    for profile in ("vtx-2006", "vtx-2009"):
        g = guest(profile)
        g.set(**{field: U64})
        accepted(g)


# ---- V.8 with architecture.md §10: guest state run would refuse -----------------------------


@pytest.mark.parametrize("cpl", [4, 5, 255, U64])
def test_guest_cpl_above_3_is_refused(cpl):
    g = guest()
    g.set(GUEST_CPL=cpl)
    refused(g, "GUEST_CPL")


def test_guest_cpl_0_to_3_is_accepted():
    for cpl in range(4):
        g = guest()
        g.set(GUEST_CPL=cpl)
        accepted(g)


@pytest.mark.parametrize("bit", [b for b in range(64) if b not in FLAGS_BITS])
def test_guest_flags_reserved_bit_is_refused(bit):
    g = guest()
    g.set(GUEST_FLAGS=1 << 9 | 1 << bit)
    refused(g, "GUEST_FLAGS")


def test_guest_flags_defined_bits_are_accepted():
    for value in (0, *(1 << b for b in FLAGS_BITS), sum(1 << b for b in FLAGS_BITS)):
        g = guest()
        g.set(GUEST_FLAGS=value)
        accepted(g)


@pytest.mark.parametrize("bit", [b for b in range(64) if b not in CR0_BITS])
def test_guest_cr0_reserved_bit_is_refused(bit):
    g = guest()
    g.set(GUEST_CR0=CR0_PE | 1 << bit)
    refused(g, "GUEST_CR0")


@pytest.mark.parametrize("cr0", [0, 1 << 3, 1 << 4, 1 << 15, 1 << 15 | 1 << 4 | 1 << 3])
def test_guest_cr0_without_pe_is_refused(cr0):
    g = guest()
    g.set(GUEST_CR0=cr0)
    refused(g, "GUEST_CR0")


def test_guest_cr0_defined_bits_are_accepted():
    for cr0 in (CR0_PE, CR0_PE | 1 << 3, CR0_PE | 1 << 4, CR0_PE | 1 << 15, sum(1 << b for b in CR0_BITS)):
        g = guest()
        g.set(GUEST_CR0=cr0)
        accepted(g)


@pytest.mark.parametrize("bit", [*range(12), *range(52, 64)])
def test_guest_cr3_reserved_bit_is_refused(bit):
    g = guest()
    g.set(GUEST_CR3=0x10000 | 1 << bit)
    refused(g, "GUEST_CR3")


def test_guest_cr3_frame_bits_are_accepted_even_beyond_ram():
    # §2: only bits 11:0 and 63:52 are reserved; a table beyond RAM is the walk's #MC, not entry's
    for bit in range(12, 52):
        g = guest()
        g.set(GUEST_CR3=1 << bit)
        accepted(g)


@pytest.mark.parametrize("bit", [b for b in range(64) if b not in CR4_BITS])
def test_guest_cr4_reserved_bit_is_refused(bit):
    g = guest()
    g.set(GUEST_CR4=2 | 1 << bit)
    refused(g, "GUEST_CR4")


def test_guest_cr4_paging_levels_code_3_is_refused():
    g = guest()
    g.set(GUEST_CR4=3)
    refused(g, "GUEST_CR4")


def test_guest_cr4_defined_values_are_accepted():
    for cr4 in (0, 1, 2, 1 << 2, 1 << 7, 2 | 1 << 2 | 1 << 7):
        g = guest()
        g.set(GUEST_CR4=cr4)
        accepted(g)


@pytest.mark.parametrize("cr8", [16, 17, 255, U64])
def test_guest_cr8_above_15_is_refused(cr8):
    g = guest()
    g.set(GUEST_CR8=cr8)
    refused(g, "GUEST_CR8")


def test_guest_cr8_0_to_15_is_accepted():
    for cr8 in range(16):
        g = guest()
        g.set(GUEST_CR8=cr8)
        accepted(g)


@pytest.mark.parametrize(
    ("field", "bad", "good"),
    [
        ("GUEST_INTERRUPTIBILITY", (2, 3, 1 << 32, U64), (0, 1)),  # V.2: bit 0 only
        ("GUEST_ACTIVITY", (2, 3, 255, U64), (0, 1)),  # V.2: 0 active, 1 halted; 2 is shutdown
        ("GUEST_PENDING_DB", (2, 3, U64), (0, 1)),
    ],
)
def test_guest_activity_fields_out_of_range_are_refused(field, bad, good):
    for value in bad:
        g = guest()
        g.set(**{field: value})
        refused(g, field)
    for value in good:
        g = guest()
        g.set(**{field: value})
        accepted(g)


def test_a_shut_down_guest_is_refused_until_the_host_gives_it_a_state():
    # V.4: TRIPLE_FAULT keeps the guest's state in the VMCS; entering it again is refused (V.8)
    g = guest()
    g.set(GUEST_IDTR=1 << 62, GUEST_PC=0x3)  # #AC at fetch, the IDT read faults, #DF too
    ex = g.run(10)
    assert ex.reason is ExitReason.VM and ex.number == VmExitReason.TRIPLE_FAULT
    assert g.get("GUEST_ACTIVITY") == 2
    refused(g, "GUEST_ACTIVITY")
    g.set(GUEST_ACTIVITY=0, GUEST_PC=CODE)
    accepted(g)


@pytest.mark.parametrize(
    "field", ["GUEST_PC", "GUEST_CR2", "GUEST_IDTR", "GUEST_RSP0", "GUEST_RSP1", "GUEST_RSP2", "GUEST_SEGLIMIT"]
)
def test_guest_fields_without_constraints_take_any_value(field):
    # §2, §10: pc, CR2, IDTR, the ring stacks and the segment limit hold any 64-bit value
    for value in (0, 1, 0x8000_0000_0000_0003, U64):
        g = guest()
        g.set(**{field: value})
        accepted(g)


def test_impossible_host_state_is_refused_and_nothing_runs():
    # V.1: the machine's own state is the host state; §10 refuses an impossible one
    g = guest()
    g.m.cpu.cpl = 4
    counters = dict(g.m.counters)
    with pytest.raises(StateError, match=r"\bcpl\b"):
        g.m.vmrun(g.v, 100)
    assert dict(g.m.counters) == counters
    assert g.v.regs[1] == 0


# ---- V.8, V.9: ENTRY_INTR_INFO -----------------------------------------------------------


@pytest.mark.parametrize("kind", [1, 2, 5, 6, 7])
def test_injected_event_of_a_reserved_type_is_refused(kind):
    for vector in (3, 14, 32, 255):
        g = guest()
        g.set(ENTRY_INTR_INFO=info(vector, kind))
        refused(g, "ENTRY_INTR_INFO")


def test_injected_external_interrupt_below_32_is_refused():
    for vector in range(32):
        g = guest()
        g.set(ENTRY_INTR_INFO=info(vector, EXTERNAL))
        refused(g, "ENTRY_INTR_INFO")


def test_injected_hardware_exception_at_32_or_above_is_refused():
    for vector in (32, 33, 64, 128, 255):
        for error in (False, True):
            g = guest()
            g.set(ENTRY_INTR_INFO=info(vector, HARDWARE, error))
            refused(g, "ENTRY_INTR_INFO")


def test_error_code_bit_must_match_the_event():
    # architecture.md §6.1: #DF, #GP, #PF and #AC have an error code; nothing else has, and
    # `int n` never pushes one (§6.3 step 7)
    for vector in range(32):
        has = vector in ERROR_CODE_VECTORS
        g = guest()
        g.set(ENTRY_INTR_INFO=info(vector, HARDWARE, not has))
        refused(g, "ENTRY_INTR_INFO")
        g = guest()
        g.set(ENTRY_INTR_INFO=info(vector, HARDWARE, has))
        accepted(g)
    for vector in (0, 8, 13, 14, 17, 32, 255):
        g = guest()
        g.set(ENTRY_INTR_INFO=info(vector, SOFTWARE, True))
        refused(g, "ENTRY_INTR_INFO")
    for vector in (32, 100, 255):
        g = guest()
        g.set(ENTRY_INTR_INFO=info(vector, EXTERNAL, True))
        refused(g, "ENTRY_INTR_INFO")


@pytest.mark.parametrize("bit", [*range(12, 31), *range(32, 64)])
def test_injected_event_reserved_bit_is_refused(bit):
    for event in (info(32, EXTERNAL), info(14, HARDWARE, True), info(3, SOFTWARE)):
        g = guest()
        g.set(ENTRY_INTR_INFO=event | 1 << bit)
        refused(g, "ENTRY_INTR_INFO")


def test_well_formed_injected_events_are_accepted():
    for vector in range(32, 256):
        g = guest()
        g.set(ENTRY_INTR_INFO=info(vector, EXTERNAL))
        accepted(g)
    for vector in range(256):
        g = guest()
        g.set(ENTRY_INTR_INFO=info(vector, SOFTWARE))
        accepted(g)


def test_malformed_event_without_the_valid_bit_is_not_injected_nor_checked():
    # V.9: only an event with bit 31 set is injected; V.8 checks its bits "when valid"
    invalid = (
        info(3, 7),
        info(5, EXTERNAL),
        info(14, HARDWARE),
        info(32, EXTERNAL) | 1 << 20,
        info(3, SOFTWARE) | 1 << 40,
    )
    for event in (x & ~VALID for x in invalid):
        g = guest()
        g.set(ENTRY_INTR_INFO=event)
        assert g.run(1).reason is ExitReason.BUDGET
        assert g.v.regs[1] == 1 and g.pc == CODE + 4  # the first instruction ran, nothing delivered
        assert g.m.counters.exceptions == {} and g.m.counters.interrupts == {}


# ---- V.2: VMCS access rules --------------------------------------------------------------


def test_the_manuals_fields_exist_and_only_exit_information_is_read_only():
    assert {VmcsField[n] for n in EXIT_FIELDS} == READ_ONLY_FIELDS
    assert {VmcsField[n] for n in WRITABLE_FIELDS} | READ_ONLY_FIELDS == set(VmcsField)


def test_a_new_vmcs_holds_the_reset_state():
    # V.2: GUEST_CR0 = PE, GUEST_CR4 = 2, GUEST_SEGLIMIT all ones, everything else 0
    v = Machine("vtx-2006", memory=MEMORY).vmcs()
    special = {VmcsField.GUEST_CR0: CR0_PE, VmcsField.GUEST_CR4: 2, VmcsField.GUEST_SEGLIMIT: U64}
    assert {f: v[f] for f in VmcsField} == {f: special.get(f, 0) for f in VmcsField}
    assert list(v.regs) == [0] * 16


@pytest.mark.parametrize("name", EXIT_FIELDS)
def test_write_to_a_read_only_exit_field_is_refused(name):
    g, field = guest(), VmcsField[name]
    before = g.v[field]
    with pytest.raises(VMXError) as e:
        g.v[field] = 1
    assert names(str(e.value), name), str(e.value)
    assert g.v[field] == before


@pytest.mark.parametrize("number", [len(VmcsField), len(VmcsField) + 1, 100, 1 << 16, (1 << 32) - 1])
def test_unknown_field_number_is_refused(number):
    g = guest()
    with pytest.raises(VMXError, match=str(number)):
        g.v.read(number)
    with pytest.raises(VMXError, match=str(number)):
        g.v.write(number, 0)


def test_every_vmcs_access_is_counted_exactly():
    # V.2: every read and write of a field counts; the guest's registers do not
    m = Machine("vtx-2009", memory=MEMORY)
    v = m.vmcs()
    assert (m.counters["vmcs_reads"], m.counters["vmcs_writes"]) == (0, 0)
    writable = [f for f in VmcsField if f not in READ_ONLY_FIELDS]
    for i, f in enumerate(writable):
        if i % 2:
            v.write(f, i)
        else:
            v[f] = i
    assert (m.counters["vmcs_reads"], m.counters["vmcs_writes"]) == (0, len(writable))
    for f in VmcsField:
        v.read(f)
        _ = v[f]
    assert (m.counters["vmcs_reads"], m.counters["vmcs_writes"]) == (2 * len(VmcsField), len(writable))
    for i in range(16):
        v.regs[i] = i * 3
        _ = v.regs[i]
    _ = list(v.regs)
    assert (m.counters["vmcs_reads"], m.counters["vmcs_writes"]) == (2 * len(VmcsField), len(writable))


def test_vmrun_itself_makes_no_counted_vmcs_access():
    # V.2: the counters price the host's accesses; entry and exit move state without them
    g = guest()
    g.set(PROC_CONTROLS=ProcControl.HLT_EXITING)
    reads, writes = g.m.counters["vmcs_reads"], g.m.counters["vmcs_writes"]
    for _ in range(3):
        g.m.vmrun(g.v, 1)
    g.m.vmrun(g.v, 10)  # the vmcall exit
    assert (g.m.counters["vmcs_reads"], g.m.counters["vmcs_writes"]) == (reads, writes)
    assert g.m.counters["vm_entries"] == 4


# ---- V.1: no vmx, another machine's VMCS -------------------------------------------------


@pytest.mark.parametrize("profile", ["x86-2005", "x86-64-2005", "classic-1974"])
def test_vmcs_and_vmrun_without_the_vmx_feature_are_refused(profile):
    m = Machine(profile, memory=MEMORY)
    with pytest.raises(VMXError) as e:
        m.vmcs()
    assert names(str(e.value), "vmx"), str(e.value)
    counters = dict(m.counters)
    with pytest.raises(VMXError) as e:
        check(lib.p64_vmrun(m._m, ffi.NULL, 100), m._m)
    assert names(str(e.value), "vmx"), str(e.value)
    assert dict(m.counters) == counters


def test_the_features_of_the_host_calls_are_checked():
    m = Machine("vtx-2006", memory=MEMORY)
    for call, feature in ((m.invept, "ept"), (lambda: m.invvpid(1), "vpid"), (lambda: m.iommu_attach(0, 0), "iommu")):
        with pytest.raises(VMXError) as e:
            call()
        assert names(str(e.value), feature), str(e.value)


def test_a_vmcs_of_another_machine_is_refused():
    a, b = guest(), guest()
    counters = dict(a.m.counters)
    with pytest.raises(ValueError, match="another machine"):
        a.m.vmrun(b.v, 100)
    # the core's own check, below the Python one
    out = ffi.new("uint64_t *")
    for rc in (
        lib.p64_vmrun(a.m._m, b.v._v, 100),
        lib.p64_vmcs_read(a.m._m, b.v._v, 0, out),
        lib.p64_vmcs_write(a.m._m, b.v._v, 0, 0),
    ):
        with pytest.raises(VMXError, match="another machine"):
            check(rc, a.m._m)
    assert dict(a.m.counters) == counters
    assert b.v.regs[1] == 0 and a.m.counters["vm_entries"] == 0


def test_the_machine_is_usable_after_a_refused_entry():
    g = guest()
    g.set(PROC_CONTROLS=1 << 0)
    refused(g, "PROC_CONTROLS", bit=0)
    g.set(PROC_CONTROLS=0)
    ex = g.run(10)
    assert ex.reason is ExitReason.VM and g.get("EXIT_REASON") == VmExitReason.VMCALL
    assert (g.v.regs[1], g.v.regs[2]) == (1, 1)
