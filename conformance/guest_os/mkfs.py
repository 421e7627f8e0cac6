"""p64os's disk image format (a flat file system) and the host tool that builds and reads images.

The disk (docs/devices.md §6) is an array of 512-byte sectors that the guest moves by DMA,
at most ``DISK_MAX_COUNT`` = 128 sectors per command.  p64os keeps on it a file system as
small as a file system can be: one directory, no subdirectories, and every file one
contiguous run of sectors (its *extent*) fixed when the image is built.  A file can grow
inside its extent, never beyond it, so the kernel (kernel/fs.s) needs no allocator: the
directory entry says where a file is, how much room it has and how many bytes it holds.

The format
==========

All integers are little-endian and unsigned.  Sector numbers count 512-byte sectors from
the start of the image.

========  ==========================  ===================================================
sectors   what                        contents
========  ==========================  ===================================================
0         the superblock              the fields below, then zeros to the sector's end
1–4       the directory               ``MAX_FILES`` = 64 entries of 32 bytes
5 …       the files' extents          each file's capacity in sectors, in directory order
…         spare sectors               zeros (``spare_sectors``), to the image's end
========  ==========================  ===================================================

The superblock (``SUPERBLOCK_FORMAT``), six quadwords at byte offsets 0, 8, …, 40:

- ``SB_MAGIC`` (0): ``FS_MAGIC``, the bytes ``P64OSFS`` and a NUL read as a quadword;
- ``SB_VERSION`` (8): ``FS_VERSION`` = 1;
- ``SB_NFILES`` (16): the number of files, 0 … ``MAX_FILES``; entries 0 … nfiles − 1 are used;
- ``SB_TOTAL`` (24): the number of sectors in the image;
- ``SB_DIR_SECTORS`` (32): ``DIR_SECTORS`` = 4, the directory's length (it starts at sector 1);
- ``SB_DATA_START`` (40): ``DATA_START`` = 5, the first sector of the first extent.

A directory entry (``ENTRY_FORMAT``, ``ENTRY_SIZE`` = 32 bytes; 16 to a sector):

- ``DE_NAME`` (0, 16 bytes): the name, 1 … ``NAME_MAX`` = 15 bytes of printable ASCII other than
  space and ``/``, then NUL bytes to the field's end (so the name is always NUL-terminated);
- ``DE_START`` (16, 4 bytes): the first sector of the file's extent;
- ``DE_CAPACITY`` (20, 4 bytes): the extent's length in sectors, at least 1;
- ``DE_SIZE`` (24, 8 bytes): the file's size in bytes, at most capacity × 512.

An unused entry is all zeros.  The entries are sorted by name (byte order), and the extents
follow one another in that order from ``DATA_START`` with no gap, so the same files give the
same image byte for byte.  The bytes of an extent past the file's size are zeros when the
image is built; the kernel never shows them (a read stops at the size).

The kernel reads sectors 0 … 4 into memory once (``fs_init``); it writes a directory
sector back when a file's size changes (a write past the end, or ``O_TRUNC``).  ``read_fs``
checks every rule above, so a test can trust what it reads back after a run.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "DATA_START",
    "DE_CAPACITY",
    "DE_NAME",
    "DE_SIZE",
    "DE_START",
    "DIR_SECTORS",
    "ENTRIES_PER_SECTOR",
    "ENTRY_FORMAT",
    "ENTRY_SIZE",
    "FS_MAGIC",
    "FS_VERSION",
    "MAX_FILES",
    "MAX_IMAGE_BYTES",
    "NAME_FIELD",
    "NAME_MAX",
    "SB_DATA_START",
    "SB_DIR_SECTORS",
    "SB_MAGIC",
    "SB_NFILES",
    "SB_TOTAL",
    "SB_VERSION",
    "SECTOR_SIZE",
    "SUPERBLOCK_FORMAT",
    "DirEntry",
    "main",
    "make_fs",
    "read_directory",
    "read_fs",
]

SECTOR_SIZE = 512  # docs/devices.md §6
FS_MAGIC = int.from_bytes(b"P64OSFS\0", "little")
FS_VERSION = 1

SUPERBLOCK_FORMAT = "<6Q"  # magic, version, nfiles, total sectors, directory sectors, data start
SB_MAGIC, SB_VERSION, SB_NFILES, SB_TOTAL, SB_DIR_SECTORS, SB_DATA_START = range(0, 48, 8)

ENTRY_FORMAT = "<16sIIQ"  # name, first sector, capacity in sectors, size in bytes
ENTRY_SIZE = struct.calcsize(ENTRY_FORMAT)
DE_NAME, DE_START, DE_CAPACITY, DE_SIZE = 0, 16, 20, 24
NAME_FIELD = 16
NAME_MAX = NAME_FIELD - 1  # the name field always keeps a NUL

ENTRIES_PER_SECTOR = SECTOR_SIZE // ENTRY_SIZE
DIR_SECTORS = 4
MAX_FILES = DIR_SECTORS * ENTRIES_PER_SECTOR
DATA_START = 1 + DIR_SECTORS

# The platform's limit on a disk image (docs/limits.md, MAX_DISK_BYTES): an image larger than
# that could be built but never run.  It also keeps every sector number inside DE_START's
# 32 bits.
MAX_IMAGE_BYTES = 1 << 28

assert ENTRY_SIZE == 32 and struct.calcsize(SUPERBLOCK_FORMAT) == 48


class DirEntry(NamedTuple):
    """One directory entry as read from an image."""

    name: str  # the file's name
    start: int  # the first sector of its extent
    capacity: int  # the extent's length in sectors
    size: int  # the file's size in bytes


def _check_name(name: object) -> bytes:
    """The name's bytes, or a ValueError saying what is wrong with it."""
    if not isinstance(name, str):
        raise ValueError(f"file name {name!r}: must be a str")
    if not name:
        raise ValueError("file name '': must not be empty")
    if not all(0x21 <= ord(c) <= 0x7E and c != "/" for c in name):
        raise ValueError(f"file name {name!r}: only printable ASCII other than space and '/' is allowed")
    if len(name) > NAME_MAX:
        raise ValueError(f"file name {name!r}: {len(name)} bytes, at most {NAME_MAX}")
    return name.encode("ascii")


def _sectors(nbytes: int) -> int:
    return -(-nbytes // SECTOR_SIZE)


def make_fs(
    files: Mapping[str, bytes],
    *,
    capacity: Mapping[str, int] | None = None,
    spare_sectors: int = 0,
) -> bytes:
    """Build a disk image holding ``files`` (name → contents) in the format of this module's docstring.

    A file's capacity is ``capacity[name]`` sectors when given, else its size rounded up to
    sectors, at least 1.  A name in ``capacity`` but not in ``files`` is an empty file with
    that much room (for a workload to write).  ``spare_sectors`` zero sectors follow the last
    extent.  The same arguments always give the same bytes.

    Raises ValueError for a bad name (empty, longer than ``NAME_MAX``, not printable ASCII,
    ``/``), more than ``MAX_FILES`` files, a capacity that is not a positive int or is smaller
    than the file, a negative ``spare_sectors``, or an image larger than ``MAX_IMAGE_BYTES``.
    A name that ``files`` yields twice is refused too.
    """
    capacity = dict(capacity or {})
    if isinstance(spare_sectors, bool) or not isinstance(spare_sectors, int) or spare_sectors < 0:
        raise ValueError(f"spare_sectors {spare_sectors!r}: must be an int >= 0")
    names = list(files)
    if len(set(names)) != len(names):  # only a Mapping with a broken __iter__ can do this
        raise ValueError(f"file name {next(n for n in names if names.count(n) > 1)!r}: appears twice")
    names += [name for name in capacity if name not in files]
    contents: dict[bytes, bytes] = {}
    rooms: dict[bytes, int] = {}
    for name in names:
        raw = _check_name(name)
        data = files.get(name, b"")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"file {name!r}: contents must be bytes, not {type(data).__name__}")
        data = bytes(data)
        if name in capacity:
            room = capacity[name]
            if isinstance(room, bool) or not isinstance(room, int) or room < 1:
                raise ValueError(f"file {name!r}: capacity {room!r} must be an int >= 1 (sectors)")
            if len(data) > room * SECTOR_SIZE:
                raise ValueError(
                    f"file {name!r}: {len(data)} bytes do not fit its capacity of {room} sectors "
                    f"({room * SECTOR_SIZE} bytes)"
                )
        else:
            room = max(1, _sectors(len(data)))
        contents[raw] = data
        rooms[raw] = room
    if len(contents) > MAX_FILES:
        raise ValueError(f"{len(contents)} files: the directory holds at most {MAX_FILES}")
    total = DATA_START + sum(rooms.values()) + spare_sectors
    if total * SECTOR_SIZE > MAX_IMAGE_BYTES:
        raise ValueError(f"the image would be {total * SECTOR_SIZE} bytes, more than {MAX_IMAGE_BYTES}")

    image = bytearray(total * SECTOR_SIZE)
    struct.pack_into(SUPERBLOCK_FORMAT, image, 0, FS_MAGIC, FS_VERSION, len(contents), total, DIR_SECTORS, DATA_START)
    start = DATA_START
    for i, raw in enumerate(sorted(contents)):
        data = contents[raw]
        struct.pack_into(ENTRY_FORMAT, image, SECTOR_SIZE + i * ENTRY_SIZE, raw, start, rooms[raw], len(data))
        image[start * SECTOR_SIZE : start * SECTOR_SIZE + len(data)] = data
        start += rooms[raw]
    return bytes(image)


def read_directory(image: bytes) -> list[DirEntry]:
    """The directory of an image, in its order, after checking every rule of the format.

    Raises ValueError naming the first broken rule: a length that is not a whole number of
    sectors or too short for the superblock and directory, a wrong magic or version, a file
    count above ``MAX_FILES``, a total that is not the image's length, a bad name, a repeated
    name, an extent outside the data area or overlapping another, a size above the capacity,
    or a nonzero unused entry.
    """
    image = bytes(image)
    if len(image) % SECTOR_SIZE:
        raise ValueError(f"image of {len(image)} bytes: not a whole number of {SECTOR_SIZE}-byte sectors")
    if len(image) < DATA_START * SECTOR_SIZE:
        raise ValueError(f"image of {len(image)} bytes: shorter than the superblock and directory")
    magic, version, nfiles, total, dir_sectors, data_start = struct.unpack_from(SUPERBLOCK_FORMAT, image, 0)
    if magic != FS_MAGIC:
        raise ValueError(f"superblock: magic {magic:#x}, expected {FS_MAGIC:#x}")
    if version != FS_VERSION:
        raise ValueError(f"superblock: version {version}, expected {FS_VERSION}")
    if (dir_sectors, data_start) != (DIR_SECTORS, DATA_START):
        raise ValueError(
            f"superblock: directory of {dir_sectors} sectors with data at {data_start}, "
            f"expected {DIR_SECTORS} and {DATA_START}"
        )
    if nfiles > MAX_FILES:
        raise ValueError(f"superblock: {nfiles} files, at most {MAX_FILES}")
    if total != len(image) // SECTOR_SIZE:
        raise ValueError(f"superblock: {total} sectors, but the image has {len(image) // SECTOR_SIZE}")
    entries: list[DirEntry] = []
    for i in range(MAX_FILES):
        offset = SECTOR_SIZE + i * ENTRY_SIZE
        raw_entry = image[offset : offset + ENTRY_SIZE]
        if i >= nfiles:
            if any(raw_entry):
                raise ValueError(f"directory entry {i}: unused (nfiles = {nfiles}) but not zero")
            continue
        field, start, room, size = struct.unpack(ENTRY_FORMAT, raw_entry)
        raw_name, _, padding = field.partition(b"\0")
        if any(padding):
            raise ValueError(f"directory entry {i}: bytes after the name's NUL are not zero")
        try:
            name = raw_name.decode("ascii")
            _check_name(name)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"directory entry {i}: bad name {raw_name!r}") from exc
        if room < 1 or start < DATA_START or start + room > total:
            raise ValueError(
                f"directory entry {i} ({name!r}): extent of {room} sectors at {start} "
                f"is not inside sectors {DATA_START}..{total - 1}"
            )
        if size > room * SECTOR_SIZE:
            raise ValueError(f"directory entry {i} ({name!r}): size {size} exceeds its {room} sectors")
        entries.append(DirEntry(name, start, room, size))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"directory: the name {dup!r} appears twice")
    by_start = sorted(entries, key=lambda e: e.start)
    for a, b in pairwise(by_start):
        if a.start + a.capacity > b.start:
            raise ValueError(f"directory: the extents of {a.name!r} and {b.name!r} overlap")
    return entries


def read_fs(image: bytes) -> dict[str, bytes]:
    """The files of a disk image (name → contents, in directory order), after ``read_directory``'s checks."""
    image = bytes(image)
    return {
        e.name: image[e.start * SECTOR_SIZE : e.start * SECTOR_SIZE + e.size] for e in read_directory(image)
    }


def _parse_capacity(text: str) -> tuple[str, int]:
    name, sep, value = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=SECTORS")
    try:
        return name, int(value, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: SECTORS must be an integer") from None


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: build a disk image from the regular files of a directory.

    ``python -m conformance.guest_os.mkfs DIR -o disk.img [--capacity NAME=SECTORS ...]
    [--spare N]``.  Returns 0, or prints the reason to stderr and returns 1 (a bad file name,
    a subdirectory, anything make_fs refuses) or 2 (bad arguments).
    """
    parser = argparse.ArgumentParser(
        prog="python -m conformance.guest_os.mkfs",
        description="Build a p64os disk image (a flat file system) from the files of a directory.",
    )
    parser.add_argument("directory", type=Path, help="the directory whose files go on the disk")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the image file to write")
    parser.add_argument(
        "--capacity",
        action="append",
        type=_parse_capacity,
        default=[],
        metavar="NAME=SECTORS",
        help="reserve SECTORS sectors for NAME (a file of the directory, or a new empty file)",
    )
    parser.add_argument("--spare", type=int, default=0, metavar="N", help="zero sectors after the last file")
    args = parser.parse_args(argv)
    try:
        if not args.directory.is_dir():
            raise ValueError(f"{args.directory}: not a directory")
        files: dict[str, bytes] = {}
        for path in sorted(args.directory.iterdir()):
            if not path.is_file():
                raise ValueError(f"{path}: not a regular file (the file system is flat)")
            files[path.name] = path.read_bytes()
        image = make_fs(files, capacity=dict(args.capacity), spare_sectors=args.spare)
        args.output.write_bytes(image)
    except (ValueError, OSError) as exc:
        print(f"mkfs: {exc}", file=sys.stderr)
        return 1
    nfiles = struct.unpack_from("<Q", image, SB_NFILES)[0]
    print(f"mkfs: {args.output}: {nfiles} files, {len(image) // SECTOR_SIZE} sectors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
