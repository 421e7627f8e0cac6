"""Guest-physical RAM as a region of host RAM: the spec's memory accessor and the devices' DMA.

A VMM that runs its guest on the host ``Machine`` gives each guest a contiguous region of
host-physical memory: guest-physical address ``g`` lives at host-physical ``base + g``
(the "single register translation" of VM/ESA zones, Fisher-Ogden 2006 §2.2.3).  This class is
the one way into that region for everything that is not the guest itself:

- the executable spec, when the VMM emulates a trapped instruction (``PhysicalMemory``
  protocol of ``cffi_core.spec.memory``);
- the virtual devices' DMA (``GuestMemory.dma()``, the ``DMA`` protocol of
  ``cffi_core.devices``): a disk transfer lands in guest-physical memory, never outside;
- shadow paging, which must hear of every write to a page the guest uses as a page table
  (``watched`` frames; ``reference_vmm.shadow.pager``);
- a VMM that keeps something derived from guest *code* (a binary translator's translations,
  what it learned by scanning a page before letting it run directly), which must hear of
  every write to those pages, by the guest or by a device (``code_frames``).

Writes go through ``Machine.write`` so that the core's decoded-instruction cache stays coherent
(docs/architecture.md §15): a guest that loads code by DMA or through an emulated store runs
the new code.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cffi_core.devices import DMAError
from cffi_core.machine import PAGE_SIZE, Machine
from conformance.api import host_canary

__all__ = ["CodeWriteHook", "GuestDMA", "GuestMemory", "HostMap", "WriteHook"]

WriteHook = Callable[[int, int, int], None]
"""``hook(gpa, old, new)``: the quadword at guest-physical ``gpa`` (8-byte aligned) of a watched
frame changed from ``old`` to ``new``."""
CodeWriteHook = Callable[[int, int], None]
"""``hook(gpa, length)``: ``length`` bytes at guest-physical ``gpa`` of a code frame were written."""

_QUAD = struct.Struct("<Q")
_FORMATS = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"), 8: _QUAD}
PAGE_SHIFT = 12


class GuestMemory:
    """Guest-physical addresses ``[0, size)`` stored at host-physical ``[base, base + size)``."""

    def __init__(self, host: Machine, base: int, size: int) -> None:
        if base % PAGE_SIZE or size % PAGE_SIZE or size <= 0:
            raise ValueError(f"guest region at {base:#x} of {size:#x} bytes: must be whole 4 KiB pages")
        if base < 0 or base + size > host.memory_size:
            raise ValueError(
                f"guest region [{base:#x}, {base + size:#x}) is outside host RAM [0, {host.memory_size:#x})"
            )
        self.host = host
        self.base = base
        self.size = size
        self._view = host.memory
        self.watched: set[int] = set()
        """Guest frame numbers whose writes are reported to ``on_write`` (shadow paging's traced pages)."""
        self.on_write: WriteHook | None = None
        self.watched_stores = 0
        """Stores into a watched frame, whether or not they changed it: each is one a real CPU
        would have trapped on (the frame is write-protected in every shadow), which adaptive
        binary translation asks after (Adams & Agesen 2006 §3.3: "innocent until proven guilty")."""
        self.code_frames: set[int] = set()
        """Guest frame numbers whose writes (stores emulated through this class and DMA) are
        reported to ``on_code_write`` after they land."""
        self.on_code_write: CodeWriteHook | None = None

    def hpa(self, gpa: int) -> int:
        """The host-physical address of guest-physical ``gpa`` (which must be in range)."""
        return self.base + gpa

    # -- the spec's PhysicalMemory protocol (the spec checks the range before it calls) --------
    def read(self, addr: int, size: int) -> int:
        return _FORMATS[size].unpack_from(self._view, self.base + addr)[0]

    def write(self, addr: int, size: int, value: int) -> None:
        data = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
        if (addr & 7) + size > 8 or self.on_write is None or (addr >> PAGE_SHIFT) not in self.watched:
            self.write_bytes(addr, data)
            return
        if self.code_frames:
            self.write_bytes(addr, data)  # a page table holding code too: the general path tells both
            return
        # One quadword of a watched frame (the spec's accesses are naturally aligned): what
        # ``write_bytes`` does for it, without its general loop — the emulated page-table
        # store of shadow paging comes here at every such VM exit.
        self._check(addr, size, "write")
        self.watched_stores += 1
        quad = addr & ~7
        old = _QUAD.unpack_from(self._view, self.base + quad)[0]
        self.host.write(self.base + addr, data)
        new = _QUAD.unpack_from(self._view, self.base + quad)[0]
        if old != new:
            self.on_write(quad, old, new)

    def read_bytes(self, addr: int, length: int) -> bytes:
        self._check(addr, length, "read")
        return bytes(self._view[self.base + addr : self.base + addr + length])

    def write_bytes(self, addr: int, data: bytes) -> None:
        """Store ``data`` at guest-physical ``addr``; watched quadwords that change are reported."""
        self._check(addr, len(data), "write")
        if not data:
            return
        first, last = addr >> PAGE_SHIFT, (addr + len(data) - 1) >> PAGE_SHIFT
        if self.code_frames and self.on_code_write is not None:
            self._write_watched(addr, data, first, last)
            for frame in range(first, last + 1):
                if frame in self.code_frames:
                    lo = max(addr, frame << PAGE_SHIFT)
                    hi = min(addr + len(data), (frame + 1) << PAGE_SHIFT)
                    self.on_code_write(lo, hi - lo)
            return
        self._write_watched(addr, data, first, last)

    def _write_watched(self, addr: int, data: bytes, first: int, last: int) -> None:
        """Store ``data`` (frames ``first``..``last``), reporting the watched quadwords that change."""
        touched = [f for f in range(first, last + 1) if f in self.watched] if self.watched else []
        if touched:
            self.watched_stores += 1
        if not touched or self.on_write is None:
            self.host.write(self.base + addr, data)
            return
        lo, hi = addr & ~7, (addr + len(data) + 7) & ~7
        before = self.read_bytes(lo, hi - lo)
        self.host.write(self.base + addr, data)
        after = self.read_bytes(lo, hi - lo)
        for off in range(0, hi - lo, 8):
            gpa = lo + off
            if (gpa >> PAGE_SHIFT) in self.watched:
                old, new = _QUAD.unpack_from(before, off)[0], _QUAD.unpack_from(after, off)[0]
                if old != new:
                    self.on_write(gpa, old, new)

    def dma(self) -> GuestDMA:
        """The DMA accessor of this guest's devices."""
        return GuestDMA(self)

    def _check(self, addr: int, length: int, what: str) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise IndexError(
                f"guest-physical {what} of {length} bytes at {addr:#x}: outside guest RAM [0, {self.size:#x})"
            )


class GuestDMA:
    """Device DMA into guest-physical memory: all or nothing, never outside the guest's region
    (docs/devices.md: a transfer outside RAM ends in the disk's error status)."""

    def __init__(self, memory: GuestMemory) -> None:
        self._mem = memory

    def read(self, addr: int, size: int) -> bytes:
        try:
            return self._mem.read_bytes(addr, size)
        except IndexError as e:
            raise DMAError(f"DMA read: {e}") from None

    def write(self, addr: int, data: bytes) -> None:
        try:
            self._mem.write_bytes(addr, data)
        except IndexError as e:
            raise DMAError(f"DMA write: {e}") from None


class HostMap:
    """The VMM's use of host-physical memory: guest regions from the bottom up, the VMM's own
    pages (IDT, shadow tables) from the top down, below the host's canary region
    (``conformance.api.host_canary``), which no VMM may touch."""

    def __init__(self, host: Machine) -> None:
        self.size = host.memory_size
        self.low = 0
        self.high = host_canary(host)[0] // PAGE_SIZE * PAGE_SIZE

    def guest_region(self, size: int, align: int = PAGE_SIZE) -> int:
        """A region of ``size`` bytes for a guest's RAM, its base a multiple of ``align`` (2 MiB
        lets nested tables map it with large pages)."""
        start = -(-self.low // align) * align
        self._check(start - self.low + size, "guest RAM")
        base, self.low = start, start + size
        return base

    def vmm_pages(self, size: int) -> int:
        """``size`` bytes (whole pages) for the VMM's own structures, out of every guest's reach."""
        self._check(size, "VMM tables")
        self.high -= size
        return self.high

    def _check(self, size: int, what: str) -> None:
        if self.low + size > self.high:
            raise ValueError(
                f"host RAM of {self.size:#x} bytes cannot hold {size:#x} more bytes of {what} "
                f"({self.high - self.low:#x} free): give the host Machine more memory"
            )
