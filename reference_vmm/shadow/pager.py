"""``ShadowPager``: shadow page tables built from a guest's own tables, VM/370 style (Fisher-Ogden 2006 §2.2.1).

The guest manages page tables that map guest-virtual to guest-physical addresses; the host
MMU needs guest-virtual to *host*-physical.  A shadow page table is the composition, kept by
the VMM in memory the guest cannot reach, and it is what the real CR3 points to while the
guest runs.  This module builds and maintains shadows for one guest, independently of how the
guest's CPU is virtualized (trap-and-emulate now; binary translation and first-generation
hardware assistance reuse it).  What the caller gives it:

- ``cpu``: the guest's *virtual* CPU (a ``cffi_core.spec.State``): its CR0, CR3, CR4 say which
  address space the guest believes is current, and whether paging is on;
- ``space``: which shadow of that address space the real CPU should use (``Space``): one
  ``SHARED`` shadow when the real CPU's U/S bit separates guest kernel from guest user, or a
  ``KERNEL`` and a ``USER`` shadow under ring compression (Fisher-Ogden §2.3.1), where both run
  at real ring 3;
- real page faults (``fault``) and guest invalidations (``invlpg``).

How the shadows follow the guest (docs/architecture.md §7, §8):

- **On demand.** A shadow starts with nothing but the reserved range (below).  A real #PF at
  ``va`` is answered by walking the guest's tables: if the guest's MMU refuses the access, the
  fault is *true* and belongs to the guest (``Resolution.TRUE``: the caller reflects it, with
  the guest's CR2 and error code); if the guest's MMU allows it, the fault is *hidden*: the
  pager installs the translation for that one 4 KiB page and the instruction is retried
  (``Resolution.HIDDEN``).  The guest's large pages are shadowed by 4 KiB pieces.
- **Accessed and dirty bits** are the guest walker's job (§7.5), so the pager does it: A is set
  in every guest entry used when the shadow entry is made, and a page whose guest D bit is clear
  is shadowed read-only; its first write faults (hidden), sets D, and makes the shadow writable.
- **Traced page-table pages.** Every guest frame that a shadow was built from is write-protected
  in all shadows; the guest's stores to it fault and are emulated by the caller
  (``Resolution.EMULATE``), and ``GuestMemory`` reports each changed entry to ``guest_wrote``,
  which drops the shadow entries derived from it.  Setting A or D only drops nothing.  Shadows
  therefore never hold a translation the guest's tables no longer give; §8.1 allows it (a
  changed entry may be used old or new until invalidated).
- **CR3 switches** select a shadow root by the guest's CR3; roots are kept in a small cache.
  A change of CR0.PG, CR0.WP or CR4.PL drops every shadow (the hardware flushes its whole TLB).
  ``invlpg`` drops the page's shadow entry.  With paging off the shadow maps guest-virtual =
  guest-physical.
- **The reserved range.**  ``reserved`` pages (the VMM's own structures that must be mapped in
  every guest address space, such as its IDT: address-space compression, §2.3.1) are mapped
  supervisor-only, read-only and not executable in every shadow; a guest access there is
  answered ``Resolution.EMULATE`` so that the caller gives the guest its own memory instead.
  No path that drops shadow entries drops them: ``invlpg`` of any address whose translated
  bits name a reserved page's slot (0x7fff_ffff_ffff_ffff is the top page's with 4 levels)
  keeps it, a dropped table above one is rebuilt with it, and every new root (a CR3 switch,
  a recycled pool) starts with them.

- **Code pages** (for a VMM that derives something from guest code, such as a binary
  translator): ``protect_code`` write-protects a guest frame in every shadow like a traced
  page (its stores are emulated, and ``GuestMemory.on_code_write`` hears of them and of DMA
  into it); ``release_code`` ends that.  With ``exec_policy`` set, a frame is mapped
  executable only when the policy allows it, and a fetch from a frame it refuses is answered
  ``Resolution.EMULATE``; ``revoke_exec`` takes execute permission back from every shadow
  entry that has it.

After the pager removes or downgrades a shadow entry, ``needs_flush`` is set: the caller must
flush the host TLB before the guest runs again (entries are only ever added or upgraded
otherwise, which the TLB handles by itself, §8.2).  ``counters`` counts hidden and true faults,
traced writes, invalidations, flushes and table pages.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable

from cffi_core import spec
from cffi_core.machine import PAGE_SIZE, Machine
from cffi_core.spec.state import CR0_PG, CR0_WP, CR3_FRAME, CR4_PL, MASK64, PTE_FRAME
from reference_vmm.shadow.guest_memory import GuestMemory
from reference_vmm.shadow.walk_cache import WalkCache

__all__ = ["MAX_ROOTS", "ExecPolicy", "Resolution", "ShadowPager", "Space", "pool_size"]

_QUAD = struct.Struct("<Q")
_ENTRIES = 512
_TABLE = spec.PTE_P | spec.PTE_W | spec.PTE_U  # non-leaf shadow entries: the leaf alone decides
_AD = spec.PTE_A | spec.PTE_D
_LEVEL_SHIFT = {level: 12 + 9 * (level - 1) for level in (1, 2, 3, 4)}
_PAGING_OFF_LEVELS = 4  # guest paging off: the shadow is a 4-level identity map
MAX_ROOTS = 16
ExecPolicy = Callable[[int, bool], bool]
"""``policy(frame, fetch)``: may guest frame ``frame`` be mapped executable?  ``fetch`` says the
guest is fetching from it now (the policy may look at the frame then); otherwise the answer
may be a cautious no, and the first fetch asks again."""
"""Shadow roots kept (one per guest CR3 and space); beyond that every shadow is dropped."""


class Space(enum.Enum):
    """Which shadow of the guest's current address space the real CPU uses."""

    SHARED = "shared"
    """Guest kernel and guest user share one shadow; the real U/S bit keeps them apart."""
    KERNEL = "kernel"
    """Ring compression, guest CPL 0-2 at real ring 3: every page the guest kernel may touch is
    user-accessible in this shadow."""
    USER = "user"
    """Ring compression, guest CPL 3: only the guest's user pages are mapped."""


class Resolution(enum.Enum):
    """What the caller does after ``ShadowPager.fault``."""

    HIDDEN = "hidden"
    """The shadow was fixed: resume the guest at the same instruction (it never saw a fault)."""
    TRUE = "true"
    """The guest's own MMU refuses the access: the guest must see the fault (emulate the
    instruction, which raises it with the guest's CR2 and error code)."""
    EMULATE = "emulate"
    """The guest's MMU allows the access but no shadow entry can: a write to a traced page, a
    supervisor write with the guest's CR0.WP clear, the reserved range.  Emulate the instruction."""


def pool_size(guest_memory: int) -> int:
    """Shadow-table bytes for a guest of ``guest_memory`` bytes: 1/16 of its RAM, at least 64
    pages (the pool is recycled when it runs out, so this bounds memory, not correctness)."""
    return max(64 * PAGE_SIZE, guest_memory // 16 // PAGE_SIZE * PAGE_SIZE)


class _PoolExhausted(Exception):
    pass


class ShadowPager:
    """Shadow page tables of one guest, in a private pool of host-physical pages.

    ``guest`` is the guest's RAM; ``pool`` the host-physical range ``[start, end)`` the tables
    live in (no guest may reach it); ``reserved`` maps page-aligned virtual addresses to the host
    frames mapped there in every shadow.
    """

    def __init__(
        self,
        host: Machine,
        guest: GuestMemory,
        pool: tuple[int, int],
        reserved: dict[int, int] | None = None,
    ) -> None:
        start, end = pool
        if start % PAGE_SIZE or end % PAGE_SIZE or not 0 <= start < end <= host.memory_size:
            raise ValueError(f"shadow pool [{start:#x}, {end:#x}): must be whole pages inside host RAM")
        if end - start < 8 * PAGE_SIZE:
            raise ValueError(f"shadow pool [{start:#x}, {end:#x}): needs at least 8 pages")
        overlap = start < guest.base + guest.size and guest.base < end
        if overlap:
            raise ValueError(f"shadow pool [{start:#x}, {end:#x}) overlaps the guest's RAM")
        self.host = host
        self.guest = guest
        self.pool = (start, end)
        self.reserved = {va & MASK64: frame for va, frame in (reserved or {}).items()}
        for va, frame in self.reserved.items():
            if va % PAGE_SIZE or frame % PAGE_SIZE:
                raise ValueError(f"reserved mapping {va:#x} -> {frame:#x}: both must be page aligned")
        self.needs_flush = True
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "hidden_page_faults",
                "true_page_faults",
                "emulated_page_faults",
                "traced_writes",
                "shadow_invalidations",
                "shadow_flushes",
                "shadow_invlpgs",
                "shadow_tables",
                "shadow_roots",
            ),
            0,
        )
        self._view = host.memory
        self.exec_policy: ExecPolicy | None = None
        """Which guest frames the shadows may map executable (None: as the guest's tables say)."""
        self.walks = WalkCache(guest)
        """The guest's page walks, remembered (``walk_cache``): a fault at a page answered
        before is decided without walking the guest's tables again."""
        guest.on_write = self.guest_wrote
        self._mode: tuple[int, int] | None = None
        self.levels = _PAGING_OFF_LEVELS
        self._reset_pool()

    # -- the caller's interface -------------------------------------------------------------
    def root(self, cpu: spec.State, space: Space) -> int:
        """The real CR3 for the guest's current address space in ``space`` (built if new).

        Call it before every entry into the guest: it notices CR0/CR4 changes (and drops every
        shadow then, as the hardware flushes its TLB) and guest CR3 switches."""
        mode = (cpu.cr0 & (CR0_PG | CR0_WP), cpu.cr4 & CR4_PL)
        if mode != self._mode:
            self.flush()
            self._mode = mode
            self.levels = cpu.paging_levels if cpu.cr0 & CR0_PG else _PAGING_OFF_LEVELS
        key = (cpu.cr3 & CR3_FRAME if cpu.cr0 & CR0_PG else None, space)
        root = self._roots.get(key)
        if root is None:
            if len(self._roots) >= MAX_ROOTS:
                self.flush()
            try:
                root = self._new_root()
            except _PoolExhausted:
                self.flush()
                root = self._new_root()
            self._roots[key] = root
            self.counters["shadow_roots"] += 1
        self._current = root
        self._space = space
        return root

    @property
    def real_cr4_pl(self) -> int:
        """The CR4.PL the real CPU needs for the current shadows (their number of levels - 2)."""
        return self.levels - 2

    def fault(self, cpu: spec.State, va: int, access: int) -> Resolution:
        """Answer a real #PF at ``va`` (access kind ``spec.ACCESS_*``) taken while the guest ran
        in the shadow ``root`` last returned, at the guest CPL ``cpu.cpl``."""
        if self._current is None:
            raise RuntimeError("ShadowPager.fault before root(): no shadow is current")
        va &= MASK64
        page = va & ~(PAGE_SIZE - 1)
        if self.reserved and self._reserved_slot(page, PAGE_SIZE):
            self.counters["emulated_page_faults"] += 1
            return Resolution.EMULATE
        # §7: the guest's MMU decides first (without touching A/D: a refused access sets nothing).
        # ``walks`` gives back a remembered walk when a fresh one is certain to be the same.
        paging = bool(cpu.cr0 & CR0_PG)
        w = self.walks.lookup(cpu, va, access, cpu.cpl) if paging else None
        fresh = w is None
        if w is None:
            w = spec.walk(cpu, self.guest, va, access, cpu.cpl)
        if w.fault:
            self.counters["true_page_faults"] += 1
            return Resolution.TRUE
        write = access == spec.ACCESS_WRITE
        if paging:
            # §7.5: the walker sets A in every entry used and D in the leaf on a write (a
            # remembered walk has them all set already: walking again would write nothing).
            if fresh:
                self.walks.walk(cpu, va, access, cpu.cpl, set_ad=True)
            dirty = write or bool(w.entry[-1] & spec.PTE_D)
            flags = self._leaf_flags(cpu, w, dirty)
        else:
            flags = spec.PTE_P | spec.PTE_W | spec.PTE_U  # no paging: every access is allowed
        frame = w.physical >> 12
        if paging:
            self._trace(w, page)  # first: the page may hold one of the very tables just walked
        if frame in self.guest.watched or frame in self.guest.code_frames:
            flags &= ~spec.PTE_W  # a traced page-table page or a code page: its writes must trap
        if write and not flags & spec.PTE_W:
            self.counters["emulated_page_faults"] += 1
            return Resolution.EMULATE
        if self.exec_policy is not None and not flags & spec.PTE_NX:
            fetch = access == spec.ACCESS_FETCH
            if not self.exec_policy(frame, fetch):
                if fetch:
                    self.counters["emulated_page_faults"] += 1
                    return Resolution.EMULATE
                flags |= spec.PTE_NX
        try:
            self._install(self._current, page, self.guest.hpa(frame << 12) | flags)
        except _PoolExhausted:
            self.flush()  # the retry rebuilds in an empty pool (the caller asks for a new root)
            return Resolution.HIDDEN
        if flags & spec.PTE_W:
            self._writers.setdefault(frame, set()).add((self._current, page))
        if self.exec_policy is not None and not flags & spec.PTE_NX:
            self._executors.setdefault(frame, set()).add((self._current, page))
        self.counters["hidden_page_faults"] += 1
        return Resolution.HIDDEN

    def guest_wrote(self, gpa: int, old: int, new: int) -> None:
        """A traced guest entry at ``gpa`` changed from ``old`` to ``new`` (``GuestMemory``'s
        hook): drop every shadow entry derived from it, unless the change only set A or D."""
        if old | new == new and (old ^ new) & ~_AD == 0:
            return  # the walker's own A/D updates: every shadow made from the entry stays right
        self.counters["traced_writes"] += 1
        try:
            for root, level, va in self._derived.pop(gpa, ()):
                self._clear(root, level, va)
        except _PoolExhausted:
            self.flush()  # re-mapping the reserved range found no page: start afresh

    def protect_code(self, frame: int) -> None:
        """Write-protect guest frame ``frame`` in every shadow: a code page whose writes the
        caller must hear of (``GuestMemory.code_frames``)."""
        if frame not in self.guest.code_frames:
            self.guest.code_frames.add(frame)
            self._write_protect(frame)

    def release_code(self, frame: int) -> None:
        """Stop protecting ``frame`` as a code page (its next write faults once, hidden)."""
        self.guest.code_frames.discard(frame)

    def revoke_exec(self, frame: int) -> None:
        """Take execute permission from every shadow entry mapping guest frame ``frame``."""
        self._restrict(self._executors.pop(frame, ()), frame, add=spec.PTE_NX)

    def invlpg(self, va: int) -> None:
        """The guest invalidated the page of ``va`` (§8.1): drop its entry in the current shadow."""
        self.counters["shadow_invlpgs"] += 1
        if self._current is not None:
            self._clear(self._current, 1, va & MASK64 & ~(PAGE_SIZE - 1))

    def flush(self) -> None:
        """Drop every shadow and forget every traced page."""
        self.counters["shadow_flushes"] += 1
        self._reset_pool()

    def lookup(self, va: int) -> int:
        """The current shadow's leaf entry for ``va`` (0 when there is none): for tests and reports."""
        if self._current is None:
            return 0
        table = self._table(self._current, va, 1, create=False)
        return 0 if table is None else self._read(table + 8 * ((va >> 12) & 511))

    # -- building ----------------------------------------------------------------------------
    def _leaf_flags(self, cpu: spec.State, w: spec.WalkResult, dirty: bool) -> int:
        """The shadow leaf's permissions for a translation the guest allows (§7.4)."""
        flags = spec.PTE_P
        if self._space is Space.KERNEL:
            flags |= spec.PTE_U  # the guest kernel runs at real ring 3
            writable = w.writable or not cpu.cr0 & CR0_WP  # a supervisor write needs W only with WP
        else:
            flags |= spec.PTE_U if w.user else 0
            writable = w.writable  # with the guest's CR0.WP clear, a kernel write to W=0 is emulated
        if writable and dirty:
            flags |= spec.PTE_W  # write-protected until the guest's D bit is set
        if w.nx:
            flags |= spec.PTE_NX
        return flags

    def _trace(self, w: spec.WalkResult, page: int) -> None:
        """Remember which guest entries the new shadow entry is made of, and write-protect the
        guest frames holding them."""
        derived, watched, current, level = self._derived, self.guest.watched, self._current, self.levels
        for addr in w.entry_addr:
            users = derived.get(addr)
            if users is None:
                derived[addr] = users = set()
            users.add((current, level, page))
            level -= 1
            frame = addr >> 12
            if frame not in watched:
                watched.add(frame)
                self._write_protect(frame)

    def _write_protect(self, frame: int) -> None:
        """A guest frame became a traced page: take W away from the shadow entries mapping it."""
        self._restrict(self._writers.pop(frame, ()), frame, remove=spec.PTE_W)

    def _restrict(self, mappings: Iterable[tuple[int, int]], frame: int, *, add: int = 0, remove: int = 0) -> None:
        """In each (root, page) of ``mappings`` whose leaf still maps guest frame ``frame``, set
        the bits ``add`` and clear the bits ``remove`` (a permission taken away)."""
        target = self.guest.hpa(frame << 12)
        for root, page in mappings:
            table = self._table(root, page, 1, create=False)
            if table is None:
                continue
            addr = table + 8 * ((page >> 12) & 511)
            entry = self._read(addr)
            new = (entry | add) & ~remove
            if entry & spec.PTE_P and entry & PTE_FRAME == target and new != entry:
                self._write(addr, new)
                self.needs_flush = True

    def _install(self, root: int, page: int, leaf: int) -> None:
        table = self._table(root, page, 1, create=True)
        assert table is not None
        self._write(table + 8 * ((page >> 12) & 511), leaf)

    def _table(self, root: int, va: int, level: int, *, create: bool) -> int | None:
        """The host address of the shadow table at ``level`` on the path of ``va``."""
        table = root
        for lvl in range(self.levels, level, -1):
            addr = table + 8 * ((va >> _LEVEL_SHIFT[lvl]) & 511)
            entry = self._read(addr)
            if not entry & spec.PTE_P:
                if not create:
                    return None
                entry = self._alloc() | _TABLE
                self._write(addr, entry)
            table = entry & PTE_FRAME
        return table

    def _clear(self, root: int, level: int, va: int) -> None:
        """Drop the shadow entry at ``level`` for ``va`` in ``root``, and the tables below it.

        Every path that drops shadow entries (``invlpg``, traced writes) comes here, and the
        reserved pages are never lost: a leaf whose slot is a reserved page's — compared on the
        translated bits only, so that an address such as 0x7fff_ffff_ffff_ffff, which the
        guest may name in ``invlpg`` (§3: it never faults), is the top page's slot too — is
        kept, and a table dropped above a reserved page is rebuilt with it at once."""
        if level == 1 and self._reserved_slot(va, 1 << _LEVEL_SHIFT[1]):
            return
        table = self._table(root, va, level, create=False)
        if table is None:
            return
        addr = table + 8 * ((va >> _LEVEL_SHIFT[level]) & 511)
        entry = self._read(addr)
        if not entry & spec.PTE_P:
            return
        self._write(addr, 0)
        self.counters["shadow_invalidations"] += 1
        self.needs_flush = True
        if level > 1:
            self._free_table(entry & PTE_FRAME, level - 1)
            for rva, frame in self._reserved_slot(va, 1 << _LEVEL_SHIFT[level]):
                self._map_reserved(root, rva, frame)

    def _reserved_slot(self, va: int, span: int) -> list[tuple[int, int]]:
        """The reserved pages (address, frame) inside the ``span`` bytes of shadow slot of ``va``."""
        base = va & ~(span - 1) & MASK64
        return [(rva, frame) for rva, frame in self.reserved.items() if _same_region(rva, base, span, self.levels)]

    def _free_table(self, table: int, level: int) -> None:
        if level > 1:
            for i in range(_ENTRIES):
                entry = self._read(table + 8 * i)
                if entry & spec.PTE_P:
                    self._free_table(entry & PTE_FRAME, level - 1)
        self._free.append(table)

    def _new_root(self) -> int:
        root = self._alloc()
        for va, frame in self.reserved.items():
            self._map_reserved(root, va, frame)
        return root

    def _map_reserved(self, root: int, va: int, frame: int) -> None:
        # Supervisor-only, read-only, not executable: the hardware reads the VMM's IDT there
        # (event delivery reads the IDT as supervisor reads, §6.3), the guest may not.
        self._install(root, va, frame | spec.PTE_P | spec.PTE_NX)

    def _reset_pool(self) -> None:
        self._next = self.pool[0]
        self._free: list[int] = []
        self._roots: dict[tuple[int | None, Space], int] = {}
        self._derived: dict[int, set[tuple[int, int, int]]] = {}
        self._writers: dict[int, set[tuple[int, int]]] = {}
        self._executors: dict[int, set[tuple[int, int]]] = {}
        self.guest.watched.clear()
        self._current: int | None = None  # no shadow is current until root() is called
        self._space = Space.SHARED
        self.needs_flush = True

    def _alloc(self) -> int:
        if self._free:
            page = self._free.pop()
        elif self._next + PAGE_SIZE <= self.pool[1]:
            page, self._next = self._next, self._next + PAGE_SIZE
            self.counters["shadow_tables"] += 1
        else:
            raise _PoolExhausted
        self._view[page : page + PAGE_SIZE] = bytes(PAGE_SIZE)
        return page

    def _read(self, addr: int) -> int:
        return _QUAD.unpack_from(self._view, addr)[0]

    def _write(self, addr: int, value: int) -> None:
        _QUAD.pack_into(self._view, addr, value)


def _same_region(va: int, base: int, span: int, levels: int) -> bool:
    """Is ``va`` inside the ``span`` bytes at ``base``, comparing only the translated bits?"""
    bits = 12 + 9 * levels
    mask = (1 << bits) - 1
    return (va & mask) & ~(span - 1) == base & mask & ~(span - 1)
