"""The block translator against the interpreter (docs/architecture.md §15): the same programs on a
machine with it off and on machines that translate at once and after a few executions must
leave the same registers, pc, exits, counters (instructions, TLB hits and misses) and memory, at
every budget, through a store into a translated run and through a fault inside one."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from core_rig import BUDGET, CODE, DATA, HOST_GATE, MEMORY, PF, TABLES, Core

from cffi_core.asm import assemble

SETTINGS = ("0", "1", "3")  # P64_TRANSLATE on the translating machines; the reference is "off"


@pytest.fixture(autouse=True, scope="module")
def translator() -> Iterator[str]:
    """Each test here makes its machines with the settings it compares (conftest runs others thrice)."""
    yield "compared"


def make(setting: str, prepare: Callable[[Core], None], **core_args) -> Core:
    """A core made with P64_TRANSLATE=setting (read when the machine is made), prepared."""
    old = os.environ.get("P64_TRANSLATE")
    os.environ["P64_TRANSLATE"] = setting
    try:
        core = Core(**core_args)
    finally:
        if old is None:
            os.environ.pop("P64_TRANSLATE", None)
        else:
            os.environ["P64_TRANSLATE"] = old
    prepare(core)
    return core


def observed(core: Core) -> dict:
    c = core.cpu
    return {
        "r": [int(c.r[i]) for i in range(16)],
        "pc": int(c.pc),
        "cr2": int(c.cr2),
        "halted": int(c.halted),
        "exit": (int(core.exit.reason), int(core.exit.vector), int(core.exit.error_code), int(core.exit.address)),
        "counters": core.counters(),
    }


def program(source: str, regs: dict[str, int], paging: bool = True) -> Callable[[Core], None]:
    image = assemble(source, origin=CODE)

    def prepare(core: Core) -> None:
        for seg in image.segments:
            core.write(seg.address, seg.data)
        if paging:
            core.paging()
        core.set_r(**regs)

    return prepare


def agree_in_slices(prepare: Callable[[Core], None], budget: int, runs: int, **core_args) -> Core:
    """Run the reference and each translating machine `runs` times with `budget`, comparing
    everything after each run; returns the reference."""
    ref = make("off", prepare, **core_args)
    cores = [make(s, prepare, **core_args) for s in SETTINGS]
    for i in range(runs):
        ref.run(budget)
        want = observed(ref)
        for s, core in zip(SETTINGS, cores, strict=True):
            core.run(budget)
            got = observed(core)
            for key in want:
                assert got[key] == want[key], f"P64_TRANSLATE={s}, budget {budget}, run {i}: {key}"
        if ref.exit.reason != BUDGET:
            break
    for s, core in zip(SETTINGS, cores, strict=True):
        assert core.read(0, MEMORY) == ref.read(0, MEMORY), f"P64_TRANSLATE={s}, budget {budget}: memory"
    return ref


PEER_LOOP = """
loop:   add  r1, r1, r2
        xor  r3, r3, r1
        sd   r3, [r6+0]
        ld   r4, [r6+0]
        addi r5, r5, -1
        bnez r5, loop
        hlt
"""


def test_a_translated_loop_stopped_at_every_budget_runs_as_the_interpreter():
    prepare = program(PEER_LOOP, {"r2": 0x9E3779B9, "r5": 12, "r6": DATA})
    for budget in range(1, 6 * 12 + 3):
        ref = agree_in_slices(prepare, budget, 6 * 12 // budget + 3)
        assert ref.cpu.halted and ref.r(5) == 0, budget


def test_a_translated_loop_with_every_alu_form_runs_as_the_interpreter_at_every_budget():
    source = """
    loop:   sub  r7, r7, r2
            and  r8, r1, r2
            or   r9, r9, r8
            mul  r10, r10, r2
            andi r11, r1, 0xf0f0
            ori  r12, r12, 0x101
            xori r13, r13, 0xfffd
            shli r14, r1, 13
            shri r8, r1, 7
            sari r9, r9, 3
            lui  r12, -1
            addi r1, r1, 0x777
            sd   r1, [r6+8]
            ld   r0, [r6+8]
            addi r5, r5, -1
            bnez r5, loop
            hlt
    """
    prepare = program(source, {"r1": 1, "r2": 0x9E3779B97F4A7C15, "r5": 5, "r6": DATA, "r10": 3})
    for budget in (1, 2, 3, 7, 15, 16, 17, 31, 100):
        ref = agree_in_slices(prepare, budget, 16 * 5 // budget + 3)
        assert ref.cpu.halted, budget


# sd rewrites the two words after it, in its own translated run, on every iteration: the first
# store turns `addi r5, r5, 3` into `xori r5, r5, 3`, which runs at once (stale: r5 = 15).
SMC_OWN_RUN = """
loop:   addi r3, r3, -1
        sd   r2, [r1+0]
        addi r5, r5, 3
        addi r4, r4, 1
        bnez r3, loop
        hlt
"""


def test_a_store_from_a_translated_run_into_itself_runs_the_new_instruction_at_every_budget():
    image = assemble(SMC_OWN_RUN, origin=CODE)
    new = assemble(SMC_OWN_RUN.replace("addi r5, r5, 3", "xori r5, r5, 3"), origin=CODE).segments[0].data
    at = 8  # the words the store writes: the 8-aligned pair after it
    word = int.from_bytes(new[at : at + 8], "little")
    for paging in (False, True):
        prepare = program(SMC_OWN_RUN, {"r1": CODE + at, "r2": word, "r3": 5}, paging=paging)
        for budget in range(1, 30):
            ref = agree_in_slices(prepare, budget, 30 // budget + 3)
            assert ref.cpu.halted and (ref.r(4), ref.r(5)) == (5, 3), (paging, budget)
        assert image.segments[0].data != new


# The store writes into the run once (the fifth iteration), then into data again: the iterations
# after it run the run's new translation, which must hold xori (a kept one: r5 = 30, not 12).
SMC_ONCE = """
loop:   addi r3, r3, -1
        sd   r2, [r1+0]
        addi r5, r5, 3
        addi r4, r4, 1
        addi r1, r9, 0
        bne  r3, r8, skip
        addi r1, r10, 0
skip:   bnez r3, loop
        hlt
"""


def test_a_store_into_a_translated_run_once_drops_its_translation_at_every_budget():
    new = assemble(SMC_ONCE.replace("addi r5, r5, 3", "xori r5, r5, 3"), origin=CODE).segments[0].data
    word = int.from_bytes(new[8:16], "little")
    regs = {"r1": DATA, "r2": word, "r3": 10, "r8": 6, "r9": DATA, "r10": CODE + 8}
    for paging in (False, True):
        prepare = program(SMC_ONCE, regs, paging=paging)
        for budget in range(1, 40):
            ref = agree_in_slices(prepare, budget, 80 // budget + 3)
            assert ref.cpu.halted and (ref.r(4), ref.r(5)) == (10, 12), (paging, budget)


# Loads one quadword per page from DATA upwards: the page at TABLES is not mapped, so the ld in
# the middle of the translated run faults there (#PF, CR2 = TABLES), every page before it a DTLB
# miss that the translated run leaves to the interpreter.
FAULT_LOOP = """
loop:   add  r1, r1, r4
        ld   r4, [r6+0]
        addi r6, r6, 0x1000
        addi r5, r5, 1
        bne  r6, r7, loop
        hlt
"""


def test_a_fault_inside_a_translated_run_is_taken_at_its_instruction_with_exact_counters():
    prepare = program(FAULT_LOOP, {"r6": DATA, "r7": TABLES + 0x10000})
    pages = (TABLES - DATA) // 0x1000
    for budget in (1, 2, 3, 5, 7, 1000):
        ref = agree_in_slices(prepare, budget, 5 * pages // budget + 4)
        assert ref.exit.reason == HOST_GATE, budget
        assert (ref.exit.vector, ref.cpu.cr2, ref.cpu.pc) == (PF, TABLES, CODE + 4), budget
        assert ref.r(5) == pages, budget


def test_tlb_hits_and_misses_of_a_paged_loop_are_the_interpreters():
    # 40 pages round and round: more than a 16-entry DTLB holds, so misses recur
    source = """
    loop:   ld   r4, [r6+0]
            add  r1, r1, r4
            sd   r1, [r6+8]
            addi r6, r6, 0x1000
            bne  r6, r7, next
            addi r6, r8, 0
    next:   addi r5, r5, -1
            bnez r5, loop
            hlt
    """
    prepare = program(source, {"r5": 400, "r6": DATA, "r7": DATA + 40 * 0x1000, "r8": DATA})
    for budget in (1, 6, 13, 100000):
        ref = agree_in_slices(prepare, budget, 8 * 400 // budget + 3, dtlb=(16, 4))
        assert ref.cpu.halted, budget
    counters = ref.counters()
    assert counters["dtlb_misses"] > 400 and counters["dtlb_hits"] > 300


def test_translations_made_again_after_every_store_fill_the_code_buffer_and_flush_it_exactly():
    # every iteration's store drops the run's translation and the next entry makes it again: some
    # 20,000 translations of a few hundred bytes fill the 1 MiB buffer several times over
    image = assemble(SMC_OWN_RUN.replace("addi r5, r5, 3", "xori r5, r5, 3"), origin=CODE)
    word = int.from_bytes(image.segments[0].data[8:16], "little")
    prepare = program(SMC_OWN_RUN, {"r1": CODE + 8, "r2": word, "r3": 20001}, paging=True)
    ref = agree_in_slices(prepare, 5 * 20001 + 10, 1)
    assert ref.cpu.halted and (ref.r(4), ref.r(5)) == (20001, 3)


def test_a_run_whose_first_load_misses_at_every_entry_runs_as_the_interpreter_when_retired():
    # a new page at every entry: the translation gives its first word back each time until the
    # core retires it (run.c, translate.c jit_retire); the loop then goes on in the interpreter
    source = """
    loop:   ld   r3, [r1+0]
            addi r1, r1, 0x1000
            addi r5, r5, 1
            bltu r1, r2, loop
            hlt
    """
    prepare = program(source, {"r1": DATA, "r2": TABLES})
    pages = (TABLES - DATA) // 0x1000
    for budget in (1, 3, 4, 5, 1000):
        ref = agree_in_slices(prepare, budget, 4 * pages // budget + 3)
        assert ref.cpu.halted and ref.r(5) == pages, budget
