"""Whatever the guest executes or the host writes, the core never crashes, never touches memory
outside its buffers and always ends a run with an exit or a status (§10, §14): random memory
(code, IDT and page tables alike), random CPU state, random budgets.  Run under
AddressSanitizer (``P64_SANITIZE=1``) this is the core's memory-safety check."""

from __future__ import annotations

import os
import random

from core_rig import U64, Core
from hypothesis import given, settings
from hypothesis import strategies as st

from cffi_core._binding import ffi, lib

MEMORY = 64 * 1024
FIELDS = {
    "pc": st.one_of(st.integers(0, MEMORY), st.integers(0, U64)),
    "flags": st.sampled_from([0, 1 << 8, 1 << 9, 3 << 12 | 1 << 9, 1 << 8 | 1 << 9]),
    "cpl": st.integers(0, 3),
    "cr0": st.sampled_from([1, 1 | 1 << 15, 1 | 1 << 4 | 1 << 15]),
    "cr3": st.integers(0, MEMORY // 4096 + 2).map(lambda p: p << 12),
    "cr4": st.sampled_from([0, 1, 2, 2 | 1 << 7, 1 << 2]),
    "cr8": st.integers(0, 15),
    "idtr": st.one_of(st.integers(0, MEMORY), st.integers(0, U64)),
    "seglimit": st.one_of(st.integers(0, MEMORY), st.just(U64)),
    "intr_vector": st.integers(-1, 255),
    "halted": st.integers(0, 1),
    "int_shadow": st.integers(0, 1),
    "pending_db": st.integers(0, 1),
}


@settings(max_examples=int(os.environ.get("P64_ROBUSTNESS_EXAMPLES", 60)))
@given(
    seed=st.integers(0, 2**32 - 1),
    features=st.integers(0, 3),
    state=st.fixed_dictionaries(FIELDS),
    regs=st.lists(st.one_of(st.integers(0, MEMORY), st.integers(0, U64)), min_size=16, max_size=16),
    budgets=st.lists(st.integers(0, 2000), min_size=1, max_size=5),
)
def test_random_machines_always_end_their_runs(seed, features, state, regs, budgets):
    rng = random.Random(seed)
    c = Core(features, MEMORY, dtlb=(8, 2), itlb=(4, 4))
    c.write(0, rng.randbytes(MEMORY))
    for name, value in state.items():
        setattr(c.cpu, name, value)
    for i, v in enumerate(regs):
        c.cpu.r[i] = v
    for budget in budgets:
        assert lib.p64_run(c.m, budget) == lib.P64_OK
        assert c.exit.reason <= 6
        assert c.counters()["ticks"] <= sum(budgets)
        if c.exit.reason == 2:
            c.cpu.r[c.exit.reg] = rng.getrandbits(64)
        elif c.exit.reason == 1:
            c.cpu.pc = rng.getrandbits(64) if rng.random() < 0.3 else c.cpu.pc + 4
        if rng.random() < 0.2:  # the host rewrites code or DMA lands somewhere
            addr = rng.randrange(0, MEMORY - 64)
            c.write(addr, rng.randbytes(64))
        if rng.random() < 0.1:
            buf = ffi.from_buffer(bytearray(rng.randbytes(16)))
            lib.p64_walk(c.m, rng.getrandbits(64), rng.randrange(3), rng.randrange(4), 1, ffi.new("struct p64_walk *"))
            lib.p64_write_phys(c.m, rng.randrange(MEMORY - 16), buf, 16)
