"""Paging on the core (§5.3, §7): 2/3/4 levels, 2 MiB and 1 GiB pages, reserved bits, A/D
bits, WP, NX, every #PF error-code bit, CR2, canonical form, #MC beyond RAM, and p64_walk."""

from __future__ import annotations

import pytest
from core_rig import AC, CODE, CR0_PE, CR0_PG, CR0_WP, DATA, GP, MC, MEMORY, PF, SP, TABLES, UD, USER_STACK, Core, I

from cffi_core._binding import ffi, lib
from cffi_core.pagetables import PAGE_1G, PAGE_2M, PTE_A, PTE_D, PTE_NX, PTE_PS, PTE_U, PTE_W

VA = 0x4000_0000  # a test mapping, outside the identity map
PF_P, PF_W, PF_U, PF_RSVD, PF_I = 1, 2, 4, 8, 16


def paged(levels: int = 4, cpl: int = 0, user: bool = True) -> tuple[Core, object]:
    c = Core()
    pt = c.paging(levels, user=user)
    c.cpu.cpl = cpl
    if cpl == 3:
        c.cpu.r[SP] = USER_STACK
    return c, pt


def access(c: Core, kind: str, va: int, value: int = 0x5A) -> None:
    c.set_r(r1=va, r2=value)
    word = {"read": I("ld", rd=3, rs1=1), "write": I("sd", rs2=2, rs1=1), "fetch": I("jr", rs1=1)}[kind]
    c.code(word, I("ud"))
    c.run()


def leaf_entry(c: Core, va: int, levels: int = 4) -> tuple[int, int]:
    w = ffi.new("struct p64_walk *")
    assert lib.p64_walk(c.m, va, 0, 0, 0, w) == 0
    return int(w.entry_addr[w.levels - 1]), int(w.entry[w.levels - 1])


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_code_and_data_run_through_each_depth(levels):
    c, pt = paged(levels)
    va = 0x1000_0000 if levels == 2 else VA  # 2 levels: 30-bit linear addresses
    pt.map(va, DATA, 0x1000, flags=PTE_W)
    access(c, "write", va + 8, 77)
    assert c.read(DATA + 8, 1) == b"\x4d"
    assert c.event() == (UD, None, CODE + 4)
    assert c.counters()["walk_refs"] == 3 * levels  # fetch, the store, the IDT read of #UD


@pytest.mark.parametrize(("levels", "page"), [(2, PAGE_2M), (3, PAGE_2M), (4, PAGE_2M), (3, PAGE_1G), (4, PAGE_1G)])
def test_large_pages(levels, page):
    c, pt = paged(levels)
    va = page * (1 if levels == 2 else 3)
    pt.map(va, 0, page, flags=PTE_W, page=page)
    c.w64(DATA + 0x18, 0xFEED)
    access(c, "read", va + DATA + 0x18)
    assert c.r(3) == 0xFEED
    w = ffi.new("struct p64_walk *")
    lib.p64_walk(c.m, va + 0x5008, 0, 0, 0, w)
    assert (w.physical, w.page_level, w.levels) == (
        0x5008,
        2 if page == PAGE_2M else 3,
        levels - (1 if page == PAGE_2M else 2),
    )


def test_large_page_beyond_ram_raises_mc():
    c, pt = paged(4)
    pt.map(VA, 0, PAGE_2M, flags=PTE_W, page=PAGE_2M)
    access(c, "read", VA + MEMORY)
    assert c.event() == (MC, None, CODE)


@pytest.mark.parametrize(("what", "bits", "level"), [
    ("bit 52 in the leaf", 1 << 52, 1), ("bit 62 in the top", 1 << 62, 4), ("PS at level 1", PTE_PS, 1),
    ("PS at level 4", PTE_PS, 4), ("bit 55 at level 2", 1 << 55, 2),
])  # fmt: skip
def test_reserved_bits_fail_with_rsvd(what, bits, level):
    va = 1 << 39 | VA  # its own top-level entry: the code's and the IDT's stay intact
    c, pt = paged(4)
    pt.map(va, DATA, 0x1000)
    w = ffi.new("struct p64_walk *")
    lib.p64_walk(c.m, va, 0, 0, 0, w)
    addr = int(w.entry_addr[4 - level])
    c.w64(addr, int(w.entry[4 - level]) | bits)
    access(c, "read", va)
    assert c.event() == (PF, PF_P | PF_RSVD, CODE)
    assert c.cpu.cr2 == va


@pytest.mark.parametrize(("page", "frame_bit"), [(PAGE_2M, 1 << 12), (PAGE_2M, 1 << 20), (PAGE_1G, 1 << 29)])
def test_misaligned_large_frame_is_reserved(page, frame_bit):
    c, pt = paged(4)
    pt.map(VA, 0, page, page=page)
    addr, entry = leaf_entry(c, VA)
    c.w64(addr, entry | frame_bit)
    access(c, "write", VA)
    assert c.event() == (PF, PF_P | PF_RSVD | PF_W, CODE)


# (kind, cpl, mapping flags or None = not present, wp, expected error code or None)
PF_CASES = [
    ("read", 0, None, 0, 0), ("write", 0, None, 0, PF_W), ("read", 3, None, 0, PF_U),
    ("write", 3, None, 0, PF_W | PF_U), ("fetch", 0, None, 0, PF_I), ("fetch", 3, None, 0, PF_I | PF_U),
    ("read", 3, PTE_W, 0, PF_P | PF_U), ("write", 3, PTE_U, 0, PF_P | PF_W | PF_U),
    ("write", 0, PTE_U, 0, None), ("write", 0, 0, 1, PF_P | PF_W), ("write", 1, 0, 0, None),
    ("fetch", 0, PTE_NX, 0, PF_P | PF_I), ("fetch", 3, PTE_U | PTE_NX, 0, PF_P | PF_I | PF_U),
    ("read", 0, PTE_NX, 0, None), ("fetch", 0, PTE_U, 0, None),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "cpl", "flags", "wp", "code"), PF_CASES)
def test_page_fault_error_codes(kind, cpl, flags, wp, code):
    c, pt = paged(4, cpl)
    if wp:
        c.cpu.cr0 = CR0_PE | CR0_PG | CR0_WP
    if flags is not None:
        pt.map(VA, DATA, 0x1000, flags=flags)
    access(c, kind, VA + 0x10)
    if code is None:
        assert c.event()[2] == (VA + 0x10 if kind == "fetch" else CODE + 4)  # ran on to the ud / the zero word
        assert c.event()[0] == UD
    else:
        assert c.event() == (PF, code, VA + 0x10 if kind == "fetch" else CODE)
        assert c.cpu.cr2 == VA + 0x10
        assert c.exit.address == VA + 0x10


def test_user_permission_needs_u_at_every_level():
    c, pt = paged(4, cpl=3)
    pt.map(VA, DATA, 0x1000, flags=PTE_U | PTE_W)
    w = ffi.new("struct p64_walk *")
    lib.p64_walk(c.m, VA, 0, 3, 0, w)
    c.w64(int(w.entry_addr[1]), int(w.entry[1]) & ~PTE_U)  # level 3 entry loses U
    access(c, "read", VA)
    assert c.event() == (PF, PF_P | PF_U, CODE)


def test_accessed_and_dirty_bits():
    c, pt = paged(4)
    pt.map(VA, DATA, 0x2000, flags=PTE_W)
    access(c, "read", VA)
    entry = leaf_entry(c, VA)[1]
    assert entry & (PTE_A | PTE_D) == PTE_A
    w = ffi.new("struct p64_walk *")
    lib.p64_walk(c.m, VA, 0, 0, 0, w)
    assert all(int(w.entry[i]) & PTE_A for i in range(4))
    c.cpu.pc = CODE
    access(c, "write", VA + 0x1000)
    assert leaf_entry(c, VA + 0x1000)[1] & PTE_D
    assert leaf_entry(c, VA)[1] & PTE_D == 0  # only the leaf written through gets D


def test_write_through_a_cached_clean_entry_walks_again_and_sets_d():
    c, pt = paged(4)
    pt.map(VA, DATA, 0x1000, flags=PTE_W)
    c.set_r(r1=VA)
    c.code(I("ld", rd=2, rs1=1), I("sd", rs2=2, rs1=1), I("hlt"))
    c.run()
    assert leaf_entry(c, VA)[1] & PTE_D
    counters = c.counters()
    assert (counters["dtlb_misses"], counters["dtlb_hits"]) == (2, 0)


def test_failed_translation_sets_no_accessed_bits():
    c, pt = paged(4)
    c.cpu.cr0 |= CR0_WP
    pt.map(VA, DATA, 0x1000, flags=0)
    before = leaf_entry(c, VA)[1]
    access(c, "write", VA)
    assert c.event()[0] == PF
    assert leaf_entry(c, VA)[1] == before


@pytest.mark.parametrize(("levels", "va"), [(2, 1 << 29), (3, 1 << 38), (4, 1 << 47), (4, 0x8000_0000_0000_0000)])
def test_non_canonical_addresses_raise_gp(levels, va):
    c, _ = paged(levels)
    access(c, "read", va)
    assert c.event() == (GP, 0, CODE)


@pytest.mark.parametrize(("levels", "va"), [(2, ~0 << 29), (3, ~0 << 38), (4, ~0 << 47)])
def test_negative_canonical_addresses_are_translated(levels, va):
    c, _ = paged(levels)
    access(c, "read", va & (2**64 - 1))
    assert c.event() == (PF, 0, CODE)


def test_alignment_is_checked_before_translation():
    c, _ = paged(4)
    access(c, "read", (1 << 47) + 1)
    assert c.event() == (AC, 0, CODE)


def test_cr3_beyond_ram_shuts_down_on_fetch():
    c, _ = paged(4)
    c.cpu.cr3 = MEMORY
    c.code(I("ud"))
    assert c.run() == 6  # fetch #MC, IDT read #MC, #DF's IDT read #MC


def test_walk_reports_entries_and_faults_without_touching_the_tlb():
    c, pt = paged(3)
    pt.map(VA, DATA, 0x1000, flags=PTE_U)
    w = ffi.new("struct p64_walk *")
    assert lib.p64_walk(c.m, VA + 0x123, lib.P64_ACCESS_WRITE, 3, 0, w) == 0
    assert (w.fault, w.error_code, w.levels) == (PF, PF_P | PF_W | PF_U, 3)
    assert lib.p64_walk(c.m, VA + 0x123, lib.P64_ACCESS_READ, 3, 1, w) == 0
    assert (w.fault, w.physical, w.page_level, w.writable, w.user, w.nx) == (0, DATA + 0x123, 1, 0, 1, 0)
    assert leaf_entry(c, VA)[1] & PTE_A  # set_ad
    assert lib.p64_walk(c.m, 1 << 40, 0, 0, 0, w) == 0 and w.fault == GP
    counters = c.counters()
    assert counters["walks"] == counters["dtlb_misses"] == 0


def test_walk_with_paging_off_is_the_identity():
    c = Core()
    w = ffi.new("struct p64_walk *")
    assert lib.p64_walk(c.m, 0x1234, 0, 0, 0, w) == 0
    assert (w.physical, w.fault, w.page_level) == (0x1234, 0, 0)
    lib.p64_walk(c.m, MEMORY, 0, 0, 0, w)
    assert w.fault == MC


def test_walk_refuses_bad_arguments():
    c = Core()
    w = ffi.new("struct p64_walk *")
    assert lib.p64_walk(c.m, 0, 3, 0, 0, w) == lib.P64_ERR_STATE
    assert lib.p64_walk(c.m, 0, 0, 4, 0, w) == lib.P64_ERR_STATE
    assert b"cpl" in ffi.string(lib.p64_last_error(c.m))


def test_paging_tables_are_in_the_rig_area():
    assert TABLES < MEMORY
