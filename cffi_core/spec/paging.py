"""The page walk of docs/architecture.md §7: levels, large pages, reserved bits, the
combination of permissions, accessed and dirty bits, and the #PF error code.

The spec has no TLB: every access made with paging on walks the tables again, which §8.1
allows (a program that invalidates after changing an entry cannot tell the difference).
``walk`` mirrors ``p64_walk``: it reports the translation or the fault an access would
raise, and it raises nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.state import (
    CR0_PG,
    CR0_WP,
    CR3_FRAME,
    GP,
    MASK64,
    MC,
    PAGE_SHIFT,
    PF,
    PF_I,
    PF_P,
    PF_RSVD,
    PF_U,
    PF_W,
    PTE_A,
    PTE_D,
    PTE_FRAME,
    PTE_NX,
    PTE_P,
    PTE_PS,
    PTE_RESERVED,
    PTE_U,
    PTE_W,
    Counters,
    State,
)

# Access kinds, as P64_ACCESS_* of p64.h.
ACCESS_READ = 0
ACCESS_WRITE = 1
ACCESS_FETCH = 2

INDEX_BITS = 9  # 512 entries of 8 bytes per 4 KiB table (§7.1)
INDEX_MASK = (1 << INDEX_BITS) - 1
ENTRY_SIZE = 8
LEVEL_SHIFT = {level: PAGE_SHIFT + INDEX_BITS * (level - 1) for level in (1, 2, 3, 4)}  # index bits

# §7.2: reserved bits by level, for an entry with PS = 0 and with PS = 1.  Bits 62:52 always;
# PS at level 1 and at level 4; the frame bits below a large page's size (20:12 for 2 MiB,
# 29:12 for 1 GiB).
RESERVED = {1: PTE_RESERVED | PTE_PS, 2: PTE_RESERVED, 3: PTE_RESERVED, 4: PTE_RESERVED | PTE_PS}
RESERVED_LARGE = {1: RESERVED[1], 2: PTE_RESERVED | 0x1FF000, 3: PTE_RESERVED | 0x3FFFF000, 4: RESERVED[4]}


@dataclass(slots=True)
class WalkResult:
    """A translation, as ``struct p64_walk``.  ``fault`` is 0 or the vector the access would
    raise (13 non-canonical, 14 #PF with ``error_code``, 18 beyond RAM); ``levels`` counts
    the entries read, listed top level first in ``entry_addr``/``entry`` (values as read)."""

    physical: int = 0
    error_code: int = 0
    fault: int = 0
    levels: int = 0
    page_level: int = 0  # 1: 4 KiB, 2: 2 MiB, 3: 1 GiB; 0 with paging off
    writable: bool = True
    user: bool = True
    nx: bool = False
    entry_addr: list[int] = field(default_factory=list)
    entry: list[int] = field(default_factory=list)


def va_bits(levels: int) -> int:
    """§7.1: 2, 3, 4 levels translate 30, 39, 48-bit linear addresses."""
    return PAGE_SHIFT + INDEX_BITS * levels


def is_canonical(va: int, levels: int) -> bool:
    """§5.3 step 3: bits 63:(w-1) of the address are all equal."""
    top = va >> (va_bits(levels) - 1)
    return top == 0 or top == MASK64 >> (va_bits(levels) - 1)


def reserved_bits(entry: int, level: int) -> int:
    """§7.2: the bits of ``entry`` that must be 0 at ``level``."""
    return RESERVED_LARGE[level] if entry & PTE_PS else RESERVED[level]


def pf_error_code(access: int, cpl: int, causes: int) -> int:
    """§7.5: the #PF error code of a failed walk; ``causes`` is 0, PF_P or PF_P | PF_RSVD."""
    code = causes
    if access == ACCESS_WRITE:
        code |= PF_W
    elif access == ACCESS_FETCH:
        code |= PF_I
    if cpl == 3:
        code |= PF_U
    return code


def permitted(state: State, access: int, cpl: int, writable: bool, user: bool, nx: bool) -> bool:
    """§7.4: may an access of this kind at ``cpl`` use a translation with these permissions?"""
    if cpl == 3 and not user:
        return False  # a user access needs U = 1 at every level
    if access == ACCESS_WRITE and not writable and (cpl == 3 or state.cr0 & CR0_WP):
        return False  # supervisor writes honour W only with CR0.WP
    return not (access == ACCESS_FETCH and nx)  # NX is always enabled


def walk(
    state: State,
    mem: PhysicalMemory,
    va: int,
    access: int,
    cpl: int,
    set_ad: bool = False,
    counters: Counters | None = None,
) -> WalkResult:
    """§7: translate ``va`` for an access of kind ``access`` at ``cpl``.  With ``set_ad`` a
    successful translation sets A and D (§7.5); ``counters`` (if given) counts the walk."""
    va &= MASK64
    if not state.cr0 & CR0_PG:
        return WalkResult(physical=va, fault=MC if va >= mem.size else 0)  # §5.3: linear = physical
    if not is_canonical(va, state.paging_levels):
        return WalkResult(fault=GP)  # §5.3 step 3
    result = _walk_tables(state, mem, va, access, cpl)
    if counters is not None:
        counters.walks += 1
        counters.walk_refs += result.levels
    if not result.fault:
        if set_ad:
            _set_accessed_dirty(mem, result, access == ACCESS_WRITE, counters)
        if result.physical >= mem.size:
            result.fault = MC  # §5.3 step 5, reported for the access to come
    return result


def _walk_tables(state: State, mem: PhysicalMemory, va: int, access: int, cpl: int) -> WalkResult:
    """§7.3: read one entry per level from the table at CR3 down to a leaf; §7.4: check the
    permissions the levels combine to."""
    addrs: list[int] = []
    entries: list[int] = []
    table = state.cr3 & CR3_FRAME
    anded, ored = MASK64, 0
    for level in range(state.paging_levels, 0, -1):
        addr = table + ENTRY_SIZE * ((va >> LEVEL_SHIFT[level]) & INDEX_MASK)
        if addr + ENTRY_SIZE > mem.size:
            return WalkResult(fault=MC, levels=len(entries), entry_addr=addrs, entry=entries)  # #MC
        entry = mem.read(addr, ENTRY_SIZE)
        addrs.append(addr)
        entries.append(entry)
        if not entry & PTE_P:
            return _page_fault(addrs, entries, access, cpl, 0)  # if P = 0 the walk fails
        if entry & reserved_bits(entry, level):
            return _page_fault(addrs, entries, access, cpl, PF_P | PF_RSVD)  # a reserved bit: RSVD
        anded &= entry  # W and U are the AND over the levels,
        ored |= entry  # NX the OR
        if level == 1 or entry & PTE_PS:
            break  # a leaf: level 1, or PS = 1 at level 2 or 3
        table = entry & PTE_FRAME
    writable, user, nx = bool(anded & PTE_W), bool(anded & PTE_U), bool(ored & PTE_NX)
    if not permitted(state, access, cpl, writable, user, nx):
        return _page_fault(addrs, entries, access, cpl, PF_P)  # §7.4
    offset = (1 << LEVEL_SHIFT[level]) - 1
    physical = (entry & PTE_FRAME & ~offset) | (va & offset)
    return WalkResult(physical, 0, 0, len(entries), level, writable, user, nx, addrs, entries)


def _page_fault(addrs: list[int], entries: list[int], access: int, cpl: int, causes: int) -> WalkResult:
    """§7.5: a failed translation sets nothing and raises #PF (CR2 = va, set by delivery)."""
    error_code = pf_error_code(access, cpl, causes)
    return WalkResult(error_code=error_code, fault=PF, levels=len(entries), entry_addr=addrs, entry=entries)


def _set_accessed_dirty(mem: PhysicalMemory, result: WalkResult, write: bool, counters: Counters | None) -> None:
    """§7.5: set A in every entry used whose A is clear, and D in the leaf on a write."""
    leaf = result.levels - 1
    for i, entry in enumerate(result.entry):
        new = entry | PTE_A | (PTE_D if write and i == leaf else 0)
        if new != entry:
            mem.write(result.entry_addr[i], ENTRY_SIZE, new)
            if counters is not None:
                counters.ad_updates += 1
