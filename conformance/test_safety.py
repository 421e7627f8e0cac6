"""Safety (resource control): adversarial generated guests beside a victim VM on the same VMM.

Popek & Goldberg (1974) ask that a VMM keep control of the machine's resources whatever a guest
does.  Each example runs the victim (``conformance/guests/victim.s``: paging, its IDT, timer
interrupts, disk DMA) and a hostile guest (``strategies.adversary_programs``: random words,
wild addresses, page tables and DMA pointing anywhere, IDT overwrites, ``cli; jmp .``) together
on one VMM, and checks (``conformance.safety``): the victim's observation equals its solo run;
the host's canary region is intact; nothing retired at real CPL 0 in host mode; the VMM
regained control within ``CONTROL_LATENCY`` ticks of every host timer tick; the VMM did not
raise.  Thresholds are in docs/vmm-api.md §9.  A directed adversary (``dma_sweep.s``) points
both disks' DMA at every 64 KiB past its RAM — the device path to other memory, which a VMM that
passes a disk through must close with the IOMMU (docs/vmx.md V.10).
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from conformance.api import Observation, VMConfig, VMMError, observe
from conformance.guests import DISK_IMAGE, GUEST_DIR
from conformance.safety import SideBySide, run_side_by_side
from conformance.strategies import GuestProgram, adversary_programs

VICTIM_CONFIG = VMConfig(memory=1 << 20, disk=DISK_IMAGE, budget=60_000)
# Whole 64 KiB commands need 128 sectors; every byte differs from its neighbours, so a DMA that
# landed anywhere would show.
_SWEEP_DISK = bytes((13 * i + 5) & 0xFF for i in range(128 * 512))
SWEEP_CONFIG = VMConfig(memory=1 << 20, disk=_SWEEP_DISK, disk2=_SWEEP_DISK, budget=1_500_000)
_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@cache
def _victim():
    from cffi_core.asm import assemble_file

    return assemble_file(GUEST_DIR / "victim.s")


@cache
def _solo(vmm, profile: str) -> SideBySide:
    return run_side_by_side(vmm, [(_victim(), VICTIM_CONFIG)], profile)


def _judge(vmm, profile: str, run: SideBySide, victim_index: int, adversary: str) -> None:
    solo = _solo(vmm, profile)
    problems = [f"(victim alone) {v}" for v in solo.violations()]
    problems += run.violations()
    victim: Observation | None = run.observations[victim_index]
    if victim is not None and solo.observations[0] is not None and victim != solo.observations[0]:
        problems.append("the victim's observation beside the adversary differs from its solo run:")
        problems += [f"  {line}" for line in solo.observations[0].diff(victim, ("alone", "beside"))]
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
@_SETTINGS
@given(adversary=adversary_programs(), adversary_first=st.booleans())
def test_adversary_cannot_disturb_the_victim_or_the_host(vmm, popek_profile, adversary, adversary_first):
    guests = [(_victim(), VICTIM_CONFIG), (adversary.image, adversary.config)]
    if adversary_first:
        guests.reverse()
    run = run_side_by_side(vmm, guests, popek_profile)
    if run.error is not None:
        # A guest that reaches a host gate (a random store into its own IDT can make one) is
        # no program for a bare machine: the contract lets a VMM refuse it (docs/vmm-api.md §5).
        assume(_valid_on_bare_machine(adversary, popek_profile))
    _judge(vmm, popek_profile, run, 1 if adversary_first else 0, adversary.listing())


@pytest.mark.popek_property("safety", category="dma")
def test_dma_past_its_ram_cannot_reach_the_victim_or_the_host(vmm, popek_profile):
    """Every DMA past the adversary's RAM ends as on a bare machine — in error, moving nothing,
    into memory or onto its own disks — and the victim and the host's canary are untouched."""
    from cffi_core.asm import assemble_file
    from reference_vmm.native import NativeVMM

    path = GUEST_DIR / "dma_sweep.s"
    sweep = assemble_file(path)
    run = run_side_by_side(vmm, [(_victim(), VICTIM_CONFIG), (sweep, SWEEP_CONFIG)], popek_profile)
    _judge(vmm, popek_profile, run, 0, path.read_text(encoding="utf-8"))
    native = observe(NativeVMM, sweep, SWEEP_CONFIG, profile=popek_profile)
    adversary = run.observations[1]
    assert adversary == native, "\n".join(
        ["the DMA adversary's own run differs from the bare machine's:", *native.diff(adversary, ("native", vmm.name))]
    )


HOG = """
; cli; jmp . at CPL 0: the guest never gives the CPU back on its own
_start: cli
spin:   jmp     spin
"""


@pytest.mark.popek_property("safety", category="timer")
def test_cli_jmp_forever_cannot_keep_the_vmm_from_regaining_control(vmm, popek_profile, popek_record):
    from cffi_core.asm import assemble

    hog = (assemble(HOG), VMConfig(memory=1 << 16, budget=50_000))
    run = run_side_by_side(vmm, [hog, (_victim(), VICTIM_CONFIG)], popek_profile)
    popek_record(longest_host_run=run.longest_host_run, slices=run.slices)
    _judge(vmm, popek_profile, run, 1, HOG)
    assert run.observations[0] is not None and run.observations[0].stop == "budget", run.observations[0]
