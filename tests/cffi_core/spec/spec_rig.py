"""A small P64 machine for the spec's directed tests (imported by the test files, which
pytest runs with this directory on sys.path): 1 MiB of RAM, code at CODE, an IDT at IDT whose
256 gates start as host gates (DPL 3), so that the first event of a test comes back as an
EXIT_HOST_GATE naming its vector, error code and pc."""

from __future__ import annotations

from collections.abc import Iterable

from cffi_core.isa.encoding import encode
from cffi_core.pagetables import PTE_U, PTE_W, PageAllocator, PageTables
from cffi_core.spec import (
    EXIT_HOST_GATE,
    GATE_DPL_SHIFT,
    GATE_HOST,
    GATE_INTERRUPT,
    GATE_P,
    GATE_RING_SHIFT,
    GATE_TYPE_SHIFT,
    SP,
    ByteMemory,
    Exit,
    State,
    run,
    step,
)

MEMORY = 1 << 20
CODE = 0x1000
IDT = 0x8000
HANDLER = 0x10000  # handler code for tests that enter a real handler
STACK = 0x20000  # sp at reset (ring 0)
RSP = (0x21000, 0x22000, 0x23000)  # MSR_RSP0..2
USER_STACK = 0x30000
DATA = 0x40000
TABLES = 0x80000  # page tables, when a test turns paging on


class Rig:
    """One spec machine and helpers to load code, set gates and run."""

    def __init__(self, features: Iterable[str] = (), memory: int = MEMORY) -> None:
        self.mem = ByteMemory(memory)
        self.state = State.reset(entry=CODE, features=frozenset(features))
        self.state.idtr = IDT
        self.state.r[SP] = STACK
        self.state.rsp[:] = RSP
        for v in range(256):
            self.gate(v, 0, GATE_HOST, dpl=3)

    # -- memory and code ---------------------------------------------------------------
    def code(self, *words: int, at: int = CODE) -> None:
        for i, w in enumerate(words):
            self.mem.write(at + 4 * i, 4, w)

    def asm(self, *insns: tuple, at: int = CODE) -> None:
        """Each insn: (mnemonic, {operands}) or a bare mnemonic."""
        self.code(*(encode(i) if isinstance(i, str) else encode(i[0], **i[1]) for i in insns), at=at)

    def read64(self, addr: int) -> int:
        return self.mem.read(addr, 8)

    def write64(self, addr: int, value: int) -> None:
        self.mem.write(addr, 8, value)

    def gate(self, vector: int, handler: int = HANDLER, gate_type: int = GATE_INTERRUPT, *, dpl: int = 0,
             ring: int = 0, present: bool = True) -> None:  # fmt: skip
        attributes = (
            (GATE_P if present else 0) | gate_type << GATE_TYPE_SHIFT | dpl << GATE_DPL_SHIFT | ring << GATE_RING_SHIFT
        )
        self.write64(IDT + 16 * vector, handler)  # physical: tests that move IDTR map it here
        self.write64(IDT + 16 * vector + 8, attributes)

    def paging(self, levels: int = 4, user: bool = True) -> PageTables:
        """Identity-map the first 512 KiB with 4 KiB pages (writable, user if ``user``) and
        turn paging on; return the tables for more mappings."""
        tables = PageTables(self.write64, PageAllocator(TABLES, MEMORY), levels=levels)
        tables.map(0, 0, TABLES, flags=PTE_W | (PTE_U if user else 0))
        self.state.cr3 = tables.root
        self.state.cr4 = levels - 2
        self.state.cr0 |= 1 << 15
        return tables

    # -- running -----------------------------------------------------------------------
    def step(self) -> Exit | None:
        return step(self.state, self.mem)

    def run(self, budget: int = 100) -> Exit:
        return run(self.state, self.mem, budget)

    def event(self, budget: int = 100) -> tuple[int, int | None]:
        """Run to the first host-gate exit: (vector, error code or None)."""
        e = self.run(budget)
        assert e.reason == EXIT_HOST_GATE, e
        return e.vector, (e.error_code if e.has_error else None)
