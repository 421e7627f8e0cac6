"""Memory safety of the core's host calls: a DMA that rewrites its own translation (docs/vmx.md
V.10).  It was a write outside the core's buffers."""

from __future__ import annotations

import pytest

from cffi_core.machine import Machine
from cffi_core.pagetables import EPT_R, EPT_W, PAGE_4K, PageAllocator, PageTables, ept_pointer
from cffi_core.vmx import IommuFault

MEMORY = 1 << 20
TABLES = 0x80000  # host pages for page tables and domains
HOST = 0x40000  # host pages a domain maps to
DEVICE = 2
FRAME = 0x000F_FFFF_FFFF_F000


def _tables(m: Machine, levels: int = 4) -> PageTables:
    return PageTables(m.write_u64, PageAllocator(TABLES, TABLES + 0x20000), levels=levels)


def _table_of(m: Machine, d: PageTables, addr: int) -> int:
    """The host-physical address of the last-level table that maps ``addr``."""
    table = d.root
    for level in range(d.levels, 1, -1):
        table = m.read_u64(table + 8 * ((addr >> (12 + 9 * (level - 1))) & 511)) & FRAME
    return table


def _pattern(n: int) -> bytes:
    return bytes((7 * i + 3) & 0xFF for i in range(n))


# ---- DMA through a domain it rewrites (docs/vmx.md V.10) ---------------------------------------


@pytest.mark.parametrize("rewritten", ["beyond RAM", "read-only"])
def test_a_dma_that_rewrites_its_own_translation_moves_through_the_one_it_began_with(rewritten):
    # The DMA's first page is the domain's last-level table: its bytes rewrite the entry of the
    # DMA's second page.  The second page used to be walked again, unchecked: 4 KiB written past
    # the end of RAM, or into a page the domain maps read-only.
    m = Machine("vtx-2009+iommu", memory=MEMORY)
    d = _tables(m)
    d.map(0x11000, HOST + 0x9000, PAGE_4K, flags=EPT_W)
    table = _table_of(m, d, 0x11000)
    d.map(0x10000, table, PAGE_4K, flags=EPT_W)
    m.iommu_attach(DEVICE, ept_pointer(d.root, 4))
    new = MEMORY | EPT_R | EPT_W if rewritten == "beyond RAM" else HOST + 0xC000 | EPT_R
    first = bytearray(m.read(table, 4096))
    first[8 * 0x11 : 8 * 0x12] = new.to_bytes(8, "little")
    second = _pattern(4096)
    assert m.dma_write(DEVICE, 0x10000, bytes(first) + second)
    assert m.read(table, 4096) == first
    assert m.read(HOST + 0x9000, 4096) == second
    assert m.read(HOST + 0xC000, 4096) == bytes(4096)
    assert m.counters["iommu_translations"] == 2
    # the DMAs after it go through the rewritten entry
    assert not m.dma_write(DEVICE, 0x11000, b"late")
    reason = "misconfigured" if rewritten == "beyond RAM" else "not permitted"
    assert m.iommu_faults() == [IommuFault(DEVICE, True, 0x11000, reason)]


def test_a_dma_read_of_a_domain_spanning_pages_reads_each_translated_page():
    m = Machine("vtx-2009+iommu", memory=MEMORY)
    d = _tables(m)
    d.map(0x10000, HOST + 0x3000, PAGE_4K, flags=0)  # read-only: enough for a device read
    d.map(0x11000, HOST + 0x1000, PAGE_4K, flags=0)
    m.iommu_attach(DEVICE, ept_pointer(d.root, 4))
    m.write(HOST + 0x3000, _pattern(4096))
    m.write(HOST + 0x1000, bytes(reversed(_pattern(4096))))
    got = m.dma_read(DEVICE, 0x10FF8, 16)
    assert got == _pattern(4096)[-8:] + bytes(reversed(_pattern(4096)))[:8]
