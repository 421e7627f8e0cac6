"""Safety (resource control): adversarial generated guests beside a victim VM on the same VMM.

Popek & Goldberg (1974) ask that a VMM keep control of the machine's resources whatever a guest
does.  Each example runs the victim (``conformance/guests/victim.s``: paging, its IDT, timer
interrupts, disk DMA, a word in every page of its RAM) and a hostile guest
(``strategies.adversary_programs``: random words, wild addresses, page tables and DMA pointing
anywhere, IDT overwrites, ``cli; jmp .``) together on one VMM, and checks
(``conformance.safety``): the victim's observation equals its solo run and its native run; its
whole guest RAM at the end equals its native run's (when the VM can show it); the host memory
that holds no VM and no structure of the VMM still holds the canary pattern it was filled
with; nothing retired at real CPL 0 in host mode; the VMM regained control within
``CONTROL_LATENCY`` ticks of every host timer tick; the VMM did not raise.  Thresholds are in
docs/vmm-api.md §9.  A directed adversary (``dma_sweep.s``) points both disks' DMA at every
64 KiB past its RAM — the device path to other memory, which a VMM that passes a disk through
must close with the IOMMU (docs/vmx.md V.10).

A paravirtual VMM (``guest_abi == "paravirt"``, docs/paravirt-abi.md) runs guests ported to its
ABI only: its victim is the paravirtual port of the victim (``conformance/guests/paravirt/
victim.s``: its own pinned tables, timer events, a block-ring read, a word in every page), whose
reference is its run alone — at the same machine addresses (beside an idle VM of its
neighbour's size), since a paravirtual guest's tables and PV area hold machine addresses —
and its adversaries are paravirtual kernels: the generated adversaries' bodies in one
(``strategies.paravirt_adversary``), the transfer storm and the endless loop with events
masked, and the paravirtual DMA sweep (``conformance/guests/paravirt/dma_sweep.s``).  The
directed adversaries of its hypercalls are in ``conformance/test_safety_paravirt.py``.
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import strategies as st

from conformance import hypothesis_profiles
from conformance.api import CONTROL_LATENCY, HOST_TIMER_PERIOD, Observation, VMConfig, VMMError, observe
from conformance.guests import DISK_IMAGE, GUEST_DIR
from conformance.safety import SideBySide, run_side_by_side
from conformance.strategies import GuestProgram, adversary_programs, paravirt_adversary

VICTIM_CONFIG = VMConfig(memory=1 << 20, disk=DISK_IMAGE, budget=60_000)
# Whole 64 KiB commands need 128 sectors; every byte differs from its neighbours, so a DMA that
# landed anywhere would show.
_SWEEP_DISK = bytes((13 * i + 5) & 0xFF for i in range(128 * 512))
_SWEEP_END, _SWEEP_STRIDE = 0x1200000, 0x10000  # conformance/guests/paravirt/dma_sweep.s
SWEEP_CONFIG = VMConfig(memory=1 << 20, disk=_SWEEP_DISK, disk2=_SWEEP_DISK, budget=1_500_000)
_SETTINGS = hypothesis_profiles.settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


VICTIM = "victim.s"
PARAVIRT_VICTIM = "paravirt/victim.s"
# A paravirtual guest that shuts down at once: the placeholder of a paravirtual victim's
# reference run, so that the victim gets the machine addresses it has beside its adversary.
_IDLE = """
_start: li      r1, 2                  ; sched_op(SCHEDOP_SHUTDOWN, 0): docs/paravirt-abi.md §4.8
        li      r2, 0
        call    hypercall_page + 32 * 7
        ud
.align 4096
hypercall_page: .space 4096
"""
# What a paravirtual guest adds to a native one that runs in its kernel unchanged: the page its
# VMM fills with hypercall stubs (docs/paravirt-abi.md §2.2).
_HYPERCALL_PAGE = "\n.align 4096\nhypercall_page: .space 4096\n"


def _paravirt(vmm) -> bool:
    """Whether ``vmm`` runs guests ported to the paravirtual ABI (docs/vmm-api.md §2)."""
    return getattr(vmm, "guest_abi", "native") == "paravirt"


@cache
def _victim(paravirt: bool = False):
    from cffi_core.asm import assemble_file

    return assemble_file(GUEST_DIR / (PARAVIRT_VICTIM if paravirt else VICTIM))


def _victim_of(vmm):
    return _victim(_paravirt(vmm))


@cache
def _solo(vmm, profile: str) -> SideBySide:
    return run_side_by_side(vmm, [(_victim_of(vmm), VICTIM_CONFIG)], profile)


@cache
def _native(profile: str) -> SideBySide:
    from reference_vmm.native import NativeVMM

    return run_side_by_side(NativeVMM, [(_victim(), VICTIM_CONFIG)], profile)


@cache
def _alone_at(vmm, profile: str, index: int, neighbour_memory: int) -> SideBySide:
    """A paravirtual victim's reference: its run at ``index`` beside an idle VM of
    ``neighbour_memory`` bytes in its adversary's place — the same host, the same machine
    addresses for it (its page tables, start info and block requests hold them), nothing to
    disturb it."""
    from cffi_core.asm import assemble

    idle = (assemble(_IDLE), VMConfig(memory=neighbour_memory, budget=1000))
    guests = [(_victim(True), VICTIM_CONFIG), idle]
    if index:
        guests.reverse()
    return run_side_by_side(vmm, guests, profile)


def ram_diff(expected: bytes, actual: bytes, names: tuple[str, str]) -> list[str]:
    """What differs between two guest RAMs, readably: how many bytes and pages, and the first
    differing quadword of each side."""
    a, b = names
    if len(expected) != len(actual):
        return [f"guest RAM: {a} {len(expected)} bytes, {b} {len(actual)} bytes"]
    pages = [p for p in range(0, len(expected), 4096) if expected[p : p + 4096] != actual[p : p + 4096]]
    if not pages:
        return []
    first = pages[0] + next(i for i in range(4096) if expected[pages[0] + i] != actual[pages[0] + i])
    q = first & ~7
    return [
        f"guest RAM: {len(pages)} pages differ, the first byte at guest-physical {first:#x}: "
        f"{a} {expected[q : q + 8].hex(' ')}, {b} {actual[q : q + 8].hex(' ')} (quadword at {q:#x})"
    ]


def _victim_problems(run: SideBySide, index: int, where: str, profile: str, solo: SideBySide | None) -> list[str]:
    """The victim's observation and RAM in ``run`` against its native run (and its solo run)."""
    native = _native(profile)
    victim: Observation | None = run.observations[index] if run.observations else None
    out = []
    references = [("native", native.observations[0])]
    if solo is not None:
        references.append(("alone", solo.observations[0]))
    for name, reference in references:
        if victim is not None and reference is not None and victim != reference:
            out.append(f"the victim's observation {where} differs from its {name} run:")
            out += [f"  {line}" for line in reference.diff(victim, (name, where))]
    ram = run.rams[index] if len(run.rams) > index else None
    if ram is not None and native.rams and native.rams[0] is not None:
        lines = ram_diff(native.rams[0], ram, ("native", where))
        if lines:
            out.append(f"the victim's guest RAM at the end {where} differs from its native run's:")
            out += [f"  {line}" for line in lines]
    return out


def _paravirt_victim_problems(run: SideBySide, index: int, reference: SideBySide) -> list[str]:
    """A paravirtual victim's observation and memory in ``run`` against its reference run (no
    native run to hold it to: its page set and its memory are not the native victim's)."""
    out = []
    victim = run.observations[index] if run.observations else None
    alone = reference.observations[index] if reference.observations else None
    if alone is None or (alone.stop, alone.exit_code) != ("exit", 0):
        out.append(f"(victim alone) did not run to its end: {alone!r}")
    elif victim is not None and victim != alone:
        out.append("the victim's observation beside differs from its alone run:")
        out += [f"  {line}" for line in alone.diff(victim, ("alone", "beside"))]
    ram = run.rams[index] if len(run.rams) > index else None
    ref_ram = reference.rams[index] if len(reference.rams) > index else None
    if ram is not None and ref_ram is not None:
        lines = ram_diff(ref_ram, ram, ("alone", "beside"))
        if lines:
            out.append("the victim's memory at the end beside differs from its alone run's:")
            out += [f"  {line}" for line in lines]
    return out


def _judge(
    vmm, profile: str, run: SideBySide, victim_index: int, adversary: str, neighbour_memory: int | None = None
) -> None:
    if _paravirt(vmm):
        if neighbour_memory is None:
            raise ValueError("a paravirtual victim's reference needs its neighbour's memory size")
        reference = _alone_at(vmm, profile, victim_index, neighbour_memory)
        problems = [f"(victim alone) {v}" for v in reference.violations()]
        problems += run.violations()
        problems += _paravirt_victim_problems(run, victim_index, reference)
    else:
        solo = _solo(vmm, profile)
        problems = [f"(victim alone) {v}" for v in solo.violations()]
        problems += [f"(victim alone) {p}" for p in _victim_problems(solo, 0, "alone", profile, None)]
        problems += run.violations()
        problems += _victim_problems(run, victim_index, "beside", profile, solo)
    if problems:
        raise AssertionError(
            "\n".join(
                [f"resource control violated under {vmm.name} (Popek & Goldberg 1974):"]
                + [f"  {p}" for p in problems]
                + ["adversary:", *(f"  | {line}" for line in adversary.splitlines())]
            )
        )


def _valid_on_bare_machine(program: GuestProgram, profile: str) -> bool:
    """Whether a bare machine can run the program at all (no host gate a random store made)."""
    from reference_vmm.native import NativeVMM

    try:
        observe(NativeVMM, program.image, program.config, profile=profile)
    except VMMError:
        return False
    return True


@pytest.mark.popek_property("safety", category="adversary")
@pytest.mark.popek_guest_abi("native", "paravirt")
@_SETTINGS
@given(adversary=adversary_programs(), adversary_first=st.booleans())
def test_adversary_cannot_disturb_the_victim_or_the_host(vmm, popek_profile, adversary, adversary_first):
    if _paravirt(vmm):
        # Random code is a fine adversary for any VMM: a paravirtual VMM gets the same body in
        # a paravirtual kernel (its privileged instructions raise #GP through the trap table).
        ported = paravirt_adversary(adversary)
        hostile, listing = (ported.image, ported.config), ported.listing()
    else:
        hostile, listing = (adversary.image, adversary.config), adversary.listing()
    guests = [(_victim_of(vmm), VICTIM_CONFIG), hostile]
    if adversary_first:
        guests.reverse()
    run = run_side_by_side(vmm, guests, popek_profile)
    if run.error is not None and not _paravirt(vmm):
        # A guest that reaches a host gate (a random store into its own IDT can make one) is
        # no program for a bare machine: the contract lets a VMM refuse it (docs/vmm-api.md §5).
        # A paravirtual kernel cannot make one (set_trap_table refuses host gates, §4.2): a
        # paravirtual VMM that fails is at fault.
        assume(_valid_on_bare_machine(adversary, popek_profile))
    _judge(vmm, popek_profile, run, 1 if adversary_first else 0, listing, hostile[1].memory)


@pytest.mark.popek_property("safety", category="dma")
@pytest.mark.popek_guest_abi("native", "paravirt")
def test_dma_past_its_ram_cannot_reach_the_victim_or_the_host(vmm, popek_profile):
    """Every DMA past the adversary's RAM ends as on a bare machine — in error, moving nothing,
    into memory or onto its own disks — and the victim and the host's canary are untouched.
    A paravirtual VMM gets the sweep's port (conformance/guests/paravirt/dma_sweep.s): block
    requests at every 64 KiB of machine memory outside its own, each refused with PV_ENOTOWNED."""
    from cffi_core.asm import assemble_file
    from reference_vmm.native import NativeVMM

    path = GUEST_DIR / ("paravirt/dma_sweep.s" if _paravirt(vmm) else "dma_sweep.s")
    sweep = assemble_file(path)
    run = run_side_by_side(vmm, [(_victim_of(vmm), VICTIM_CONFIG), (sweep, SWEEP_CONFIG)], popek_profile)
    _judge(vmm, popek_profile, run, 0, path.read_text(encoding="utf-8"), SWEEP_CONFIG.memory)
    adversary = run.observations[1]
    if _paravirt(vmm):
        # Every request outside its memory refused with PV_ENOTOWNED (docs/paravirt-abi.md §9):
        # 2 x (18 MiB - 1 MiB) / 64 KiB of them; none ended otherwise; its disk unchanged.
        swept = 2 * ((_SWEEP_END - SWEEP_CONFIG.memory) // _SWEEP_STRIDE)
        assert adversary is not None and (adversary.stop, adversary.exit_code) == ("exit", 0), adversary
        assert adversary.console.startswith(f"r1={swept:016x}\nr2={0:016x}\n".encode()), adversary.console
        assert adversary.disk == _SWEEP_DISK
        return
    native = observe(NativeVMM, sweep, SWEEP_CONFIG, profile=popek_profile)
    assert adversary == native, "\n".join(
        ["the DMA adversary's own run differs from the bare machine's:", *native.diff(adversary, ("native", vmm.name))]
    )


CALL_STORM = """
; call, callr, jr and ret without end at CPL 0, nothing else: a binary translator runs each as an
; in-TC sequence of many host ticks for its one guest tick (Adams & Agesen 2006 §3.2), the most
; host time a guest can make a VMM's own deprivileged code take per guest tick
_start: li      sp, 0x8000
loop:   call    f
        la      r2, g
        callr   r2
        la      r2, loop
        jr      r2
f:      ret
g:      ret
"""


HOG_BUDGET = 2 * (HOST_TIMER_PERIOD + CONTROL_LATENCY)
"""The storm's and the hog's allowance: twice the longest a host run may last (docs/vmm-api.md
§9), so that a VMM that does not regain control keeps its host twice too long, and one that
does runs them for three host-timer periods."""


def _storm_or_hog(vmm, source: str) -> tuple:
    """The storm or the hog as ``vmm`` runs it: for a paravirtual VMM the same code in its kernel
    with the page its VMM fills with hypercall stubs (docs/paravirt-abi.md §2.2)."""
    from cffi_core.asm import assemble

    return (
        assemble(source + _HYPERCALL_PAGE if _paravirt(vmm) else source),
        VMConfig(memory=1 << 16, budget=HOG_BUDGET),
    )


@pytest.mark.popek_property("safety", category="timer")
@pytest.mark.popek_guest_abi("native", "paravirt")
def test_a_transfer_storm_cannot_keep_the_host_past_its_slice(vmm, popek_profile, popek_record):
    """The host's time is the VMM's to share: a guest that only transfers control must not make
    a VMM keep the host longer than its slices allow (docs/vmm-api.md §9), whatever the VMM's
    own words cost per guest instruction."""
    storm = _storm_or_hog(vmm, CALL_STORM)
    run = run_side_by_side(vmm, [storm, (_victim_of(vmm), VICTIM_CONFIG)], popek_profile)
    popek_record(longest_host_run=run.longest_host_run, slices=run.slices)
    _judge(vmm, popek_profile, run, 1, CALL_STORM, storm[1].memory)
    assert run.observations[0] is not None and run.observations[0].stop == "budget", run.observations[0]


HOG = """
; cli; jmp . at CPL 0: the guest never gives the CPU back on its own
_start: cli
spin:   jmp     spin
"""
# The hog of a paravirtual kernel: its cli is the event mask, 1 from its first instruction
# (docs/paravirt-abi.md §3) — a real cli would be #GP with no trap table, and the VM would stop.
PARAVIRT_HOG = """
; jmp . in a paravirtual kernel with events masked (as they are at its start): it never gives
; the CPU back on its own
_start:
spin:   jmp     spin
"""


@pytest.mark.popek_property("safety", category="timer")
@pytest.mark.popek_guest_abi("native", "paravirt")
def test_cli_jmp_forever_cannot_keep_the_vmm_from_regaining_control(vmm, popek_profile, popek_record):
    source = PARAVIRT_HOG if _paravirt(vmm) else HOG
    hog = _storm_or_hog(vmm, source)
    run = run_side_by_side(vmm, [hog, (_victim_of(vmm), VICTIM_CONFIG)], popek_profile)
    popek_record(longest_host_run=run.longest_host_run, slices=run.slices)
    _judge(vmm, popek_profile, run, 1, source, hog[1].memory)
    assert run.observations[0] is not None and run.observations[0].stop == "budget", run.observations[0]
