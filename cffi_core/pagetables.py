"""Builds P64 page tables in physical memory from the host side (docs/architecture.md §7).

Tests, benchmarks and VMMs use it to lay out address spaces without hand-writing entries:
``PageTables(write, alloc, levels).map(va, pa, size, flags)`` writes the entries through the
given ``write(addr, value)`` callback, taking fresh zeroed table pages from ``alloc()``.
"""

from __future__ import annotations

from collections.abc import Callable

from cffi_core.spec.state import PTE_A, PTE_D, PTE_FRAME, PTE_G, PTE_NX, PTE_P, PTE_PS, PTE_U, PTE_W

__all__ = [
    "EPT_R", "EPT_RWX", "EPT_W", "EPT_X", "PTE_A", "PTE_D", "PTE_G", "PTE_NX", "PTE_P", "PTE_PS", "PTE_U", "PTE_W",
    "PageAllocator", "PageTables", "ept_pointer",
]  # fmt: skip

# Nested tables (docs/vmx.md V.6) have the paging format with R, W, X in the P, W, U
# positions, so PageTables builds them too: map(gpa, hpa, size, flags=EPT_W | EPT_X); R is
# the P bit the builder always sets, and intermediate entries get R|W|X.
EPT_R = PTE_P
EPT_W = PTE_W
EPT_X = PTE_U
EPT_RWX = EPT_R | EPT_W | EPT_X


def ept_pointer(root: int, levels: int) -> int:
    """The EPT_POINTER (or IOMMU root) value for nested tables at ``root`` with ``levels``."""
    if levels not in (2, 3, 4):
        raise ValueError(f"levels = {levels}: nested tables have 2, 3 or 4 levels")
    if root % PAGE_4K:
        raise ValueError(f"root = {root:#x}: must be 4 KiB aligned")
    return root | (levels - 2)

PAGE_4K = 1 << 12
PAGE_2M = 1 << 21
PAGE_1G = 1 << 30
_LEAF_LEVEL = {PAGE_4K: 1, PAGE_2M: 2, PAGE_1G: 3}


class PageTables:
    """An address space under construction; ``root`` is the value for CR3."""

    def __init__(
        self,
        write_u64: Callable[[int, int], None],
        alloc_page: Callable[[], int],
        levels: int = 4,
    ) -> None:
        if levels not in (2, 3, 4):
            raise ValueError(f"levels = {levels}: P64 has 2, 3 or 4 levels")
        self._write = write_u64
        self._alloc = alloc_page
        self.levels = levels
        self.root = alloc_page()
        # Entries written so far, so that intermediate tables are reused: (table, index) -> value.
        self._entries: dict[tuple[int, int], int] = {}

    def map(self, va: int, pa: int, size: int, flags: int = PTE_W, page: int = PAGE_4K) -> None:
        """Map [va, va+size) to [pa, pa+size) with pages of ``page`` bytes.  ``flags`` are the
        leaf's bits besides P (and PS, added for large pages); intermediate entries get
        P|W|U so that the leaf alone decides permissions."""
        level = _LEAF_LEVEL.get(page)
        # PS is reserved at level 4 only (manual §7.2): with 2 or 3 levels the top table
        # itself may map 2 MiB or 1 GiB pages.
        if level is None or level > self.levels:
            raise ValueError(f"page size {page:#x} is not available with {self.levels} levels")
        if va % page or pa % page or size % page:
            raise ValueError(f"va {va:#x}, pa {pa:#x} and size {size:#x} must be multiples of {page:#x}")
        for off in range(0, size, page):
            self._map_one(va + off, pa + off, level, flags)

    def _map_one(self, va: int, pa: int, leaf_level: int, flags: int) -> None:
        table = self.root
        for level in range(self.levels, leaf_level, -1):
            index = (va >> (12 + 9 * (level - 1))) & 511
            entry = self._entries.get((table, index))
            if entry is None:
                entry = self._alloc() | PTE_P | PTE_W | PTE_U
                self._set(table, index, entry)
            table = entry & PTE_FRAME
        index = (va >> (12 + 9 * (leaf_level - 1))) & 511
        leaf = pa | PTE_P | flags | (PTE_PS if leaf_level > 1 else 0)
        self._set(table, index, leaf)

    def _set(self, table: int, index: int, value: int) -> None:
        self._entries[(table, index)] = value
        self._write(table + 8 * index, value)


class PageAllocator:
    """Hands out consecutive zeroed 4 KiB pages from a physical range."""

    def __init__(self, start: int, end: int, zero: Callable[[int], None] | None = None) -> None:
        if start % PAGE_4K:
            raise ValueError(f"start {start:#x} is not page aligned")
        self.next, self.end, self._zero = start, end, zero

    def __call__(self) -> int:
        if self.next + PAGE_4K > self.end:
            raise MemoryError(f"page-table area exhausted at {self.end:#x}")
        page, self.next = self.next, self.next + PAGE_4K
        if self._zero:
            self._zero(page)
        return page
