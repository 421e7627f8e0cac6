"""DMA remapping on the core (docs/vmx.md V.10): devices attached to domains of nested tables,
allowed DMA landing at the translated addresses, refused DMA transferring nothing and reported,
unattached devices, the errors of the API, and the disk failing a command its domain refuses."""

from __future__ import annotations

import pytest

from cffi_core._binding import VMXError
from cffi_core.asm import assemble
from cffi_core.devices import DMAError
from cffi_core.devices.disk import DISK_STATUS_DONE, DISK_STATUS_ERROR, SECTOR_SIZE
from cffi_core.machine import Machine
from cffi_core.pagetables import EPT_R, EPT_W, EPT_X, PAGE_2M, PAGE_4K, PTE_PS, PageAllocator, PageTables, ept_pointer
from cffi_core.platform import MachineDMA, Platform
from cffi_core.vmx import IommuFault

MEMORY = 4 << 20
TABLES = 0x100000  # host pages for the domains' tables
HOST = 0x200000  # host-physical pages the domains map to
FRAME = 0x000F_FFFF_FFFF_F000
DEVICE = 3
KEYS = ("iommu_translations", "iommu_faults")


def domain(m: Machine, levels: int = 4, tables: int = TABLES) -> PageTables:
    """Nested-format tables (V.6) for a domain, built in host memory at ``tables``."""
    return PageTables(m.write_u64, PageAllocator(tables, tables + 0x40000), levels=levels)


def set_leaf(m: Machine, d: PageTables, addr: int, value: int, level: int = 1) -> None:
    """Overwrite the entry of ``level`` that maps device address ``addr``."""
    table = d.root
    for lv in range(d.levels, level, -1):
        table = m.read_u64(table + 8 * ((addr >> (12 + 9 * (lv - 1))) & 511)) & FRAME
    m.write_u64(table + 8 * ((addr >> (12 + 9 * (level - 1))) & 511), value)


def counts(m: Machine) -> dict[str, int]:
    c = m.counters
    return {k: c[k] for k in KEYS}


def since(m: Machine, before: dict[str, int]) -> dict[str, int]:
    now = counts(m)
    return {k: now[k] - before[k] for k in KEYS}


def pattern(n: int, seed: int = 1) -> bytes:
    return bytes((seed * 31 + 7 * i) & 0xFF for i in range(n))


# Device DEVICE's domain (device address -> host-physical, permissions):
MAP = {
    0x10000: (HOST, EPT_R | EPT_W),
    0x11000: (HOST + 0x9000, EPT_R | EPT_W),  # the next device page, elsewhere in host memory
    0x20000: (HOST + 0x5000, EPT_R),  # read-only
    0x30000: (HOST + 0x7000, EPT_X),  # R = 0: not present (V.6)
    0x50000: (HOST + 0xB000, EPT_W),  # W without R: a misconfiguration (V.6)
}


def attached(levels: int = 4, profile: str = "vtx-2009+iommu") -> tuple[Machine, PageTables]:
    m = Machine(profile, memory=MEMORY)
    d = domain(m, levels)
    for addr, (host, perm) in MAP.items():
        d.map(addr, host, PAGE_4K)
        set_leaf(m, d, addr, host | perm)
    m.iommu_attach(DEVICE, ept_pointer(d.root, levels))
    return m, d


# ---- allowed DMA --------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [2, 3, 4])
def test_allowed_dma_lands_at_the_translated_host_addresses(levels):
    m, _ = attached(levels)
    m.write(HOST, pattern(0x1000))
    before = counts(m)
    assert m.dma_read(DEVICE, 0x10010, 64) == pattern(0x1000)[0x10:0x50]
    assert m.dma_write(DEVICE, 0x10100, b"written by the device") is True
    assert m.read(HOST + 0x100, 21) == b"written by the device"
    assert m.read(0x10100, 21) == bytes(21)  # not at the untranslated address
    assert m.dma_read(DEVICE, 0x20008, 8) == bytes(8)  # R suffices for a device read
    assert since(m, before) == {"iommu_translations": 3, "iommu_faults": 0}
    assert m.iommu_faults() == []


def test_a_multi_page_dma_is_translated_page_by_page():
    m, _ = attached()
    data = pattern(0x1000, seed=5)
    before = counts(m)
    assert m.dma_write(DEVICE, 0x10800, data)  # 0x10800..0x117ff: two device pages
    assert m.read(HOST + 0x800, 0x800) == data[:0x800]
    assert m.read(HOST + 0x9000, 0x800) == data[0x800:]
    assert m.dma_read(DEVICE, 0x10800, 0x1000) == data
    assert since(m, before) == {"iommu_translations": 4, "iommu_faults": 0}


def test_a_large_page_in_the_domain_maps_2_mib():
    m = Machine("vtx-2009+iommu", memory=MEMORY)
    d = domain(m)
    d.map(0x4000_0000, HOST, PAGE_2M, flags=EPT_W, page=PAGE_2M)
    set_leaf(m, d, 0x4000_0000, HOST | EPT_R | EPT_W | PTE_PS, level=2)
    m.iommu_attach(1, ept_pointer(d.root, 4))
    assert m.dma_write(1, 0x4000_0000 + 0x12340, b"large")
    assert m.read(HOST + 0x12340, 5) == b"large"


# ---- refused DMA (V.10: nothing transferred, reported, counted) -------------------------------

REFUSED = {
    # name: (device address, size, write, reason, the device address reported)
    "read outside the mapping": (0x40000, 8, False, "not mapped", 0x40000),
    "write outside the mapping": (0x40008, 8, True, "not mapped", 0x40008),
    "write to a read-only page": (0x20000, 8, True, "not permitted", 0x20000),
    "read without R (X only)": (0x30000, 8, False, "not mapped", 0x30000),
    "write without R (X only)": (0x30000, 8, True, "not mapped", 0x30000),
    "beyond the domain's width": (1 << 48, 8, False, "not mapped", 1 << 48),
    "read through W without R": (0x50000, 8, False, "misconfigured", 0x50000),
    "write through W without R": (0x50000, 8, True, "misconfigured", 0x50000),
    "write, last page bad": (0x11800, 0x1000, True, "not mapped", 0x12000),
    "read, first page bad": (0xF800, 0x1000, False, "not mapped", 0xF800),
    "write, first page bad, second read-only": (0x1F800, 0x1000, True, "not mapped", 0x1F800),
    "write of 16 pages, the second bad": (0x11000, 0x10000, True, "not mapped", 0x12000),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_refused_dma_transfers_nothing_and_is_reported(case):
    addr, size, write, reason, reported = REFUSED[case]
    m, _ = attached()
    m.write(HOST, pattern(0x10000, seed=2))
    memory = m.read(0, MEMORY)
    before = counts(m)
    if write:
        assert m.dma_write(DEVICE, addr, b"\xee" * size) is False
    else:
        assert m.dma_read(DEVICE, addr, size) is None
    assert m.read(0, MEMORY) == memory
    assert m.iommu_faults() == [IommuFault(DEVICE, write, reported, reason)]
    assert since(m, before) == {"iommu_translations": 0, "iommu_faults": 1}
    assert m.iommu_faults() == []  # taken


def test_a_write_spanning_a_writable_and_a_read_only_page_is_refused_whole():
    m = Machine("vtx-2009+iommu", memory=MEMORY)
    d = domain(m)
    d.map(0x10000, HOST, PAGE_4K, flags=EPT_W)
    d.map(0x11000, HOST + 0x1000, PAGE_4K, flags=0)
    m.iommu_attach(0, ept_pointer(d.root, 4))
    assert m.dma_write(0, 0x10F00, b"\x55" * 0x200) is False
    assert m.read(HOST + 0xF00, 0x100) == bytes(0x100)  # the writable page is untouched too
    assert m.iommu_faults() == [IommuFault(0, True, 0x11000, "not permitted")]


def test_the_fault_log_keeps_the_newest_and_the_counter_counts_all():
    m, _ = attached()
    for i in range(70):
        m.dma_read(DEVICE, 0x40000 + 8 * i, 8)
    faults = m.iommu_faults()
    assert [f.address for f in faults] == [0x40000 + 8 * i for i in range(6, 70)]
    assert m.counters["iommu_faults"] == 70


def test_devices_are_translated_by_their_own_domains():
    m, _ = attached()
    other = domain(m, tables=TABLES + 0x40000)
    other.map(0x10000, HOST + 0x20000, PAGE_4K, flags=EPT_W)
    m.iommu_attach(7, ept_pointer(other.root, 4))
    assert m.dma_write(DEVICE, 0x10000, b"three")
    assert m.dma_write(7, 0x10000, b"seven")
    assert (m.read(HOST, 5), m.read(HOST + 0x20000, 5)) == (b"three", b"seven")
    assert m.dma_read(7, 0x20000, 8) is None  # device 3's read-only page is not in device 7's domain
    assert m.iommu_faults() == [IommuFault(7, False, 0x20000, "not mapped")]


# ---- unattached devices -------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["vtx-2009+iommu", "vtx-2009", "x86-2005"])
def test_an_unattached_device_accesses_physical_memory_directly(profile):
    m = Machine(profile, memory=MEMORY)
    before = counts(m)
    assert m.dma_write(5, 0x40000, b"direct")
    assert m.read(0x40000, 6) == b"direct"
    assert m.dma_read(5, 0x40000, 6) == b"direct"
    assert since(m, before) == {"iommu_translations": 0, "iommu_faults": 0}


def test_a_detached_device_is_direct_again():
    m, _ = attached()
    m.iommu_detach(DEVICE)
    assert m.dma_write(DEVICE, 0x40000, b"direct")
    assert m.read(0x40000, 6) == b"direct"
    assert m.iommu_faults() == []


# ---- errors of the API (VMXError naming the problem) ---------------------------------------------

ERRORS = {
    "device id 16": (lambda m, root: m.iommu_attach(16, root), "device 16"),
    "root reserved bit 52": (lambda m, root: m.iommu_attach(0, root | 1 << 52), "reserved"),
    "root reserved bit 5": (lambda m, root: m.iommu_attach(0, root | 1 << 5), "reserved"),
    "root levels - 2 = 3": (lambda m, root: m.iommu_attach(0, root | 3), "levels"),
    "root beyond RAM": (lambda m, root: m.iommu_attach(0, MEMORY), "beyond RAM"),
    "detach device 16": (lambda m, root: m.iommu_detach(16), "device 16"),
    "dma by device 16": (lambda m, root: m.dma_read(16, 0, 8), "device 16"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_bad_device_ids_and_roots_raise_naming_the_problem(case):
    call, words = ERRORS[case]
    m = Machine("vtx-2009+iommu", memory=MEMORY)
    root = ept_pointer(domain(m).root, 4)
    with pytest.raises(VMXError, match=words):
        call(m, root)


@pytest.mark.parametrize("profile", ["vtx-2009", "vtx-2006", "x86-2005"])
@pytest.mark.parametrize("call", ["attach", "detach"])
def test_a_profile_without_iommu_refuses_attach_and_detach(profile, call):
    m = Machine(profile, memory=MEMORY)
    with pytest.raises(VMXError, match="iommu"):
        m.iommu_attach(0, ept_pointer(TABLES, 4)) if call == "attach" else m.iommu_detach(0)


# ---- the disk through the platform (V.10: "the disk ends the command with status error") ---------

DISK_COMMAND = """
.org 0x1000
_start: li r1, 0
        out 0x1f0, r1               ; sector 0
        li r1, 1
        out 0x1f1, r1               ; one sector
        li r1, 0x4000
        out 0x1f2, r1               ; the buffer, a device address
        li r1, {command}
        out 0x1f3, r1               ; 1 read (disk -> memory), 2 write (memory -> disk)
        li r3, 1
poll:   in r2, 0x1f3
        beq r2, r3, poll            ; busy
        out 0x500, r2               ; exit with the status
"""
SECTOR = pattern(SECTOR_SIZE, seed=9)
BUFFER = pattern(SECTOR_SIZE, seed=4)  # at host 0x4000
ELSEWHERE = pattern(SECTOR_SIZE, seed=6)  # at host 0x8000


def disk_platform(command: int, mapping: dict[int, tuple[int, int]] | None) -> Platform:
    """A native run of one disk command; with ``mapping`` (device page -> host page, R/W/X) the
    disk's DMA (device 0) goes through a domain of those pages."""
    p = Platform("vtx-2009+iommu", memory=MEMORY, disk=SECTOR * 2)
    m = p.machine
    m.write(0x4000, BUFFER)
    m.write(0x8000, ELSEWHERE)
    if mapping is not None:
        d = domain(m)
        for addr, (host, perm) in mapping.items():
            d.map(addr, host, PAGE_4K)
            set_leaf(m, d, addr, host | perm)
        m.iommu_attach(0, ept_pointer(d.root, 4))
    p.load(assemble(DISK_COMMAND.format(command=command)))
    return p


READ, WRITE = 1, 2
DISK_CASES = {
    # name: (command, domain of device 0 or None, status, fault (write, reason) or None)
    "read, unattached": (READ, None, DISK_STATUS_DONE, None),
    "read, buffer mapped elsewhere": (READ, {0x4000: (0x8000, EPT_R | EPT_W)}, DISK_STATUS_DONE, None),
    "read, buffer not mapped": (READ, {0x5000: (0x8000, EPT_R | EPT_W)}, DISK_STATUS_ERROR, (True, "not mapped")),
    "read, buffer read-only": (READ, {0x4000: (0x8000, EPT_R)}, DISK_STATUS_ERROR, (True, "not permitted")),
    "write, buffer mapped elsewhere": (WRITE, {0x4000: (0x8000, EPT_R)}, DISK_STATUS_DONE, None),
    "write, buffer not mapped": (WRITE, {0x5000: (0x8000, EPT_R)}, DISK_STATUS_ERROR, (False, "not mapped")),
    "write, buffer X only": (WRITE, {0x4000: (0x8000, EPT_X)}, DISK_STATUS_ERROR, (False, "not mapped")),
}


@pytest.mark.parametrize("case", DISK_CASES)
def test_the_disk_dma_goes_through_its_domain(case):
    command, mapping, status, fault = DISK_CASES[case]
    p = disk_platform(command, mapping)
    m = p.machine
    r = p.run(100_000)
    assert (r.stop, r.exit_code) == ("exit", status)
    host = 0x4000 if mapping is None else 0x8000  # where the buffer is in host memory
    if command == READ:
        expect = {0x4000: BUFFER, 0x8000: ELSEWHERE} | ({host: SECTOR} if status == DISK_STATUS_DONE else {})
        assert {a: m.read(a, SECTOR_SIZE) for a in (0x4000, 0x8000)} == expect
        assert r.disk == SECTOR * 2
    else:
        written = {0x4000: BUFFER, 0x8000: ELSEWHERE}[host]
        assert r.disk == (written if status == DISK_STATUS_DONE else SECTOR) + SECTOR
    assert m.iommu_faults() == ([] if fault is None else [IommuFault(0, fault[0], 0x4000, fault[1])])
    if fault is not None:
        assert "refused by the IOMMU (device 0)" in p.devices.disk.error


def test_machine_dma_names_its_device_and_refuses_bad_ids():
    m = Machine("vtx-2009+iommu", memory=MEMORY)
    d = domain(m)
    d.map(0x10000, HOST, PAGE_4K, flags=0)
    m.iommu_attach(2, ept_pointer(d.root, 4))
    dma = MachineDMA(m, device=2)
    assert dma.read(0x10000, 4) == bytes(4)
    with pytest.raises(DMAError, match=r"DMA write of 4 bytes at 0x10000: refused by the IOMMU \(device 2\)"):
        dma.write(0x10000, b"nope")
    with pytest.raises(DMAError, match="refused by the IOMMU"):
        dma.read(0x90000, 4)
    assert MachineDMA(m).read(0x10000, 4) == bytes(4)  # device 0: unattached, direct
    with pytest.raises(ValueError, match="device = 16"):
        MachineDMA(m, device=16)
