"""Guest workloads for the wall-clock benchmarks: small loops, ready-to-run Machines.

Each builder returns a Machine whose guest loops forever, so a run is bounded only by its
budget and the number of guest instructions per second is budget / wall time.
"""

from __future__ import annotations

from cffi_core.asm import assemble
from cffi_core.machine import Machine, MiB, TLBConfig
from cffi_core.pagetables import PAGE_4K, PageAllocator, PageTables

CODE = 0x1000
DATA = 0x100000
TABLES = 0x300000
CR0_PE, CR0_PG = 1, 1 << 15

PEER_LOOP_BODY = """\
loop:   add  r1, r1, r2
        xor  r3, r3, r1
        sd   r3, [r6]
        ld   r4, [r6]
        addi r5, r5, -1
        bnez r5, loop
"""
"""The six-instruction loop timed beside QEMU (benchmarks/peer_qemu.py): add, xor, store, load,
decrement, branch; r2 the addend, r6 the data address, r5 the count."""

ALU_LOOP = """
.org 0x1000
_start: li r2, 0x9e3779b9
loop:   add  r1, r1, r2
        xor  r3, r3, r1
        shri r5, r3, 7
        sub  r6, r6, r5
        addi r4, r4, 1
        bne  r4, r0, loop
"""

MEM_LOOP = """
.org 0x1000
_start: li   r2, 0x100000 + 32768
restart:
        li   r1, 0x100000
loop:   ld   r3, [r1]
        add  r3, r3, r4
        sd   r3, [r1]
        addi r4, r4, 1
        addi r1, r1, 8
        bltu r1, r2, loop
        jmp  restart
"""

BRANCHY_LOOP = """
.org 0x1000
_start: li   r6, 0x100000
loop:   andi r3, r1, 1
        beqz r3, even
        addi r2, r2, 3
        jmp  next
even:   xori r2, r2, 5
next:   andi r4, r1, 6
        bnez r4, skip
        sd   r2, [r6]
skip:   addi r1, r1, 1
        bltu r0, r1, loop
"""

# One load per page over 512 pages: with a 64-entry data TLB every access misses and walks.
WALK_LOOP = """
.org 0x1000
_start: li   r2, 0x100000 + 512 * 4096
restart:
        li   r1, 0x100000
loop:   ld   r3, [r1]
        li   r5, 4096
        add  r1, r1, r5
        bltu r1, r2, loop
        jmp  restart
"""

ROUND_TRIP_LOOP = """
.org 0x1000
_start:
loop:   out  0x80, r1
        addi r1, r1, 1
        jmp  loop
"""


def build(source: str, *, paging: bool, memory: int = 8 * MiB, tlb: TLBConfig | None = None) -> Machine:
    """A Machine with ``source`` loaded; with ``paging``, 4-level tables identity-map 4 MiB."""
    m = Machine("x86-2005", memory=memory, tlb=tlb)
    m.load(assemble(source, filename="<benchmark>"))
    m.cpu.r[15] = 0x80000
    if paging:
        tables = PageTables(m.write_u64, PageAllocator(TABLES, TABLES + 1 * MiB), levels=4)
        tables.map(0, 0, 4 * MiB, page=PAGE_4K)
        m.cpu.cr3 = tables.root
        m.cpu.cr0 = CR0_PE | CR0_PG
    return m
