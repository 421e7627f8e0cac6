"""Direct paging, validated (docs/paravirt-abi.md §7): the typed frames of one paravirtual guest and the rules of mmu_update.

The guest's page tables are the tables the MMU walks — no shadows (Barham et al. 2003, "Virtual
address translation": the guest allocates and manages the hardware page tables, which are
registered with Xen and mapped read-only, and Xen validates every update).  What keeps the
guest to its own memory is the *type* of each frame: a page becomes a table of level L only by
being **pinned** at L, and the VMM keeps §7.2's invariants for every pinned table:

1. every table reachable from a current base is pinned at its level (set_cr3 takes only a
   pinned L4, and a pinned table's entries name only pinned tables of the level below);
2. no present L1 entry of a pinned table maps a pinned page writable, and nothing maps a large
   page;
3. every present entry maps a frame of the guest's memory;
4. the top-level slots from ``PV_VMM_L4_FIRST`` are the VMM's (the machine's IDT lives there);
5. the pages the VMM writes (shared info, the console and block rings) are never pinned.

To check rule 2 at a pin and the ``EINUSE`` of an unpin in O(1), the class keeps two reference
counts, per machine frame: how many present entries of pinned tables of level 2-4 name it as a
table (``refs``), and how many present *writable* entries of pinned L1s map it (``writable``).

Everything here works in **machine** addresses (pseudo-physical + ``mem_base``, §3), the
addresses the entries hold and the MMU walks.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Iterable

from cffi_core.machine import PAGE_SIZE, Machine
from cffi_core.spec.state import PTE_FRAME, PTE_P, PTE_PS, PTE_RESERVED, PTE_W
from conformance.paravirt import PV_VMM_L4_FIRST, MmuCmd, PvError

__all__ = ["ENTRIES", "PageTables", "Refused"]

ENTRIES = PAGE_SIZE // 8  # 512 entries of 8 bytes per table (docs/architecture.md §7.1)
_TABLE = struct.Struct(f"<{ENTRIES}Q")
_PAGE_MASK = PAGE_SIZE - 1


class Refused(Exception):
    """A hypercall (or one of its requests) refused with ``code``; ``index``, when given, goes
    into r2 (docs/paravirt-abi.md §4: the vector of set_trap_table, the request of mmu_update)."""

    def __init__(self, code: PvError, index: int | None = None) -> None:
        super().__init__(code.name)
        self.code = code
        self.index = index


class PageTables:
    """The pinned tables of one guest, and the validated changes of §7.3.

    ``vmm_l4_entry`` is what the VMM keeps in its top-level slot ``vmm_slot`` of every pinned L4
    (its own tables mapping the machine's IDT, address-space compression); ``vmm_pages`` are the
    machine addresses of the pages of rule 5; ``flush`` drops the host's TLB (the VMM's own
    flush at a pin, §7.3)."""

    def __init__(
        self,
        host: Machine,
        mem_base: int,
        mem_size: int,
        *,
        user_bit: int = 0,
        vmm_slot: int,
        vmm_l4_entry: int,
        vmm_pages: Iterable[int],
        flush: Callable[[], None],
    ) -> None:
        self.host = host
        self.mem_base = mem_base
        self.mem_end = mem_base + mem_size
        self.vmm_slot = vmm_slot
        self.user_bit = user_bit
        """``PTE_U`` where the kernel runs at ring 3 (§7.2: set in every present entry stored, so that
        the kernel reaches its pages at CPL 3), else 0: entries are stored bit for bit."""
        self.vmm_l4_entry = vmm_l4_entry
        self.vmm_pages = frozenset(vmm_pages)
        self.flush = flush
        self.level: dict[int, int] = {}
        """Pinned tables: machine address of the page -> its level (1-4)."""
        self.refs: Counter[int] = Counter()
        """Machine frame -> present entries of pinned tables of level 2-4 that name it."""
        self.writable: Counter[int] = Counter()
        """Machine frame -> present writable entries of pinned L1s that map it."""
        self.bases: tuple[int, int] = (0, 0)
        """The current base and user base (set_cr3): an unpin of either is ``EINUSE``."""

    # -- reading ----------------------------------------------------------------------------
    def owned(self, machine: int, size: int = PAGE_SIZE) -> bool:
        """True when ``[machine, machine + size)`` is the guest's memory (rule 3)."""
        return self.mem_base <= machine and machine + size <= self.mem_end

    def entries(self, table: int) -> tuple[int, ...]:
        """The 512 entries of the table page at machine address ``table``."""
        return _TABLE.unpack_from(self.host.memory, table)

    def pinned_in(self, machine: int, size: int) -> bool:
        """True when a byte of ``[machine, machine + size)`` is in a pinned table (a block read
        into it would change a table behind validation's back, §9)."""
        first, last = machine & ~_PAGE_MASK, (machine + size - 1) & ~_PAGE_MASK
        return any(page in self.level for page in range(first, last + 1, PAGE_SIZE))

    # -- §7.2: one entry ----------------------------------------------------------------------
    def check_entry(self, level: int, slot: int, value: int, pinning: int | None = None) -> PvError | None:
        """The refusal of entry ``value`` written in slot ``slot`` of a table of ``level`` (§7.2,
        checks in the specification's order), or None.  ``pinning`` is the page being pinned, if
        any: an L1 that maps *itself* writable is refused like one that maps a pinned page
        writable, or the pin would make a writable mapping of a table."""
        if level == 4 and slot >= PV_VMM_L4_FIRST:
            return PvError.EPERM
        if not value & PTE_P:
            return None  # not present: its other bits are the guest's
        if value & (PTE_RESERVED | PTE_PS):
            return PvError.ERSVD
        frame = value & PTE_FRAME
        if not self.owned(frame):
            return PvError.ENOTOWNED
        if level > 1:
            below = self.level.get(frame)
            if below is None:
                return PvError.ENOTTABLE
            if below != level - 1:
                return PvError.ELEVEL
        elif value & PTE_W and (frame in self.level or frame == pinning):
            return PvError.EWRITABLE
        return None

    def _account(self, level: int, value: int, delta: int) -> None:
        """Count a present entry of a pinned table in (``delta`` = 1) or out (-1)."""
        if not value & PTE_P:
            return
        frame = value & PTE_FRAME
        if level > 1:
            self.refs[frame] += delta
        elif value & PTE_W:
            self.writable[frame] += delta

    # -- §7.3: the commands -------------------------------------------------------------------
    def apply(self, ptr: int, val: int) -> MmuCmd:
        """One ``mmu_update`` request; ``Refused`` names why it is not applied.  INVLPG is the
        caller's (it reaches the TLB, not the tables): it is validated and returned here."""
        cmd, address = ptr & 0x7, ptr & ~0x7
        if cmd == MmuCmd.UPDATE:
            self.update(address, val)
        elif cmd == MmuCmd.INVLPG:
            if val:
                raise Refused(PvError.EINVAL)
        elif cmd == MmuCmd.PIN:
            self.pin(address, val)
        elif cmd == MmuCmd.UNPIN:
            self.unpin(address, val)
        else:
            raise Refused(PvError.EINVAL)  # commands 4-7
        return MmuCmd(cmd)

    def update(self, entry: int, value: int) -> None:
        """``MMU_CMD_UPDATE``: store ``value`` at machine address ``entry``, an entry of a pinned
        table, after §7.2's checks; the entry is stored bit for bit."""
        table = entry & ~_PAGE_MASK
        level = self.level.get(table)
        if level is None:
            raise Refused(PvError.ENOTTABLE)
        slot = (entry & _PAGE_MASK) >> 3
        refusal = self.check_entry(level, slot, value)
        if refusal is not None:
            raise Refused(refusal)
        old = int.from_bytes(self.host.read(entry, 8), "little")
        self._account(level, old, -1)
        self._account(level, value, +1)
        if value & PTE_P:
            value |= self.user_bit
        self.host.write(entry, value.to_bytes(8, "little"))

    def pin(self, page: int, level: int) -> None:
        """``MMU_CMD_PIN``: type ``page`` as a table of ``level`` once every present entry passes
        §7.2 at that level; an L4 gets the VMM's slot.  The host TLB is flushed, so that no
        translation cached while the page was writable survives the pin (§7.3)."""
        if page & _PAGE_MASK or not 1 <= level <= 4:
            raise Refused(PvError.EINVAL)
        if not self.owned(page):
            raise Refused(PvError.ENOTOWNED)
        if page in self.level:
            raise Refused(PvError.EPINNED)
        if page in self.vmm_pages:
            raise Refused(PvError.EPERM)
        if self.writable[page]:
            raise Refused(PvError.EWRITABLE)
        entries = self.entries(page)
        for slot, value in enumerate(entries):
            if value & PTE_P:
                refusal = self.check_entry(level, slot, value, pinning=page)
                if refusal is not None:
                    raise Refused(refusal)
        for value in entries:
            self._account(level, value, +1)
        if self.user_bit:
            slots = ENTRIES if level < 4 else PV_VMM_L4_FIRST
            user = [v | self.user_bit if v & PTE_P and i < slots else v for i, v in enumerate(entries)]
            self.host.write(page, _TABLE.pack(*user))
        self.level[page] = level
        if level == 4:
            self.host.write(page + 8 * self.vmm_slot, self.vmm_l4_entry.to_bytes(8, "little"))
        self.flush()

    def unpin(self, page: int, val: int) -> None:
        """``MMU_CMD_UNPIN``: make a pinned table an ordinary page again, unless something still
        refers to it; first the VMM takes back its slot of an L4."""
        if val:
            raise Refused(PvError.EINVAL)
        level = self.level.get(page)
        if level is None:
            raise Refused(PvError.ENOTTABLE)
        if self.refs[page] or page in self.bases:
            raise Refused(PvError.EINUSE)
        if level == 4:
            self.host.write(page + 8 * self.vmm_slot, bytes(8))
        for slot, value in enumerate(self.entries(page)):
            if level < 4 or slot < PV_VMM_L4_FIRST:
                self._account(level, value, -1)
        del self.level[page]

    def check_base(self, base: int) -> None:
        """What set_cr3 asks of a base (§4.6): page-aligned, pinned, an L4."""
        if base & _PAGE_MASK:
            raise Refused(PvError.EINVAL)
        level = self.level.get(base)
        if level is None:
            raise Refused(PvError.ENOTTABLE)
        if level != 4:
            raise Refused(PvError.ELEVEL)
