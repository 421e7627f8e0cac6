"""Physical memory as the spec sees it (docs/architecture.md §5.1): an accessor protocol and
a bytearray-backed implementation.

The spec checks every physical address against ``size`` before it calls the accessor (an
access beyond RAM raises #MC), so accessors may assume their arguments are in range.  A VMM
that emulates a guest instruction passes an accessor that maps guest-physical addresses to
its own storage.
"""

from __future__ import annotations

import struct
from typing import Protocol, runtime_checkable

_FORMATS = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: struct.Struct("<Q")}


@runtime_checkable
class PhysicalMemory(Protocol):
    """RAM at physical addresses ``[0, size)``; little-endian, sizes 1, 2, 4 and 8."""

    size: int

    def read(self, addr: int, size: int) -> int:
        """The unsigned little-endian value of ``size`` bytes at ``addr``."""
        ...

    def write(self, addr: int, size: int, value: int) -> None:
        """Store the low ``size`` bytes of ``value`` at ``addr``."""
        ...


class ByteMemory:
    """Physical memory held in a bytearray (``data``); ``ByteMemory(size)`` or
    ``ByteMemory(bytearray)`` (the array is used, not copied)."""

    def __init__(self, size_or_data: int | bytearray) -> None:
        if isinstance(size_or_data, int):
            if size_or_data < 0:
                raise ValueError(f"size = {size_or_data}: must be >= 0")
            size_or_data = bytearray(size_or_data)
        if not isinstance(size_or_data, bytearray):
            raise TypeError(f"ByteMemory takes a size or a bytearray, not {type(size_or_data).__name__}")
        self.data = size_or_data
        self.size = len(size_or_data)
        # Bound methods looked up once: the spec's hot path calls these on every access.
        self._unpack = {n: f.unpack_from for n, f in _FORMATS.items()}
        self._pack = {n: f.pack_into for n, f in _FORMATS.items()}

    def read(self, addr: int, size: int) -> int:
        return self._unpack[size](self.data, addr)[0]

    def write(self, addr: int, size: int, value: int) -> None:
        self._pack[size](self.data, addr, value & ((1 << (8 * size)) - 1))

    def read_bytes(self, addr: int, length: int) -> bytes:
        _check_range(self, addr, length)
        return bytes(self.data[addr : addr + length])

    def write_bytes(self, addr: int, data: bytes) -> None:
        _check_range(self, addr, len(data))
        self.data[addr : addr + len(data)] = data


def read_bytes(mem: PhysicalMemory, addr: int, length: int) -> bytes:
    """``length`` bytes at ``addr`` from any accessor (bytewise unless it has ``read_bytes``)."""
    if hasattr(mem, "read_bytes"):
        return mem.read_bytes(addr, length)
    _check_range(mem, addr, length)
    return bytes(mem.read(addr + i, 1) for i in range(length))


def write_bytes(mem: PhysicalMemory, addr: int, data: bytes) -> None:
    """Store ``data`` at ``addr`` through any accessor (bytewise unless it has ``write_bytes``)."""
    if hasattr(mem, "write_bytes"):
        mem.write_bytes(addr, data)
        return
    _check_range(mem, addr, len(data))
    for i, b in enumerate(data):
        mem.write(addr + i, 1, b)


def _check_range(mem: PhysicalMemory, addr: int, length: int) -> None:
    if addr < 0 or length < 0 or addr + length > mem.size:
        raise IndexError(f"[{addr:#x}, {addr + length:#x}) is outside RAM [0, {mem.size:#x})")
