"""Fuzzing the core: random words as code in random machine states, and random sequences of
host calls.  Whatever happens, the core answers with an exit or a documented exception and
stays usable; run under ASan + UBSan by .ci/sanitize.sh, it must also never touch memory
outside its buffers."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cffi_core._binding import CoreError
from cffi_core.machine import ExitReason, Machine, TLBConfig
from cffi_core.profiles import available_profiles

MEMORY = 64 * 1024
U64 = st.integers(0, 2**64 - 1)
# Addresses that land inside RAM, near its end, and anywhere.
ADDRS = st.one_of(st.integers(0, MEMORY - 1), st.integers(MEMORY - 64, MEMORY + 64), U64)
CPU_FIELDS = ("pc", "flags", "cpl", "cr0", "cr2", "cr3", "cr4", "cr8", "idtr", "seglimit", "intr_vector")


# Whole-RAM contents come from a drawn seed: hypothesis cannot draw 64 KiB directly, and a seed
# keeps every example reproducible from its printed arguments.
MEMORY_CONTENTS = st.integers(0, 2**64 - 1).map(lambda seed: random.Random(seed).randbytes(MEMORY))


def _fill(machine: Machine, data: bytes) -> None:
    machine.write(0, data + bytes(MEMORY - len(data)))


def _random_state(machine: Machine, regs: list[int], cpl: int, paging: bool, cr3: int, idtr: int) -> None:
    for i, v in enumerate(regs, start=1):
        machine.cpu.r[i] = v
    machine.cpu.pc = 0x1000
    machine.cpu.cpl = cpl
    machine.cpu.cr3 = cr3 & 0xF000
    machine.cpu.idtr = idtr
    machine.cpu.cr0 = 1 | ((1 << 15) if paging else 0)


@settings(max_examples=150)
@given(
    profile=st.sampled_from(available_profiles()),
    memory=MEMORY_CONTENTS,
    regs=st.lists(st.one_of(U64, st.integers(0, MEMORY)), min_size=15, max_size=15),
    cpl=st.integers(0, 3),
    paging=st.booleans(),
    cr3=st.integers(0, MEMORY),
    idtr=st.one_of(st.integers(0, MEMORY), U64),
    budget=st.integers(0, 3000),
)
def test_random_words_as_code_end_in_an_exit(profile, memory, regs, cpl, paging, cr3, idtr, budget):
    m = Machine(profile, memory=MEMORY, tlb=TLBConfig(8, 2, 4, 2))
    _fill(m, memory)
    _random_state(m, regs, cpl, paging, cr3, idtr)
    ticks = 0
    for _ in range(50):
        ex = m.run(budget)
        ticks = m.counters["ticks"]
        if ex.reason is ExitReason.IO_IN:
            m.cpu.r[ex.reg] = ex.port
        elif ex.reason is ExitReason.HOST_GATE:
            m.cpu.pc = (m.cpu.pc + 4) & (2**64 - 1)
        elif ex.reason in (ExitReason.BUDGET, ExitReason.SHUTDOWN, ExitReason.HLT):
            break
    assert ticks <= 50 * budget
    assert m.clock == ticks


_OPS = st.one_of(
    st.tuples(st.just("run"), st.integers(0, 500)),
    st.tuples(st.just("write"), ADDRS, st.binary(max_size=64)),
    st.tuples(st.just("read"), ADDRS, st.integers(0, 64)),
    st.tuples(st.just("walk"), U64, st.sampled_from(["read", "write", "fetch"]), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("code_written"), ADDRS, st.integers(0, 10_000)),
    st.tuples(st.just("advance"), st.integers(0, 10**6)),
    st.tuples(st.just("set"), st.sampled_from(CPU_FIELDS), st.one_of(U64, st.integers(-2, 300))),
    st.tuples(st.just("snapshot_restore")),
    st.tuples(st.just("flush")),
    st.tuples(st.just("reset")),
)


@settings(max_examples=150)
@given(memory=MEMORY_CONTENTS, ops=st.lists(_OPS, max_size=30))
def test_random_host_calls_never_break_the_core(memory, ops):
    m = Machine("x86-2005", memory=MEMORY)
    _fill(m, memory)
    m.cpu.pc = 0x1000
    for op, *args in ops:
        try:
            if op == "run":
                m.run(args[0])
            elif op == "write":
                m.write(args[0], args[1])
            elif op == "read":
                assert len(m.read(args[0], args[1])) == args[1]
            elif op == "walk":
                m.walk(*args)
            elif op == "code_written":
                m.code_written(args[0], args[1])
            elif op == "advance":
                m.advance_clock(args[0])
            elif op == "set":
                setattr(m.cpu, args[0], args[1] & (2**64 - 1) if args[0] != "intr_vector" else args[1])
            elif op == "snapshot_restore":
                snap = m.snapshot()
                m.run(50)
                m.restore(snap)
                assert m.snapshot() == snap
            elif op == "flush":
                m.tlb_flush()
            elif op == "reset":
                m.reset()
        except (CoreError, ValueError, OverflowError) as e:
            # Documented refusals: impossible state, ranges outside RAM, bad arguments.
            assert str(e), "every refusal carries a message"


@given(memory=MEMORY_CONTENTS, budget=st.integers(1, 2000))
def test_snapshot_restore_repeats_a_run_exactly(memory, budget):
    m = Machine("x86-64-2005", memory=MEMORY)
    _fill(m, memory)
    m.cpu.pc = 0x1000
    snap = m.snapshot()
    first = (m.run(budget), m.cpu.state(), dict(m.counters), m.read(0, MEMORY))
    m.restore(snap)
    second = (m.run(budget), m.cpu.state(), dict(m.counters), m.read(0, MEMORY))
    assert first == second
