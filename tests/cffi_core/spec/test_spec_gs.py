"""The host segment GS in the spec (manual §5.4, §2 MSRs, §3, §4.2):
MSR_GSBASE and MSR_GSLIMIT, and ``ldgs``/``sdgs``/``jgs`` — the byte-granular limit on the
offset, wraparound of the offset and of the base, the privilege check at CPL 2-3, MSR_SEGLIMIT
not applied, then alignment, paging and RAM on the linear address as for ``ld``/``sd``; a
faulting ``jgs`` changes nothing, and its target is checked by the fetch there, as for ``jr``.
Guest mode is the core's (tests/cffi_core/core/test_core_gs.py): the spec has none."""

from __future__ import annotations

import pytest
from spec_rig import CODE, DATA, MEMORY, Rig

from cffi_core.isa.encoding import encode
from cffi_core.pagetables import PTE_U, PTE_W
from cffi_core.spec import (
    AC,
    ACCESS_READ,
    CR0_WP,
    DB,
    EXIT_BUDGET,
    FLAGS_TF,
    GP,
    MC,
    MSR_GSBASE,
    MSR_GSLIMIT,
    PF,
    PF_I,
    PF_P,
    PF_W,
    PTE_A,
    PTE_D,
    UD,
    walk,
)

U64 = 2**64 - 1
VALUE = 0x0123_4567_89AB_CDEF
OTHER = 0xFEDC_BA98_7654_3210


def gs_rig(base: int = DATA, limit: int = 0xFFF, cpl: int = 0, features: tuple[str, ...] = ()) -> Rig:
    rig = Rig(features=features)
    rig.state.gsbase, rig.state.gslimit, rig.state.cpl = base, limit, cpl
    return rig


def ldgs(rig: Rig, rs1_value: int, imm: int = 0) -> tuple[int, int | None] | int:
    """Run ``ldgs r2, [r1 + imm]``: the value loaded, or the (vector, error code) it raised."""
    rig.state.r[1], rig.state.r[2], rig.state.pc = rs1_value & U64, 0, CODE
    rig.code(encode("ldgs", rd=2, rs1=1, imm=imm))
    e = rig.run(1)
    if e.reason != EXIT_BUDGET:
        assert rig.state.pc == CODE and rig.state.r[2] == 0, "a faulting ldgs has no effect"
        return (e.vector, e.error_code if e.has_error else None)
    assert rig.state.pc == CODE + 4
    return rig.state.r[2]


def sdgs(rig: Rig, rs1_value: int, imm: int = 0, value: int = OTHER) -> tuple[int, int | None] | None:
    """Run ``sdgs r3, [r1 + imm]`` with r3 = value: None, or the (vector, error code) it raised."""
    rig.state.r[1], rig.state.r[3], rig.state.pc = rs1_value & U64, value, CODE
    rig.code(encode("sdgs", rs2=3, rs1=1, imm=imm))
    e = rig.run(1)
    if e.reason != EXIT_BUDGET:
        assert rig.state.pc == CODE
        return (e.vector, e.error_code if e.has_error else None)
    assert rig.state.pc == CODE + 4
    return None


def jgs(rig: Rig, rs1_value: int, imm: int = 0) -> tuple[int, int | None] | int:
    """Run ``jgs [r1 + imm]`` for one tick: the pc it jumped to, or the (vector, error code) it
    raised.  It writes no register, and a fault of its load leaves pc on it (§3, §5.4)."""
    rig.state.r[1], rig.state.pc = rs1_value & U64, CODE
    regs = list(rig.state.r)
    rig.code(encode("jgs", rs1=1, imm=imm))
    e = rig.run(1)
    assert list(rig.state.r) == regs, "jgs writes no register"
    if e.reason != EXIT_BUDGET:
        assert rig.state.pc == CODE, "a faulting jgs leaves pc on it"
        return (e.vector, e.error_code if e.has_error else None)
    return rig.state.pc


# ---- the MSRs ----


@pytest.mark.parametrize("features", [(), ("seglimit",), ("classic",)], ids=["x86-64", "seglimit", "classic"])
def test_the_gs_msrs_reset_to_zero_and_exist_on_every_profile(features):
    rig = Rig(features=features)
    assert (rig.state.gsbase, rig.state.gslimit) == (0, 0)
    rig.state.r[1], rig.state.r[2] = MSR_GSBASE, U64
    rig.state.r[3], rig.state.r[4] = MSR_GSLIMIT, 1 << 63 | 5
    rig.code(
        encode("wrmsr", rs1=1, rs2=2),
        encode("wrmsr", rs1=3, rs2=4),
        encode("rdmsr", rd=5, rs1=1),
        encode("rdmsr", rd=6, rs1=3),
    )
    assert rig.run(4).reason == EXIT_BUDGET
    assert (rig.state.gsbase, rig.state.gslimit) == (U64, 1 << 63 | 5)  # any 64-bit value
    assert (rig.state.r[5], rig.state.r[6]) == (U64, 1 << 63 | 5)


@pytest.mark.parametrize("index", [MSR_GSBASE, MSR_GSLIMIT])
def test_the_gs_msrs_are_kernel_privileged(index):
    rig = gs_rig(cpl=1)
    rig.state.r[1] = index
    rig.code(encode("rdmsr", rd=2, rs1=1))
    assert rig.event() == (GP, 0)


# ---- the access ----


def test_ldgs_loads_the_quadword_at_base_plus_offset():
    rig = gs_rig()
    rig.write64(DATA + 0x18, VALUE)
    assert ldgs(rig, 0x10, imm=8) == VALUE


def test_sdgs_stores_rs2_at_base_plus_offset():
    rig = gs_rig()
    assert sdgs(rig, 0x20, imm=-8) is None
    assert rig.read64(DATA + 0x18) == OTHER


def test_ldgs_into_r0_leaves_it_zero():
    rig = gs_rig()
    rig.write64(DATA, VALUE)
    rig.code(encode("ldgs", rd=0, rs1=0))
    assert rig.run(1).reason == EXIT_BUDGET and rig.state.r[0] == 0


def test_ldgs_and_sdgs_retire_in_one_tick_each():
    rig = gs_rig(cpl=1)
    rig.state.r[3] = VALUE
    rig.code(encode("sdgs", rs2=3, rs1=0, imm=8), encode("ldgs", rd=4, rs1=0, imm=8))
    assert rig.run(2).reason == EXIT_BUDGET
    assert (rig.state.clock, rig.state.counters.insn[0][1], rig.state.pc) == (2, 2, CODE + 8)
    assert rig.state.r[4] == VALUE


def test_jgs_jumps_to_the_quadword_at_base_plus_offset():
    rig = gs_rig()
    rig.write64(DATA + 0x18, CODE + 0x100)
    assert jgs(rig, 0x10, imm=8) == CODE + 0x100
    assert jgs(rig, 0x20, imm=-8) == CODE + 0x100


def test_jgs_retires_in_one_tick_and_its_target_runs_next():
    rig = gs_rig(cpl=1)
    rig.write64(DATA + 8, CODE + 0x100)
    rig.code(encode("jgs", rs1=0, imm=8))
    rig.code(encode("addi", rd=4, imm=7), encode("ud"), at=CODE + 0x100)
    assert rig.run(1).reason == EXIT_BUDGET
    assert (rig.state.clock, rig.state.counters.insn[0][1], rig.state.pc) == (1, 1, CODE + 0x100)
    assert rig.event() == (UD, None)
    assert (rig.state.pc, rig.state.r[4], rig.state.counters.insn[0][1]) == (CODE + 0x104, 7, 2)


def test_a_single_step_trap_after_jgs_names_its_target():
    rig = gs_rig()
    rig.state.flags = FLAGS_TF
    rig.write64(DATA, CODE + 0x100)
    rig.code(encode("jgs", rs1=0))
    assert rig.event() == (DB, None)
    assert rig.state.pc == CODE + 0x100  # the #DB trap's pushed pc: the next instruction (§6.4)


# ---- the limit: byte-granular, on the offset ----


@pytest.mark.parametrize("limit", [7, 0x100F, 0x100E, 0xFFF, U64 - 8])
def test_the_last_quadword_within_the_limit_is_allowed_and_one_byte_more_is_not(limit):
    # The highest offset that fits is limit - 7; limit - 6 puts its last byte beyond the limit.
    last = limit - 7
    base = (DATA - (last & ~7)) & U64  # the aligned part of the last offset lands on DATA
    rig = gs_rig(base=base, limit=limit)
    if last % 8 == 0:
        rig.write64(DATA, VALUE)
        assert ldgs(rig, last) == VALUE
        assert sdgs(rig, last) is None and rig.read64(DATA) == OTHER
        assert jgs(rig, last) == OTHER  # the jump succeeds: a bad target faults at its fetch
    assert ldgs(rig, last + 1) == (GP, 0)  # before alignment: the limit comes first
    assert sdgs(rig, last + 1) == (GP, 0)
    assert jgs(rig, last + 1) == (GP, 0)


def test_the_limit_has_no_4k_granularity():
    # MSR_SEGLIMIT's | 0xfff is not applied: limit 0x100E ends the segment at byte 0x100E.
    rig = gs_rig(limit=0x100E)
    assert ldgs(rig, 0x1000) == 0
    assert ldgs(rig, 0x1008) == (GP, 0)
    assert jgs(rig, 0x1000) == 0
    assert jgs(rig, 0x1008) == (GP, 0)


@pytest.mark.parametrize("limit", range(7))
def test_a_limit_below_7_refuses_every_access(limit):
    rig = gs_rig(base=0, limit=limit)
    for offset in (0, 1, limit, U64 - 6):
        assert ldgs(rig, offset) == (GP, 0)
        assert sdgs(rig, offset) == (GP, 0)
        assert jgs(rig, offset) == (GP, 0)


def test_the_reset_limit_refuses_every_access():
    rig = Rig()
    assert ldgs(rig, DATA) == (GP, 0)
    assert jgs(rig, DATA) == (GP, 0)


def test_the_offset_wraps_modulo_2_64():
    rig = gs_rig()
    rig.write64(DATA + 8, VALUE)
    assert ldgs(rig, U64 - 7, imm=16) == VALUE  # (2^64 - 8) + 16 = 8
    assert ldgs(rig, 0, imm=-8) == (GP, 0)  # 2^64 - 8: far beyond the limit
    assert jgs(rig, U64 - 7, imm=16) == VALUE
    assert jgs(rig, 0, imm=-8) == (GP, 0)


def test_the_segment_does_not_wrap_past_the_top_of_the_offsets():
    # With the largest limit, the top quadword fits and a quadword crossing 2^64 does not.
    rig = gs_rig(base=DATA + 8, limit=U64)
    rig.write64(DATA, VALUE)
    assert ldgs(rig, 0, imm=-8) == VALUE  # offset 2^64 - 8: linear DATA + 8 - 8
    assert ldgs(rig, 0, imm=-7) == (GP, 0)  # offset 2^64 - 7: its last byte would be 2^64
    assert jgs(rig, 0, imm=-8) == VALUE
    assert jgs(rig, 0, imm=-7) == (GP, 0)


def test_the_base_plus_offset_wraps_modulo_2_64():
    rig = gs_rig(base=U64 - 0xFFF, limit=U64)  # base = -0x1000
    rig.write64(DATA, VALUE)
    assert ldgs(rig, DATA + 0x1000) == VALUE
    assert jgs(rig, DATA + 0x1000) == VALUE


# ---- privilege (§4.2: host class) ----


@pytest.mark.parametrize("cpl", [0, 1])
@pytest.mark.parametrize("features", [(), ("classic",)], ids=["x86-like", "classic"])
def test_cpl_0_and_1_may_use_gs(cpl, features):
    rig = gs_rig(cpl=cpl, features=features)
    rig.write64(DATA + 0x40, VALUE)
    assert ldgs(rig, 0x40) == VALUE
    assert jgs(rig, 0x40) == VALUE


@pytest.mark.parametrize("cpl", [2, 3])
def test_cpl_2_and_3_raise_gp_before_anything_else(cpl):
    # The segment would allow the access, and the misaligned base would raise #AC after it.
    rig = gs_rig(base=DATA + 1, cpl=cpl)
    assert ldgs(rig, 0) == (GP, 0)
    assert sdgs(rig, 0) == (GP, 0)
    assert jgs(rig, 0) == (GP, 0)
    assert rig.read64(DATA) == 0


# ---- the linear address: §5.3 as ld/sd, without MSR_SEGLIMIT ----


def test_the_linear_address_must_be_aligned():
    rig = gs_rig(base=DATA + 4)
    assert ldgs(rig, 0) == (AC, 0)
    assert sdgs(rig, 8) == (AC, 0)
    assert jgs(rig, 0) == (AC, 0)
    assert ldgs(rig, 0x1000) == (GP, 0)  # beyond the limit first
    assert jgs(rig, 0x1000) == (GP, 0)


def test_msr_seglimit_does_not_bound_gs():
    # At CPL 1 with the data limit below DATA, ld there faults and ldgs/sdgs/jgs reach it.
    rig = gs_rig(cpl=1, features=("seglimit",))
    rig.state.seglimit = DATA - 0x1000  # | 0xfff: the last byte allowed is DATA - 1
    rig.write64(DATA + 8, VALUE)
    rig.state.r[4] = DATA + 8
    rig.code(encode("ld", rd=5, rs1=4))
    assert rig.event() == (GP, 0)
    assert ldgs(rig, 8) == VALUE
    assert sdgs(rig, 0x10) is None and rig.read64(DATA + 0x10) == OTHER
    assert jgs(rig, 8) == VALUE


def test_beyond_ram_raises_mc():
    rig = gs_rig(base=MEMORY, limit=U64)
    assert ldgs(rig, 0) == (MC, None)
    assert sdgs(rig, 8) == (MC, None)
    assert jgs(rig, 16) == (MC, None)


UNMAPPED = 0x400000  # the rig maps [0, 0x80000)


def test_a_not_present_page_raises_pf_with_cr2_the_linear_address():
    rig = gs_rig(base=UNMAPPED, limit=0xFFFF, cpl=1)
    rig.paging()
    assert ldgs(rig, 0x18) == (PF, 0)  # a supervisor read of a page not present
    assert rig.state.cr2 == UNMAPPED + 0x18
    assert sdgs(rig, 0x20) == (PF, PF_W)
    assert rig.state.cr2 == UNMAPPED + 0x20
    assert jgs(rig, 0x28) == (PF, 0)  # a read, not a fetch: no PF_I
    assert rig.state.cr2 == UNMAPPED + 0x28


def test_a_non_canonical_linear_address_raises_gp():
    rig = gs_rig(base=1 << 47, limit=0xFFF, cpl=1)  # bits 63:47 not all equal with 4 levels
    rig.paging()
    assert ldgs(rig, 0) == (GP, 0)
    assert jgs(rig, 0) == (GP, 0)


def test_paging_checks_are_supervisor_at_cpl_1():
    # A supervisor-only page is reachable at CPL 1 (U is not checked, §7.4); a read-only one
    # refuses sdgs with CR0.WP, as any supervisor write (no PF_U: the access is not at CPL 3).
    rig = gs_rig(base=UNMAPPED, limit=0x1FFF, cpl=1)
    tables = rig.paging()
    tables.map(UNMAPPED, DATA, 0x1000, flags=PTE_W)  # supervisor, writable
    tables.map(UNMAPPED + 0x1000, DATA + 0x1000, 0x1000, flags=PTE_U)  # user, read-only
    rig.write64(DATA + 0x1000, VALUE)
    rig.state.cr0 |= CR0_WP
    assert sdgs(rig, 0) is None and rig.read64(DATA) == OTHER
    assert ldgs(rig, 0x1000) == VALUE
    assert jgs(rig, 0x1000) == VALUE
    assert sdgs(rig, 0x1000) == (PF, PF_P | PF_W)
    assert rig.state.cr2 == UNMAPPED + 0x1000


def test_sdgs_sets_accessed_and_dirty_in_the_leaf():
    rig = gs_rig(base=UNMAPPED, limit=0xFFF, cpl=0)
    tables = rig.paging()
    tables.map(UNMAPPED, DATA, 0x1000, flags=PTE_W)
    leaf = walk(rig.state, rig.mem, UNMAPPED, ACCESS_READ, 0).entry_addr[-1]  # sets no A/D bit
    assert rig.read64(leaf) & (PTE_A | PTE_D) == 0
    assert ldgs(rig, 0) == 0
    assert rig.read64(leaf) & (PTE_A | PTE_D) == PTE_A
    assert sdgs(rig, 0) is None
    assert rig.read64(leaf) & (PTE_A | PTE_D) == PTE_A | PTE_D


def test_jgs_sets_accessed_and_not_dirty_in_the_leaf():
    rig = gs_rig(base=UNMAPPED, limit=0xFFF, cpl=0)
    tables = rig.paging()
    tables.map(UNMAPPED, DATA, 0x1000, flags=PTE_W)
    leaf = walk(rig.state, rig.mem, UNMAPPED, ACCESS_READ, 0).entry_addr[-1]
    assert jgs(rig, 0) == 0
    assert rig.read64(leaf) & (PTE_A | PTE_D) == PTE_A


# ---- jgs: its target is checked by the fetch there, as for jr (§3) ----

# (case, target, the fetch's fault): misaligned, beyond RAM, non-canonical and not present with
# paging, and beyond MSR_CSLIMIT at CPL 1 while MSR_SEGLIMIT, which the load ignores, is lower.
BAD_TARGETS = [
    ("misaligned", CODE + 0x102, (AC, 0)),
    ("beyond-ram", MEMORY, (MC, None)),
    ("non-canonical", 1 << 47, (GP, 0)),
    ("not-present", UNMAPPED, (PF, PF_I)),
    ("beyond-cslimit", CODE + 0x1000, (GP, 0)),
]


def bad_target_rig(case: str) -> Rig:
    if case == "beyond-cslimit":
        rig = gs_rig(cpl=1, features=("seglimit",))
        rig.state.cslimit = CODE  # | 0xfff: the code segment ends at CODE + 0xfff
        rig.state.seglimit = 0  # DATA, where the target is read, is beyond the data limit
        return rig
    rig = gs_rig(cpl=1)
    if case in ("non-canonical", "not-present"):
        rig.paging()
    return rig


@pytest.mark.parametrize(("case", "target", "fault"), BAD_TARGETS, ids=[c[0] for c in BAD_TARGETS])
@pytest.mark.parametrize("mnemonic", ["jgs", "jr"])
def test_a_bad_target_faults_at_its_fetch_with_pc_the_target(mnemonic, case, target, fault):
    rig = bad_target_rig(case)
    rig.write64(DATA + 8, target)
    rig.state.r[1] = target
    rig.code(encode("jgs", rs1=0, imm=8) if mnemonic == "jgs" else encode("jr", rs1=1))
    assert rig.run(1).reason == EXIT_BUDGET and rig.state.pc == target  # the jump retires
    assert rig.state.counters.insn[0][1] == 1
    assert rig.event() == fault
    assert rig.state.pc == target
    if case == "not-present":
        assert rig.state.cr2 == target
