"""Nested paging and tagged TLBs on the core, one row per fact of docs/vmx.md V.6 and V.7: the EPT
permission matrix and its exit information, misconfigurations, the walker's own accesses, 2D
reference counts for every level pair, the page-walk caches and nested TLB, and VPID tags."""

from __future__ import annotations

import pytest
from vmx_rig import CODE, CR0_PE, CR0_PG, CR0_WP, DATA, GUEST_BASE, GUEST_TABLES, HANDLER_VMCALL, Guest, I

from cffi_core.machine import ExitReason
from cffi_core.pagetables import (
    EPT_R,
    EPT_RWX,
    EPT_W,
    EPT_X,
    PAGE_1G,
    PAGE_2M,
    PAGE_4K,
    PTE_A,
    PTE_D,
    PTE_PS,
    PTE_W,
    PageAllocator,
    PageTables,
)  # fmt: skip
from cffi_core.vmx import EventInfo, IntrType, Vmcs, VmcsField, VmExitReason

FRAME = 0x000F_FFFF_FFFF_F000

# docs/vmx.md V.5, EPT_VIOLATION's EXIT_QUALIFICATION.
Q_READ, Q_WRITE, Q_FETCH = 1, 2, 4  # bits 0-2: the access
Q_LINEAR = 1 << 7  # the linear address is valid
Q_FINAL = 1 << 8  # the access was to the final address (0: to a guest paging entry)
Q_ACCESS = {"read": Q_READ, "write": Q_WRITE, "fetch": Q_FETCH}
NEEDS = {"read": EPT_R, "write": EPT_W, "fetch": EPT_X}  # V.6 / V.10: the permission each access needs


def q_found(perm: int) -> int:
    """Bits 5:3: the R, W, X of the nested translation found (0 if not present)."""
    return (perm & EPT_RWX) << 3


def index(addr: int, level: int) -> int:
    return (addr >> (12 + 9 * (level - 1))) & 511


def nested_entry(g: Guest, gpa: int, level: int) -> int:
    """Host-physical address of the nested entry of ``level`` that maps ``gpa`` (V.6)."""
    table = g.nested.root
    for lv in range(g.nested.levels, level, -1):
        entry = g.m.read_u64(table + 8 * index(gpa, lv))
        assert entry & EPT_R and not entry & PTE_PS, f"no nested table at level {lv} for {gpa:#x}"
        table = entry & FRAME
    return table + 8 * index(gpa, level)


def guest_entry(g: Guest, tables: PageTables, va: int, level: int) -> int:
    """Guest-physical address of the guest paging entry of ``level`` that maps ``va`` (§7.3)."""
    table = tables.root
    for lv in range(tables.levels, level, -1):
        table = g.r64(table + 8 * index(va, lv)) & FRAME
    return table + 8 * index(va, level)


def delta(before: dict[str, int], after: dict[str, int], *keys: str) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys}


def word(insn: int) -> bytes:
    return insn.to_bytes(4, "little")


# ---- the permission matrix (V.6: R/W/X x present/absent x large/small page) -----------------

TARGET = 0x3000  # a guest-physical page: `vmcall TARGET_DONE` at +0, a quadword at +8
TARGET_DONE, ACCESS_DONE = 0x77, 0x55
OLD, NEW = 0x1122_3344_5566_7788, 0x0BAD_F00D
ALIAS_2M = 0x400000  # guest-physical 2 MiB page -> host GUEST_BASE (guest-physical 0)
ALIAS_1G = 0x40000000  # guest-physical 1 GiB page -> host 0, so + GUEST_BASE is guest-physical 0
ALIAS_2M_ALONE = 0x80000000  # a 2 MiB page under a level-3 entry that maps nothing else


# (nested levels, leaf level, guest-physical address of the target, its nested leaf value's frame)
PAGES = {
    "4K/4": (4, 1, TARGET, GUEST_BASE + TARGET),
    "4K/3": (3, 1, TARGET, GUEST_BASE + TARGET),
    "4K/2": (2, 1, TARGET, GUEST_BASE + TARGET),
    "2M/4": (4, 2, ALIAS_2M + TARGET, GUEST_BASE),
    "2M/4 alone": (4, 2, ALIAS_2M_ALONE + TARGET, GUEST_BASE),
    "2M/2": (2, 2, ALIAS_2M + TARGET, GUEST_BASE),  # PS in the top table of 2 levels (§7.2)
    "1G/4": (4, 3, ALIAS_1G + GUEST_BASE + TARGET, 0),
    "1G/3": (3, 3, ALIAS_1G + GUEST_BASE + TARGET, 0),  # PS in the top table of 3 levels
}
PERMS = {
    "absent": 0,
    "R": EPT_R,
    "RW": EPT_R | EPT_W,
    "RX": EPT_R | EPT_X,
    "RWX": EPT_RWX,
    "X, R=0": EPT_X,  # V.6: an entry is present iff R = 1
}


def matrix_guest(page: str, leaf_perm: int, access: str) -> tuple[Guest, int, int]:
    """A guest (paging on, 4 levels) about to make ``access`` to the target through a nested leaf
    of size ``page`` with R/W/X ``leaf_perm``; returns (guest, linear, guest-physical address)."""
    levels, leaf_level, gpa, frame = PAGES[page]
    g = Guest(ept_levels=levels)
    tables = g.paging(4)
    g.write(TARGET, word(I("vmcall", imm=TARGET_DONE)) + bytes(4) + OLD.to_bytes(8, "little"))
    linear = gpa  # the guest maps the target's page identically
    if linear >= GUEST_TABLES:
        tables.map(linear & ~0xFFF, linear & ~0xFFF, PAGE_4K)
    if leaf_level > 1:
        size = PAGE_2M if leaf_level == 2 else PAGE_1G
        g.nested.map(gpa & ~(size - 1), frame, size, flags=EPT_W | EPT_X, page=size)
    g.m.write_u64(nested_entry(g, gpa, leaf_level), frame | leaf_perm | (PTE_PS if leaf_level > 1 else 0))
    g.v.regs[1], g.v.regs[2] = linear, NEW
    access_insn = {
        "read": I("ld", rd=3, rs1=1, imm=8),
        "write": I("sd", rs2=2, rs1=1, imm=8),
        "fetch": I("jr", rs1=1),
    }[access]
    g.code(I("addi", rd=4, rs1=4, imm=1), access_insn, I("vmcall", imm=ACCESS_DONE))
    return g, linear, gpa + (0 if access == "fetch" else 8)


@pytest.mark.parametrize("access", ["read", "write", "fetch"])
@pytest.mark.parametrize("perm", PERMS)
@pytest.mark.parametrize("page", PAGES)
def test_ept_permission_matrix(page, perm, access):
    leaf = PERMS[perm]
    g, linear, gpa = matrix_guest(page, leaf, access)
    before = g.counters()
    ex = g.run(100)
    d = delta(before, g.counters(), "insn_guest_cpl0", "vm_exit_48")
    target_host = GUEST_BASE + TARGET
    if leaf & EPT_R and leaf & NEEDS[access]:
        assert ex.reason is ExitReason.VM and ex.number is VmExitReason.VMCALL
        if access == "fetch":
            assert (g.get("EXIT_QUALIFICATION"), g.pc) == (TARGET_DONE, linear)
        else:
            assert (g.get("EXIT_QUALIFICATION"), g.pc) == (ACCESS_DONE, CODE + 8)
        assert g.v.regs[3] == (OLD if access == "read" else 0)
        assert g.m.read_u64(target_host + 8) == (NEW if access == "write" else OLD)
        return
    # V.6 / V.5: an EPT violation, fault-like: GUEST_PC at the access, nothing of it done
    assert ex.reason is ExitReason.VM and ex.number is VmExitReason.EPT_VIOLATION
    found = leaf if leaf & EPT_R else 0
    assert g.get("EXIT_QUALIFICATION") == Q_ACCESS[access] | q_found(found) | Q_LINEAR | Q_FINAL
    assert g.get("GUEST_PHYSICAL_ADDRESS") == gpa
    assert g.get("GUEST_LINEAR_ADDRESS") == linear + (0 if access == "fetch" else 8)
    if access == "fetch":  # jr retired; the fetch at its target faults with pc = the target (§3)
        assert (g.pc, d["insn_guest_cpl0"]) == (linear, 2)
    else:
        assert (g.pc, d["insn_guest_cpl0"]) == (CODE + 4, 1)
    assert d["vm_exit_48"] == 1
    assert g.v.regs[3] == 0 and g.v.regs[4] == 1
    assert g.m.read_u64(target_host + 8) == OLD


@pytest.mark.parametrize("access", ["read", "write", "fetch"])
@pytest.mark.parametrize("perm", ["absent", "R", "RX"])
def test_with_guest_paging_off_the_linear_address_is_translated_as_guest_physical(perm, access):
    leaf = PERMS[perm]
    g, linear, gpa = matrix_guest("4K/4", leaf, access)
    g.set(GUEST_CR0=CR0_PE)  # paging off: linear = guest-physical (§5.3), one nested translation
    ex = g.run(100)
    if leaf & NEEDS[access]:
        assert ex.number is VmExitReason.VMCALL
        return
    assert ex.number is VmExitReason.EPT_VIOLATION
    # bit 7 (linear valid) left out: V.5 does not say whether a paging-off access has one
    assert g.get("EXIT_QUALIFICATION") & ~Q_LINEAR == Q_ACCESS[access] | q_found(leaf) | Q_FINAL
    assert (g.get("GUEST_PHYSICAL_ADDRESS"), g.pc) == (gpa, linear if access == "fetch" else CODE + 4)


@pytest.mark.parametrize(
    ("perm", "first", "then", "qual"),
    [
        ("R", I("ld", rd=3, rs1=1, imm=8), I("sd", rs2=2, rs1=1, imm=8), Q_WRITE | q_found(EPT_R)),
        ("RX", I("ld", rd=3, rs1=1, imm=8), I("sd", rs2=2, rs1=1, imm=8), Q_WRITE | q_found(EPT_R | EPT_X)),
        ("RW", I("ld", rd=3, rs1=1, imm=8), I("jr", rs1=1), Q_FETCH | q_found(EPT_R | EPT_W)),
    ],
)
def test_a_cached_translation_keeps_the_nested_permissions(perm, first, then, qual):
    """V.6: the TLB caches the combined translation; an access the nested half forbids is not
    served from it (§8.2: it walks again and exits)."""
    g, linear, _ = matrix_guest("4K/4", PERMS[perm], "read")
    g.code(first, then, I("vmcall", imm=ACCESS_DONE))
    ex = g.run(100)
    assert ex.number is VmExitReason.EPT_VIOLATION
    assert g.get("EXIT_QUALIFICATION") == qual | Q_LINEAR | Q_FINAL
    assert g.pc == (linear if then == I("jr", rs1=1) else CODE + 4)
    assert g.v.regs[3] == OLD  # the first access was done, from the same page
    assert g.m.read_u64(GUEST_BASE + TARGET + 8) == OLD


# V.6: "an entry with W = 1 and R = 0, or reserved bits set, is a misconfiguration";
# reserved as §7.2: bits 62:52, PS at level 1, the low frame bits of a large page.
MISCONFIGS = {
    "W, R=0": ("4K/4", GUEST_BASE + TARGET | EPT_W),
    "WX, R=0": ("4K/4", GUEST_BASE + TARGET | EPT_W | EPT_X),
    "bit 52": ("4K/4", GUEST_BASE + TARGET | EPT_RWX | 1 << 52),
    "bit 62": ("4K/4", GUEST_BASE + TARGET | EPT_RWX | 1 << 62),
    "PS at level 1": ("4K/4", GUEST_BASE + TARGET | EPT_RWX | PTE_PS),
    "2M frame bit 12": ("2M/4", GUEST_BASE | 1 << 12 | EPT_RWX | PTE_PS),
    "1G frame bit 21": ("1G/4", 1 << 21 | EPT_RWX | PTE_PS),
    "2M W, R=0": ("2M/2", GUEST_BASE | EPT_W | PTE_PS),
}


@pytest.mark.parametrize("access", ["read", "write", "fetch"])
@pytest.mark.parametrize("case", MISCONFIGS)
def test_nested_misconfiguration_exits_ept_misconfig(case, access):
    page, value = MISCONFIGS[case]
    g, linear, gpa = matrix_guest(page, EPT_RWX, access)
    g.m.write_u64(nested_entry(g, PAGES[page][2], PAGES[page][1]), value)
    before = g.counters()
    ex = g.run(100)
    assert ex.reason is ExitReason.VM and ex.number is VmExitReason.EPT_MISCONFIG
    assert g.get("EXIT_QUALIFICATION") == 0  # V.5: "others: 0"
    assert g.get("GUEST_PHYSICAL_ADDRESS") == gpa
    assert g.pc == (linear if access == "fetch" else CODE + 4)
    assert g.m.read_u64(GUEST_BASE + TARGET + 8) == OLD
    assert delta(before, g.counters(), "vm_exit_49")["vm_exit_49"] == 1


def test_a_misconfigured_upper_nested_entry_is_a_misconfiguration():
    g, _, gpa = matrix_guest("2M/4 alone", EPT_RWX, "read")
    upper = nested_entry(g, gpa, 3)  # the level-3 entry above the 2 MiB leaf
    g.m.write_u64(upper, (g.m.read_u64(upper) & FRAME) | EPT_W)
    ex = g.run(100)
    assert ex.number is VmExitReason.EPT_MISCONFIG
    assert (g.get("GUEST_PHYSICAL_ADDRESS"), g.pc) == (gpa, CODE + 4)


def test_upper_nested_permissions_combine_with_the_leaf():
    """V.6 / §7.3: an upper entry without W makes every page below it read-only; the violation
    reports the combined R/W/X found."""
    g, _, gpa = matrix_guest("2M/4 alone", EPT_RWX, "write")
    upper = nested_entry(g, gpa, 3)
    g.m.write_u64(upper, (g.m.read_u64(upper) & FRAME) | EPT_R | EPT_X)
    ex = g.run(100)
    assert ex.number is VmExitReason.EPT_VIOLATION
    assert g.get("EXIT_QUALIFICATION") == Q_WRITE | q_found(EPT_R | EPT_X) | Q_LINEAR | Q_FINAL


def test_nested_bit_63_is_ignored_and_nested_entries_get_no_accessed_or_dirty_bits():
    g, _, gpa = matrix_guest("4K/4", EPT_RWX, "write")
    leaf = nested_entry(g, gpa, 1)
    g.m.write_u64(leaf, g.m.read_u64(leaf) | 1 << 63)
    nested_area = g.m.read(0x100000, 0x10000)
    ex = g.run(100)
    assert ex.number is VmExitReason.VMCALL and g.get("EXIT_QUALIFICATION") == ACCESS_DONE
    assert g.m.read_u64(GUEST_BASE + TARGET + 8) == NEW
    assert g.m.read(0x100000, 0x10000) == nested_area  # V.6: "no A/D bits"


# ---- the walker's own accesses: guest paging entries through the nested tables (V.6) --------

FAR = 0x4000_0000  # a linear address with guest tables of its own below the top two levels


def walker_guest(**kw) -> tuple[Guest, PageTables]:
    """Guest paging on; FAR maps the target page through an L2 and an L1 table used by no other
    address; `ld` or `sd` at CODE + 4, `vmcall ACCESS_DONE` after it."""
    g = Guest(**kw)
    tables = g.paging(4)
    tables.map(FAR, TARGET, PAGE_4K, flags=PTE_W)
    g.write(TARGET + 8, OLD.to_bytes(8, "little"))
    g.v.regs[1], g.v.regs[2] = FAR, NEW
    return g, tables


def set_nested_perm(g: Guest, gpa: int, perm: int) -> None:
    addr = nested_entry(g, gpa, 1)
    g.m.write_u64(addr, (g.m.read_u64(addr) & FRAME) | perm)


@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("access", ["read", "write"])
def test_a_guest_table_page_absent_in_the_nested_tables_exits_on_the_walkers_read(level, access):
    g, tables = walker_guest()
    entry = guest_entry(g, tables, FAR, level)
    set_nested_perm(g, entry, 0)
    g.code(I("addi", rd=4, rs1=4, imm=1), I("ld", rd=3, rs1=1, imm=8) if access == "read" else
           I("sd", rs2=2, rs1=1, imm=8), I("vmcall", imm=ACCESS_DONE))  # fmt: skip
    ex = g.run(100)
    assert ex.number is VmExitReason.EPT_VIOLATION
    # the walker reads the entry: a read, nothing found, linear valid, not the final address
    assert g.get("EXIT_QUALIFICATION") == Q_READ | Q_LINEAR
    assert g.get("GUEST_PHYSICAL_ADDRESS") == entry
    assert g.get("GUEST_LINEAR_ADDRESS") == FAR + 8
    assert (g.pc, g.v.regs[4]) == (CODE + 4, 1)
    assert g.r64(TARGET + 8) == OLD


@pytest.mark.parametrize(
    ("access", "preset", "written"),
    [
        ("read", 0, PTE_A),  # A clear: the walker writes A
        ("write", PTE_A, PTE_D),  # A set, D clear: the walker writes D in the leaf
    ],
)
def test_a_read_only_guest_table_page_exits_on_the_walkers_accessed_dirty_write(access, preset, written):
    g, tables = walker_guest()
    entry = guest_entry(g, tables, FAR, 1)
    for level in (4, 3, 2):  # the upper entries need no write
        e = guest_entry(g, tables, FAR, level)
        g.w64(e, g.r64(e) | PTE_A)
    g.w64(entry, g.r64(entry) | preset)
    set_nested_perm(g, entry, EPT_R | EPT_X)
    g.code(I("ld", rd=3, rs1=1, imm=8) if access == "read" else I("sd", rs2=2, rs1=1, imm=8),
           I("vmcall", imm=ACCESS_DONE))  # fmt: skip
    before = g.counters()
    ex = g.run(100)
    assert ex.number is VmExitReason.EPT_VIOLATION
    # V.5: a write (the walker's), R and X found, linear valid, bit 8 = 0: a paging entry
    assert g.get("EXIT_QUALIFICATION") == Q_WRITE | q_found(EPT_R | EPT_X) | Q_LINEAR
    assert g.get("GUEST_PHYSICAL_ADDRESS") == entry
    assert g.get("GUEST_LINEAR_ADDRESS") == FAR + 8
    assert g.pc == CODE
    assert delta(before, g.counters(), "insn_guest_cpl0")["insn_guest_cpl0"] == 0
    assert g.r64(entry) & (PTE_A | PTE_D) == preset  # the entry was not written
    assert g.r64(TARGET + 8) == OLD and g.v.regs[3] == 0


@pytest.mark.parametrize("access", ["read", "write"])
def test_a_read_only_guest_table_page_needs_no_write_when_accessed_and_dirty_are_set(access):
    g, tables = walker_guest()
    for va in (CODE, FAR):  # every entry the fetch and the access use: A set, D in FAR's leaf
        for level in (4, 3, 2, 1):
            e = guest_entry(g, tables, va, level)
            g.w64(e, g.r64(e) | PTE_A | (PTE_D if level == 1 else 0))
            set_nested_perm(g, e, EPT_R)
    g.code(I("ld", rd=3, rs1=1, imm=8) if access == "read" else I("sd", rs2=2, rs1=1, imm=8),
           I("vmcall", imm=ACCESS_DONE))  # fmt: skip
    ex = g.run(100)
    assert ex.number is VmExitReason.VMCALL and g.get("EXIT_QUALIFICATION") == ACCESS_DONE
    assert g.r64(TARGET + 8) == (NEW if access == "write" else OLD)


def test_a_misconfigured_nested_entry_of_a_guest_table_page_is_a_misconfiguration():
    g, tables = walker_guest()
    entry = guest_entry(g, tables, FAR, 1)
    set_nested_perm(g, entry, EPT_W)
    g.code(I("ld", rd=3, rs1=1, imm=8), I("vmcall", imm=ACCESS_DONE))
    ex = g.run(100)
    assert ex.number is VmExitReason.EPT_MISCONFIG
    assert (g.get("GUEST_PHYSICAL_ADDRESS"), g.pc) == (entry, CODE)


# ---- a guest page fault is the guest's own (V.6, V.4) ----------------------------------------

UNMAPPED = 0x7000_0000


@pytest.mark.parametrize(
    ("va", "insn", "cr0", "error"),
    [
        (UNMAPPED, I("ld", rd=3, rs1=1), 0, 0),  # not present, read
        (UNMAPPED, I("sd", rs2=2, rs1=1), 0, 2),  # not present, write
        (CODE, I("sd", rs2=2, rs1=1), CR0_WP, 3),  # present read-only, write with WP
    ],
)
def test_a_guest_page_fault_is_delivered_through_the_guest_idt_without_an_exit(va, insn, cr0, error):
    g = Guest()
    tables = g.paging(4)
    tables.map(CODE, CODE, PAGE_4K, flags=0)  # the code page read-only in the guest's tables
    g.set(GUEST_CR0=CR0_PE | CR0_PG | cr0)
    g.v.regs[1] = va
    g.code(insn)
    before = g.counters()
    ex = g.run(100)
    d = delta(before, g.counters(), "exception_14", "vm_exits", "vm_exit_18")
    # the gate's handler is `vmcall HANDLER_VMCALL`: the only exit is that vmcall
    assert ex.number is VmExitReason.VMCALL and g.get("EXIT_QUALIFICATION") == HANDLER_VMCALL
    assert d == {"exception_14": 1, "vm_exits": 1, "vm_exit_18": 1}
    assert g.get("GUEST_CR2") == va
    frame = g.v.regs[15]
    assert (g.r64(frame), g.r64(frame + 8)) == (error, CODE)  # error code, pushed pc (§6.3)


def test_a_guest_page_fault_exits_when_the_exception_bitmap_asks():
    g = Guest()
    g.paging(4)
    g.set(EXCEPTION_BITMAP=1 << 14, PF_ERROR_CODE_MASK=0, PF_ERROR_CODE_MATCH=0)
    g.v.regs[1] = UNMAPPED
    g.code(I("ld", rd=3, rs1=1))
    ex = g.run(100)
    assert ex.number is VmExitReason.EXCEPTION
    assert EventInfo.decode(g.get("EXIT_INTR_INFO")) == EventInfo(True, 14, IntrType.HARDWARE_EXCEPTION, True)
    assert g.get("EXIT_INTR_ERROR_CODE") == 0
    assert g.get("EXIT_QUALIFICATION") == UNMAPPED
    assert (g.get("GUEST_CR2"), g.pc) == (0, CODE)  # V.5: guest CR2 is not written


# ---- 2D reference counts (V.6; Bhargava et al. 2008) -----------------------------------------

LEVELS = [2, 3, 4]
LOAD_PAGES = (DATA, DATA + 0x5000, DATA + 0x23000)


def loads_guest(profile: str, n: int | None, m: int, **kw) -> Guest:
    """Guest with n guest levels (None: paging off) over m nested levels: one load from each
    of LOAD_PAGES, then `vmcall 1`."""
    g = Guest(profile, ept_levels=m, **kw)
    if n is not None:
        g.paging(n)
    words = []
    for i, page in enumerate(LOAD_PAGES):
        g.v.regs[1 + i] = page
        words.append(I("ld", rd=8, rs1=1 + i))
    g.code(*words, I("vmcall", imm=1))
    return g


@pytest.mark.parametrize("m", LEVELS)
@pytest.mark.parametrize("n", LEVELS)
def test_every_2d_walk_makes_nm_plus_n_plus_m_references(n, m):
    g = loads_guest("vtx-2006+ept", n, m)  # no pwc: every reference goes to memory
    before = g.counters()
    g.run(100)
    d = delta(before, g.counters(), "walks_2d", "walk_refs_2d", "itlb_misses", "dtlb_misses", "pwc_hits",
              "ntlb_hits")  # fmt: skip
    walks = 1 + len(LOAD_PAGES)  # the fetch of CODE and each load, from a cold TLB
    assert d["itlb_misses"] + d["dtlb_misses"] == d["walks_2d"] == walks
    assert d["walk_refs_2d"] == walks * (n * m + n + m)
    assert d["pwc_hits"] == d["ntlb_hits"] == 0


def test_a_4_plus_4_walk_makes_24_references():
    g = loads_guest("vtx-2006+ept", 4, 4)
    before = g.counters()
    g.run(100)
    d = delta(before, g.counters(), "walks_2d", "walk_refs_2d")
    assert d["walk_refs_2d"] == 24 * d["walks_2d"]


@pytest.mark.parametrize("m", LEVELS)
def test_guest_paging_off_makes_m_references_per_walk(m):
    g = loads_guest("vtx-2006+ept", None, m)
    before = g.counters()
    g.run(100)
    d = delta(before, g.counters(), "walks_2d", "walk_refs_2d")
    assert d == {"walks_2d": 1 + len(LOAD_PAGES), "walk_refs_2d": (1 + len(LOAD_PAGES)) * m}


# ---- the caches (pwc, vtx-2009): page-walk caches and the nested TLB (V.6) ----------------------

PWC_KEYS = ("walks_2d", "walk_refs_2d", "pwc_hits", "ntlb_hits", "ntlb_misses")


def pwc_guest(n: int, m: int) -> Guest:
    """vtx-2009 (pwc) with a VPID, so nothing is flushed between runs (V.7): `ld [r1]`,
    `vmcall 1`, then `ld [r2]`, `vmcall 2`, run by two vmruns."""
    g = Guest("vtx-2009", ept_levels=m, vpid=1)
    g.paging(n)
    g.v.regs[1], g.v.regs[2] = DATA, DATA + PAGE_4K
    g.code(I("ld", rd=3, rs1=1), I("vmcall", imm=1), I("ld", rd=3, rs1=2), I("vmcall", imm=2))
    return g


def resume(g: Guest) -> dict[str, int]:
    """Step over the exiting vmcall and run to the next exit; the counter deltas of that run."""
    g.set(GUEST_PC=g.pc + 4)
    before = g.counters()
    g.run(100)
    return delta(before, g.counters(), *PWC_KEYS)


@pytest.mark.parametrize("m", LEVELS)
@pytest.mark.parametrize("n", LEVELS)
def test_page_walk_caches_and_the_nested_tlb_account_for_the_saved_references(n, m):
    g = pwc_guest(n, m)
    first_before = g.counters()
    g.run(100)
    first = delta(first_before, g.counters(), *PWC_KEYS)
    assert first["walks_2d"] == 2  # the fetch of CODE, the load of DATA
    assert first["walk_refs_2d"] < 2 * (n * m + n + m)  # fewer than without pwc, even cold
    second = resume(g)  # the ITLB still holds CODE (vpid): one walk, of DATA's neighbour
    assert second["walks_2d"] == 1
    # Bhargava et al. (2008) 2D_PWC+NT, caching upper-level entries of both dimensions:
    # - a guest-dimension hit on DATA's level-2 entry: the walk reads only the level-1 guest
    #   entry, saving n - 1 guest entries and the m nested references of each;
    # - the nested TLB holds the level-1 table's page: that entry's m nested references saved;
    # - the final page is new to the nested TLB (a miss), but its nested level-2 entry is
    #   cached: one nested reference instead of m.
    saved = (n - 1) * (m + 1) + m + (m - 1)
    assert second == {"walks_2d": 1, "walk_refs_2d": n * m + n + m - saved, "pwc_hits": 2, "ntlb_hits": 1,
                      "ntlb_misses": 1}  # fmt: skip
    assert second["walk_refs_2d"] == 2  # one guest entry, one nested entry


def test_invept_makes_the_next_walk_cold_again():
    cold = pwc_guest(4, 4)
    cold.set(GUEST_PC=CODE + 8)
    before = cold.counters()
    cold.run(100)
    fresh = delta(before, cold.counters(), *PWC_KEYS)  # fetch + load of DATA + 4 KiB, caches empty
    g = pwc_guest(4, 4)
    g.run(100)
    g.m.invept()  # V.6: drops the nested TLB, the caches and the combined translations
    g.set(GUEST_PC=CODE + 4)
    again = resume(g)
    assert again == fresh and again["walks_2d"] == 2


def test_the_page_walk_cache_goes_with_a_tlb_flush_and_the_nested_tlb_stays():
    g = pwc_guest(4, 4)
    g.run(100)  # warm: fetch of CODE, load of DATA; exits at CODE + 4
    g.m.tlb_flush()  # V.6: the page-walk cache is flushed with the TLB; the nested TLB only by invept
    before = g.counters()
    g.run(100)  # the same vmcall again: the fetch of CODE walks, nothing else
    d = delta(before, g.counters(), *PWC_KEYS)
    # all 4 guest entries read again; their table pages and CODE's page hit the nested TLB
    assert d == {"walks_2d": 1, "walk_refs_2d": 4, "pwc_hits": 0, "ntlb_hits": 5, "ntlb_misses": 0}


@pytest.mark.parametrize("n", LEVELS)
@pytest.mark.parametrize("dropper", ["cr3", "invlpg"])
def test_guest_cr3_writes_and_invlpg_drop_the_guests_page_walk_cache_entries(n, dropper):
    g = pwc_guest(n, 4)
    g.set(GUEST_CR0=CR0_PE | CR0_PG)
    g.v.regs[5] = g.get("GUEST_CR3")
    g.run(100)  # warm: fetch of CODE, load of DATA
    if dropper == "cr3":
        # `mtcr cr3` (same value) flushes; the fetch after it walks CODE again (§8.2)
        g.code(I("mtcr", crn=3, rs1=5), I("vmcall", imm=2), at=CODE + 8)
    else:
        # `invlpg` DATA; the ITLB keeps CODE, the load of DATA walks again
        g.code(I("invlpg", rs1=1), I("ld", rd=3, rs1=1), I("vmcall", imm=2), at=CODE + 8)
    d = resume(g)
    # The guest dimension's cached entries are gone: all n guest entries are read, each from
    # a table page the nested TLB still holds, as it holds the final page: no nested reference.
    assert d == {"walks_2d": 1, "walk_refs_2d": n, "pwc_hits": 0, "ntlb_hits": n + 1, "ntlb_misses": 0}


# ---- VPID (V.7) --------------------------------------------------------------------------------

TLB_KEYS = ("vm_transition_flushes", "itlb_hits", "itlb_misses", "dtlb_hits", "dtlb_misses", "walks_2d")


def loop_guest(profile: str, vpid: int) -> Guest:
    g = Guest(profile, vpid=vpid)
    g.paging(4)
    g.v.regs[1] = DATA
    g.code(I("ld", rd=3, rs1=1), I("vmcall", imm=1))
    return g


def run_from_code(g: Guest) -> dict[str, int]:
    g.set(GUEST_PC=CODE)
    before = g.counters()
    ex = g.run(100)
    assert ex.number is VmExitReason.VMCALL
    return delta(before, g.counters(), *TLB_KEYS)


@pytest.mark.parametrize(("profile", "vpid"), [("vtx-2006+ept", 0), ("vtx-2009", 0)])
def test_without_vpid_every_entry_and_exit_flushes(profile, vpid):
    g = loop_guest(profile, vpid)
    first, second = run_from_code(g), run_from_code(g)
    assert first == second == {"vm_transition_flushes": 2, "itlb_hits": 0, "itlb_misses": 1, "dtlb_hits": 0,
                               "dtlb_misses": 1, "walks_2d": 2}  # fmt: skip


def test_with_vpid_nothing_is_flushed_and_the_second_run_hits():
    g = loop_guest("vtx-2009", 7)
    first, second = run_from_code(g), run_from_code(g)
    assert first == {"vm_transition_flushes": 0, "itlb_hits": 0, "itlb_misses": 1, "dtlb_hits": 0,
                     "dtlb_misses": 1, "walks_2d": 2}  # fmt: skip
    assert second == {"vm_transition_flushes": 0, "itlb_hits": 1, "itlb_misses": 0, "dtlb_hits": 1,
                      "dtlb_misses": 0, "walks_2d": 0}  # fmt: skip


def two_vms() -> tuple[Guest, Vmcs, Vmcs]:
    """One machine, two VMCSs with VPIDs 1 and 2 over the same nested tables; the same linear
    DATA maps to different guest-physical pages (111 for VM 1, 222 for VM 2)."""
    g = Guest("vtx-2009", vpid=1)
    g.paging(4)
    other = PageTables(g.w64, PageAllocator(0x180000, 0x200000), levels=4)
    other.map(0, 0, GUEST_TABLES, flags=PTE_W)
    other.map(DATA, DATA + 0x10000, PAGE_4K, flags=PTE_W)
    g.w64(DATA, 111)
    g.w64(DATA + 0x10000, 222)
    g.v.regs[1] = DATA
    g.code(I("ld", rd=3, rs1=1), I("vmcall", imm=1))
    b = g.m.vmcs()
    b.copy_from(g.v)
    b[VmcsField.VPID] = 2
    b[VmcsField.GUEST_CR3] = other.root
    return g, g.v, b


def run_vm(g: Guest, v: Vmcs) -> tuple[int, dict[str, int]]:
    """Run VM ``v`` from CODE to its vmcall: (the value it loaded, the counter deltas)."""
    v[VmcsField.GUEST_PC] = CODE
    before = g.counters()
    ex = g.m.vmrun(v, 100)
    assert ex.number is VmExitReason.VMCALL
    return v.regs[3], delta(before, g.counters(), "itlb_hits", "itlb_misses", "dtlb_hits", "dtlb_misses")


MISS = {"itlb_hits": 0, "itlb_misses": 1, "dtlb_hits": 0, "dtlb_misses": 1}
HIT = {"itlb_hits": 1, "itlb_misses": 0, "dtlb_hits": 1, "dtlb_misses": 0}


def test_two_vpids_keep_separate_entries():
    g, a, b = two_vms()
    assert run_vm(g, a) == (111, MISS)
    assert run_vm(g, b) == (222, MISS)  # the same linear pages, another tag: no hit on VM 1's
    assert run_vm(g, a) == (111, HIT)  # VM 1's entries survived VM 2's run
    assert run_vm(g, b) == (222, HIT)


def test_invvpid_drops_one_tags_entries_only():
    g, a, b = two_vms()
    run_vm(g, a), run_vm(g, b)
    g.m.invvpid(1)
    assert run_vm(g, b) == (222, HIT)
    assert run_vm(g, a) == (111, MISS)
    with pytest.raises(ValueError, match="vpid"):
        g.m.invvpid(0)


HOST_CODE, HOST_DATA, HOST_TABLES = 0x1000, 0x5000, 0x80000  # host-physical, below the guest's


def host_paging(g: Guest) -> None:
    """The machine's own (host-mode) paging: identity over its first MiB; host code `ld r3,
    [r1]; hcall 1` at HOST_CODE."""
    tables = PageTables(g.m.write_u64, PageAllocator(HOST_TABLES, 0x100000), levels=4)
    tables.map(0, 0, 0x100000, flags=PTE_W)
    cpu = g.m.cpu
    cpu.cr3, cpu.cr4, cpu.cr0 = tables.root, 2, CR0_PE | CR0_PG
    g.m.write(HOST_CODE, word(I("ld", rd=3, rs1=1)) + word(I("hcall", imm=1)))
    cpu.r[1] = HOST_DATA


def host_run(g: Guest) -> dict[str, int]:
    g.m.cpu.pc = HOST_CODE
    before = g.counters()
    assert g.m.run(100).reason is ExitReason.HCALL
    return delta(before, g.counters(), "itlb_hits", "itlb_misses", "dtlb_hits", "dtlb_misses")


@pytest.mark.parametrize(("vpid", "survive"), [(3, True), (0, False)])
def test_host_tlb_entries_survive_guest_runs_only_with_vpid(vpid, survive):
    g = loop_guest("vtx-2009", vpid)
    host_paging(g)
    assert host_run(g) == MISS
    run_from_code(g)
    assert host_run(g) == (HIT if survive else MISS)


@pytest.mark.parametrize("dropper", ["cr3", "invlpg"])
def test_guest_cr3_writes_and_invlpg_drop_the_current_tags_entries_only(dropper):
    """V.7: "Guest CR3 writes and invlpg drop entries of the current tag only" (§8.1)."""
    g, a, b = two_vms()
    host_paging(g)
    host_run(g)
    run_vm(g, a), run_vm(g, b)
    a[VmcsField.GUEST_PC] = CODE + 8  # VM 1 runs the dropper, then `vmcall 3`
    a.regs[5] = a[VmcsField.GUEST_CR3]
    dropper_insn = I("mtcr", crn=3, rs1=5) if dropper == "cr3" else I("invlpg", rs1=1)
    g.code(dropper_insn, I("vmcall", imm=3), at=CODE + 8)
    assert g.m.vmrun(a, 100).number is VmExitReason.VMCALL
    assert run_vm(g, b) == (222, HIT)  # VM 2's entries of the same pages are kept
    assert host_run(g) == HIT  # and the host's
    assert run_vm(g, a)[1]["dtlb_misses"] == 1  # VM 1's own entry of DATA is gone


def test_invept_drops_every_guest_tags_entries_and_keeps_the_hosts():
    g, a, b = two_vms()
    host_paging(g)
    host_run(g)
    run_vm(g, a), run_vm(g, b)
    g.m.invept()
    assert run_vm(g, a) == (111, MISS)
    assert run_vm(g, b) == (222, MISS)
    assert host_run(g) == HIT


def test_the_nested_tlb_holds_16_pages_first_in_first_out():
    """V.6: a nested TLB of 16 entries (FIFO), consulted for every guest-physical address."""
    pages = [DATA + PAGE_4K * i for i in range(17)]
    g = Guest("vtx-2009")  # pwc; no vpid, so every vmrun starts with an empty TLB (V.7)
    g.set(GUEST_CR0=CR0_PE)  # guest paging off: one guest-physical address per access
    for r in range(5):  # r1..r5 point at pages 0, 4, 8, 12, 16
        g.v.regs[1 + r] = pages[4 * r]

    def load(i: int) -> int:
        return I("ld", rd=8, rs1=1 + i // 4, imm=pages[i] - pages[4 * (i // 4)])

    g.code(*[load(i) for i in range(17)], I("vmcall", imm=1))
    g.run(100)  # nested TLB fills: CODE's page, then the 17 pages: it holds pages[1:]
    g.code(load(2), load(0), I("vmcall", imm=2), at=CODE + 0x800)
    g.set(GUEST_PC=CODE + 0x800)
    before = g.counters()
    g.run(100)
    d = delta(before, g.counters(), "ntlb_hits", "ntlb_misses")
    # CODE's page was evicted (a miss, which evicts pages[1]); pages[2] is held (a hit);
    # pages[0] was evicted by pages[16] (a miss)
    assert d == {"ntlb_hits": 1, "ntlb_misses": 2}
