"""The host segment GS on the core (manual §5.4, §2 MSRs, §3, §4.2): the cases of the spec's
test_spec_gs.py, then what only the core has — the GS fast arrays beside the segment-limited
ones (a second ``jgs`` through a page hits them), the TLB and its counts, code written through
GS and entered by ``jgs``, snapshots.  Guest mode, which has no GS (docs/vmx.md V.2), is
tests/cffi_core/vmx/test_vmx_gs.py."""

from __future__ import annotations

import pytest
from core_rig import (
    BUDGET,
    CLASSIC,
    CODE,
    CR0_PE,
    CR0_PG,
    CR0_WP,
    DATA,
    DB,
    GP,
    HANDLER,
    MEMORY,
    PF,
    SEGLIMIT,
    TF,
    U64,
    UD,
    Core,
    I,
)

from cffi_core.machine import Machine
from cffi_core.pagetables import PTE_NX, PTE_U, PTE_W

AC, MC = 17, 18
PF_P, PF_W, PF_I = 1, 2, 16
PTE_A, PTE_D = 1 << 5, 1 << 6
MSR_GSBASE, MSR_GSLIMIT = 0x202, 0x203
VALUE = 0x0123_4567_89AB_CDEF
OTHER = 0xFEDC_BA98_7654_3210
UNMAPPED = 0x400000  # core_rig.paging maps [0, 0x80000)


def gs_core(base: int = DATA, limit: int = 0xFFF, cpl: int = 0, features: int = 0) -> Core:
    c = Core(features)
    c.cpu.gsbase, c.cpu.gslimit, c.cpu.cpl = base, limit, cpl
    return c


def ldgs(c: Core, rs1_value: int, imm: int = 0) -> int | tuple[int, int | None]:
    """Run ``ldgs r2, [r1 + imm]`` alone: the value loaded, or the (vector, error code) raised."""
    c.cpu.pc, c.cpu.r[2] = CODE, 0
    c.set_r(r1=rs1_value)
    c.code(I("ldgs", rd=2, rs1=1, imm=imm))
    if c.run(1) != BUDGET:
        vector, error, pc = c.event()
        assert pc == CODE and c.r(2) == 0, "a faulting ldgs has no effect"
        return (vector, error)
    assert c.cpu.pc == CODE + 4
    return c.r(2)


def sdgs(c: Core, rs1_value: int, imm: int = 0, value: int = OTHER) -> tuple[int, int | None] | None:
    """Run ``sdgs r3, [r1 + imm]`` with r3 = value alone: None, or the (vector, error code) raised."""
    c.cpu.pc = CODE
    c.set_r(r1=rs1_value, r3=value)
    c.code(I("sdgs", rs2=3, rs1=1, imm=imm))
    if c.run(1) != BUDGET:
        vector, error, pc = c.event()
        assert pc == CODE
        return (vector, error)
    assert c.cpu.pc == CODE + 4
    return None


def jgs(c: Core, rs1_value: int, imm: int = 0) -> int | tuple[int, int | None]:
    """Run ``jgs [r1 + imm]`` alone: the pc it jumped to, or the (vector, error code) raised.  It
    writes no register, and a fault of its load leaves pc on it (§3, §5.4)."""
    c.cpu.pc = CODE
    c.set_r(r1=rs1_value)
    regs = [c.r(i) for i in range(16)]
    c.code(I("jgs", rs1=1, imm=imm))
    reason = c.run(1)
    assert [c.r(i) for i in range(16)] == regs, "jgs writes no register"
    if reason != BUDGET:
        vector, error, pc = c.event()
        assert pc == CODE, "a faulting jgs leaves pc on it"
        return (vector, error)
    return int(c.cpu.pc)


def msr(c: Core, index: int, value: int | None = None) -> int | tuple[int, int | None]:
    """rdmsr (value None) or wrmsr of ``index`` at the current CPL: the value read or written,
    or the (vector, error code) raised."""
    c.cpu.pc = CODE
    c.set_r(r1=index, r2=value if value is not None else 0)
    c.code(I("rdmsr", rd=3, rs1=1) if value is None else I("wrmsr", rs1=1, rs2=2))
    if c.run(1) != BUDGET:
        vector, error, _ = c.event()
        return (vector, error)
    return c.r(3) if value is None else value


# ---- the MSRs ----


@pytest.mark.parametrize("features", [0, SEGLIMIT, CLASSIC], ids=["x86-64", "seglimit", "classic"])
def test_the_gs_msrs_reset_to_zero_and_take_any_value_on_every_profile(features):
    c = Core(features)
    assert (c.cpu.gsbase, c.cpu.gslimit) == (0, 0)
    assert msr(c, MSR_GSBASE) == 0 and msr(c, MSR_GSLIMIT) == 0
    msr(c, MSR_GSBASE, U64)
    msr(c, MSR_GSLIMIT, 1 << 63 | 5)
    assert (c.cpu.gsbase, c.cpu.gslimit) == (U64, 1 << 63 | 5)
    assert msr(c, MSR_GSBASE) == U64 and msr(c, MSR_GSLIMIT) == 1 << 63 | 5


@pytest.mark.parametrize("index", [MSR_GSBASE, MSR_GSLIMIT])
def test_the_gs_msrs_are_kernel_privileged(index):
    c = gs_core(cpl=1)
    assert msr(c, index) == (GP, 0)
    assert msr(c, index, 5) == (GP, 0)
    assert (c.cpu.gsbase, c.cpu.gslimit) == (DATA, 0xFFF)


def test_a_gs_msr_written_by_wrmsr_bounds_the_next_access():
    c = gs_core(limit=0)
    c.w64(DATA + 0x10, VALUE)
    c.set_r(r1=MSR_GSLIMIT, r2=0x17)
    c.code(I("ldgs", rd=3, rs1=0, imm=0x10), I("wrmsr", rs1=1, rs2=2), I("ldgs", rd=4, rs1=0, imm=0x10), I("ud"))
    c.run()
    assert c.event() == (GP, 0, CODE)
    c.cpu.pc = CODE + 4
    c.run()
    assert c.event() == (UD, None, CODE + 12) and c.r(4) == VALUE


# ---- the access ----


def test_ldgs_and_sdgs_move_the_quadword_at_base_plus_offset():
    c = gs_core()
    c.w64(DATA + 0x18, VALUE)
    assert ldgs(c, 0x10, imm=8) == VALUE
    assert sdgs(c, 0x30, imm=-8) is None
    assert c.r64(DATA + 0x28) == OTHER


def test_ldgs_and_sdgs_retire_in_one_tick_each():
    c = gs_core(cpl=1)
    c.set_r(r3=VALUE)
    c.code(I("sdgs", rs2=3, rs1=0, imm=8), I("ldgs", rd=4, rs1=0, imm=8), I("ldgs", rd=0, rs1=0, imm=8))
    assert c.run(3) == BUDGET
    assert (c.ctr.ticks, int(c.ctr.insn[0][1]), c.cpu.pc) == (3, 3, CODE + 12)
    assert c.r(4) == VALUE and c.r(0) == 0


def test_a_single_step_trap_follows_ldgs():
    c = gs_core()
    c.cpu.flags = TF
    c.code(I("ldgs", rd=2, rs1=0))
    c.run()
    assert c.event() == (DB, None, CODE + 4)


def test_jgs_jumps_to_the_quadword_at_base_plus_offset():
    c = gs_core()
    c.w64(DATA + 0x18, CODE + 0x100)
    assert jgs(c, 0x10, imm=8) == CODE + 0x100
    assert jgs(c, 0x20, imm=-8) == CODE + 0x100


def test_jgs_retires_in_one_tick_and_its_target_runs_next():
    c = gs_core(cpl=1)
    c.w64(DATA + 8, CODE + 0x100)
    c.code(I("jgs", rs1=0, imm=8))
    c.code(I("addi", rd=4, imm=7), I("ud"), at=CODE + 0x100)
    assert c.run(1) == BUDGET
    assert (c.ctr.ticks, int(c.ctr.insn[0][1]), c.cpu.pc) == (1, 1, CODE + 0x100)
    c.run()
    assert c.event() == (UD, None, CODE + 0x104)
    assert (c.r(4), int(c.ctr.insn[0][1])) == (7, 2)


def test_a_single_step_trap_after_jgs_names_its_target():
    c = gs_core()
    c.cpu.flags = TF
    c.w64(DATA, CODE + 0x100)
    c.code(I("jgs", rs1=0))
    c.run()
    assert c.event() == (DB, None, CODE + 0x100)


@pytest.mark.parametrize("limit", [7, 0x100F, 0x100E, 0xFFF, U64 - 8])
def test_the_last_quadword_within_the_limit_is_allowed_and_one_byte_more_is_not(limit):
    last = limit - 7  # the highest offset whose 8 bytes fit
    base = (DATA - (last & ~7)) & U64
    c = gs_core(base=base, limit=limit)
    if last % 8 == 0:
        c.w64(DATA, VALUE)
        assert ldgs(c, last) == VALUE
        assert sdgs(c, last) is None and c.r64(DATA) == OTHER
        assert jgs(c, last) == OTHER  # the jump succeeds: a bad target faults at its fetch
    assert ldgs(c, last + 1) == (GP, 0)  # the limit before alignment
    assert sdgs(c, last + 1) == (GP, 0)
    assert jgs(c, last + 1) == (GP, 0)


def test_the_limit_has_no_4k_granularity():
    c = gs_core(limit=0x100E)
    assert ldgs(c, 0x1000) == 0
    assert ldgs(c, 0x1008) == (GP, 0)
    assert jgs(c, 0x1000) == 0
    assert jgs(c, 0x1008) == (GP, 0)


@pytest.mark.parametrize("limit", range(7))
def test_a_limit_below_7_refuses_every_access(limit):
    c = gs_core(base=0, limit=limit)
    for offset in (0, 1, limit, U64 - 6):
        assert ldgs(c, offset) == (GP, 0)
        assert sdgs(c, offset) == (GP, 0)
        assert jgs(c, offset) == (GP, 0)


def test_the_reset_limit_refuses_every_access():
    c = Core()
    assert ldgs(c, DATA) == (GP, 0)
    assert jgs(c, DATA) == (GP, 0)


def test_the_offset_and_the_base_wrap_modulo_2_64_and_the_segment_does_not():
    c = gs_core()
    c.w64(DATA + 8, VALUE)
    assert ldgs(c, U64 - 7, imm=16) == VALUE  # offset (2^64 - 8) + 16 = 8
    assert ldgs(c, 0, imm=-8) == (GP, 0)
    assert jgs(c, U64 - 7, imm=16) == VALUE
    assert jgs(c, 0, imm=-8) == (GP, 0)
    c.cpu.gsbase, c.cpu.gslimit = DATA + 16, U64
    assert ldgs(c, 0, imm=-8) == VALUE  # offset 2^64 - 8 fits the largest limit
    assert ldgs(c, 0, imm=-7) == (GP, 0)  # offset 2^64 - 7 would end at 2^64
    assert jgs(c, 0, imm=-8) == VALUE
    assert jgs(c, 0, imm=-7) == (GP, 0)
    c.cpu.gsbase = U64 - 0xFFF  # -0x1000
    assert ldgs(c, DATA + 0x1008) == VALUE
    assert jgs(c, DATA + 0x1008) == VALUE


@pytest.mark.parametrize("cpl", [0, 1])
@pytest.mark.parametrize("features", [0, CLASSIC], ids=["x86-like", "classic"])
def test_cpl_0_and_1_may_use_gs(cpl, features):
    c = gs_core(cpl=cpl, features=features)
    c.w64(DATA + 0x40, VALUE)
    assert ldgs(c, 0x40) == VALUE
    assert jgs(c, 0x40) == VALUE


@pytest.mark.parametrize("cpl", [2, 3])
def test_cpl_2_and_3_raise_gp_before_anything_else(cpl):
    c = gs_core(base=DATA + 1, cpl=cpl)  # the access fits GS; its misaligned base would be #AC
    assert ldgs(c, 0) == (GP, 0)
    assert sdgs(c, 0) == (GP, 0)
    assert jgs(c, 0) == (GP, 0)
    assert c.r64(DATA) == 0


def test_the_linear_address_must_be_aligned_after_the_limit_check():
    c = gs_core(base=DATA + 4)
    assert ldgs(c, 0) == (AC, 0)
    assert sdgs(c, 8) == (AC, 0)
    assert jgs(c, 0) == (AC, 0)
    assert ldgs(c, 0x1000) == (GP, 0)
    assert jgs(c, 0x1000) == (GP, 0)


def test_beyond_ram_raises_mc():
    c = gs_core(base=MEMORY, limit=U64)
    assert ldgs(c, 0) == (MC, None)
    assert sdgs(c, 8) == (MC, None)
    assert jgs(c, 16) == (MC, None)


# ---- MSR_SEGLIMIT does not bound GS, and the fast arrays keep the two apart ----


def limited_core(paging: bool) -> Core:
    """CPL 1 with the data limit ending just below DATA, and GS over DATA's page."""
    c = gs_core(cpl=1, features=SEGLIMIT)
    c.cpu.seglimit = DATA - 0x1000  # | 0xfff: the last byte allowed is DATA - 1
    if paging:
        c.paging()
    c.w64(DATA + 8, VALUE)
    return c


@pytest.mark.parametrize("paging", [False, True], ids=["flat", "paged"])
def test_gs_reaches_beyond_the_data_limit_and_ld_still_cannot(paging):
    c = limited_core(paging)
    c.set_r(r4=DATA + 8, r5=OTHER)
    # In one block: ldgs and sdgs fill GS's fast arrays with DATA's page; ld and sd of that page
    # must still see the limit.
    c.code(I("ldgs", rd=2, rs1=0, imm=8), I("sdgs", rs2=5, rs1=0, imm=0x10), I("ldgs", rd=3, rs1=0, imm=8),
           I("ld", rd=6, rs1=4))  # fmt: skip
    c.run()
    assert c.event() == (GP, 0, CODE + 12)
    assert (c.r(2), c.r(3), c.r(6), c.r64(DATA + 0x10)) == (VALUE, VALUE, 0, OTHER)
    c.cpu.pc = CODE
    c.code(I("ldgs", rd=2, rs1=0, imm=8), I("sd", rs2=5, rs1=4))
    c.run()
    assert c.event() == (GP, 0, CODE + 4) and c.r64(DATA + 8) == VALUE


@pytest.mark.parametrize("paging", [False, True], ids=["flat", "paged"])
def test_a_lowered_data_limit_leaves_gs_its_pages(paging):
    c = limited_core(paging)
    c.cpu.seglimit = U64
    c.set_r(r4=DATA + 8)
    c.code(I("ld", rd=2, rs1=4), I("ldgs", rd=3, rs1=0, imm=8), I("ud"))
    c.run()
    assert c.event() == (UD, None, CODE + 8) and c.r(2) == c.r(3) == VALUE
    c.cpu.seglimit = DATA - 0x1000  # the host lowers the limit between runs (§10)
    c.cpu.pc = CODE + 4
    c.code(I("ldgs", rd=3, rs1=0, imm=8), I("ld", rd=2, rs1=4), at=CODE + 4)
    c.set_r(r2=0, r3=0)
    c.run()
    assert c.event() == (GP, 0, CODE + 8) and (c.r(2), c.r(3)) == (0, VALUE)


def test_at_cpl_0_ld_and_ldgs_share_a_page():
    c = gs_core(features=SEGLIMIT)
    c.cpu.seglimit = 0  # no limit at CPL 0 (§5.3)
    c.w64(DATA + 8, VALUE)
    c.set_r(r4=DATA + 8, r5=OTHER)
    c.code(I("ld", rd=2, rs1=4), I("sdgs", rs2=5, rs1=0, imm=8), I("ld", rd=3, rs1=4), I("ud"))
    c.run()
    assert (c.r(2), c.r(3)) == (VALUE, OTHER)


@pytest.mark.parametrize("paging", [False, True], ids=["flat", "paged"])
def test_a_page_jgs_read_beyond_the_data_limit_never_serves_ld(paging):
    c = limited_core(paging)
    c.w64(DATA + 0x10, CODE + 0x100)
    c.set_r(r4=DATA + 8)
    # One block: jgs fills GS's read array with DATA's page, then ld of that page at the target.
    c.code(I("jgs", rs1=0, imm=0x10))
    c.code(I("ld", rd=6, rs1=4), at=CODE + 0x100)
    c.run()
    assert c.event() == (GP, 0, CODE + 0x100) and c.r(6) == 0


# ---- paging ----


def test_a_not_present_page_raises_pf_with_cr2_the_linear_address():
    c = gs_core(base=UNMAPPED, limit=0xFFFF, cpl=1)
    c.paging()
    assert ldgs(c, 0x18) == (PF, 0)
    assert c.cpu.cr2 == UNMAPPED + 0x18
    assert sdgs(c, 0x20) == (PF, PF_W)
    assert c.cpu.cr2 == UNMAPPED + 0x20
    assert jgs(c, 0x28) == (PF, 0)  # a read, not a fetch: no PF_I
    assert c.cpu.cr2 == UNMAPPED + 0x28


def test_a_non_canonical_linear_address_raises_gp():
    c = gs_core(base=1 << 47, cpl=1)
    c.paging()
    assert ldgs(c, 0) == (GP, 0)
    assert jgs(c, 0) == (GP, 0)


def test_paging_checks_are_supervisor_at_cpl_1():
    c = gs_core(base=UNMAPPED, limit=0x1FFF, cpl=1)
    tables = c.paging()
    tables.map(UNMAPPED, DATA, 0x1000, flags=PTE_W)  # supervisor, writable
    tables.map(UNMAPPED + 0x1000, DATA + 0x1000, 0x1000, flags=PTE_U)  # read-only
    c.w64(DATA + 0x1000, VALUE)
    c.cpu.cr0 = CR0_PE | CR0_PG | CR0_WP
    assert sdgs(c, 0) is None and c.r64(DATA) == OTHER
    assert ldgs(c, 0x1000) == VALUE
    assert jgs(c, 0x1000) == VALUE
    assert sdgs(c, 0x1000) == (PF, PF_P | PF_W)
    assert c.cpu.cr2 == UNMAPPED + 0x1000


def test_sdgs_sets_accessed_and_dirty_in_the_leaf():
    c = gs_core(base=UNMAPPED, cpl=0)
    tables = c.paging()
    tables.map(UNMAPPED, DATA, 0x1000, flags=PTE_W)
    leaf = leaf_address(c, UNMAPPED)
    assert c.r64(leaf) & (PTE_A | PTE_D) == 0
    assert ldgs(c, 0) == 0
    assert c.r64(leaf) & (PTE_A | PTE_D) == PTE_A
    assert sdgs(c, 0) is None
    assert c.r64(leaf) & (PTE_A | PTE_D) == PTE_A | PTE_D


def test_jgs_sets_accessed_and_not_dirty_in_the_leaf():
    c = gs_core(base=UNMAPPED, cpl=0)
    tables = c.paging()
    tables.map(UNMAPPED, DATA, 0x1000, flags=PTE_W)
    assert jgs(c, 0) == 0
    assert c.r64(leaf_address(c, UNMAPPED)) & (PTE_A | PTE_D) == PTE_A


def leaf_address(c: Core, va: int) -> int:
    """The address of the 4 KiB leaf entry of va in the 4-level tables at CR3 (§7.1)."""
    table = int(c.cpu.cr3)
    for level in (4, 3, 2):
        entry = c.r64(table + 8 * (va >> (12 + 9 * (level - 1)) & 511))
        table = entry & 0x000F_FFFF_FFFF_F000
    return table + 8 * (va >> 12 & 511)


def test_gs_accesses_go_through_the_data_tlb():
    c = gs_core(base=DATA, cpl=1)
    c.paging()
    c.code(I("ldgs", rd=2, rs1=0), I("sdgs", rs2=2, rs1=0, imm=8), I("ldgs", rd=3, rs1=0, imm=16))
    assert c.run(3) == BUDGET
    # One walk for DATA's page (a miss, then the write's D bit: a permission miss, §8.2), the
    # other accesses hit.
    assert (int(c.ctr.dtlb_misses), int(c.ctr.dtlb_hits)) == (2, 1)


def test_invlpg_drops_what_gs_cached_of_a_page():
    c = gs_core(base=UNMAPPED, cpl=0)
    tables = c.paging()
    tables.map(UNMAPPED, DATA, 0x1000)
    c.w64(DATA, VALUE)
    c.w64(DATA + 0x1000, OTHER)
    c.set_r(r7=UNMAPPED)
    c.code(I("ldgs", rd=2, rs1=0), I("ud"), I("invlpg", rs1=7), I("ldgs", rd=3, rs1=0), I("ud"))
    c.run()
    assert c.event() == (UD, None, CODE + 4) and c.r(2) == VALUE
    leaf = leaf_address(c, UNMAPPED)
    c.w64(leaf, (DATA + 0x1000) | 1 | 2)  # the page remapped, then invalidated by the program (§8.1)
    c.cpu.pc = CODE + 8
    c.run()
    assert c.event() == (UD, None, CODE + 16) and c.r(3) == OTHER


def test_invlpg_drops_what_jgs_cached_of_a_page():
    c = gs_core(base=UNMAPPED, cpl=0)
    tables = c.paging()
    tables.map(UNMAPPED, DATA, 0x1000)
    c.w64(DATA, CODE + 0x100)
    c.w64(DATA + 0x1000, CODE + 0x200)
    c.set_r(r7=UNMAPPED)
    c.code(I("jgs", rs1=0))
    c.code(I("ud"), I("invlpg", rs1=7), I("jgs", rs1=0), at=CODE + 0x100)
    c.code(I("ud"), at=CODE + 0x200)
    c.run()
    assert c.event() == (UD, None, CODE + 0x100)
    c.w64(leaf_address(c, UNMAPPED), (DATA + 0x1000) | 1 | 2)  # the table's page remapped (§8.1)
    c.cpu.pc = CODE + 0x104
    c.run()
    assert c.event() == (UD, None, CODE + 0x200)


def test_code_written_through_gs_is_executed():
    # sdgs first fills GS's fast arrays with a page it writes, then that page becomes code, then
    # sdgs rewrites words of it ahead of the pc, twice: the new words run each time (§15).
    c = gs_core(base=0, limit=U64)
    target = 0x3000  # a page of its own, not code until callr enters it
    first = I("addi", rd=9, imm=0x77) | I("sdgs", rs2=4, rs1=1, imm=24) << 32
    second = I("addi", rd=9, rs1=9, imm=1) | I("ud") << 32
    c.set_r(r1=target, r2=0, r3=first, r4=second)
    c.code(I("sdgs", rs2=2, rs1=1, imm=0x100), I("callr", rs1=1))
    nop = I("addi", rd=0, imm=0)
    c.code(I("sdgs", rs2=3, rs1=1, imm=16), nop, nop, nop, I("ud"), I("ud"), I("ud"), I("ud"), at=target)
    c.run()
    assert c.event() == (UD, None, target + 28)
    assert c.r(9) == 0x78


def test_a_change_of_paging_drops_what_gs_cached():
    c = gs_core(base=UNMAPPED, cpl=0)
    tables = c.paging()
    tables.map(UNMAPPED, DATA, 0x1000)
    c.w64(DATA, VALUE)
    c.set_r(r5=CR0_PE)
    c.code(I("ldgs", rd=2, rs1=0), I("mtcr", crn=0, rs1=5), I("ldgs", rd=3, rs1=0), I("ud"))
    c.run()
    # With paging off UNMAPPED is a physical address beyond RAM.
    assert c.event() == (MC, None, CODE + 8) and c.r(2) == VALUE


# ---- jgs: the GS fast arrays, jumps within a block, the target's fetch ----


def test_a_second_jgs_through_the_same_page_hits_the_gs_fast_arrays():
    c = gs_core(cpl=1)
    c.paging()
    c.w64(DATA, CODE + 0x100)
    c.w64(DATA + 8, CODE + 0x200)
    c.code(I("jgs", rs1=0))
    c.code(I("jgs", rs1=0, imm=8), at=CODE + 0x100)
    assert c.run(2) == BUDGET and c.cpu.pc == CODE + 0x200  # no event: its IDT read would count
    # One walk for DATA's page, whose translation the first jgs leaves in GS's read array; the
    # second jgs hits there, counted as the modeled TLB's hit (§15).  Fetches are the ITLB's.
    assert (int(c.ctr.dtlb_misses), int(c.ctr.dtlb_hits)) == (1, 1)


def test_jgs_hits_the_page_ldgs_filled():
    c = gs_core(cpl=0)
    c.paging()
    c.w64(DATA + 8, CODE + 0x100)
    c.code(I("ldgs", rd=2, rs1=0), I("jgs", rs1=0, imm=8))
    assert c.run(2) == BUDGET and c.cpu.pc == CODE + 0x100
    assert (int(c.ctr.dtlb_misses), int(c.ctr.dtlb_hits)) == (1, 1)


@pytest.mark.parametrize("paging", [False, True], ids=["flat", "paged"])
def test_a_loop_through_jgs_counts_every_tick(paging):
    # The indirect jump of a translation back to its own head (§5.4): each round is two ticks,
    # and the budget may end on either.
    c = gs_core(cpl=1)
    if paging:
        c.paging()
    c.w64(DATA, CODE)
    c.code(I("addi", rd=5, rs1=5, imm=1), I("jgs", rs1=0))
    assert c.run(101) == BUDGET
    assert (c.r(5), c.cpu.pc, int(c.ctr.ticks), int(c.ctr.insn[0][1])) == (51, CODE + 4, 101, 101)
    assert c.run(1) == BUDGET and c.cpu.pc == CODE
    if paging:
        assert (int(c.ctr.dtlb_misses), int(c.ctr.dtlb_hits)) == (1, 50)


def test_a_table_entry_rewritten_by_sdgs_redirects_the_next_jgs():
    # A VMM patching its hash table of translations (Adams & Agesen 2006 §3.1): the next jgs
    # through the entry goes to the new target.
    c = gs_core(cpl=1)
    c.w64(DATA, CODE + 0x100)
    c.set_r(r3=CODE + 0x200)
    c.code(I("jgs", rs1=0))
    c.code(I("sdgs", rs2=3, rs1=0), I("jgs", rs1=0), at=CODE + 0x100)
    c.code(I("ud"), at=CODE + 0x200)
    c.run()
    assert c.event() == (UD, None, CODE + 0x200)


def test_code_written_through_gs_and_entered_by_jgs_runs_the_new_words():
    # The target's page is decoded by a first visit, then rewritten by sdgs; the next jgs there
    # runs the new words (§15).
    c = gs_core(base=0, limit=U64)
    target = 0x3000
    c.w64(DATA, target)
    c.w64(DATA + 8, CODE + 4)
    c.set_r(r1=DATA, r2=target, r3=I("addi", rd=9, imm=2) | I("ud") << 32)
    c.code(I("jgs", rs1=1), I("sdgs", rs2=3, rs1=2), I("jgs", rs1=1))
    c.code(I("addi", rd=9, imm=1), I("jgs", rs1=1, imm=8), at=target)
    c.run()
    assert c.event() == (UD, None, target + 4)
    assert c.r(9) == 2


# (case, target, the fetch's fault): misaligned, beyond RAM, non-canonical and not present with
# paging, not executable, and beyond MSR_CSLIMIT at CPL 1 while MSR_SEGLIMIT, which the load
# ignores, is lower.
BAD_TARGETS = [
    ("misaligned", CODE + 0x102, (AC, 0)),
    ("beyond-ram", MEMORY, (MC, None)),
    ("non-canonical", 1 << 47, (GP, 0)),
    ("not-present", UNMAPPED, (PF, PF_I)),
    ("no-execute", HANDLER, (PF, PF_I | PF_P)),
    ("beyond-cslimit", CODE + 0x1000, (GP, 0)),
]


def bad_target_core(case: str) -> Core:
    if case == "beyond-cslimit":
        c = gs_core(cpl=1, features=SEGLIMIT)
        c.cpu.cslimit = CODE  # | 0xfff: the code segment ends at CODE + 0xfff
        c.cpu.seglimit = 0  # DATA, where the target is read, is beyond the data limit
        return c
    c = gs_core(cpl=1)
    if case in ("non-canonical", "not-present", "no-execute"):
        tables = c.paging()
        if case == "no-execute":
            tables.map(HANDLER, HANDLER, 0x1000, flags=PTE_W | PTE_NX)
    return c


@pytest.mark.parametrize(("case", "target", "fault"), BAD_TARGETS, ids=[c[0] for c in BAD_TARGETS])
@pytest.mark.parametrize("mnemonic", ["jgs", "jr"])
def test_a_bad_target_faults_at_its_fetch_with_pc_the_target(mnemonic, case, target, fault):
    c = bad_target_core(case)
    c.w64(DATA + 8, target)
    c.set_r(r1=target)
    c.code(I("jgs", rs1=0, imm=8) if mnemonic == "jgs" else I("jr", rs1=1))
    assert c.run(1) == BUDGET and c.cpu.pc == target  # the jump retires
    c.run()
    assert c.event() == (*fault, target)
    assert (int(c.ctr.ticks), int(c.ctr.insn[0][1])) == (2, 1)  # the fault's tick (§9)
    if case in ("not-present", "no-execute"):
        assert c.cpu.cr2 == target


@pytest.mark.parametrize(("case", "target", "fault"), BAD_TARGETS, ids=[c[0] for c in BAD_TARGETS])
def test_a_bad_target_faults_at_its_fetch_in_the_same_run(case, target, fault):
    c = bad_target_core(case)
    c.w64(DATA + 8, target)
    c.code(I("jgs", rs1=0, imm=8))
    c.run()
    assert c.event() == (*fault, target)


# ---- the machine: snapshots, runs ----


def test_snapshot_and_restore_carry_the_gs_msrs():
    m = Machine("x86-2005", memory=1 << 20)
    m.cpu.gsbase, m.cpu.gslimit = 0x8000_0000_0000_1000, 0x1FFF
    snap = m.snapshot()
    m.cpu.gsbase, m.cpu.gslimit = 0, 0
    m.restore(snap)
    assert (m.cpu.gsbase, m.cpu.gslimit) == (0x8000_0000_0000_1000, 0x1FFF)
    assert m.cpu.state()["gsbase"] == 0x8000_0000_0000_1000


def test_reset_clears_the_gs_msrs():
    m = Machine("x86-2005", memory=1 << 20)
    m.cpu.gsbase, m.cpu.gslimit = 0x1000, 0x1FFF
    m.reset()
    assert (m.cpu.gsbase, m.cpu.gslimit) == (0, 0)
