"""Wall-clock speed of the C core: guest MIPS with paging off and on, page walks per second,
and the cost of a round trip from the core into a Python exit handler and back.

The peer loop is the six-instruction loop that benchmarks/peer_qemu.py runs side by side with
QEMU TCG (add, xor, store, load, decrement, branch; 4-level paging).

Targets (the project's speed goals): >= 600 MIPS geomean over the paging-on loops (floor 400), and a
Python round trip <= 3 us.  These are measurements, reported in extra_info, not assertions.
"""

from __future__ import annotations

import pytest

from benchmarks.workloads import ALU_LOOP, BRANCHY_LOOP, MEM_LOOP, PEER_LOOP_BODY, ROUND_TRIP_LOOP, WALK_LOOP, build
from cffi_core.machine import ExitReason

BUDGET = 20_000_000
ROUNDS = 5

PEER_LOOP = """
.org 0x1000
_start: li   r2, 0x9e3779b9
        li   r6, 0x100000
""" + PEER_LOOP_BODY


def _run_loop(benchmark, machine, budget: int = BUDGET) -> None:
    snap = machine.snapshot()

    def setup():
        machine.restore(snap)

    def target():
        ex = machine.run(budget)
        assert ex.reason is ExitReason.BUDGET

    benchmark.pedantic(target, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    benchmark.extra_info["guest_instructions"] = budget
    benchmark.extra_info["mips"] = budget / benchmark.stats.stats.median / 1e6


def test_alu_loop_paging_off(benchmark):
    _run_loop(benchmark, build(ALU_LOOP, paging=False))


@pytest.mark.parametrize("source", [ALU_LOOP, MEM_LOOP, BRANCHY_LOOP, PEER_LOOP], ids=["alu", "mem", "branchy", "peer"])
def test_loop_paging_on(benchmark, source):
    _run_loop(benchmark, build(source, paging=True))


def test_page_walks_paging_on(benchmark):
    machine = build(WALK_LOOP, paging=True)
    before = machine.counters["walks"]
    _run_loop(benchmark, machine, budget=BUDGET // 4)
    # Every round starts from the same snapshot, counters included: the last round's walks
    # are the counters now minus those at the snapshot.
    walks_per_run = machine.counters["walks"] - before
    benchmark.extra_info["walks_per_run"] = walks_per_run
    benchmark.extra_info["walks_per_second"] = walks_per_run / benchmark.stats.stats.median


def test_python_round_trip_paging_off(benchmark):
    """run -> port-I/O exit -> a trivial Python handler -> run, N times."""
    machine = build(ROUND_TRIP_LOOP, paging=False)
    trips = 100_000
    seen = []

    def handler(ex) -> None:
        seen.append(ex.value)

    def target():
        seen.clear()
        run = machine.run
        for _ in range(trips):
            ex = run(1_000_000)
            handler(ex)

    benchmark.pedantic(target, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    assert len(seen) == trips
    benchmark.extra_info["round_trips"] = trips
    benchmark.extra_info["us_per_round_trip"] = benchmark.stats.stats.median / trips * 1e6
