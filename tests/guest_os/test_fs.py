"""p64os's disk driver and file system (kernel/disk.s, kernel/fs.s) against a Python model of the file system.

The driver and the file system are run natively on the platform in a small test harness:
it installs the disk's interrupt gate (vector 46, docs/devices.md §6), gives the kernel
primitives they call their simplest meaning (``sleep`` waits for the next interrupt with
``sti; hlt``, which is enough because every caller re-tests its condition; ``wakeup`` does
nothing; without paging ``copyin``/``copyout`` are copies), and interprets a table of file
system calls that the test writes into memory.  Every call's result, the bytes it read and
the disk image afterwards are compared with a model written from the rules of kernel/fs.s's
header and mkfs.py's format alone.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cffi_core.asm.assembler import assemble
from cffi_core.devices import DISK_CMD, DISK_CMD_READ, DISK_CMD_WRITE
from cffi_core.image import GuestImage
from cffi_core.platform import Platform, RunResult
from cffi_core.profiles import PROFILES
from conformance.guest_os import mkfs
from conformance.guest_os.mkfs import SECTOR_SIZE, make_fs, read_directory, read_fs

GUEST_OS = Path(__file__).parents[2] / "conformance" / "guest_os"
MEMORY = 16 << 20

O_RDONLY, O_WRONLY, O_RDWR, O_TRUNC = 0, 1, 2, 0x10  # the system call ABI (README)
OP_OPEN, OP_SIZE, OP_READ, OP_WRITE = 1, 2, 3, 4

# Harness memory (no paging: addresses are physical).  FS_AREA is boot.s's.
H_OPS = 0x300000  # the call table: 5 quadwords per call (kind, r1, r2, r3, r4), kind 0 ends
H_RESULTS = 0x340000  # r1 after each call
H_NAMES = 0x350000  # NUL-terminated names the open calls point to
H_USER = 0x400000  # the "user" buffers of reads and writes
H_USER_END = 0xC00000

_HARNESS = """
; Test harness of disk.s and fs.s: the primitives they call, the disk's gate, a call table.
.include "include/p64.s"
.include "include/abi.s"
.include "include/arch.s"
.equ FS_AREA, {fs_area:#x}
.equ H_IDT, 0x80000
.equ H_STACK, 0x100000
.equ H_OPS, {ops:#x}
.equ H_RESULTS, {results:#x}
.org 0x1000
h_start:
        li      sp, H_STACK
        li      r1, H_IDT
        arch_lidt r1
        li      r1, H_IDT + GATE_SIZE * VEC_DISK
        la      r2, h_disk
        sd      r2, [r1]
        li      r2, GATE_P
        sd      r2, [r1 + 8]
        call    disk_init
        call    fs_init
        li      r8, H_OPS
        li      r9, H_RESULTS
h_next:
        ld      r10, [r8]
        beqz    r10, h_end
        ld      r1, [r8 + 8]
        ld      r2, [r8 + 16]
        ld      r3, [r8 + 24]
        ld      r4, [r8 + 32]
        li      r11, 1
        beq     r10, r11, h_open
        li      r11, 2
        beq     r10, r11, h_size
        li      r11, 3
        beq     r10, r11, h_read
        call    fs_write
        jmp     h_store
h_open: call    fs_open
        jmp     h_store
h_size: call    fs_size
        jmp     h_store
h_read: call    fs_read
h_store:
        sd      r1, [r9]
        addi    r8, r8, 40
        addi    r9, r9, 8
        jmp     h_next
h_end:  li      r1, 0
        io_out  RESULT_EXIT, r1
        arch_halt

h_disk:                                ; vector 46: EOI first, then the driver (trap.s's order)
        push    r1
        push    r2
        push    r3
        push    r4
        push    r5
        push    r6
        push    r7
        li      r1, PIC_EOI
        io_out  PIC_CMD, r1
        call    disk_intr
        pop     r7
        pop     r6
        pop     r5
        pop     r4
        pop     r3
        pop     r2
        pop     r1
        arch_iret

sleep:                                 ; wait for an interrupt; every caller re-tests
        arch_idle
        ret
wakeup:
        ret
copyin:                                ; (kernel dst, user src, n) -> 0
copyout:                               ; (user dst, kernel src, n) -> 0
        call    kmemcpy
        li      r1, 0
        ret
.include "kernel/klib.s"
.include "kernel/disk.s"
.include "kernel/fs.s"
"""


def _boot_equ(name: str) -> int:
    text = (GUEST_OS / "kernel" / "boot.s").read_text()
    match = re.search(rf"^\.equ {name}, (\w+)", text, re.MULTILINE)
    assert match is not None, name
    return int(match.group(1), 0)


@cache
def _harness() -> GuestImage:
    source = _HARNESS.format(fs_area=_boot_equ("FS_AREA"), ops=H_OPS, results=H_RESULTS)
    return assemble(source, filename=str(GUEST_OS / "fs_harness.s"))


# ---- the model ---------------------------------------------------------------------------


@dataclass
class _ModelFile:
    name: str
    capacity: int  # sectors
    data: bytearray = field(default_factory=bytearray)


class _ModelFS:
    """The file system as kernel/fs.s's header states it, on the files mkfs puts on the disk."""

    def __init__(self, files: dict[str, bytes], capacity: dict[str, int], *, mounted: bool = True) -> None:
        self.files: list[_ModelFile] = []
        for name in sorted(set(files) | set(capacity)) if mounted else []:
            data = files.get(name, b"")
            room = capacity.get(name, max(1, -(-len(data) // SECTOR_SIZE)))
            self.files.append(_ModelFile(name, room, bytearray(data)))

    def open(self, name: bytes, flags: int) -> int:
        if flags & ~(3 | O_TRUNC) or flags & 3 == 3:
            return -1
        for i, f in enumerate(self.files):
            if f.name.encode() == name:
                if flags & O_TRUNC and flags & 3 != O_RDONLY:
                    f.data.clear()
                return i
        return -1

    def _file(self, index: int) -> _ModelFile | None:
        return self.files[index] if 0 <= index < len(self.files) else None

    def size(self, index: int) -> int:
        f = self._file(index)
        return -1 if f is None else len(f.data)

    def read(self, index: int, offset: int, n: int) -> tuple[int, bytes]:
        f = self._file(index)
        if f is None:
            return -1, b""
        chunk = bytes(f.data[offset : offset + n]) if offset < len(f.data) else b""
        return len(chunk), chunk

    def write(self, index: int, offset: int, data: bytes) -> int:
        f = self._file(index)
        if f is None:
            return -1
        room = f.capacity * SECTOR_SIZE - offset
        if room <= 0 or not data:
            return 0
        data = data[:room]
        if offset > len(f.data):
            f.data.extend(bytes(offset - len(f.data)))  # a gap reads as zeros
        f.data[offset : offset + len(data)] = data
        return len(data)

    def image_files(self) -> dict[str, bytes]:
        return {f.name: bytes(f.data) for f in self.files}


# ---- running a call table ----------------------------------------------------------------


@dataclass
class _Call:
    kind: int
    args: tuple[int, int, int, int]
    data: bytes = b""  # a write's bytes (at args[2]); an open's name (at args[0])


def _to_u64(v: int) -> int:
    return v & ((1 << 64) - 1)


def _s64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


def _count_commands(platform: Platform) -> list[int]:
    """Count the commands the guest gives the disk (DISK_CMD writes of READ or WRITE) in the
    returned one-element list."""
    disk = platform.devices.disk
    count = [0]
    if disk is None:
        return count
    write = disk.write

    def counting_write(port: int, value: int) -> None:
        if port == DISK_CMD and value in (DISK_CMD_READ, DISK_CMD_WRITE):
            count[0] += 1
        write(port, value)

    disk.write = counting_write
    return count


def _run(disk: bytes | None, calls: list[_Call]) -> tuple[list[int], Platform, RunResult, int]:
    """Run the calls in the harness; returns r1 of each (signed), the platform, the run and
    the number of disk commands (boot's read included)."""
    platform = Platform("x86-2005", MEMORY, disk=disk)
    commands = _count_commands(platform)
    platform.load(_harness())
    m = platform.machine
    table = bytearray()
    for call in calls:
        if call.kind == OP_OPEN:
            m.write(call.args[0], call.data + b"\0")
        elif call.kind == OP_WRITE:
            m.write(call.args[2], call.data)
        table += struct.pack("<5Q", call.kind, *(_to_u64(a) for a in call.args))
    table += bytes(40)
    m.write(H_OPS, bytes(table))
    result = platform.run(200_000_000)
    assert (result.stop, result.exit_code) == ("exit", 0), result.console
    # one command at a time: the disk never saw a command while busy (devices.md §6 "Busy")
    assert platform.devices.disk is None or platform.devices.disk.ignored_commands == 0
    results = [_s64(int.from_bytes(m.read(H_RESULTS + 8 * i, 8), "little")) for i in range(len(calls))]
    return results, platform, result, commands[0]


class _Script:
    """Builds a call table and the model's expectations side by side."""

    def __init__(self, model: _ModelFS) -> None:
        self.model = model
        self.calls: list[_Call] = []
        self.expected: list[int] = []
        self.reads: list[tuple[int, bytes]] = []  # (buffer, expected bytes)
        self._names = H_NAMES
        self._user = H_USER

    def _buffer(self, n: int) -> int:
        addr = self._user
        self._user += (n + 15) & ~7
        assert self._user <= H_USER_END
        return addr

    def open(self, name: bytes, flags: int) -> None:
        self.calls.append(_Call(OP_OPEN, (self._names, flags, 0, 0), name))
        self._names += len(name) + 1
        self.expected.append(self.model.open(name, flags))

    def size(self, index: int) -> None:
        self.calls.append(_Call(OP_SIZE, (index, 0, 0, 0)))
        self.expected.append(self.model.size(index))

    def read(self, index: int, offset: int, n: int) -> None:
        buf = self._buffer(min(n, 1 << 16))
        got, data = self.model.read(index, offset, n)
        self.calls.append(_Call(OP_READ, (index, offset, buf, n)))
        self.expected.append(got)
        self.reads.append((buf, data))

    def write(self, index: int, offset: int, data: bytes) -> None:
        buf = self._buffer(len(data))
        self.calls.append(_Call(OP_WRITE, (index, offset, buf, len(data)), data))
        self.expected.append(self.model.write(index, offset, data))

    def check(self, disk: bytes | None) -> bytes:
        """Run, compare every result and read buffer with the model; returns the final disk."""
        results, platform, run, _ = _run(disk, self.calls)
        assert results == self.expected
        for buf, data in self.reads:
            assert platform.machine.read(buf, len(data)) == data
        return run.disk


# ---- directed cases ----------------------------------------------------------------------


def _pattern(n: int, seed: int) -> bytes:
    return bytes((seed + 7 * i + (i >> 9)) & 0xFF for i in range(n))


FILES = {"hello.txt": b"hello, p64os\n", "big": _pattern(9000, 3), "one": _pattern(512, 9)}
CAPACITY = {"big": 20, "log": 3}


def test_layout_constants_match_mkfs():
    syms = _harness().symbols
    pairs = {
        "FS_MAGIC": mkfs.FS_MAGIC,
        "FS_VERSION": mkfs.FS_VERSION,
        "FS_SB_MAGIC": mkfs.SB_MAGIC,
        "FS_SB_VERSION": mkfs.SB_VERSION,
        "FS_SB_NFILES": mkfs.SB_NFILES,
        "FS_SB_TOTAL": mkfs.SB_TOTAL,
        "FS_SB_DIR_SECTORS": mkfs.SB_DIR_SECTORS,
        "FS_SB_DATA_START": mkfs.SB_DATA_START,
        "FS_DIR_SECTORS": mkfs.DIR_SECTORS,
        "FS_DATA_START": mkfs.DATA_START,
        "FS_ENTRY_SIZE": mkfs.ENTRY_SIZE,
        "FS_MAX_FILES": mkfs.MAX_FILES,
        "FS_DE_NAME": mkfs.DE_NAME,
        "FS_DE_START": mkfs.DE_START,
        "FS_DE_CAPACITY": mkfs.DE_CAPACITY,
        "FS_DE_SIZE": mkfs.DE_SIZE,
    }
    assert {k: syms[k] for k in pairs} == pairs
    assert 1 << syms["FS_ENTRY_SHIFT"] == mkfs.ENTRY_SIZE and 1 << syms["FS_SECTOR_SHIFT"] == SECTOR_SIZE
    # the file system's memory stays inside boot.s's FS_AREA
    assert syms["FS_VARS"] + 16 <= _boot_equ("FS_AREA_END")
    assert syms["FS_BOUNCE"] + syms["FS_BOUNCE_BYTES"] <= syms["FS_VARS"]
    assert syms["FS_META"] + mkfs.DATA_START * SECTOR_SIZE <= syms["FS_BOUNCE"]
    assert syms["DISK_VARS"] + syms["DV_SIZE"] <= syms["FS_META"]


def test_open_finds_every_file_by_its_directory_index():
    s = _Script(_ModelFS(FILES, CAPACITY))
    for name in [b"big", b"hello.txt", b"log", b"one", b"missing", b"hello.tx", b"hello.txt2", b"", b"x" * 40]:
        s.open(name, O_RDONLY)
    for i in range(-1, 6):
        s.size(i)
    assert s.expected[:4] == [0, 1, 2, 3]
    disk = s.check(make_fs(FILES, capacity=CAPACITY))
    assert disk == make_fs(FILES, capacity=CAPACITY)  # reading writes nothing


def test_open_refuses_bad_flags():
    s = _Script(_ModelFS(FILES, CAPACITY))
    for flags in [O_RDONLY, O_WRONLY, O_RDWR, 3, O_RDWR | O_TRUNC, 4, 0x20, 1 << 40, -1]:
        s.open(b"one", flags)
    assert s.expected.count(-1) == 5
    s.check(make_fs(FILES, capacity=CAPACITY))


def test_reads_of_every_alignment_and_length():
    s = _Script(_ModelFS(FILES, CAPACITY))
    big = 0
    for offset, n in [
        (0, 9000), (0, 100_000), (1, 511), (511, 2), (512, 512), (100, 4096), (100, 4097),
        (4000, 5000), (8999, 10), (9000, 1), (9001, 1), (1 << 62, 5), (0, 0), (7, 1 << 63),
    ]:  # fmt: skip
        s.read(big, offset, n)
    s.read(1, 0, 100)
    s.read(2, 0, 100)  # "log": empty
    s.read(7, 0, 10)  # no such file
    disk = s.check(make_fs(FILES, capacity=CAPACITY))
    assert read_fs(disk) == read_fs(make_fs(FILES, capacity=CAPACITY))


def test_writes_grow_the_file_within_its_capacity_and_reach_the_directory():
    s = _Script(_ModelFS(FILES, CAPACITY))
    s.open(b"log", O_WRONLY)
    s.write(2, 0, b"first line\n")
    s.write(2, 11, _pattern(700, 1))  # crosses a sector
    s.write(2, 5, b"XY")  # inside: read, modify, write
    s.write(2, 1000, _pattern(1000, 2))  # past the end: a zero gap, then cut at 1536
    s.write(2, 1536, b"full")  # at the capacity: 0
    s.write(2, 1 << 40, b"far")
    s.write(9, 0, b"none")  # no such file
    s.size(2)
    s.read(2, 0, 2000)
    s.write(0, 4096, _pattern(8192, 5))  # "big": whole sectors, two bounce buffers
    s.write(0, 0, b"")  # nothing
    s.size(0)
    assert s.expected[1:8] == [11, 700, 2, 536, 0, 0, -1]
    disk = s.check(make_fs(FILES, capacity=CAPACITY))
    assert read_fs(disk) == s.model.image_files()
    assert [e.capacity for e in read_directory(disk)] == [20, 1, 3, 1]


def test_trunc_empties_a_file_and_a_later_gap_shows_zeros_not_old_bytes():
    s = _Script(_ModelFS(FILES, CAPACITY))
    s.open(b"big", O_RDONLY | O_TRUNC)  # a reader truncates nothing
    s.size(0)
    s.open(b"big", O_RDWR | O_TRUNC)
    s.size(0)
    s.read(0, 0, 10)
    s.write(0, 3000, b"tail")  # [0, 3000) must read as zeros, not the old pattern
    s.read(0, 0, 3004)
    s.open(b"one", O_WRONLY | O_TRUNC)
    s.open(b"one", O_WRONLY | O_TRUNC)  # already empty
    assert s.expected[:4] == [0, 9000, 0, 0]
    disk = s.check(make_fs(FILES, capacity=CAPACITY))
    assert read_fs(disk) == s.model.image_files()
    assert read_fs(disk)["big"] == bytes(3000) + b"tail"


def test_appends_leave_zeros_in_the_extent_past_the_end():
    # Reading "big" first fills the bounce buffer with its bytes; the appends to "log" (an
    # extent of zeros) end inside sectors, and what follows the end must stay zeros.
    s = _Script(_ModelFS(FILES, CAPACITY))
    s.read(0, 0, 4096)
    s.write(2, 0, _pattern(300, 7))
    s.write(2, 300, _pattern(300, 8))
    s.read(0, 4096, 4096)
    s.write(2, 600, _pattern(123, 9))
    disk = s.check(make_fs(FILES, capacity=CAPACITY))
    log = next(e for e in read_directory(disk) if e.name == "log")
    extent = disk[log.start * SECTOR_SIZE : (log.start + log.capacity) * SECTOR_SIZE]
    assert extent == _pattern(300, 7) + _pattern(300, 8) + _pattern(123, 9) + bytes(1536 - 723)


def _disk_commands(calls: list[_Call], disk: bytes) -> int:
    """The disk commands the calls cost, boot's read included."""
    return _run(disk, calls)[3]


def test_an_append_costs_no_read_and_an_overwrite_inside_a_sector_one():
    image = make_fs(FILES, capacity=CAPACITY)
    nothing = _disk_commands([], image)
    # first chunk of "log": data, then the directory sector (its size grew)
    append = _disk_commands([_Call(OP_WRITE, (2, 0, H_USER, 300))], image)
    # inside "one" (512 bytes): read the sector, write it back; the size does not change
    inside = _disk_commands([_Call(OP_WRITE, (3, 10, H_USER, 20))], image)
    # a read of 4097 bytes from offset 0 of "big": two commands (the bounce buffer is 8 sectors)
    read = _disk_commands([_Call(OP_READ, (0, 0, H_USER, 4097))], image)
    assert (nothing, append - nothing, inside - nothing, read - nothing) == (1, 2, 2, 2)


@pytest.mark.parametrize(
    "disk",
    [
        None,
        b"",
        bytes(8 * SECTOR_SIZE),  # no magic
        make_fs(FILES)[: 4 * SECTOR_SIZE],  # too short for the directory
        b"X" + make_fs(FILES)[1:],
        make_fs(FILES)[:8] + (2).to_bytes(8, "little") + make_fs(FILES)[16:],  # version 2
        make_fs(FILES, spare_sectors=1)[:-SECTOR_SIZE],  # the superblock counts more sectors
    ],
    ids=["no disk", "empty disk", "zeros", "short", "magic", "version", "total"],
)
def test_without_a_valid_file_system_there_are_no_files(disk):
    s = _Script(_ModelFS({}, {}, mounted=False))
    s.open(b"one", O_RDONLY)
    s.size(0)
    s.read(0, 0, 10)
    s.write(0, 0, b"x")
    assert s.expected == [-1, -1, -1, -1]
    after = s.check(disk)
    assert after == (disk or b"")


def test_an_entry_outside_the_disk_disables_the_file_system():
    image = bytearray(make_fs(FILES, capacity=CAPACITY))
    struct.pack_into("<I", image, SECTOR_SIZE + mkfs.DE_CAPACITY, 1000)  # "big" runs off the end
    s = _Script(_ModelFS({}, {}, mounted=False))
    s.open(b"big", O_RDONLY)
    s.open(b"one", O_RDONLY)
    s.check(bytes(image))


# ---- random call sequences against the model --------------------------------------------

_names = st.sampled_from([b"big", b"hello.txt", b"log", b"one", b"nope"])
_offsets = st.one_of(st.integers(0, 12_000), st.sampled_from([0, 511, 512, 513, 4095, 4096, 10_239, 10_240]))
_lengths = st.one_of(st.integers(0, 6000), st.sampled_from([1, 511, 512, 513, 4096, 4097]))
_ops = st.one_of(
    st.tuples(st.just("open"), _names, st.sampled_from([O_RDONLY, O_WRONLY, O_RDWR, O_RDWR | O_TRUNC])),
    st.tuples(st.just("read"), st.integers(-1, 4), _offsets, _lengths),
    st.tuples(st.just("write"), st.integers(0, 4), _offsets, _lengths, st.integers(0, 255)),
    st.tuples(st.just("size"), st.integers(0, 4)),
)


@settings(max_examples=25, deadline=None)
@given(st.lists(_ops, min_size=1, max_size=12))
def test_random_call_sequences_match_the_model(ops):
    s = _Script(_ModelFS(FILES, CAPACITY))
    for op in ops:
        if op[0] == "open":
            s.open(op[1], op[2])
        elif op[0] == "read":
            s.read(op[1], op[2], op[3])
        elif op[0] == "write":
            s.write(op[1], op[2], _pattern(op[3], op[4]))
        else:
            s.size(op[1])
    disk = s.check(make_fs(FILES, capacity=CAPACITY))
    assert read_fs(disk) == s.model.image_files()


# ---- on the kernel: user/fstest.s through the system calls -------------------------------

FSTEST_CHUNK = 300  # user/fstest.s: FST_CHUNK
FSTEST_IN = bytes((7 * i + 3) & 0xFF for i in range(1234))


def _fstest_files(n: int) -> tuple[dict[str, bytes], dict[str, int]]:
    """fstest's disk: "fsin", and "fsa"/"fsb" full of old bytes, so O_TRUNC shows."""
    room = -(-n * FSTEST_CHUNK // SECTOR_SIZE) + 1
    return (
        {"fsin": FSTEST_IN, "fsa": b"\xee" * room * SECTOR_SIZE, "fsb": b"\xdd" * room * SECTOR_SIZE},
        {"fsa": room, "fsb": room},
    )


def _fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & ((1 << 64) - 1)
    return h


def _fstest_written(n: int, seed: str) -> bytes:
    return bytes((ord(seed) + 3 * k + j) & 0xFF for k in range(n) for j in range(FSTEST_CHUNK))


def _fstest_console(n: int) -> bytes:
    parts = [f"fstest n={n}"]
    for label, data in (("in", FSTEST_IN), ("a", _fstest_written(n, "a")), ("b", _fstest_written(n, "b"))):
        parts.append(f"{label}={len(data)}:{_fnv1a(data):x}")
    return (" ".join(parts) + " child=0\n").encode()


needs_kernel = pytest.mark.skipif(not (GUEST_OS / "os.s").exists(), reason="os.s (the p64os kernel) is not in the tree")


def _run_os(disk: bytes | None, line: bytes, profile: str = "x86-2005"):
    from conformance.guest_os import os_image

    platform = Platform(profile, MEMORY, disk=disk, console_input=line)
    platform.load(os_image())
    run = platform.run(400_000_000)
    assert platform.devices.disk is None or platform.devices.disk.ignored_commands == 0
    return run


@needs_kernel
@pytest.mark.parametrize("n", [1, 5, 40])
def test_fstest_reads_writes_and_shares_the_disk_between_two_processes(n):
    files, capacity = _fstest_files(n)
    run = _run_os(make_fs(files, capacity=capacity), f"fstest {n}\n".encode())
    assert (run.stop, run.exit_code) == ("exit", 0), run.console
    assert run.console == _fstest_console(n)
    assert read_fs(run.disk) == {"fsa": _fstest_written(n, "a"), "fsb": _fstest_written(n, "b"), "fsin": FSTEST_IN}


@needs_kernel
@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_fstest_on_each_profile(profile):
    files, capacity = _fstest_files(3)
    run = _run_os(make_fs(files, capacity=capacity), b"fstest 3\n", profile)
    assert (run.stop, run.exit_code, run.console) == ("exit", 0, _fstest_console(3))


@needs_kernel
@pytest.mark.parametrize("disk", [None, make_fs({})], ids=["no disk", "no files"])
def test_fstest_without_its_files_reports_the_failed_open(disk):
    run = _run_os(disk, b"fstest 2\n")
    assert (run.stop, run.exit_code, run.console) == ("exit", 1, b"fstest: error i\n")


@needs_kernel
@pytest.mark.parametrize(("reference", "profile"), [("trap-and-emulate", "x86-2005"), ("hardware", "vtx-2006")])
def test_fstest_under_a_reference_vmm_shows_what_it_shows_natively(reference, profile):
    # The driver's port I/O, DMA and completion interrupts go through the VMM's virtual disk
    # and PIC; the guest must not be able to tell (the equivalence property, Popek & Goldberg 1974).
    from conformance.api import VMConfig, observe
    from conformance.guest_os import os_image
    from reference_vmm.hardware import HardwareVMM
    from reference_vmm.trap_emulate import TrapEmulateVMM

    files, capacity = _fstest_files(4)
    config = VMConfig(
        memory=MEMORY, disk=make_fs(files, capacity=capacity), console_input=b"fstest 4\n", budget=100_000_000
    )
    vmm_class = {"trap-and-emulate": TrapEmulateVMM, "hardware": HardwareVMM}[reference]
    obs = observe(vmm_class, os_image(), config, profile=profile)
    assert (obs.stop, obs.exit_code, obs.console) == ("exit", 0, _fstest_console(4))
    assert read_fs(obs.disk) == {"fsa": _fstest_written(4, "a"), "fsb": _fstest_written(4, "b"), "fsin": FSTEST_IN}
