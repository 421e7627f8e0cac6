"""Paging (manual §5.3 steps 3-5, §7): 2, 3 and 4 levels, large pages, reserved bits, the
combination of permissions (U/S, W with CR0.WP, NX), accessed and dirty bits set only on
success, #PF error codes and CR2, canonical addresses and #MC from the walker."""

from __future__ import annotations

import pytest
from spec_rig import CODE, DATA, MEMORY, Rig

from cffi_core.isa.encoding import encode
from cffi_core.pagetables import PAGE_1G, PAGE_2M, PTE_NX, PTE_U, PTE_W
from cffi_core.spec import (
    AC,
    ACCESS_FETCH,
    ACCESS_READ,
    ACCESS_WRITE,
    CR0_PG,
    CR0_WP,
    EXIT_BUDGET,
    EXIT_HOST_GATE,
    EXIT_SHUTDOWN,
    GP,
    MC,
    PF,
    PF_I,
    PF_P,
    PF_RSVD,
    PF_U,
    PF_W,
    PTE_A,
    PTE_D,
    PTE_P,
    PTE_PS,
    walk,
)

PA = DATA + 0x3000


def far_va(levels: int) -> int:
    """A page 1 MiB below the top of the lower half: no table entry in common with the
    identity-mapped code, IDT and stacks, at any level."""
    return (1 << (12 + 9 * levels - 1)) - 0x100000


VA = far_va(4)


def mapped(levels: int = 4, flags: int = PTE_W | PTE_U, pa: int = PA) -> Rig:
    rig = Rig()
    rig.paging(levels).map(far_va(levels), pa, 0x1000, flags=flags)
    return rig


def access(rig: Rig, va: int, mnemonic: str = "ld") -> tuple[int, int | None] | int:
    """Load or store through r1 = va; the value loaded, or the (vector, error code) raised."""
    rig.state.r[1] = va
    rig.state.r[2] = 0x5A5A
    word = encode(mnemonic, rd=2, rs1=1) if mnemonic.startswith("l") else encode(mnemonic, rs2=2, rs1=1)
    rig.code(word)
    rig.state.pc = CODE
    e = rig.run(1)
    if e.reason == EXIT_BUDGET:
        return rig.state.r[2]
    assert e.reason == EXIT_HOST_GATE, e
    return e.vector, (e.error_code if e.has_error else None)


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_translation_with_each_number_of_levels(levels):
    rig = mapped(levels)
    va = far_va(levels)
    rig.mem.write(PA + 0x18, 8, 0xC0FFEE)
    assert access(rig, va + 0x18) == 0xC0FFEE
    w = walk(rig.state, rig.mem, va + 0x18, ACCESS_READ, 0)
    assert (w.fault, w.physical, w.levels, w.page_level) == (0, PA + 0x18, levels, 1)


@pytest.mark.parametrize("levels, page, page_level", [(3, PAGE_2M, 2), (4, PAGE_2M, 2), (4, PAGE_1G, 3)])
def test_large_pages(levels, page, page_level):
    rig = Rig()
    rig.paging(levels).map(page, 0, page, flags=PTE_W, page=page)  # linear [page, 2 page) -> physical 0
    rig.mem.write(DATA + 8, 8, 77)
    assert access(rig, page + DATA + 8) == 77
    w = walk(rig.state, rig.mem, page + DATA + 8, ACCESS_READ, 0)
    assert (w.physical, w.page_level, w.levels) == (DATA + 8, page_level, levels - page_level + 1)


@pytest.mark.parametrize("levels, page", [(2, PAGE_2M), (3, PAGE_1G)])
def test_a_large_page_in_the_top_table(levels, page):
    # §7.2 reserves PS only at levels 1 and 4: the top table of 2- and 3-level paging may map
    # large pages (pagetables.PageTables does not build these, so the entry is written here).
    rig = Rig()
    rig.paging(levels)
    rig.write64(rig.state.cr3 + 8 * 1, 0 | PTE_P | PTE_W | PTE_PS)  # entry 1: linear [page, 2 page)
    rig.mem.write(DATA + 8, 8, 77)
    assert access(rig, page + DATA + 8) == 77
    assert walk(rig.state, rig.mem, page + 8, ACCESS_READ, 0).page_level == levels


@pytest.mark.parametrize("levels, bad", [(2, 1 << 29), (3, 1 << 38), (4, 1 << 47), (4, 0x8000_0000_0000_0000)])
def test_non_canonical_addresses_raise_gp(levels, bad):
    rig = mapped(levels)
    assert access(rig, bad) == (GP, 0)


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_the_top_half_is_canonical_and_walks(levels):
    top = (2**64 - 1) & ~0xFFF  # the last page: canonical, unmapped
    assert access(mapped(levels), top) == (PF, 0)


def test_alignment_is_checked_before_canonical_form():
    assert access(mapped(), (1 << 47) + 4) == (AC, 0)


@pytest.mark.parametrize(
    "mnemonic, cpl, flags, code",
    [
        ("ld", 0, None, 0),  # not present
        ("sd", 0, None, PF_W),
        ("ld", 3, None, PF_U),
        ("ld", 3, PTE_W, PF_P | PF_U),  # a supervisor page at CPL 3
        ("sd", 3, PTE_U, PF_P | PF_W | PF_U),  # a read-only page
        ("sd", 2, PTE_U, None),  # supervisor writes ignore W without CR0.WP
        ("ld", 2, PTE_W, None),  # CPL 1-2 are supervisor accesses
    ],
)
def test_permissions_and_error_codes(mnemonic, cpl, flags, code):
    rig = Rig()
    tables = rig.paging()
    if flags is not None:
        tables.map(VA, PA, 0x1000, flags=flags)
    rig.state.cpl = cpl
    got = access(rig, VA + 8, mnemonic)
    if code is None:
        assert not isinstance(got, tuple)
    else:
        assert got == (PF, code)
        assert rig.state.cr2 == VA + 8


def test_cr0_wp_makes_read_only_pages_read_only_for_the_kernel():
    rig = mapped(flags=PTE_U)
    rig.state.cr0 |= CR0_WP
    assert access(rig, VA, "sd") == (PF, PF_P | PF_W)


@pytest.mark.parametrize("level_index", [0, 1, 2])
def test_w_and_u_are_anded_over_the_levels(level_index):
    rig = mapped()
    w = walk(rig.state, rig.mem, VA, ACCESS_READ, 3)
    rig.mem.write(w.entry_addr[level_index], 8, w.entry[level_index] & ~(PTE_U | PTE_W))  # an upper level
    rig.state.cpl = 3
    assert access(rig, VA) == (PF, PF_P | PF_U)
    rig.state.cpl = 0
    rig.state.cr0 |= CR0_WP
    assert access(rig, VA, "sd") == (PF, PF_P | PF_W)


def test_fetch_from_a_no_execute_page_raises_pf_with_i():
    rig = mapped(flags=PTE_W | PTE_U | PTE_NX)
    rig.code(encode("jr", rs1=1))
    rig.state.r[1] = VA
    rig.run(1)
    assert rig.event() == (PF, PF_P | PF_I)
    assert rig.state.cr2 == VA and rig.state.pc == VA


def test_nx_in_an_upper_level_forbids_fetch():
    rig = mapped()
    w = walk(rig.state, rig.mem, VA, ACCESS_FETCH, 0)
    rig.mem.write(w.entry_addr[0], 8, w.entry[0] | PTE_NX)
    assert walk(rig.state, rig.mem, VA, ACCESS_FETCH, 0).error_code == PF_P | PF_I
    assert walk(rig.state, rig.mem, VA, ACCESS_READ, 0).fault == 0


def test_fetch_of_an_unmapped_page_at_cpl_3_has_error_code_u_i():
    rig = mapped()
    rig.state.cpl = 3
    rig.state.pc = 0x400000
    assert rig.event() == (PF, PF_U | PF_I)


@pytest.mark.parametrize(
    "level_index, bits",
    [(0, 1 << 52), (0, 1 << 62), (0, PTE_PS), (3, PTE_PS), (2, 1 << 55)],
    ids=["bit52@4", "bit62@4", "PS@4", "PS@1", "bit55@2"],
)
def test_reserved_bits_fail_the_walk_with_rsvd(level_index, bits):
    rig = mapped()
    w = walk(rig.state, rig.mem, VA, ACCESS_READ, 0)
    rig.mem.write(w.entry_addr[level_index], 8, w.entry[level_index] | bits)
    rig.state.cpl = 3
    assert access(rig, VA, "sd") == (PF, PF_P | PF_RSVD | PF_W | PF_U)


@pytest.mark.parametrize("page, misalignment", [(PAGE_2M, 0x1000), (PAGE_2M, 0x100000), (PAGE_1G, 0x200000)])
def test_a_misaligned_large_page_frame_is_reserved(page, misalignment):
    rig = Rig()
    tables = rig.paging(4)
    tables.map(page, 0, page, flags=PTE_W, page=page)
    w = walk(rig.state, rig.mem, page, ACCESS_READ, 0)
    rig.mem.write(w.entry_addr[-1], 8, w.entry[-1] | misalignment)
    assert access(rig, page) == (PF, PF_P | PF_RSVD)


def test_bits_of_a_not_present_entry_are_ignored():
    rig = mapped()
    w = walk(rig.state, rig.mem, VA, ACCESS_READ, 0)
    rig.mem.write(w.entry_addr[-1], 8, (1 << 62) | PTE_PS)  # P = 0
    assert access(rig, VA) == (PF, 0)


def test_accessed_and_dirty_bits_are_set_by_successful_accesses():
    rig = mapped()
    assert access(rig, VA) == 0
    w = walk(rig.state, rig.mem, VA, ACCESS_READ, 0)
    assert all(e & PTE_A for e in w.entry)
    assert not w.entry[-1] & PTE_D
    access(rig, VA, "sd")
    w = walk(rig.state, rig.mem, VA, ACCESS_READ, 0)
    assert w.entry[-1] & PTE_D
    assert not any(e & PTE_D for e in w.entry[:-1])


def test_a_failed_translation_sets_no_accessed_bit():
    rig = mapped(flags=PTE_W)  # supervisor only
    rig.state.cpl = 3
    before = walk(rig.state, rig.mem, VA, ACCESS_READ, 0).entry
    assert access(rig, VA) == (PF, PF_P | PF_U)
    assert walk(rig.state, rig.mem, VA, ACCESS_READ, 0).entry == before
    assert not any(e & PTE_A for e in before[1:])


def test_walk_sets_nothing_unless_asked():
    rig = mapped()
    w = walk(rig.state, rig.mem, VA, ACCESS_WRITE, 0)
    assert w.fault == 0 and w.writable and w.user and not w.nx
    assert not walk(rig.state, rig.mem, VA, ACCESS_READ, 0).entry[-1] & PTE_A
    walk(rig.state, rig.mem, VA, ACCESS_WRITE, 0, set_ad=True)
    assert walk(rig.state, rig.mem, VA, ACCESS_READ, 0).entry[-1] & (PTE_A | PTE_D) == PTE_A | PTE_D


def test_walk_counters():
    rig = mapped()
    c = rig.state.counters
    access(rig, VA)
    assert (c.walks, c.walk_refs) == (2, 8)  # the fetch and the load, 4 entries each


def test_a_table_beyond_ram_raises_mc():
    rig = mapped()
    w = walk(rig.state, rig.mem, VA, ACCESS_READ, 0)
    rig.mem.write(w.entry_addr[1], 8, MEMORY | PTE_P | PTE_W)  # the next table is beyond RAM
    assert access(rig, VA) == (MC, None)
    assert walk(rig.state, rig.mem, VA, ACCESS_READ, 0).fault == MC


def test_a_page_beyond_ram_raises_mc_after_the_walk():
    rig = Rig()
    rig.paging().map(VA, MEMORY, 0x1000, flags=PTE_W)
    assert access(rig, VA) == (MC, None)
    assert walk(rig.state, rig.mem, VA, ACCESS_READ, 0).fault == MC


def test_paging_off_means_linear_is_physical():
    rig = Rig()
    assert not rig.state.cr0 & CR0_PG
    w = walk(rig.state, rig.mem, DATA, ACCESS_WRITE, 3)
    assert (w.fault, w.physical, w.page_level, w.levels) == (0, DATA, 0, 0)


def test_a_cr3_beyond_ram_makes_every_access_a_machine_check():
    rig = mapped()
    rig.state.cr3 = MEMORY  # the fetch faults, and so does every IDT read: shutdown
    assert rig.run(5).reason == EXIT_SHUTDOWN
