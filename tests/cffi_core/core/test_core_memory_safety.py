"""Memory safety of the core's host calls: a DMA that rewrites its own translation (docs/vmx.md
V.10), snapshots whose cached translations are forged (architecture.md §10), and the clock at
2^64 - 1 (§9).  Each was a read or write outside the core's buffers, or a silent wrap."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from core_rig import BUDGET, Core, I

from cffi_core._binding import RangeError, SnapshotError, check, lib
from cffi_core.machine import ExitReason, Machine, MachineSnapshot
from cffi_core.pagetables import EPT_R, EPT_W, EPT_X, PAGE_4K, PTE_U, PTE_W, PageAllocator, PageTables, ept_pointer
from cffi_core.vmx import IommuFault, ProcControl, VmcsField, VmExitReason

MEMORY = 1 << 20
TABLES = 0x80000  # host pages for page tables and domains
HOST = 0x40000  # host pages a domain maps to
CODE, DATA = 0x1000, 0x20000
DEVICE = 2
FRAME = 0x000F_FFFF_FFFF_F000
U64 = (1 << 64) - 1


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


def _state_part(m: Machine, snap: MachineSnapshot) -> bytes:
    """The snapshot without its copy of RAM (the last ``memory_size`` bytes)."""
    return snap.data[: len(snap.data) - m.memory_size]


def _forge(snap: MachineSnapshot, offset: int, data: bytes) -> MachineSnapshot:
    forged = snap.data[:offset] + data + snap.data[offset + len(data) :]
    return dataclasses.replace(snap, data=forged)


def _find_once(haystack: bytes, needle: bytes) -> int:
    at = haystack.find(needle)
    assert at >= 0 and haystack.find(needle, at + 1) < 0, "the pattern must occur once in the snapshot's state"
    return at


def _refused_and_unchanged(m: Machine, forged: MachineSnapshot, names: str) -> None:
    before = m.snapshot()
    with pytest.raises(SnapshotError, match=names):
        m.restore(forged)
    assert m.snapshot() == before, "a refused restore changed the machine"


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


# ---- forged snapshots (architecture.md §10) ------------------------------------------------------


def _guest_with_nested_caches() -> tuple[Machine, int, int]:
    """A vtx-2009 guest (ept with the page-walk cache) that ran once: its nested TLB holds the
    code page.  Returns the machine, the EPT pointer and the host frame of the code page."""
    m = Machine("vtx-2009", memory=MEMORY)
    nested = _tables(m)
    nested.map(0, HOST, 0x20000, flags=EPT_W | EPT_X)  # guest-physical 0 at HOST
    eptp = ept_pointer(nested.root, 4)
    m.write(HOST + CODE, I("vmcall", imm=1).to_bytes(4, "little"))
    v = m.vmcs()
    v[VmcsField.PROC_CONTROLS] = ProcControl.ENABLE_EPT
    v[VmcsField.EPT_POINTER] = eptp
    v[VmcsField.GUEST_PC] = CODE
    assert m.vmrun(v, 10).number == VmExitReason.VMCALL
    return m, eptp, (HOST + CODE) >> 12


def test_a_snapshot_whose_nested_tlb_points_beyond_ram_is_refused():
    # The nested TLB's frame was taken as it came: the next 2-D walk read guest paging entries
    # through it, outside RAM.
    m, eptp, frame = _guest_with_nested_caches()
    snap = m.snapshot()
    entry = _find_once(_state_part(m, snap), struct.pack("<QQQI", CODE >> 12, frame, eptp, 1))
    forged = _forge(snap, entry + 8, struct.pack("<Q", 1 << 40))
    _refused_and_unchanged(m, forged, "nested TLB entry")
    m.restore(snap)  # the genuine one is taken


def test_a_snapshot_with_a_malformed_page_walk_cache_entry_is_refused():
    m, eptp, frame = _guest_with_nested_caches()
    snap = m.snapshot()
    ntlb = _find_once(_state_part(m, snap), struct.pack("<QQQI", CODE >> 12, frame, eptp, 1))
    # The page-walk cache (24 entries of key, tag, value, then valid, dim, level, perm) lies just
    # before the nested TLB (core.h, struct vmx_persist); find a valid upper-level entry in it.
    entries = [ntlb - 32 * (24 - i) for i in range(24)]
    valid = [e for e in entries if snap.data[e + 24] == 1 and snap.data[e + 25] <= 1 and 2 <= snap.data[e + 26] <= 4]
    assert valid, "the run filled the page-walk cache"
    _refused_and_unchanged(m, _forge(snap, valid[0] + 26, b"\x09"), "page-walk cache entry")


def test_a_snapshot_with_an_iommu_root_attach_would_refuse_is_refused():
    m = Machine("vtx-2009+iommu", memory=MEMORY)
    root = ept_pointer(0x37000, 3)
    m.iommu_attach(5, root)
    snap = m.snapshot()
    at = _find_once(_state_part(m, snap), struct.pack("<Q", root))
    _refused_and_unchanged(m, _forge(snap, at, struct.pack("<Q", root | 1 << 62)), "IOMMU root of device 5")
    _refused_and_unchanged(m, _forge(snap, at, struct.pack("<Q", MEMORY | 2)), "beyond RAM")


def test_a_refused_snapshot_leaves_the_tlb_as_it_was():
    # A corrupt TLB used to be found after it was copied in: the machine kept an emptied TLB.
    m = Machine("x86-64-2005", memory=MEMORY)
    tables = _tables(m)
    tables.map(0, 0, 0x40000, flags=PTE_W | PTE_U)
    m.write(CODE, b"".join(w.to_bytes(4, "little") for w in (I("ld", rd=1, rs1=2, imm=0), I("hcall", imm=1))))
    m.cpu.r[2] = DATA
    m.cpu.cr3, m.cpu.cr0, m.cpu.pc = tables.root, 1 | 1 << 15, CODE
    assert m.run(10).reason is ExitReason.HCALL
    snap = m.snapshot()
    vpn = DATA >> 12
    entry = _find_once(_state_part(m, snap), struct.pack("<QQ", vpn, vpn))  # the identity entry of DATA
    assert snap.data[entry + 28 : entry + 30] == b"\x01\x01", "valid, level 1 (core.h, struct tlb_entry)"
    _refused_and_unchanged(m, _forge(snap, entry + 29, b"\x07"), "TLB entry")


# ---- the clock at 2^64 - 1 (§9) ------------------------------------------------------------------


def test_advance_clock_past_2_64_is_refused_and_leaves_the_clock():
    # The core's own check, below the Python wrapper's: the clock used to wrap to 0.
    c = Core()
    check(lib.p64_advance_clock(c.m, 5), c.m)
    with pytest.raises(RangeError, match=r"ticks = 18446744073709551611: the clock \(5\) would pass"):
        check(lib.p64_advance_clock(c.m, U64 - 4), c.m)
    assert lib.p64_clock(c.m) == 5 and c.counters()["halted_ticks"] == 5
    check(lib.p64_advance_clock(c.m, U64 - 5), c.m)
    assert lib.p64_clock(c.m) == U64
    with pytest.raises(RangeError, match="ticks = 1: "):
        check(lib.p64_advance_clock(c.m, 1), c.m)
    assert lib.p64_clock(c.m) == U64


def test_a_run_ends_when_the_clock_reaches_2_64_minus_1():
    c = Core()
    c.code(I("jmp", imm=0))
    check(lib.p64_advance_clock(c.m, U64 - 10), c.m)
    assert c.run(100) == BUDGET
    assert lib.p64_clock(c.m) == U64 and c.counters()["ticks"] == 10
    assert c.run(100) == BUDGET and lib.p64_clock(c.m) == U64


def test_a_vmrun_ends_when_the_clock_reaches_2_64_minus_1():
    m = Machine("vtx-2006", memory=MEMORY)
    m.write(CODE, I("jmp", imm=0).to_bytes(4, "little"))
    v = m.vmcs()
    v[VmcsField.GUEST_PC] = CODE
    m.advance_clock(U64 - 10)
    assert m.vmrun(v, 100).reason is ExitReason.BUDGET
    assert m.clock == U64 and m.counters["ticks"] == 10
