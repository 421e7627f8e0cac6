"""Wall-clock speed of the binary-translation VMM: compute and system guests beside native, trap-and-emulate and hardware, and the translator's throughput.

The binary-translation VMM (``reference_vmm.binary_translation``, ``binary-translation`` in
``popek.vmms``) runs guest kernel code from a translation cache
(TC) on the C core at real ring 1 (Adams & Agesen 2006 §3).  Its speed goals, measured here
and reported in ``extra_info``, never asserted (no timed test):

- **compute-bound guests at >= 50% of native speed once translated**: the compute loops of
  ``benchmarks/workloads.py`` (``alu``, ``mem``, ``branchy``: CPL 0, paging off, looping until
  the budget) under ``native``, ``binary-translation`` and ``trap-and-emulate`` on
  ``x86-2005`` (the profile whose segment limits protect the TC) and ``hardware`` on
  ``vtx-2006`` (it needs ``vmx``).  ``of_native`` is a case's guest MIPS over those of the
  native run of the same guest, on the same profile, driven the same way, timed in the same
  test with the same timer (so that the two figures come from the same moment of a shared
  machine);
- the same for the system guest (``conformance/guests/system.s``: a ring-3 process making a
  system call every few instructions, page faults, timer interrupts), whose speed is that of
  the VMM's exits;
- **translation throughput >= 100,000 guest instructions translated per second** (the
  translator is Python): ``TranslationCache.translate`` over a generated straight-line kernel
  and over the p64os kernel, the TC flushed between rounds; the figure is the translator's
  own counter ``guest_instructions_translated`` over the median time of a round.

To read them: ``python -m pytest -p no:cacheprovider benchmarks/test_binary_translation.py -n 0
--benchmark-only -k "throughput or (compute and run and x86-2005)" --benchmark-json=FILE``, then
``of_native`` and ``guest_instructions_per_s`` in each benchmark's ``extra_info``.  The machine
may be shared: a figure is of its moment, and a native run beside each case is what makes
``of_native`` comparable across moments (``guest_instructions_per_s_best`` is the least
disturbed round).

Two ways of driving a VMM, each a parameter (``drive``):

- ``run``: the VMM's own ``run`` with the whole budget in one call, after a short untimed
  warm-up (the VMM built, its TC and shadow tables filled): "once translated".  The VMM's own
  slicing remains (trap-and-emulate and binary translation switch the real CPU every
  ``trap_emulate.monitor.SLICE`` ticks, the hardware VMM every ``HOST_TIMER_PERIOD``), and
  native is the bare platform running the whole budget at once: this is the goal's figure;
- ``observe``: ``conformance.api.observe`` in this process (``isolate=False``), as the grader
  drives a VMM: ``VMM.run`` in slices of ``OBSERVE_SLICE`` ticks (docs/vmm-api.md §5), the
  VMM's construction and its first translations included.  Native pays the slicing too (one
  ``Platform.run`` a slice).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from functools import cache

import pytest

from benchmarks.workloads import ALU_LOOP, BRANCHY_LOOP, MEM_LOOP
from cffi_core import spec
from cffi_core.asm import assemble, assemble_file
from cffi_core.image import GuestImage
from cffi_core.isa.encoding import encode
from cffi_core.machine import Machine, MiB
from cffi_core.spec.state import MASK64
from conformance.api import (
    COUNTER_INTERVENTIONS,
    VM,
    VMM,
    Observation,
    VMConfig,
    default_host_memory,
    load_vmm,
    observe,
)
from conformance.guest_os import os_image
from conformance.guests import GUEST_DIR
from reference_vmm.binary_translation.translator import TC_SIZE, TranslationCache, WordKind
from reference_vmm.shadow import GuestMemory

# (VMM, profile): binary translation on x86-2005, where MSR_SEGLIMIT and MSR_CSLIMIT keep the
# guest kernel out of the TC (docs/architecture.md §5.3); hardware on the first-generation VT-x
# of Adams & Agesen 2006 (vtx-2006).  Each is compared with native on its own profile.
RUNS = (
    ("native", "x86-2005"),
    ("binary-translation", "x86-2005"),
    ("trap-and-emulate", "x86-2005"),
    ("hardware", "vtx-2006"),
)
RUN_IDS = [f"{vmm}-{profile}" for vmm, profile in RUNS]
"""Test ids name the profile too: ``-k "compute and run and x86-2005"`` selects the goal's cases."""
DRIVES = ("run", "observe")
COMPUTE = {"alu": ALU_LOOP, "mem": MEM_LOOP, "branchy": BRANCHY_LOOP}
COMPUTE_MEMORY = 8 * MiB  # as workloads.build's machine
WARM = 200_000
"""Guest ticks run before the timed part of a ``run`` drive: the loop is translated and its
pages shadowed within the first few thousand."""
BUDGET = 20_000_000
"""Guest ticks timed in a ``run`` drive of a compute loop (ticks are instructions there: the
loops never halt and nothing interrupts them, docs/architecture.md §9)."""
OBSERVE_BUDGET = 4_000_000
"""Guest ticks of an ``observe`` drive of a compute loop: the grader's slicing costs some
tens of microseconds a slice, so a smaller budget takes seconds already."""
SYSTEM_CONFIG = VMConfig(memory=1 << 20, budget=400_000)  # conformance/test_efficiency.py's
ROUNDS = 5
OBSERVE_ROUNDS = 3
STRAIGHT_LINE = 8192
"""Instructions of the generated straight-line kernel: every one innocuous (IDENT, Adams &
Agesen 2006 §3.1); one lookup translates at most 64 fragments of at most 12 behind one another,
then a continuation asks for the next."""
TRANSLATION_GOAL = 100_000  # guest instructions translated per second
TRANSLATION_ROUNDS = 15  # a round takes some tens of milliseconds: more of them, less noise
_NO_PROGRESS = 3  # calls of VMM.run with the whole budget before a VM must have stopped


def _timer(benchmark) -> Callable[[], float]:
    """The benchmark's timer (``--benchmark-timer``: wall clock by default), for the native
    figure measured beside a case."""
    return getattr(benchmark, "_timer", time.perf_counter)


# -- guests ------------------------------------------------------------------------------------
@cache
def _compute_image(loop: str) -> GuestImage:
    return assemble(COMPUTE[loop], filename=f"<benchmark {loop}>")


@cache
def _system_image() -> GuestImage:
    return assemble_file(GUEST_DIR / "system.s")


@cache
def _native_system(profile: str) -> tuple[Observation, int]:
    """The system guest's native observation and instruction count (the core's counter,
    docs/architecture.md §13): a VMM equivalent to native runs exactly these instructions."""
    native = load_vmm("native")
    monitor = native(Machine(profile, default_host_memory(SYSTEM_CONFIG.memory)))
    vm = monitor.create_vm(_system_image(), SYSTEM_CONFIG)
    _finish(monitor, vm, SYSTEM_CONFIG.budget)
    return vm.observation(), vm.counters["instructions"]


# -- driving a VMM -----------------------------------------------------------------------------
def _finish(monitor: VMM, vm: VM, budget: int) -> None:
    for _ in range(_NO_PROGRESS):
        if vm.stopped:
            return
        monitor.run(budget)
    assert vm.stopped, f"{type(monitor).__name__}: the VM still runs after {_NO_PROGRESS} calls of run({budget})"


class _Case:
    """One guest under one VMM on one profile, driven one way: ``setup`` (untimed) and
    ``target`` (timed) for ``benchmark.pedantic``; ``vm`` is the last run's VM (``run``
    drive) and ``observation`` its observation."""

    def __init__(
        self, vmm: str, profile: str, image: GuestImage, config: VMConfig, drive: str, *, warm: int = 0
    ) -> None:
        self.cls = load_vmm(vmm)
        self.profile = profile
        self.image = image
        self.config = config
        self.drive = drive
        self.warm = warm
        self.monitor: VMM | None = None
        self.vm: VM | None = None
        self.observation: Observation | None = None

    def setup(self) -> None:
        if self.drive == "observe":
            return  # the grader's whole run is timed, the VMM's construction included
        self.monitor = self.cls(Machine(self.profile, default_host_memory(self.config.memory)))
        self.vm = self.monitor.create_vm(self.image, self.config)
        if self.warm:
            self.monitor.run(self.warm)

    def target(self) -> None:
        if self.drive == "observe":
            self.observation = observe(self.cls, self.image, self.config, profile=self.profile, isolate=False)
            return
        assert self.monitor is not None and self.vm is not None
        _finish(self.monitor, self.vm, self.config.budget)
        self.observation = self.vm.observation()

    def times(self, rounds: int, timer: Callable[[], float]) -> list[float]:
        """``rounds`` timed runs after one untimed one (as ``pedantic``'s warm-up round)."""
        out = []
        for i in range(rounds + 1):
            self.setup()
            start = timer()
            self.target()
            if i:
                out.append(timer() - start)
        return out


def _measure(
    benchmark, vmm: str, profile: str, image: GuestImage, config: VMConfig, drive: str, instructions: int, *, warm: int
) -> _Case:
    """Time the case, then native on its profile the same way; record guest MIPS, native MIPS
    and their ratio in ``extra_info``."""
    rounds = ROUNDS if drive == "run" else OBSERVE_ROUNDS
    case = _Case(vmm, profile, image, config, drive, warm=warm)
    benchmark.pedantic(case.target, setup=case.setup, rounds=rounds, iterations=1, warmup_rounds=1)
    mips = instructions / benchmark.stats.stats.median / 1e6
    benchmark.extra_info.update(
        vmm=vmm, profile=profile, drive=drive, guest_instructions=instructions, mips=round(mips, 2)
    )
    if vmm != "native":
        native = _Case("native", profile, image, config, drive, warm=warm)
        native_mips = instructions / statistics.median(native.times(rounds, _timer(benchmark))) / 1e6
        benchmark.extra_info.update(native_mips=round(native_mips, 2), of_native=round(mips / native_mips, 3))
    if case.vm is not None:
        counters = case.vm.counters
        benchmark.extra_info[COUNTER_INTERVENTIONS] = counters.get(COUNTER_INTERVENTIONS)
        for key in ("guest_instructions_translated", "fragments_translated", "callouts", "tc_flushes"):
            if key in counters:
                benchmark.extra_info[key] = counters[key]
    return case


@pytest.mark.parametrize("vmm_name,profile", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("loop", COMPUTE)
@pytest.mark.parametrize("drive", DRIVES)
def test_compute_guest(benchmark, drive, loop, vmm_name, profile):
    """A compute loop of ``workloads.py`` at guest CPL 0: under binary translation all of it
    runs from the TC, under trap-and-emulate directly at ring 1, under hardware in guest mode."""
    benchmark.group = f"bt compute {loop} ({drive})"
    if drive == "run":
        config = VMConfig(memory=COMPUTE_MEMORY, budget=WARM + BUDGET)
        instructions, warm = BUDGET, WARM
    else:
        config = VMConfig(memory=COMPUTE_MEMORY, budget=OBSERVE_BUDGET)
        instructions, warm = OBSERVE_BUDGET, 0
    case = _measure(benchmark, vmm_name, profile, _compute_image(loop), config, drive, instructions, warm=warm)
    assert case.observation is not None and case.observation.stop == "budget"


@pytest.mark.parametrize("vmm_name,profile", RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("drive", DRIVES)
def test_system_guest(benchmark, drive, vmm_name, profile):
    """``system.s`` from reset to its exit; the run must be equivalent to native (a fast wrong
    answer is no figure)."""
    benchmark.group = f"bt system ({drive})"
    expected, instructions = _native_system(profile)
    case = _measure(benchmark, vmm_name, profile, _system_image(), SYSTEM_CONFIG, drive, instructions, warm=0)
    assert case.observation is not None
    assert expected.equivalent(case.observation), "\n".join(expected.diff(case.observation, ("native", vmm_name)))


# -- translation throughput --------------------------------------------------------------------
_KERNEL_BASE = 0x1000
_GUEST_MEMORY = 4 * MiB
_TC_HPA = _GUEST_MEMORY  # the TC's host RAM, just above the guest's
_GS_HPA = _TC_HPA + TC_SIZE  # then the VMM's data the TC reaches through GS


def _straight_line(n: int) -> bytes:
    """``n`` innocuous instructions without a branch (ALU, shifts, loads and stores off r15),
    then ``ret`` (a callout after which nothing falls through); registers rotate so that no
    two neighbours are alike."""
    words = []
    for i in range(n):
        rd, rs1, rs2 = 1 + i % 14, 1 + (i + 5) % 14, 1 + (i + 9) % 14
        match i % 8:
            case 0:
                word = encode("add", rd=rd, rs1=rs1, rs2=rs2)
            case 1:
                word = encode("xor", rd=rd, rs1=rs1, rs2=rs2)
            case 2:
                word = encode("shli", rd=rd, rs1=rs1, imm=i % 63)
            case 3:
                word = encode("ld", rd=rd, rs1=15, imm=8 * (i % 64))
            case 4:
                word = encode("addi", rd=rd, rs1=rs1, imm=i % 1000)
            case 5:
                word = encode("sd", rs2=rs2, rs1=15, imm=8 * (i % 64))
            case 6:
                word = encode("mul", rd=rd, rs1=rs1, rs2=rs2)
            case _:
                word = encode("sub", rd=rd, rs1=rs1, rs2=rs2)
        words.append(word)
    words.append(encode("ret"))
    return b"".join(w.to_bytes(4, "little") for w in words)


def _kernel(name: str) -> tuple[list[tuple[int, bytes]], list[int]]:
    """The guest-physical segments of kernel ``name`` and the addresses to start translating at."""
    if name == "straight-line":
        return [(_KERNEL_BASE, _straight_line(STRAIGHT_LINE))], [_KERNEL_BASE]
    image = os_image()
    end = image.symbols["kernel_end"]
    # p64os maps its kernel one to one (conformance/guest_os/README.md, memory map), so guest
    # CPL 0 with paging off fetches what the kernel fetches.  Every label below kernel_end is a
    # start: the interrupt handlers and the system calls are reached only through the IDT and
    # a table (a few labels name strings, translated as what they decode to).
    starts = sorted(v for k, v in image.symbols.items() if k not in image.constants and image.entry <= v < end)
    return [(s.address, s.data) for s in image.segments], starts


def _walk(tc: TranslationCache, cpu: spec.State, memory: GuestMemory, starts: Iterable[int]) -> list[int]:
    """Translate everything reachable from ``starts`` as a run would ask for it — chaining
    stubs, continuations, the targets of ``call`` and the instruction after each callout that
    returns — and return the guest pcs ``translate`` was called with, in order."""
    asked: list[int] = []

    def translate(pc: int) -> None:
        asked.append(pc)
        tc.translate(cpu, memory, pc)

    for pc in starts:
        translate(pc)
    seen: set[int] = set()
    while True:
        todo = [
            w
            for w, kind in enumerate(tc.kind)
            if kind in (WordKind.STUB, WordKind.CONTINUE, WordKind.CALLOUT) and w not in seen
        ]
        if not todo:
            return asked
        for word in todo:
            seen.add(word)
            pc = tc.guest_pc[word]
            if tc.kind[word] is not WordKind.CALLOUT:
                translate(pc)  # what a stub's chain and a continuation translate
                continue
            d = spec.decode_word(spec.fetch(cpu, memory, pc))[0]
            if d.insn.mnemonic == "call":
                translate((pc + d.imm) & MASK64)
            if d.insn.mnemonic not in ("ret", "jr", "iret"):
                translate((pc + 4) & MASK64)


@pytest.mark.parametrize("kernel", ["straight-line", "p64os"])
def test_translation_throughput(benchmark, kernel):
    """``TranslationCache.translate`` at guest CPL 0 for every pc a walk of the kernel asked
    for, in the same order, into a TC flushed before each round (untimed)."""
    host = Machine("x86-2005", _GUEST_MEMORY + MiB)
    memory = GuestMemory(host, 0, _GUEST_MEMORY)
    segments, starts = _kernel(kernel)
    for address, data in segments:
        memory.write_bytes(address, data)
    cpu = spec.State.reset(entry=starts[0], features=host.profile.features)
    tc = TranslationCache(host, _TC_HPA, _GS_HPA)
    pcs = _walk(tc, cpu, memory, starts)
    counted: list[int] = []

    def setup() -> None:
        tc.flush("round")
        counted.append(tc.counters["guest_instructions_translated"])

    def target() -> None:
        translate = tc.translate
        for pc in pcs:
            translate(cpu, memory, pc)

    benchmark.group = "bt translation"
    benchmark.pedantic(target, setup=setup, rounds=TRANSLATION_ROUNDS, iterations=1, warmup_rounds=1)
    per_round = tc.counters["guest_instructions_translated"] - counted[-1]
    assert per_round > 0 and tc.counters["tc_flushes_full"] == 0  # every round fits in the TC
    rate = per_round / benchmark.stats.stats.median
    benchmark.extra_info.update(
        kernel=kernel,
        translate_calls=len(pcs),
        guest_instructions_per_round=per_round,
        tc_words=tc.counters["tc_words"],
        guest_instructions_per_s=round(rate),
        # the least disturbed round: the machine is shared
        guest_instructions_per_s_best=round(per_round / benchmark.stats.stats.min),
        of_goal=round(rate / TRANSLATION_GOAL, 3),
    )
