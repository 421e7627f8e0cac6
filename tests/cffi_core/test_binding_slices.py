"""Runs in slices (docs/architecture.md §10): the core pauses a run after a slice of work with the
run still open, and goes on with it or closes it at a budget exit, invisibly — a run in slices
ends exactly as one call of the core with the whole budget (exit, clock, every counter, the
TLBs' hits among them, CPU state, memory; for vmrun the VMCS) — so that Machine.run and
Machine.vmrun return to Python between slices and Ctrl-C stops a run of 10**12 ticks, paging on
or off, in guest mode too, leaving the machine at the budget exit of the tick where it paused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cffi_core import machine as machine_module
from cffi_core._binding import RangeError, StateError, check, lib
from cffi_core.asm import assemble
from cffi_core.machine import ExitReason, Machine, TLBConfig
from cffi_core.pagetables import PTE_W, PageAllocator, PageTables
from cffi_core.vmx import VmcsField
from tests.cffi_core.random_machines import MEMORY, initial_memory, initial_state, load_cpu, scenarios
from tests.cffi_core.vmx.test_fuzz_vmx import HOST_OPS, OPS, PROFILES, draw_example, play
from tests.cffi_core.vmx.vmx_rig import Guest

ROOT = Path(__file__).resolve().parents[2]
PG = 1 << 15  # CR0.PG, docs/architecture.md §2
NO_SLICE = 2**64 - 1  # a slice that never ends: the core's one-call path (p64_run, p64_vmrun)
SPIN = "_start: jmp _start\n"
# Long enough for any bound a loaded CI machine needs, far short of the 10**12-tick run (~20
# minutes at the core's speed) that a run without slices would make.
GENEROUS = 120


# ---- exactness ------------------------------------------------------------------------------


def _build(s) -> Machine:
    mem, cr3 = initial_memory(s)
    m = Machine(s.profile, memory=MEMORY, tlb=TLBConfig(16, 4, 8, 2))
    m.write(0, bytes(mem))
    load_cpu(m.cpu, initial_state(s, cr3))
    return m


def _observe(m: Machine, ex) -> tuple:
    return ex, m.cpu.state(), m.clock, dict(m.counters), m.read(0, m.memory_size)


def _whole(m: Machine, budget: int):
    """One call of the core with the whole budget."""
    check(lib.p64_run(m._m, budget), m._m)
    return machine_module._exit_of(m._exit)


def _in_slices(m: Machine, budget: int, slices: list[int]) -> tuple[object, int]:
    """``budget`` ticks as p64_run_slice, then p64_resume until the run ends, the slices taken
    from ``slices`` in turn; each call runs at most its slice of ticks.  The exit and the number
    of pauses."""
    h, pauses = m._m, 0
    clock = m.clock
    check(lib.p64_run_slice(h, budget, slices[0]), h)
    assert m.clock - clock <= slices[0]
    while m._exit.reason == lib.P64_EXIT_PAUSED:
        pauses += 1
        clock, n = m.clock, slices[pauses % len(slices)]
        check(lib.p64_resume(h, n), h)
        assert m.clock - clock <= n
    return machine_module._exit_of(m._exit), pauses


@settings(max_examples=200)
@given(
    s=scenarios(),
    budgets=st.lists(st.integers(0, 3000), min_size=1, max_size=3),
    slices=st.lists(st.integers(1, 80), min_size=1, max_size=4),
)
def test_a_run_in_slices_ends_exactly_as_one_call(s, budgets, slices):
    sliced, whole = _build(s), _build(s)
    vectors = sorted(s.interrupts.values())
    for i, budget in enumerate(budgets):
        if i < len(vectors):  # a pending interrupt at the start of some runs (§6.5)
            sliced.cpu.intr_vector = whole.cpu.intr_vector = vectors[i]
        a, pauses = _in_slices(sliced, budget, slices)
        b = _whole(whole, budget)
        assert _observe(sliced, a) == _observe(whole, b), f"run {i} of {budgets}, slices {slices}"
        event(f"ended by {a.reason.name}, {'paging' if s.paging else 'flat'}, {'paused' if pauses else 'one slice'}")


@settings(max_examples=100)
@given(s=scenarios(), budget=st.integers(0, 3000), slice_=st.integers(1, 64))
def test_machine_run_in_slices_ends_exactly_as_one_call(s, budget, slice_):
    sliced, whole = _build(s), _build(s)
    with mock.patch.object(machine_module, "RUN_SLICE", slice_):
        a = sliced.run(budget)
    assert _observe(sliced, a) == _observe(whole, _whole(whole, budget))


# Pages of code that jump from one to the next: every tick may enter a page (ITLB, decoding) and
# the pages' bodies flush the TLB, invalidate a page, or write code (docs/architecture.md §8, §15).
BODIES = {
    "plain": "",
    "load": "ld r5, [r6]",
    "flush": "mfcr r2, cr3\n mtcr cr3, r2",
    "invlpg": "invlpg [r6]",
    "code": "sd r1, [r4]",  # into the next page's code, which decodes again
}
CHAIN = 0x10000
TABLES = (0xC0000, 0xE0000)


def _chain(pages: list[tuple[str, int]], paging: bool, memory: int = 1 << 20) -> Machine:
    """A machine running ``pages``: page k at CHAIN + k * 4096 does its body and jumps to the
    page its second item names."""
    lines = []
    for k, (body, nxt) in enumerate(pages):
        lines += [f".org {CHAIN + k * 4096:#x}", f"p{k}: addi r1, r1, 1", BODIES[body], f"jmp p{nxt % len(pages)}"]
    m = Machine(memory=memory, tlb=TLBConfig(8, 2, 4, 1))
    m.load(assemble("\n".join(lines), filename="<chain>"))
    m.cpu.pc = CHAIN
    m.cpu.r[4], m.cpu.r[6] = CHAIN + 4096 + 0x800, CHAIN
    if paging:
        tables = PageTables(m.write_u64, PageAllocator(*TABLES), levels=4)
        tables.map(0, 0, TABLES[0], flags=PTE_W)
        m.cpu.cr3, m.cpu.cr0 = tables.root, m.cpu.cr0 | PG
    return m


@settings(max_examples=100)
@given(
    pages=st.lists(st.tuples(st.sampled_from(sorted(BODIES)), st.integers(0, 63)), min_size=1, max_size=40),
    paging=st.booleans(),
    budget=st.integers(0, 4000),
    slices=st.lists(st.integers(1, 300), min_size=1, max_size=4),
)
def test_slices_ended_by_costly_ticks_end_exactly_as_one_call(pages, paging, budget, slices):
    # Decoding, flushes and invlpg weigh more than a tick: slices end early, between two ticks.
    sliced, whole = _chain(pages, paging), _chain(pages, paging)
    a, _ = _in_slices(sliced, budget, slices)
    assert _observe(sliced, a) == _observe(whole, _whole(whole, budget))
    event(f"{'paging' if paging else 'flat'}, {sliced.counters['pages_decoded']} pages decoded")


def test_slices_of_a_guest_that_fills_the_decoded_cache_end_exactly_as_one_call():
    # More pages than the decoded-instruction cache holds (1024, §15): it empties as it runs.
    pages = [("plain", k + 1) for k in range(1100)]
    sliced, whole = _chain(pages, False, memory=8 << 20), _chain(pages, False, memory=8 << 20)
    a, pauses = _in_slices(sliced, 5000, [37, 1, 200])
    assert pauses > 0 and sliced.counters["pages_decoded"] > 1100
    assert _observe(sliced, a) == _observe(whole, _whole(whole, 5000))


def test_a_slice_of_costly_ticks_is_fewer_ticks():
    # Every other tick decodes a page (the cache holds fewer than the loop's 1100): a slice of
    # RUN_SLICE units of work is far fewer ticks, so that it takes no longer than plain ticks.
    m = _chain([("plain", k + 1) for k in range(1100)], False, memory=8 << 20)
    check(lib.p64_run_slice(m._m, 10**12, machine_module.RUN_SLICE), m._m)
    assert m._exit.reason == lib.P64_EXIT_PAUSED
    assert 0 < m.clock < machine_module.RUN_SLICE // 16
    check(lib.p64_close(m._m), m._m)


# ---- closing: the budget exit at the tick of the pause ----------------------------------------


def _interrupt_after(k: int):
    """A p64_resume that raises KeyboardInterrupt after ``k`` calls, as a signal handler would
    between two slices."""
    calls = [0]
    resume = machine_module._resume

    def interrupted(h, n):
        calls[0] += 1
        if calls[0] > k:
            raise KeyboardInterrupt
        return resume(h, n)

    return interrupted


@settings(max_examples=150)
@given(s=scenarios(), budget=st.integers(1, 3000), slice_=st.integers(1, 64), k=st.integers(0, 5))
def test_an_interrupted_run_ends_as_a_run_of_the_ticks_it_made(s, budget, slice_, k):
    sliced, whole = _build(s), _build(s)
    with (
        mock.patch.object(machine_module, "RUN_SLICE", slice_),
        mock.patch.object(machine_module, "_resume", _interrupt_after(k)),
    ):
        try:
            a, ticks = sliced.run(budget), budget
        except KeyboardInterrupt:
            # closed: a budget exit as if the budget had been the ticks made
            a, ticks = machine_module._BUDGET_EXIT, sliced.clock
            event("interrupted")
    assert _observe(sliced, a) == _observe(whole, _whole(whole, ticks))
    # and the machine runs on
    assert _observe(sliced, sliced.run(50)) == _observe(whole, _whole(whole, 50))


# ---- guest mode -------------------------------------------------------------------------------


def _play(x, slice_: int) -> tuple:
    with mock.patch.object(machine_module, "RUN_SLICE", slice_):
        return play(x)


@settings(max_examples=100)
@given(
    profile=st.sampled_from(PROFILES),
    seed=st.integers(0, 2**64 - 1),
    n_ops=st.integers(1, 40),
    slice_=st.integers(1, 64),
)
def test_vmruns_in_slices_end_exactly_as_one_call(profile, seed, n_ops, slice_):
    # Random VMCS contents, guest code, tables and host calls (the vmx fuzz's examples), played
    # with slices of a few ticks and with runs of one call (Machine.vmrun and Machine.run):
    # the same exits, VMCS fields, registers, counters and memory.
    x = draw_example(profile, seed, n_ops, ops=OPS + HOST_OPS)
    assert _play(x, slice_) == _play(x, NO_SLICE)


def _guest_spinning(paging: bool = True) -> Guest:
    g = Guest("vtx-2009", vpid=0)
    g.asm("_start: addi r1, r1, 1\n jmp _start\n")
    if paging:
        g.paging()
    return g


def _vmcs_of(g: Guest) -> dict[str, object]:
    """Every field of the guest's VMCS (each read counted: compare counters before) and its
    registers."""
    return {f.name: g.v[f] for f in VmcsField} | {"regs": list(g.v.regs)}


@settings(max_examples=60)
@given(budget=st.integers(1, 5000), slice_=st.integers(1, 100), k=st.integers(0, 8), inject=st.booleans())
def test_an_interrupted_vmrun_is_a_preemption_at_a_budget_exit(budget, slice_, k, inject):
    # A VMM sees the interrupted vmrun as one whose budget was the ticks it made: one entry,
    # one budget exit, the guest's state in the VMCS (docs/vmx.md V.1).
    a, b = _guest_spinning(), _guest_spinning()
    for g in (a, b):
        if inject:  # the injection's tick is the first of the first slice (V.9)
            g.gate(32, handler=0x1000)
            g.set(ENTRY_INTR_INFO=0x80000020)
    with (
        mock.patch.object(machine_module, "RUN_SLICE", slice_),
        mock.patch.object(machine_module, "_resume", _interrupt_after(k)),
    ):
        try:
            ex = a.run(budget)
        except KeyboardInterrupt:
            ex = machine_module._BUDGET_EXIT
    ticks = a.m.clock
    check(lib.p64_vmrun(b.m._m, b.v._v, ticks), b.m._m)
    assert ex.reason is ExitReason.BUDGET and a.m.counters["vm_entries"] == 1
    assert _observe(a.m, ex) == _observe(b.m, ex)
    assert _vmcs_of(a) == _vmcs_of(b)


# ---- an open run: the host's calls wait ---------------------------------------------------------


def _open(g: Guest | None = None) -> Machine:
    """A machine with a run paused after 100 ticks, still open (a vmrun with ``g``)."""
    if g is None:
        m = Machine("vtx-2009+iommu", memory=1 << 20)
        m.load(assemble(SPIN))
        check(lib.p64_run_slice(m._m, 10**6, 100), m._m)
    else:
        m = g.m
        check(lib.p64_vmrun_slice(m._m, g.v._v, 10**6, 100), m._m)
    assert m._exit.reason == lib.P64_EXIT_PAUSED and m.clock == 100
    return m


@pytest.mark.parametrize("guest", [False, True], ids=["run", "vmrun"])
def test_while_a_run_is_open_every_call_that_changes_the_machine_is_refused(guest):
    g = _guest_spinning() if guest else None
    snap = (g.m if g else Machine("vtx-2009+iommu", memory=1 << 20)).snapshot()
    m = _open(g)
    v, other = (g.v, g.m.vmcs()) if g else (m.vmcs(), m.vmcs())
    before = (m.clock, dict(m.counters), m.read(0, m.memory_size))
    calls = {
        "run": lambda: m.run(10),
        "vmrun": lambda: m.vmrun(other, 10),
        "write": lambda: m.write(0x100, b"x"),
        "code_written": lambda: m.code_written(0, 4),
        "walk": lambda: m.walk(0),
        "reset": m.reset,
        "snapshot": m.snapshot,
        "restore": lambda: m.restore(snap),
        "advance_clock": lambda: m.advance_clock(5),
        "vmcs read": lambda: v[VmcsField.GUEST_PC],
        "vmcs write": lambda: other.write(VmcsField.GUEST_PC, 0),
        "vmcs copy": lambda: other.copy_from(v),
        "invept": m.invept,
        "invvpid": lambda: m.invvpid(1),
        "iommu attach": lambda: m.iommu_attach(0, 0x1000),
        "iommu detach": lambda: m.iommu_detach(0),
        "dma": lambda: m.dma_read(0, 0, 8),
    }
    for name, call in calls.items():
        with pytest.raises(StateError, match="a run is open") as refused:
            call()
        assert name in str(refused.value) or name == "walk", refused.value  # walk's: check_state's
    # reads that change nothing are answered
    assert m.read(0, 4) == before[2][:4] and m.iommu_faults() == []
    assert (m.clock, dict(m.counters), m.read(0, m.memory_size)) == before
    # the run goes on, then ends at its budget
    check(lib.p64_resume(m._m, 10**7), m._m)
    assert m._exit.reason == lib.P64_EXIT_BUDGET and m.clock == 10**6
    m.write(0x100, b"x")  # no longer open


@pytest.mark.parametrize(
    ("name", "call"),
    [("run", lambda m: m.run(10)), ("write", lambda m: m.write(0, b"x")), ("reset", lambda m: m.reset())],
)
def test_a_refusal_names_the_call(name, call):
    m = _open()
    with pytest.raises(StateError, match=rf"^{name}: a run is open \(paused, 999900 ticks of its budget left\)"):
        call(m)
    check(lib.p64_close(m._m), m._m)


def test_a_tlb_flush_of_an_open_run_is_refused():
    m = _open()
    with pytest.raises(StateError, match="a run is open"):
        m.tlb_flush()


def test_close_ends_an_open_run_once_and_resume_needs_one():
    m = _open()
    assert lib.p64_close(m._m) == lib.P64_OK
    assert m._exit.reason == lib.P64_EXIT_BUDGET and m.clock == 100
    assert lib.p64_close(m._m) == lib.P64_OK  # nothing open: nothing done
    assert m.clock == 100
    with pytest.raises(StateError, match=r"^resume: no run is open"):
        check(lib.p64_resume(m._m, 10), m._m)


def test_a_slice_of_no_ticks_is_refused():
    m = Machine(memory=1 << 20)
    with pytest.raises(RangeError, match=r"^run: slice = 0"):
        check(lib.p64_run_slice(m._m, 10, 0), m._m)
    m = _open()
    with pytest.raises(RangeError, match=r"^resume: slice = 0"):
        check(lib.p64_resume(m._m, 0), m._m)
    assert m._exit.reason == lib.P64_EXIT_PAUSED  # still open


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("pc", 0x2000, "cpu.pc"),
        ("cr8", 3, "cpu.cr8"),
        ("intr_vector", 0x40, "cpu.intr_vector"),
        ("gsbase", 0x5000, "cpu.gsbase"),
        ("gslimit", 0xFFF, "cpu.gslimit"),
    ],
)
def test_a_cpu_written_while_the_run_is_open_is_refused_and_kept_by_close(field, value, named):
    m = _open()
    setattr(m.cpu, field, value)
    with pytest.raises(StateError, match=rf"^resume: cpu\.{named[4:]} was written while the run was open"):
        check(lib.p64_resume(m._m, 10), m._m)
    check(lib.p64_close(m._m), m._m)
    assert m._exit.reason == lib.P64_EXIT_BUDGET and m.clock == 100
    assert getattr(m.cpu, field) == value  # kept, as written after the exit


def test_a_register_written_while_the_run_is_open_is_named():
    m = _open()
    m.cpu.r[3] = 7
    with pytest.raises(StateError, match=r"^resume: cpu\.r\[3\] was written"):
        check(lib.p64_resume(m._m, 10), m._m)
    check(lib.p64_close(m._m), m._m)


def test_a_guest_cpu_written_while_the_vmrun_is_open_reaches_the_vmcs():
    # Closed, the vmrun leaves guest mode; the write is guest state the host wrote after the
    # exit: in the VMCS, and the next entry flushes for the CR3 it changed (docs/vmx.md V.7).
    g = _guest_spinning()
    m = _open(g)
    m.cpu.r[5] = 0x55
    with pytest.raises(StateError, match=r"^resume: cpu\.r\[5\]"):
        check(lib.p64_resume(m._m, 10), m._m)
    check(lib.p64_close(m._m), m._m)
    assert g.v.regs[5] == 0x55 and g.get("GUEST_PC") in (0x1000, 0x1004)
    assert m.cpu.vm_tag == 0  # the host's own state is back


def test_machine_run_closes_a_run_whose_cpu_was_written_between_slices():
    m = Machine(memory=1 << 20)
    m.load(assemble(SPIN))
    resume = machine_module._resume

    def written(h, n):  # a signal handler that writes the CPU between two slices
        m.cpu.r[2] = 9
        return resume(h, n)

    with mock.patch.object(machine_module, "_resume", written), pytest.raises(StateError, match=r"cpu\.r\[2\]"):
        m.run(3 * machine_module.RUN_SLICE)
    assert m.clock > 0 and m.cpu.r[2] == 9
    assert m.run(5).reason is ExitReason.BUDGET  # closed: the machine runs on


def test_a_long_run_is_made_of_slices_and_ends_where_one_call_would():
    m, n = Machine(memory=1 << 20), Machine(memory=1 << 20)
    for x in (m, n):
        x.load(assemble(SPIN))
    budget = 3 * machine_module.RUN_SLICE + 5
    calls = [0]
    resume = machine_module._resume

    def counted(h, k):
        calls[0] += 1
        return resume(h, k)

    with mock.patch.object(machine_module, "_resume", counted):
        assert m.run(budget).reason is ExitReason.BUDGET
    assert calls[0] >= 3
    _whole(n, budget)
    assert _observe(m, machine_module._BUDGET_EXIT) == _observe(n, machine_module._BUDGET_EXIT)


# ---- Ctrl-C ---------------------------------------------------------------------------------------

# Prepended to each child's script: ``announce()``, called just before the long run, prints
# "running" half a second later, from another thread, when the run is well under way.
PRELUDE = """
import signal, threading
signal.signal(signal.SIGINT, signal.default_int_handler)
def announce():
    threading.Timer(0.5, lambda: print("running", flush=True)).start()
"""

# A guest that turns paging on (2 levels, one 2 MiB page: docs/architecture.md §7) and spins.
PAGING_SPIN = """
_start: li   r1, table
        mtcr cr3, r1
        mtcr cr4, r0
        li   r1, 0x8001
        mtcr cr0, r1
spin:   addi r2, r2, 1
        jmp  spin
.org 0x3000
table:  .quad 0x83
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


def test_ctrl_c_ends_a_long_run_with_paging_on_at_a_budget_exit():
    done = _interrupted(
        f"""
        from cffi_core._binding import lib
        from cffi_core.asm import assemble
        from cffi_core.machine import ExitReason, Machine
        image = assemble({PAGING_SPIN!r})
        m, n = Machine(memory=1 << 20), Machine(memory=1 << 20)
        m.load(image)
        n.load(image)
        announce()
        try:
            m.run(10**12)
        except KeyboardInterrupt:
            # a budget exit at the tick where the run paused: as one call of that many ticks
            ticks = m.clock
            assert m.cpu.cr0 & 0x8000 and ticks == m.counters["ticks"] > 0, ticks
            assert lib.p64_run(n._m, ticks) == 0 and n._exit.reason == lib.P64_EXIT_BUDGET
            assert (m.cpu.state(), dict(m.counters)) == (n.cpu.state(), dict(n.counters))
            assert m.run(5).reason is ExitReason.BUDGET and m.clock == ticks + 5  # it runs on
            print("interrupted", flush=True)
        """
    )
    assert done.stdout.splitlines() == ["running", "interrupted"], done.stderr
    assert done.returncode == 0


def test_ctrl_c_ends_a_long_vmrun_at_a_budget_exit():
    done = _interrupted(
        """
        from cffi_core._binding import lib
        from cffi_core.machine import ExitReason
        from tests.cffi_core.test_binding_slices import _guest_spinning, _vmcs_of
        a, b = _guest_spinning(), _guest_spinning()
        announce()
        try:
            a.run(10**12)
        except KeyboardInterrupt:
            # the VMM sees a preemption: one entry, a budget exit, the guest's state in the VMCS
            ticks = a.m.clock
            assert ticks > 0 and a.m.counters["vm_entries"] == 1 and a.m.cpu.vm_tag == 0
            assert lib.p64_vmrun(b.m._m, b.v._v, ticks) == 0 and b.m._exit.reason == lib.P64_EXIT_BUDGET
            assert _vmcs_of(a) == _vmcs_of(b) and dict(a.m.counters) == dict(b.m.counters)
            assert a.run(5).reason is ExitReason.BUDGET and a.m.clock == ticks + 5  # it resumes
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


def test_ctrl_c_ends_popek_run_of_a_paging_guest(tmp_path):
    spin = tmp_path / "spin.s"
    spin.write_text(PAGING_SPIN)
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
