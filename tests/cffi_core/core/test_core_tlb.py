"""The modeled TLB on the core (§8): FIFO replacement counted exactly against a model, the
fast arrays never adding hits, invlpg (all of a large page), CR3 flushes keeping global
entries with PGE, full flushes, and when fetch consults the instruction TLB (§8.2)."""

from __future__ import annotations

import random

import pytest
from core_rig import CODE, CR4_PGE, DATA, HANDLER, Core, I

from cffi_core.pagetables import PAGE_2M, PTE_G, PTE_W

LOAD_PAGES = range(0x40, 0x80)  # identity-mapped data pages


def fifo_model(pages: list[int], entries: int, ways: int) -> tuple[int, int]:
    """(hits, misses) of a set-associative FIFO TLB: a hit changes nothing (§8.2)."""
    sets = [[] for _ in range(entries // ways)]
    hits = misses = 0
    for p in pages:
        s = sets[p % len(sets)]
        if p in s:
            hits += 1
            continue
        misses += 1
        if len(s) == ways:
            s.pop(0)
        s.append(p)
    return hits, misses


def load_program(pages: list[int]) -> list[int]:
    words = []
    for p in pages:
        words += [I("lui", rd=1, imm=p), I("ld", rd=3, rs1=1, imm=8 * (p % 7))]
    return [*words, I("hlt")]


@pytest.mark.parametrize(("entries", "ways"), [(4, 4), (8, 2), (16, 4), (4, 1), (64, 4)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_data_tlb_counts_match_a_fifo_model(entries, ways, seed):
    rng = random.Random(seed)
    pool = rng.sample(list(LOAD_PAGES), 12)
    pages = [rng.choice(pool) for _ in range(300)]
    c = Core(dtlb=(entries, ways))
    c.paging(4)
    c.code(*load_program(pages))
    c.run(10_000)
    counters = c.counters()
    assert (counters["dtlb_hits"], counters["dtlb_misses"]) == fifo_model(pages, entries, ways)
    assert counters["walks"] == counters["dtlb_misses"] + counters["itlb_misses"]


def test_fifo_evicts_the_oldest_fill_even_if_it_was_just_hit():
    pages = [0x40, 0x42, 0x40, 0x44, 0x40]  # even pages share set 0 of 2: 0x44 evicts 0x40, just used
    c = Core(dtlb=(4, 2))
    c.paging(4)
    c.code(*load_program(pages))
    c.run()
    assert (c.counters()["dtlb_hits"], c.counters()["dtlb_misses"]) == (1, 4)


def test_a_loop_over_one_page_hits_after_the_first_miss():
    c = Core()
    c.paging(4)
    c.set_r(r1=DATA, r2=100)
    c.code(I("ld", rd=3, rs1=1), I("addi", rd=4, rs1=4, imm=1), I("bne", rs1=4, rs2=2, imm=-8), I("hlt"))
    c.run()
    assert (c.counters()["dtlb_hits"], c.counters()["dtlb_misses"]) == (99, 1)


def test_invlpg_drops_one_page():
    c = Core()
    c.paging(4)
    c.set_r(r1=DATA, r2=DATA + 0x1000)
    c.code(I("ld", rd=3, rs1=1), I("ld", rd=3, rs1=2), I("invlpg", rs1=1, imm=0x10),
           I("ld", rd=3, rs1=1), I("ld", rd=3, rs1=2), I("hlt"))  # fmt: skip
    c.run()
    counters = c.counters()
    assert (counters["dtlb_misses"], counters["dtlb_hits"], counters["invlpgs"]) == (3, 1, 1)


def test_invlpg_drops_every_piece_of_a_large_page():
    c = Core()
    pt = c.paging(4)
    va = 0x4000_0000
    pt.map(va, 0, PAGE_2M, flags=PTE_W, page=PAGE_2M)
    c.set_r(r1=va + DATA, r2=va + DATA + 0x3000)
    c.code(I("ld", rd=3, rs1=1), I("ld", rd=3, rs1=2), I("invlpg", rs1=2),
           I("ld", rd=3, rs1=1), I("ld", rd=3, rs1=2), I("hlt"))  # fmt: skip
    c.run()
    assert (c.counters()["dtlb_misses"], c.counters()["dtlb_hits"]) == (4, 0)


@pytest.mark.parametrize("pge", [False, True])
def test_cr3_write_keeps_global_entries_only_with_pge(pge):
    c = Core()
    pt = c.paging(4)
    pt.map(0x4000_0000, DATA, 0x1000, flags=PTE_W | PTE_G)
    pt.map(0x4000_1000, DATA, 0x1000, flags=PTE_W)
    if pge:
        c.cpu.cr4 |= CR4_PGE
    c.set_r(r1=0x4000_0000, r2=0x4000_1000, r5=pt.root)
    c.code(I("ld", rd=3, rs1=1), I("ld", rd=3, rs1=2), I("mtcr", crn=3, rs1=5),
           I("ld", rd=3, rs1=1), I("ld", rd=3, rs1=2), I("hlt"))  # fmt: skip
    c.run()
    counters = c.counters()
    assert counters["tlb_flushes"] == 2  # the host's CR3 load at run start, and the mtcr
    assert (counters["dtlb_hits"], counters["dtlb_misses"]) == ((1, 3) if pge else (0, 4))


@pytest.mark.parametrize(("crn", "value_of", "flushes"), [
    (0, lambda c: c.cpu.cr0 ^ (1 << 4), 1),  # WP
    (4, lambda c: c.cpu.cr4 ^ CR4_PGE, 1),
    (0, lambda c: c.cpu.cr0 ^ (1 << 3), 0),  # TS: no flush
    (4, lambda c: c.cpu.cr4 ^ (1 << 2), 0),  # TSD: no flush
])  # fmt: skip
def test_full_flushes(crn, value_of, flushes):
    c = Core()
    c.paging(4)
    c.run(0)  # the host's own loads of CR0/CR3/CR4 are counted here
    before = c.counters()["tlb_full_flushes"]
    c.set_r(r5=value_of(c), r1=DATA)
    c.code(I("ld", rd=3, rs1=1), I("mtcr", crn=crn, rs1=5), I("ld", rd=3, rs1=1), I("hlt"))
    c.cpu.pc = CODE
    c.run()
    assert c.counters()["tlb_full_flushes"] - before == flushes
    assert c.counters()["dtlb_misses"] == 1 + flushes


def test_tlb_flush_from_the_host_is_a_full_flush():
    from cffi_core._binding import lib

    c = Core()
    c.paging(4)
    c.code(I("hlt"))
    c.run()
    lib.p64_tlb_flush(c.m)
    c.cpu.pc, c.cpu.halted = CODE, 0
    c.run()
    assert (c.counters()["itlb_misses"], c.counters()["tlb_full_flushes"]) == (2, 2)


# ---- §8.2: when fetch consults the ITLB ----

ITLB_CASES = {
    "straight line": ([I("addi", rd=1, imm=1)] * 5 + [I("hlt")], 1),
    "loop in the page": ([I("addi", rd=5, rs1=5, imm=1), I("bne", rs1=5, rs2=2, imm=-4), I("hlt")], 1),
    "jmp in the page": ([I("jmp", imm=8), I("ud"), I("hlt")], 1),
    "call and ret in the page": ([I("call", imm=8), I("hlt"), I("ret")], 3),
    "jr in the page": ([I("jr", rs1=3), I("hlt")], 2),
    "branch to the next page": ([I("beq", rs1=0, rs2=0, imm=0x1000)], 2),
    "fall through": ([I("jmp", imm=0xFFC)], 2),  # jmp to the last word (in the page), then the next page
    "mtcr": ([I("mtcr", crn=2, rs1=0), I("hlt")], 2),
    "cli, sti, lidt": ([I("cli"), I("sti"), I("lidt", rs1=4), I("hlt")], 1),
    "invlpg": ([I("invlpg", rs1=1), I("hlt")], 2),
}


@pytest.mark.parametrize("case", ITLB_CASES, ids=list(ITLB_CASES))
def test_fetch_consults_the_itlb_when_it_enters_a_page(case):
    words, consults = ITLB_CASES[case]
    c = Core()
    c.paging(4)
    c.set_r(r2=10, r3=CODE + 4, r4=0x8000, r1=DATA)
    c.code(*words)
    c.code(I("addi", rd=6, imm=1), at=CODE + 0xFFC)
    c.code(I("hlt"), at=CODE + 0x1000)
    c.run()
    assert c.exit.reason == 4, case
    counters = c.counters()
    assert counters["itlb_hits"] + counters["itlb_misses"] == consults


def test_event_delivery_consults_the_itlb_at_the_handler():
    c = Core()
    c.paging(4)
    c.gate(0x40, HANDLER)
    c.code(I("int", imm=0x40))
    c.code(I("hlt"), at=HANDLER)
    c.run()
    assert c.counters()["itlb_misses"] == 2


def test_each_run_starts_with_a_consult():
    c = Core()
    c.paging(4)
    c.code(I("addi", rd=1, rs1=1, imm=1), I("jmp", imm=-4))
    for _ in range(5):
        c.run(3)
    assert (c.counters()["itlb_misses"], c.counters()["itlb_hits"]) == (1, 4)
