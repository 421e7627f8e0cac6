"""Shadow paging (reference_vmm.shadow): hidden and true faults, A/D emulation, traced writes, CR3 switches, invlpg."""

from __future__ import annotations

import pytest

from cffi_core import spec
from cffi_core.machine import Machine
from cffi_core.pagetables import PAGE_2M, PageAllocator, PageTables
from cffi_core.spec.state import PTE_FRAME
from reference_vmm.shadow import MAX_ROOTS, GuestMemory, Resolution, ShadowPager, Space

MiB = 1 << 20
GUEST_BASE = 2 * MiB  # guest-physical 0 is host-physical 2 MiB
GUEST_SIZE = 4 * MiB
POOL = (8 * MiB, 8 * MiB + 64 * 4096)
RESERVED = 0xFFFF_FFFF_FFFF_F000
IDT_FRAME = 12 * MiB
TABLES = 0x10000  # guest-physical page-table area (48 pages)
DATA = 0x40000  # guest frames the tests map
VA = 0x4000_0000  # a guest-virtual page, 1 GiB up
FRAME = PTE_FRAME
READ, WRITE, FETCH = spec.ACCESS_READ, spec.ACCESS_WRITE, spec.ACCESS_FETCH


class Guest:
    """A guest's RAM in a host Machine, its virtual CPU with paging on, and a pager for it."""

    def __init__(self, *, space: Space = Space.SHARED, pool: tuple[int, int] = POOL) -> None:
        self.host = Machine("x86-2005", 16 * MiB)
        self.mem = GuestMemory(self.host, GUEST_BASE, GUEST_SIZE)
        self.alloc = PageAllocator(TABLES, DATA)
        self.tables = PageTables(lambda a, v: self.mem.write(a, 8, v), self.alloc)
        self.cpu = spec.State.reset(features=frozenset({"seglimit"}))
        self.cpu.cr0 = spec.CR0_PE | spec.CR0_PG
        self.cpu.cr3 = self.tables.root
        self.pager = ShadowPager(self.host, self.mem, pool, reserved={RESERVED: IDT_FRAME})
        self.space = space
        self.pager.root(self.cpu, space)

    def pte(self, va: int) -> tuple[int, int]:
        """(guest-physical address, value) of the guest's leaf entry for ``va``."""
        addr = spec.walk(self.cpu, self.mem, va, READ, 0).entry_addr[-1]
        return addr, self.mem.read(addr, 8)

    def fault(self, va: int, access: int = READ, cpl: int = 0) -> Resolution:
        self.cpu.cpl = cpl
        self.pager.root(self.cpu, self.space)
        return self.pager.fault(self.cpu, va, access)


def test_a_mapped_page_is_a_hidden_fault_and_an_unmapped_one_a_true_fault():
    g = Guest()
    g.tables.map(VA, DATA, 4096, spec.PTE_W)
    assert g.fault(VA + 8) is Resolution.HIDDEN
    leaf = g.pager.lookup(VA)
    assert leaf & FRAME == GUEST_BASE + DATA  # guest-physical DATA lives at host base + DATA
    assert leaf & spec.PTE_P and not leaf & spec.PTE_U  # a supervisor page stays supervisor
    assert g.fault(VA + 4096) is Resolution.TRUE  # not mapped by the guest: the guest's #PF
    assert g.pager.lookup(VA + 4096) == 0
    assert g.pager.counters["hidden_page_faults"] == 1
    assert g.pager.counters["true_page_faults"] == 1


def test_a_user_access_to_a_supervisor_page_is_the_guests_fault():
    g = Guest()
    g.tables.map(VA, DATA, 4096, spec.PTE_W)
    assert g.fault(VA, READ, cpl=3) is Resolution.TRUE
    g.tables.map(VA + 4096, DATA + 4096, 4096, spec.PTE_W | spec.PTE_U)
    assert g.fault(VA + 4096, READ, cpl=3) is Resolution.HIDDEN
    assert g.pager.lookup(VA + 4096) & spec.PTE_U


def test_accessed_is_set_when_the_shadow_entry_is_made_and_dirty_on_the_first_write():
    g = Guest()
    g.tables.map(VA, DATA, 4096, spec.PTE_W)
    _, before = g.pte(VA)
    assert not before & (spec.PTE_A | spec.PTE_D)
    assert g.fault(VA, READ) is Resolution.HIDDEN
    _, after_read = g.pte(VA)
    assert after_read & spec.PTE_A and not after_read & spec.PTE_D
    # The guest page is writable, but clean: the shadow is read-only until the first write.
    assert not g.pager.lookup(VA) & spec.PTE_W
    assert g.fault(VA, WRITE) is Resolution.HIDDEN
    _, after_write = g.pte(VA)
    assert after_write & spec.PTE_D
    assert g.pager.lookup(VA) & spec.PTE_W
    # Every entry of the walk got A, as the walker sets it (docs/architecture.md §7.5).
    walk = spec.walk(g.cpu, g.mem, VA, READ, 0)
    assert all(e & spec.PTE_A for e in walk.entry)


def test_a_refused_access_sets_no_accessed_bit():
    g = Guest()
    g.tables.map(VA, DATA, 4096, 0)  # read-only
    g.cpu.cr0 |= spec.CR0_WP
    assert g.fault(VA, WRITE) is Resolution.TRUE
    _, value = g.pte(VA)
    assert not value & spec.PTE_A


def test_writing_a_traced_page_table_drops_the_shadow_entries_made_from_it():
    g = Guest()
    g.tables.map(VA, DATA, 4096, spec.PTE_W)
    g.fault(VA, WRITE)
    assert g.pager.lookup(VA)
    addr, value = g.pte(VA)
    assert addr >> 12 in g.mem.watched  # the guest's page table is traced
    g.pager.needs_flush = False
    g.mem.write(addr, 8, (value & ~FRAME) | (DATA + 0x3000))  # the guest remaps the page
    assert g.pager.lookup(VA) == 0
    assert g.pager.needs_flush  # the host TLB may still hold the old translation
    assert g.pager.counters["traced_writes"] == 1
    assert g.fault(VA, READ) is Resolution.HIDDEN
    assert g.pager.lookup(VA) & FRAME == GUEST_BASE + DATA + 0x3000


def test_setting_only_accessed_or_dirty_in_a_traced_entry_keeps_the_shadow():
    g = Guest()
    g.tables.map(VA, DATA, 4096, spec.PTE_W)
    g.fault(VA, READ)
    addr, value = g.pte(VA)
    g.mem.write(addr, 8, value | spec.PTE_D)
    assert g.pager.lookup(VA)
    g.mem.write(addr, 8, value & ~spec.PTE_A)  # clearing A is a change: the next access sets it again
    assert g.pager.lookup(VA) == 0


def test_a_write_to_a_traced_page_through_a_mapping_is_emulated():
    g = Guest()
    g.tables.map(VA, DATA, 4096, spec.PTE_W)
    g.fault(VA, READ)  # traces the guest's tables
    leaf_table = g.pte(VA)[0] & ~0xFFF
    g.tables.map(VA + 4096, leaf_table, 4096, spec.PTE_W)  # the guest maps its own page table
    assert g.fault(VA + 4096, READ) is Resolution.HIDDEN
    assert not g.pager.lookup(VA + 4096) & spec.PTE_W
    assert g.fault(VA + 4096, WRITE) is Resolution.EMULATE
    assert g.pager.counters["emulated_page_faults"] == 1


def test_a_page_that_becomes_a_page_table_loses_its_writable_shadow():
    g = Guest()
    g.tables.map(VA, DATA, 4096, spec.PTE_W)  # an ordinary data page, written
    assert g.fault(VA, WRITE) is Resolution.HIDDEN
    assert g.pager.lookup(VA) & spec.PTE_W
    g.pager.needs_flush = False
    # Now the guest uses DATA as a page table of another address space and that one is walked.
    roots = iter([DATA])  # DATA is the new address space's top-level table
    other = PageTables(lambda a, v: g.mem.write(a, 8, v), lambda: next(roots, None) or g.alloc())
    other.map(VA, DATA + 0x5000, 4096, spec.PTE_W)
    g.cpu.cr3 = other.root
    assert g.fault(VA, READ) is Resolution.HIDDEN
    g.cpu.cr3 = g.tables.root
    g.pager.root(g.cpu, g.space)
    assert not g.pager.lookup(VA) & spec.PTE_W
    assert g.pager.needs_flush


def test_cr3_switches_select_cached_roots():
    g = Guest()
    g.tables.map(VA, DATA, 4096, spec.PTE_W)
    other = PageTables(lambda a, v: g.mem.write(a, 8, v), g.alloc)
    other.map(VA, DATA + 0x2000, 4096, spec.PTE_W)
    first = g.pager.root(g.cpu, Space.SHARED)
    g.fault(VA)
    g.cpu.cr3 = other.root
    second = g.pager.root(g.cpu, Space.SHARED)
    assert second != first
    assert g.pager.lookup(VA) == 0  # a fresh shadow for the new address space
    g.fault(VA)
    assert g.pager.lookup(VA) & FRAME == GUEST_BASE + DATA + 0x2000
    g.cpu.cr3 = g.tables.root
    assert g.pager.root(g.cpu, Space.SHARED) == first  # back: the cached root, entries kept
    assert g.pager.lookup(VA) & FRAME == GUEST_BASE + DATA
    assert g.pager.counters["shadow_roots"] == 2


def test_changing_cr0_wp_or_paging_drops_every_shadow():
    g = Guest()
    g.tables.map(VA, DATA, 4096, spec.PTE_W)
    g.fault(VA)
    g.cpu.cr0 |= spec.CR0_WP
    g.pager.root(g.cpu, Space.SHARED)
    assert g.pager.lookup(VA) == 0
    assert g.pager.counters["shadow_flushes"] >= 1
    assert not g.mem.watched


def test_invlpg_drops_the_page_from_the_current_shadow():
    g = Guest()
    g.tables.map(VA, DATA, 2 * 4096, spec.PTE_W)
    g.fault(VA)
    g.fault(VA + 4096)
    g.pager.invlpg(VA + 12)
    assert g.pager.lookup(VA) == 0
    assert g.pager.lookup(VA + 4096) != 0
    assert g.pager.counters["shadow_invlpgs"] == 1


def test_large_guest_pages_are_shadowed_by_4k_pieces():
    g = Guest()
    g.tables.map(0x20_0000, 0x20_0000, PAGE_2M, spec.PTE_W, page=PAGE_2M)
    g.fault(0x20_3000, WRITE)
    leaf = g.pager.lookup(0x20_3000)
    assert leaf & FRAME == GUEST_BASE + 0x20_3000 and not leaf & spec.PTE_PS
    assert g.pager.lookup(0x20_4000) == 0
    _, pde = g.pte(0x20_3000)
    assert pde & spec.PTE_D and pde & spec.PTE_PS  # D lives in the large page's entry


def test_paging_off_is_an_identity_map_of_guest_physical_memory():
    g = Guest()
    g.cpu.cr0 = spec.CR0_PE
    g.pager.root(g.cpu, Space.SHARED)
    assert g.pager.real_cr4_pl == 2  # 4 levels
    assert g.fault(0x5000, WRITE, cpl=3) is Resolution.HIDDEN
    leaf = g.pager.lookup(0x5000)
    assert leaf & FRAME == GUEST_BASE + 0x5000 and leaf & spec.PTE_W and leaf & spec.PTE_U
    assert g.fault(GUEST_SIZE + 0x1000) is Resolution.TRUE  # beyond guest RAM: the guest's #MC


def test_ring_compression_gives_the_guest_kernel_and_user_separate_shadows():
    g = Guest(space=Space.KERNEL)
    g.tables.map(VA, DATA, 4096, spec.PTE_W)  # supervisor
    assert g.fault(VA, READ, cpl=0) is Resolution.HIDDEN
    assert g.pager.lookup(VA) & spec.PTE_U  # reachable from real ring 3 in the kernel's shadow
    g.space = Space.USER
    assert g.fault(VA, READ, cpl=3) is Resolution.TRUE
    assert g.pager.lookup(VA) == 0  # and absent from the user's


def test_with_wp_clear_the_kernel_shadow_may_write_read_only_pages():
    g = Guest(space=Space.KERNEL)
    g.tables.map(VA, DATA, 4096, 0)
    assert g.fault(VA, WRITE, cpl=0) is Resolution.HIDDEN
    assert g.pager.lookup(VA) & spec.PTE_W
    shared = Guest()  # one shadow for both rings: such a write cannot be given to ring 3 too
    shared.tables.map(VA, DATA, 4096, 0)
    assert shared.fault(VA, WRITE, cpl=0) is Resolution.EMULATE


def test_the_reserved_range_is_in_every_shadow_and_out_of_the_guests_reach():
    g = Guest()
    leaf = g.pager.lookup(RESERVED)
    assert leaf & FRAME == IDT_FRAME
    assert leaf & spec.PTE_NX and not leaf & (spec.PTE_W | spec.PTE_U)
    g.tables.map(RESERVED, DATA, 4096, spec.PTE_W | spec.PTE_U)  # the guest maps its own page there
    assert g.fault(RESERVED + 16, READ, cpl=3) is Resolution.EMULATE
    assert g.pager.lookup(RESERVED) & FRAME == IDT_FRAME
    # A guest change of the table above the reserved page drops the subtree but not the IDT.
    g.fault(RESERVED - 4096)
    top = g.pte(RESERVED)[0]
    pml4 = spec.walk(g.cpu, g.mem, RESERVED, READ, 0).entry_addr[0]
    assert top != pml4
    g.mem.write(pml4, 8, g.mem.read(pml4, 8) | 1 << 9)  # an ignored bit: still a change
    assert g.pager.lookup(RESERVED - 4096) == 0
    assert g.pager.lookup(RESERVED) & FRAME == IDT_FRAME


def test_an_exhausted_pool_is_recycled():
    small = (POOL[0], POOL[0] + 16 * 4096)
    g = Guest(pool=small)
    pages = [VA + i * PAGE_2M for i in range(24)]  # each needs a shadow table of its own
    for va in pages:
        g.tables.map(va, DATA, 4096, spec.PTE_W)
    assert {g.fault(va) for va in pages} == {Resolution.HIDDEN}
    assert g.pager.counters["shadow_flushes"] >= 1
    # Never beyond the pool: host RAM outside the guest's region and the pool is untouched.
    outside = bytes(g.host.memory[:GUEST_BASE]) + bytes(g.host.memory[GUEST_BASE + GUEST_SIZE : small[0]])
    assert outside + bytes(g.host.memory[small[1] :]) == bytes(len(outside) + g.host.memory_size - small[1])
    g.pager.root(g.cpu, g.space)
    assert g.fault(pages[0]) is Resolution.HIDDEN  # rebuilt after the recycling
    assert g.pager.lookup(pages[0]) & FRAME == GUEST_BASE + DATA


def test_the_pool_must_not_overlap_the_guest():
    host = Machine("x86-2005", 16 * MiB)
    mem = GuestMemory(host, GUEST_BASE, GUEST_SIZE)
    with pytest.raises(ValueError, match="overlaps the guest"):
        ShadowPager(host, mem, (GUEST_BASE, GUEST_BASE + 16 * 4096))
    with pytest.raises(ValueError, match="outside host RAM"):
        GuestMemory(host, 15 * MiB, 2 * MiB)


@pytest.mark.parametrize("levels", [2, 3, 4])
@pytest.mark.parametrize("va", [0x7FFF_FFFF_FFFF_FFFF, 0x0000_FFFF_FFFF_F000, RESERVED + 8, 0x3FFF_F000])
def test_invlpg_never_drops_the_reserved_page_whatever_the_untranslated_bits(levels, va):
    # invlpg never faults on its address (docs/architecture.md §3): a non-canonical one whose
    # translated bits name the reserved page's slot drops the guest's (non-existent) entry only.
    g = Guest()
    g.cpu.cr4 = (g.cpu.cr4 & ~spec.CR4_PL) | (levels - 2)
    g.pager.root(g.cpu, g.space)
    flushes = g.pager.counters["shadow_invalidations"]
    g.pager.invlpg(va)
    assert g.pager.lookup(RESERVED) & FRAME == IDT_FRAME
    assert g.pager.counters["shadow_invalidations"] == flushes


def test_every_root_maps_the_reserved_page_after_recycling_and_cr3_switches():
    small = (POOL[0], POOL[0] + 16 * 4096)
    g = Guest(pool=small)
    pages = [VA + i * PAGE_2M for i in range(24)]
    for va in pages:
        g.tables.map(va, DATA, 4096, spec.PTE_W)
    for va in pages:
        g.fault(va)  # recycles the pool on the way (test_an_exhausted_pool_is_recycled)
        g.pager.root(g.cpu, g.space)  # what the caller does before it runs the guest again
        assert g.pager.lookup(RESERVED) & FRAME == IDT_FRAME
    for i in range(MAX_ROOTS + 2):  # more address spaces than the root cache holds
        g.cpu.cr3 = TABLES + 4096 * (i % 40)
        g.pager.root(g.cpu, g.space)
        assert g.pager.lookup(RESERVED) & FRAME == IDT_FRAME
