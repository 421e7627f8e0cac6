"""``WalkCache``: the guest's page walks remembered, and every reuse proved equal to a fresh walk (docs/architecture.md §7).

A VMM that emulates with the executable spec walks the guest's page tables in Python at every
access it emulates, and a shadow pager walks them again at every page fault it answers: on a
workload that writes page tables (fork), the same few walks are repeated at every VM exit.
This cache keeps a walk's outcome and gives it back only when a fresh ``spec.walk`` is certain
to produce the same result *and to write nothing* — so using it changes no figure of the run.

Why a remembered walk is still right (docs/architecture.md §7.3-§7.5): a walk is a function of
the guest's CR3 frame, its number of levels (CR4.PL), CR0.WP, the access (kind, and whether the
CPL is 3), the page of the address — the cache key — and of the entries it reads.  The first
entry's address comes from the key; each next one from the entry before.  So if the entries
at the remembered addresses still hold the remembered values, a fresh walk reads exactly them,
makes the same permission checks and ends on the same frame.  Its A/D update (§7.5) writes
only entries that lack A (or, on a write, the leaf's D): a walk is remembered only once every
entry has them, so a reuse writes nothing either.  Each reuse re-reads the entries and compares
(a few quadword reads instead of a walk's allocation, checks and bookkeeping); nothing has to be
told when the guest changes its tables, which keeps the cache independent of the shadow
pager's own invalidation (Fisher-Ogden 2006 §2.2.1: traced pages) and of anything that could
miss a write.  Only successful walks with paging on are kept; a fault is always walked afresh.
"""

from __future__ import annotations

import struct

from cffi_core import spec
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.paging import WalkResult
from cffi_core.spec.state import CR0_PG, CR0_WP, CR3_FRAME, CR4_PL, MASK64, PTE_A, PTE_D
from reference_vmm.shadow.guest_memory import GuestMemory

__all__ = ["WalkCache"]

_PAGE = 4096
_OFFSET = _PAGE - 1
_AD = PTE_A | PTE_D
_WRITE = spec.ACCESS_WRITE
_QUAD = struct.Struct("<Q")
# (addresses, values, page's physical address, page level, writable, user, nx)
_Entry = tuple[tuple[int, ...], tuple[int, ...], int, int, bool, bool, bool]


class WalkCache:
    """Page walks of the guest whose RAM is ``memory`` (a ``spec.PhysicalMemory``), at most
    ``limit`` of them (all are dropped when it is reached: the working set comes back at once)."""

    def __init__(self, memory: PhysicalMemory, limit: int = 4096) -> None:
        self.memory = memory
        self.limit = limit
        self._entries: dict[tuple[int, ...], _Entry] = {}
        # Guest RAM that is a region of host RAM (``GuestMemory``) is read in place: the
        # entries are compared where they lie, without a call per quadword.
        if isinstance(memory, GuestMemory):
            self._view: memoryview | None = memory.host.memory
            self._base = memory.base
        else:
            self._view, self._base = None, 0
        self.hits = 0
        """Walks answered from the cache (a figure for reports and tests, not the guest's)."""

    def walk(self, cpu: spec.State, va: int, access: int, cpl: int, set_ad: bool = False) -> WalkResult:
        """Exactly ``spec.walk(cpu, memory, va, access, cpl, set_ad)``: the same result (a new
        object each time, the caller's to keep) and the same writes to the guest's memory."""
        if cpu.cr0 & CR0_PG:
            hit = self.lookup(cpu, va, access, cpl)
            if hit is not None:
                return hit
        w = spec.walk(cpu, self.memory, va, access, cpl, set_ad=set_ad)
        if not w.fault and cpu.cr0 & CR0_PG:
            self.remember(cpu, va, access, cpl, w)
        return w

    def physical(self, cpu: spec.State, va: int, access: int, cpl: int) -> int:
        """The physical address of ``spec.walk(cpu, memory, va, access, cpl, set_ad=True)``, or
        -1 when that walk faults; the walk's writes (A/D) are made exactly as by it."""
        if cpu.cr0 & CR0_PG:
            va &= MASK64
            key = (va >> 12, access, cpl == 3, cpu.cr3 & CR3_FRAME, cpu.cr4 & CR4_PL, cpu.cr0 & CR0_WP)
            entry = self._entries.get(key)
            if entry is not None and self._unchanged(key, entry):
                return entry[2] | (va & _OFFSET)
        w = self.walk(cpu, va, access, cpl, set_ad=True)
        return -1 if w.fault else w.physical

    def lookup(self, cpu: spec.State, va: int, access: int, cpl: int) -> WalkResult | None:
        """The walk of a remembered page if its entries are unchanged (paging must be on), else
        None.  A result from here is a successful walk that would have set no A/D bit."""
        va &= MASK64
        key = (va >> 12, access, cpl == 3, cpu.cr3 & CR3_FRAME, cpu.cr4 & CR4_PL, cpu.cr0 & CR0_WP)
        entry = self._entries.get(key)
        if entry is None or not self._unchanged(key, entry):
            return None
        addrs, values, page, level, writable, user, nx = entry
        return WalkResult(page | (va & _OFFSET), 0, 0, len(addrs), level, writable, user, nx, list(addrs), list(values))

    def remember(self, cpu: spec.State, va: int, access: int, cpl: int, w: WalkResult) -> None:
        """Keep the successful walk ``w`` of ``va`` (just made, paging on) if a fresh one would
        now write nothing: every entry it read has A, the leaf D too for a write (§7.5)."""
        mem = self.memory
        values = tuple(mem.read(addr, 8) for addr in w.entry_addr)
        leaf = len(values) - 1
        for i, (old, new) in enumerate(zip(w.entry, values, strict=True)):
            if (old ^ new) & ~_AD or not new & PTE_A:
                return  # changed beyond A/D since the walk read it, or a fresh walk would set A
            if i == leaf and access == _WRITE and not new & PTE_D:
                return
        page = w.physical & ~_OFFSET
        if page + _PAGE > mem.size:
            return
        if len(self._entries) >= self.limit:
            self._entries.clear()
        va &= MASK64
        key = (va >> 12, access, cpl == 3, cpu.cr3 & CR3_FRAME, cpu.cr4 & CR4_PL, cpu.cr0 & CR0_WP)
        self._entries[key] = (tuple(w.entry_addr), values, page, w.page_level, w.writable, w.user, w.nx)

    def _unchanged(self, key: tuple[int, ...], entry: _Entry) -> bool:
        """Do the remembered entries still hold their values?  (A changed one drops the walk.)"""
        view = self._view
        if view is not None:
            base = self._base
            for addr, value in zip(entry[0], entry[1], strict=True):
                if _QUAD.unpack_from(view, base + addr)[0] != value:
                    break
            else:
                self.hits += 1
                return True
        else:
            read = self.memory.read
            for addr, value in zip(entry[0], entry[1], strict=True):
                if read(addr, 8) != value:
                    break
            else:
                self.hits += 1
                return True
        del self._entries[key]
        return False
