"""Long runs return to Python between slices (so that Ctrl-C works), invisibly: a sliced
``Machine.run`` ends exactly as one call of the core with the whole budget — exit, clock,
counters, CPU state and memory — and a run of 10**12 ticks ends at SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

from hypothesis import event, given, settings
from hypothesis import strategies as st

from cffi_core import machine as machine_module
from cffi_core._binding import lib
from cffi_core.asm import assemble
from cffi_core.machine import ExitReason, Machine, TLBConfig
from cffi_core.pagetables import PTE_W, PageAllocator, PageTables
from tests.cffi_core.random_machines import MEMORY, initial_memory, initial_state, load_cpu, scenarios

ROOT = Path(__file__).resolve().parents[2]
PG = 1 << 15  # CR0.PG, docs/architecture.md §2
SPIN = "_start: jmp _start\n"
# Long enough for any bound a loaded CI machine needs, far short of the 10**12-tick run (~20
# minutes at the core's speed) that a run without slices would make.
GENEROUS = 120


def _build(s) -> Machine:
    mem, cr3 = initial_memory(s)
    m = Machine(s.profile, memory=MEMORY, tlb=TLBConfig(16, 4, 8, 2))
    m.write(0, bytes(mem))
    load_cpu(m.cpu, initial_state(s, cr3))
    return m


def _observe(m: Machine, ex) -> tuple:
    return ex, m.cpu.state(), m.clock, dict(m.counters), m.read(0, m.memory_size)


def _whole(m: Machine, budget: int):
    """One call of the core with the whole budget, as before slices existed."""
    assert lib.p64_run(m._m, budget) == lib.P64_OK
    return Machine._exit_of(m._exit)


def _assert_same(sliced: Machine, a, whole: Machine, b, *, paging_turned_on: bool, where: str) -> None:
    """Everything equal — but for one ITLB hit more when the guest turned paging on within a
    slice (the resume that follows enters the page of pc, docs/architecture.md §8.2)."""
    x, y = _observe(sliced, a), _observe(whole, b)
    extra = x[3]["itlb_hits"] - y[3]["itlb_hits"]
    assert extra in ((0, 1) if paging_turned_on else (0,)), where
    x[3]["itlb_hits"] = y[3]["itlb_hits"]
    assert x == y, where


@settings(max_examples=200)
@given(s=scenarios(), budgets=st.lists(st.integers(0, 3000), min_size=1, max_size=3), slice_=st.integers(1, 64))
def test_a_sliced_run_ends_as_one_run_of_the_whole_budget(s, budgets, slice_):
    sliced, whole = _build(s), _build(s)
    vectors = sorted(s.interrupts.values())
    with mock.patch.object(machine_module, "RUN_SLICE", slice_):
        for i, budget in enumerate(budgets):
            if i < len(vectors):  # a pending interrupt at the start of some runs (§6.5)
                sliced.cpu.intr_vector = whole.cpu.intr_vector = vectors[i]
            flat, walks = not whole.cpu.cr0 & PG, whole.counters["walks"]
            a, b = sliced.run(budget), _whole(whole, budget)
            # paging was on for a while (its first fetch walked), after a flat start
            turned_on = flat and whole.counters["walks"] > walks
            where = f"run {i} of {budgets}, slice {slice_}"
            _assert_same(sliced, a, whole, b, paging_turned_on=turned_on, where=where)
            event(f"ended by {a.reason.name}, {'paging' if s.paging else 'flat'}")


def _paging_machine(source: str) -> Machine:
    m = Machine(memory=1 << 20)
    tables = PageTables(m.write_u64, PageAllocator(0x30000, 0x40000), levels=4)
    tables.map(0, 0, 1 << 20, flags=PTE_W)
    m.load(assemble(source.replace("ROOT", hex(tables.root))))
    return m


TURN_PAGING_ON = """
_start: li   r1, 200
wait:   addi r1, r1, -1
        bnez r1, wait
        li   r2, ROOT
        mtcr cr3, r2
        li   r2, 0x8001
        mtcr cr0, r2
spin:   addi r3, r3, 1
        jmp  spin
"""


def test_a_run_with_paging_on_from_its_start_is_one_run():
    sliced, whole = _paging_machine(TURN_PAGING_ON), _paging_machine(TURN_PAGING_ON)
    _whole(sliced, 1000)
    _whole(whole, 1000)
    assert sliced.cpu.cr0 & PG
    with mock.patch.object(machine_module, "RUN_SLICE", 37):
        a = sliced.run(5000)
    b = _whole(whole, 5000)
    assert sliced.counters["itlb_hits"] > 0
    _assert_same(sliced, a, whole, b, paging_turned_on=False, where="paging on")


def test_slices_end_once_the_guest_turns_paging_on():
    # Flat for a few slices, then paging on within one: the rest of the budget runs in one
    # call, so the ITLB counts at most the one lookup of that call's start.
    sliced, whole = _paging_machine(TURN_PAGING_ON), _paging_machine(TURN_PAGING_ON)
    with mock.patch.object(machine_module, "RUN_SLICE", 37):
        a = sliced.run(5000)
    b = _whole(whole, 5000)
    assert sliced.cpu.cr0 & PG
    _assert_same(sliced, a, whole, b, paging_turned_on=True, where="paging turned on")


def test_a_long_run_is_made_of_slices_and_ends_where_one_run_would():
    m, n = Machine(memory=1 << 20), Machine(memory=1 << 20)
    for x in (m, n):
        x.load(assemble(SPIN))
    budget = 3 * machine_module.RUN_SLICE + 5
    assert m.run(budget).reason is ExitReason.BUDGET
    _whole(n, budget)
    assert (m.clock, dict(m.counters), m.cpu.state()) == (n.clock, dict(n.counters), n.cpu.state())


# Prepended to each child's script: ``announce()``, called just before the long run, prints
# "running" half a second later, from another thread, when the run is well under way.
PRELUDE = """
import signal, threading
signal.signal(signal.SIGINT, signal.default_int_handler)
def announce():
    threading.Timer(0.5, lambda: print("running", flush=True)).start()
"""


def _interrupted(script: str) -> subprocess.CompletedProcess:
    """Run ``script`` in a child; once it says "running" (from inside its long run), send it
    SIGINT, and return how it ended."""
    child = subprocess.Popen(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "running\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=GENEROUS)
    finally:
        child.kill()
        child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, "running\n" + out, err)


def test_ctrl_c_ends_a_long_run_and_leaves_the_machine_usable():
    done = _interrupted(
        f"""
        from cffi_core.asm import assemble
        from cffi_core.machine import ExitReason, Machine, RUN_SLICE
        m = Machine(memory=1 << 20)
        m.load(assemble({SPIN!r}))
        m.run(3)
        announce()
        try:
            m.run(10**12)
        except KeyboardInterrupt:
            # a budget exit between two slices: consistent, and the machine runs on
            ticks = m.clock
            assert ticks % RUN_SLICE == 3 and ticks == m.counters["ticks"], ticks
            assert m.run(5).reason is ExitReason.BUDGET and m.clock == ticks + 5
            print("interrupted", flush=True)
        """
    )
    assert done.stdout.splitlines() == ["running", "interrupted"], done.stderr
    assert done.returncode == 0


def test_ctrl_c_ends_a_long_platform_run():
    done = _interrupted(
        f"""
        from cffi_core.asm import assemble
        from cffi_core.platform import Platform
        p = Platform(memory=1 << 20)
        p.load(assemble({SPIN!r}))
        announce()
        p.run(10**12)
        """
    )
    assert done.returncode != 0
    assert "KeyboardInterrupt" in done.stderr


def test_ctrl_c_ends_popek_run(tmp_path):
    spin = tmp_path / "spin.s"
    spin.write_text(SPIN)
    done = _interrupted(
        f"""
        import runpy, sys
        from cffi_core import platform
        sys.argv = ["popek", "run", {str(spin)!r}, "--budget", "1000000000000"]
        run = platform.Platform.run
        def announced(self, *args, **kwargs):
            announce()
            return run(self, *args, **kwargs)
        platform.Platform.run = announced
        runpy.run_module("reports.cli", run_name="__main__")
        """
    )
    assert done.returncode == 130  # 128 + SIGINT
    assert done.stderr.strip().splitlines() == ["popek: interrupted"], done.stderr
