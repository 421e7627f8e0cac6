"""A small P64 machine on the C core alone (through ``cffi_core._binding``) for the core's
directed tests: 1 MiB of RAM, code at CODE, an IDT at IDT whose 256 gates start as host gates
(DPL 3), so the first event of a test comes back as EXIT_HOST_GATE naming vector, error code
and pc.  Instruction words come from ``cffi_core.isa.encoding.encode``."""

from __future__ import annotations

from cffi_core._binding import check, ffi, lib
from cffi_core.isa.encoding import encode
from cffi_core.pagetables import PTE_U, PTE_W, PageAllocator, PageTables

MEMORY = 1 << 20
CODE = 0x1000
IDT = 0x8000
HANDLER = 0x10000
STACK = 0x20000
RSP = (0x21000, 0x22000, 0x23000)
USER_STACK = 0x30000
DATA = 0x40000
TABLES = 0x80000

CLASSIC, SEGLIMIT = lib.P64_F_CLASSIC, lib.P64_F_SEGLIMIT
TF, IF = 1 << 8, 1 << 9
CR0_PE, CR0_WP, CR0_PG = 1, 1 << 4, 1 << 15
CR4_TSD, CR4_PGE = 1 << 2, 1 << 7
GATE_INT, GATE_TRAP, GATE_HOST, GATE_RSVD = 0, 1, 2, 3
DE, DB, UD, DF, GP, PF, AC, MC = 0, 1, 6, 8, 13, 14, 17, 18
BUDGET, HOST_GATE, IO_IN, IO_OUT, HLT, HCALL, SHUTDOWN = range(7)
SP = 15
U64 = (1 << 64) - 1

I = encode  # noqa: E741 - reads like the assembler: I("add", rd=1, rs1=2, rs2=3)


def iopl(n: int) -> int:
    return n << 12


class Core:
    """One core machine and helpers to load code, set gates and run."""

    def __init__(self, features: int = 0, memory: int = MEMORY, dtlb=(64, 4), itlb=(32, 4)) -> None:
        cfg = ffi.new("struct p64_config *")
        cfg.mem_size, cfg.features = memory, features
        cfg.dtlb_entries, cfg.dtlb_ways = dtlb
        cfg.itlb_entries, cfg.itlb_ways = itlb
        out = ffi.new("struct p64_machine **")
        check(lib.p64_create(cfg, out), None)
        self.m = ffi.gc(out[0], lib.p64_destroy)
        self.memory = memory
        self.cpu = lib.p64_cpu(self.m)
        self.exit = lib.p64_exit_info(self.m)
        self.ctr = lib.p64_counters(self.m)
        self.cpu.pc = CODE
        self.cpu.idtr = IDT
        self.cpu.r[SP] = STACK
        for i, v in enumerate(RSP):
            self.cpu.rsp[i] = v
        for v in range(256):
            self.gate(v, 0, GATE_HOST, dpl=3)

    # -- memory and code ---------------------------------------------------------------
    def write(self, addr: int, data: bytes) -> None:
        check(lib.p64_write_phys(self.m, addr, data, len(data)), self.m)

    def read(self, addr: int, n: int) -> bytes:
        buf = ffi.new("uint8_t[]", n)
        check(lib.p64_read_phys(self.m, addr, buf, n), self.m)
        return bytes(buf)

    def w64(self, addr: int, value: int) -> None:
        self.write(addr, (value & U64).to_bytes(8, "little"))

    def r64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def code(self, *words: int, at: int = CODE) -> None:
        self.write(at, b"".join(w.to_bytes(4, "little") for w in words))

    def gate(self, vector: int, handler: int = HANDLER, gate_type: int = GATE_INT, *, dpl: int = 0,
             ring: int = 0, present: bool = True) -> None:  # fmt: skip
        self.w64(IDT + 16 * vector, handler)
        self.w64(IDT + 16 * vector + 8, int(present) | gate_type << 1 | dpl << 4 | ring << 6)

    def paging(self, levels: int = 4, user: bool = True, flags: int | None = None) -> PageTables:
        """Identity-map [0, TABLES) with 4 KiB pages and turn paging on; return the tables."""
        tables = PageTables(self.w64, PageAllocator(TABLES, self.memory), levels=levels)
        tables.map(0, 0, TABLES, flags=PTE_W | (PTE_U if user else 0) if flags is None else flags)
        self.cpu.cr3 = tables.root
        self.cpu.cr4 = levels - 2
        self.cpu.cr0 = CR0_PE | CR0_PG
        return tables

    # -- running ---------------------------------------------------------------------------
    def run(self, budget: int = 1000) -> int:
        check(lib.p64_run(self.m, budget), self.m)
        return self.exit.reason

    def event(self) -> tuple[int, int | None, int]:
        """(vector, error code or None, pc) of a host-gate exit."""
        assert self.exit.reason == HOST_GATE, f"exit {self.exit.reason}, not a host gate"
        return self.exit.vector, (self.exit.error_code if self.exit.has_error else None), self.cpu.pc

    def r(self, i: int) -> int:
        return int(self.cpu.r[i])

    def set_r(self, **regs: int) -> None:
        for name, value in regs.items():
            self.cpu.r[int(name[1:])] = value & U64

    def counters(self) -> dict[str, int]:
        c = self.ctr
        out = {name: int(getattr(c, name)) for name in dir(c) if isinstance(getattr(c, name), int)}
        out["instructions"] = sum(int(c.insn[mode][cpl]) for mode in range(2) for cpl in range(4))
        out["exceptions"] = tuple(int(c.exceptions[v]) for v in range(256))
        out["interrupts"] = tuple(int(c.interrupts[v]) for v in range(256))
        return out
