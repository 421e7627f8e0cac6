"""Wall-clock speed of a compute-bound guest under each reference VMM that runs guest code on the host, beside its native speed.

The goal ("VMMs out of the way"): a compute-bound guest runs at >= 80% of native
simulator speed under ``hardware-ept`` and ``hardware``, and at >= 60% under
``trap-and-emulate`` and ``binary-translation``.  Measured here and reported in ``extra_info``,
never asserted (no timed test).

The guest is ``conformance/guests/compute.s`` (ALU, loads and stores over 1 KiB, branches; no
privileged or sensitive instruction) with ``ROUNDS`` rounds instead of its 40: about 128 x 10
instructions a round, then one line of output.  Each case runs it from reset to its exit and
checks the output against the native run's (a fast wrong answer is no figure).

- **native**: the bare platform (``cffi_core.platform.Platform``) running the whole guest in one
  call, as ``popek run`` does: the simulator's own speed, the denominator of every ratio.  It is
  timed again beside each case, with the same timer, so that a ratio compares two figures of
  the same moment of a shared machine;
- **run**: the VMM's own ``run`` with the whole budget in one call.  The VMM slices it
  itself — the hardware VMMs every ``HOST_TIMER_PERIOD`` ticks (their host timer), the VMMs
  that run guests at a deprivileged ring every ``trap_emulate.monitor.SLICE`` — so this is
  what the VMM's own per-slice path costs;
- **observe**: ``conformance.api.observe`` in this process (``isolate=False``), as the suite and
  ``popek run --vmm`` drive a VMM: ``VMM.run(OBSERVE_SLICE)`` a slice, every host entry counted
  by ``HostWatch`` (docs/vmm-api.md §5), the VMM's construction included.

Figures per case: ``mips`` (guest instructions per second of the median round), ``native_mips``,
``of_native`` (their ratio), and ``overhead_us_per_slice``: the time beyond native per
``HOST_TIMER_PERIOD`` ticks of the guest's clock — what a host-timer slice costs on top of the
guest's own instructions.

What no VMM can go below: ``test_compute_bare_slices`` runs the guest with no VMM at all in
slices of ``HOST_TIMER_PERIOD`` ticks, one ``Machine.vmrun`` (or ``Machine.run``) a slice in a
bare Python loop — the entries and exits alone.  When the period was 2,000 ticks an entry and
exit cost about half as much as the slice's own instructions, which bounded ``of_native`` of the
hardware VMMs near 0.5 whatever their Python did; at 100,000 ticks (docs/vmm-api.md §9) they
cost about 1% of it.

To read them: ``python -m pytest -p no:cacheprovider benchmarks/test_vmm_speed.py -n 0
--benchmark-only --benchmark-json=FILE``, then each benchmark's ``extra_info``
(``--benchmark-timer=time.process_time`` on a busy machine: CPU time, less disturbed by the
other processes).
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from functools import cache

import pytest

from cffi_core.asm import assemble
from cffi_core.exits import ExitReason
from cffi_core.image import GuestImage
from cffi_core.machine import Machine
from cffi_core.platform import Platform
from cffi_core.vmx import VmcsField
from conformance.api import HOST_TIMER_PERIOD, VM, VMM, Observation, VMConfig, default_host_memory, load_vmm, observe
from conformance.guests import GUEST_DIR

ROUNDS = 80_000
"""Rounds of the compute guest: about 102 M guest instructions (its own ``ROUNDS`` is 40)."""
MEMORY = 1 << 20  # conformance/test_efficiency.py's guests' memory
TIMED_ROUNDS = 3
"""Timed runs of each case (each from reset: a fresh VMM and VM, its translations and shadows
made again), and as many native runs beside it."""
RUNS = (
    ("hardware-ept", "vtx-2009"),
    ("hardware", "vtx-2006+tpr_shadow"),
    ("trap-and-emulate", "x86-2005"),
    ("binary-translation", "x86-2005"),
)
"""(VMM, profile): each VMM on the profile it is graded on for speed — ``hardware`` on the
paper's P4 (VT-x with the TPR shadow), trap-and-emulate and binary translation on the 32-bit x86
whose segment limits protect them (docs/architecture.md §5.3)."""
DRIVES = ("run", "observe")
_WHOLE_RUN_CALLS = 3  # calls of VMM.run with the whole budget before the VM must have stopped


def _timer(benchmark) -> Callable[[], float]:
    """The benchmark's timer (``--benchmark-timer``: wall clock by default), for the native
    figure measured beside a case."""
    return getattr(benchmark, "_timer", time.perf_counter)


@cache
def _image() -> GuestImage:
    """compute.s with ``ROUNDS`` rounds (its ``.include`` is found beside it)."""
    path = GUEST_DIR / "compute.s"
    source, n = re.subn(r"^\.equ\s+ROUNDS,\s*\w+", f".equ ROUNDS, {ROUNDS}", path.read_text(), flags=re.MULTILINE)
    assert n == 1, "compute.s no longer defines ROUNDS"
    return assemble(source, filename=str(path))


@cache
def _native(profile: str) -> tuple[Observation, int]:
    """The guest's native output and its instruction count (the core's counter)."""
    platform = Platform(profile, MEMORY)
    platform.load(_image())
    result = platform.run(1 << 62)
    assert result.stop == "exit" and result.exit_code == 0, result
    obs = Observation(console=result.console, exit_code=result.exit_code, disk=result.disk, stop=result.stop)
    return obs, result.counters["instructions"]


def _config(profile: str) -> VMConfig:
    # Budget to spare: the guest exits long before (compute-bound: its ticks are its instructions).
    return VMConfig(memory=MEMORY, budget=2 * _native(profile)[1])


def _native_times(profile: str, rounds: int, timer: Callable[[], float]) -> list[float]:
    out = []
    for _ in range(rounds):
        platform = Platform(profile, MEMORY)
        platform.load(_image())
        start = timer()
        result = platform.run(1 << 62)
        out.append(timer() - start)
        assert result.stop == "exit"
    return out


class _Case:
    """The guest under one VMM, driven one way: ``setup`` (untimed: the VMM and its VM built)
    and ``target`` (timed) for ``benchmark.pedantic``; ``observation`` is the last run's."""

    def __init__(self, vmm: str, profile: str, drive: str) -> None:
        self.cls = load_vmm(vmm)
        self.profile = profile
        self.drive = drive
        self.config = _config(profile)
        self.monitor: VMM | None = None
        self.vm: VM | None = None
        self.observation: Observation | None = None

    def setup(self) -> None:
        if self.drive == "run":
            self.monitor = self.cls(Machine(self.profile, default_host_memory(self.config.memory)))
            self.vm = self.monitor.create_vm(_image(), self.config)

    def target(self) -> None:
        if self.drive == "observe":
            self.observation = observe(self.cls, _image(), self.config, profile=self.profile, isolate=False)
            return
        assert self.monitor is not None and self.vm is not None
        for _ in range(_WHOLE_RUN_CALLS):
            if self.vm.stopped:
                break
            self.monitor.run(self.config.budget)
        self.observation = self.vm.observation()


@pytest.mark.parametrize("profile", sorted({p for _, p in RUNS}))
def test_compute_native(benchmark, profile):
    """The bare platform, the whole guest in one ``run``: the simulator's speed."""
    benchmark.group = "vmm speed: compute"
    expected, instructions = _native(profile)

    def target() -> None:
        platform = Platform(profile, MEMORY)
        platform.load(_image())
        result = platform.run(1 << 62)
        assert result.console == expected.console

    benchmark.pedantic(target, rounds=TIMED_ROUNDS, iterations=1, warmup_rounds=1)
    mips = instructions / benchmark.stats.stats.median / 1e6
    benchmark.extra_info.update(vmm="native", profile=profile, guest_instructions=instructions, mips=round(mips, 1))


@pytest.mark.parametrize("vmm_name,profile", RUNS, ids=[f"{v}-{p}" for v, p in RUNS])
@pytest.mark.parametrize("drive", DRIVES)
def test_compute_under_vmm(benchmark, drive, vmm_name, profile):
    """The guest under a VMM, from reset to its exit, equivalent to native; its speed beside the
    native speed measured right after it."""
    benchmark.group = "vmm speed: compute"
    expected, instructions = _native(profile)
    case = _Case(vmm_name, profile, drive)
    benchmark.pedantic(case.target, setup=case.setup, rounds=TIMED_ROUNDS, iterations=1, warmup_rounds=0)
    assert case.observation is not None
    assert expected.equivalent(case.observation), "\n".join(expected.diff(case.observation, ("native", vmm_name)))
    seconds = benchmark.stats.stats.median
    native_seconds = statistics.median(_native_times(profile, TIMED_ROUNDS, _timer(benchmark)))
    slices = case.observation.counters.get("guest_ticks", instructions) / HOST_TIMER_PERIOD
    mips, native_mips = instructions / seconds / 1e6, instructions / native_seconds / 1e6
    benchmark.extra_info.update(
        vmm=vmm_name,
        profile=profile,
        drive=drive,
        guest_instructions=instructions,
        mips=round(mips, 1),
        native_mips=round(native_mips, 1),
        of_native=round(mips / native_mips, 3),
        overhead_us_per_slice=round((seconds - native_seconds) / slices * 1e6, 2),
    )


@pytest.mark.parametrize(("entry", "profile"), [("vmrun", "vtx-2009"), ("run", "x86-2005")])
def test_compute_bare_slices(benchmark, entry, profile):
    """The guest with no VMM, paging off, in guest mode (``vmrun``, guest-physical = host-physical)
    or host mode (``run``, at CPL 0), one entry per ``HOST_TIMER_PERIOD`` ticks until its first
    port access (its output, after the whole computation): the floor of a VMM's host-timer
    slices, its entries and exits with no work between them."""
    benchmark.group = "vmm speed: compute"
    ticks = HOST_TIMER_PERIOD
    state: dict[str, object] = {}

    def setup() -> None:
        m = Machine(profile, MEMORY)
        for seg in _image().segments:
            m.write(seg.address, seg.data)
        if entry == "vmrun":
            v = m.vmcs()
            v[VmcsField.GUEST_PC] = _image().entry
            state["go"] = lambda: m.vmrun(v, ticks)
        else:
            m.cpu.pc = _image().entry
            state["go"] = lambda: m.run(ticks)
        state["machine"] = m

    def target() -> None:
        go = state["go"]
        assert callable(go)
        while go().reason is ExitReason.BUDGET:
            pass

    benchmark.pedantic(target, setup=setup, rounds=TIMED_ROUNDS, iterations=1, warmup_rounds=0)
    m = state["machine"]
    assert isinstance(m, Machine)
    instructions = m.counters["instructions"]
    seconds = benchmark.stats.stats.median
    native_seconds = statistics.median(_native_times(profile, TIMED_ROUNDS, _timer(benchmark)))
    native_seconds *= instructions / _native(profile)[1]  # the same instructions: all but the output's
    mips, native_mips = instructions / seconds / 1e6, instructions / native_seconds / 1e6
    benchmark.extra_info.update(
        vmm="none",
        profile=profile,
        drive=f"bare {entry}",
        guest_instructions=instructions,
        mips=round(mips, 1),
        native_mips=round(native_mips, 1),
        of_native=round(mips / native_mips, 3),
        overhead_us_per_slice=round((seconds - native_seconds) / (instructions / ticks) * 1e6, 2),
    )
