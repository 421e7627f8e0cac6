"""Whatever the program and the machine, the spec only ever ends a run with an Exit: a
Fault never escapes ``run``, nothing else is raised, the state stays one the host could
hand back (manual §14: everything but stale TLB entries and DMA races is defined)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from spec_rig import CODE, HANDLER, IDT, TABLES, Rig

from cffi_core.isa.strategies import any_words
from cffi_core.pagetables import PTE_NX, PTE_U, PTE_W, PageAllocator, PageTables
from cffi_core.spec import EXIT_HLT, EXIT_IO_IN, EXIT_SHUTDOWN, SP, Exit, check_state

_gate_attributes = st.integers(0, 0xFF)
_register = st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([0, CODE, IDT, 0x40000]))
_page_flags = st.sampled_from([PTE_W | PTE_U, PTE_U, PTE_W, 0, PTE_W | PTE_U | PTE_NX, None])


@given(
    body=st.lists(any_words(), min_size=1, max_size=32),
    handler=st.lists(any_words(), min_size=1, max_size=8),
    gates=st.lists(_gate_attributes, min_size=8, max_size=8),
    regs=st.lists(_register, min_size=15, max_size=15),
    cpl=st.integers(0, 3),
    flags=st.sampled_from([0, 1 << 9, 3 << 12, 1 << 8 | 1 << 9, 1 << 9 | 1 << 12]),
    features=st.sampled_from([(), ("seglimit",), ("classic",)]),
    paging=st.sampled_from([0, 2, 3, 4]),
    pages=st.lists(_page_flags, min_size=64, max_size=64),
    interrupt=st.integers(-1, 255),
)
def test_random_programs_end_every_run_with_an_exit(
    body, handler, gates, regs, cpl, flags, features, paging, pages, interrupt
):
    rig = Rig(features=features)
    rig.code(*body)
    rig.code(*handler, at=HANDLER)
    for v in range(256):
        rig.gate(v, HANDLER + 4 * (v % len(handler)), 0)
        rig.write64(IDT + 16 * v + 8, gates[v % 8])
    s = rig.state
    s.r[1:] = regs
    s.r[SP] = 0x20000 + (regs[0] & 0xFF8)
    s.cpl, s.flags, s.intr_vector, s.seglimit = cpl, flags, interrupt, 0x3FFFF
    if paging:
        tables = PageTables(rig.write64, PageAllocator(TABLES, rig.mem.size), levels=paging)
        for page, page_flags in enumerate(pages):
            if page_flags is not None:
                tables.map(page << 12, page << 12, 0x1000, flags=page_flags)
        s.cr3, s.cr4, s.cr0 = tables.root, paging - 2, s.cr0 | 1 << 15
    for _ in range(20):
        e = rig.run(10)
        assert isinstance(e, Exit)
        check_state(s)
        if e.reason in (EXIT_SHUTDOWN, EXIT_HLT):
            break
        if e.reason == EXIT_IO_IN:
            s.r[e.reg] = 0x1234 if e.reg else 0
