"""The paravirtual builds of the directed guests (conformance.guests.paravirt): each port under ParavirtVMM on x86-2005 shows its native guest's native run; every guest has a port or a reason."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings

from cffi_core.isa.encoding import decode
from cffi_core.isa.table import Sensitivity
from cffi_core.profiles import available_profiles
from conformance.api import Observation, observe
from conformance.checks import equivalence_report
from conformance.guests import DIRECTED_GUESTS
from conformance.guests.paravirt import (
    PORTS,
    SIGNATURE_MACHINE_STATE,
    ParavirtGuest,
    native_expectation,
    paravirt_build,
)
from conformance.strategies import adversary_programs, hypercall_adversaries, paravirt_adversary
from reference_vmm.native import NativeVMM
from reference_vmm.paravirt import ParavirtVMM

PROFILE = "x86-2005"
OTHER_PROFILES = [p for p in available_profiles() if p != PROFILE]
PAGE = 4096


@cache
def _native(name: str, profile: str = PROFILE) -> Observation:
    guest = next(g for g in DIRECTED_GUESTS if g.name == name)
    return observe(NativeVMM, guest.image(), guest.config, profile=profile)


@pytest.mark.parametrize("profile", [PROFILE, *OTHER_PROFILES])
@pytest.mark.parametrize("name", PORTS)
def test_port_under_the_paravirtual_vmm_shows_the_native_guest_run_natively(name, profile):
    # One binary on every host (docs/paravirt-abi.md §1): the hypercall page holds the host's
    # transport; the native guest runs natively on the same profile.
    port = paravirt_build(name)
    assert isinstance(port, ParavirtGuest)
    native = _native(name, profile)
    assert (native.stop, native.exit_code) == ("exit", 0)
    expected = native_expectation(native)
    actual = observe(ParavirtVMM, port.image(), port.config, profile=profile)
    assert expected.equivalent(actual), "\n".join(
        equivalence_report(expected, actual, names=("native", "paravirt"), program=port.source())
    )
    assert actual.counters["hypercalls"] > 0 and actual.counters["guest_insns_emulated"] == 0


def test_native_expectation_removes_only_the_signatures_machine_state():
    native = _native("syscall")
    expected = native_expectation(native).console
    assert expected.startswith(b"hello from ring 3\nand again\nr1=000000000000000a\n")
    assert not any(line.startswith(SIGNATURE_MACHINE_STATE) for line in expected.splitlines())
    removed = len(native.console.splitlines()) - len(expected.splitlines())
    assert removed == len(SIGNATURE_MACHINE_STATE)
    assert expected.endswith(b"exceptions=0000000000000000\n")


def test_every_directed_guest_has_a_port_or_a_reason():
    for guest in DIRECTED_GUESTS:
        build = paravirt_build(guest.name)
        if isinstance(build, str):
            assert guest.name not in PORTS and len(build) > 40, guest.name
            if guest.category == "obstacle":
                assert "is the sensitive instruction this guest exists to execute" in build, guest.name
                assert "paravirtualization removes it (Fisher-Ogden 2006 §2.3.3)" in build, guest.name
        else:
            assert guest.name in PORTS
            assert (build.name, build.category, build.what, build.config) == (
                guest.name,
                guest.category,
                guest.what,
                guest.config,
            )
            assert build.path.exists() and build.source().startswith("; The paravirtual port of")
    with pytest.raises(KeyError):
        paravirt_build("no such guest")


@pytest.mark.parametrize("name", PORTS)
def test_port_holds_no_privileged_or_sensitive_instruction(name):
    # A linear sweep of the image (data words count too), outside the hypercall page, which the
    # VMM fills with its transport (docs/paravirt-abi.md §2.2): a port may not keep what
    # paravirtualization removes (§8).  `int n` is innocuous: user mode's system calls.
    image = paravirt_build(name).image()
    page = image.symbols["hypercall_page"]
    hits = []
    for seg in image.segments:
        for off in range(0, len(seg.data) - 3, 4):
            address = seg.address + off
            if page <= address < page + PAGE:
                continue
            d = decode(int.from_bytes(seg.data[off : off + 4], "little"))
            if d is not None and d.insn.sensitivity is not Sensitivity.INNOCUOUS:
                hits.append((hex(address), d.insn.mnemonic))
    assert hits == []


def test_the_attacks_frames_after_its_own_are_the_victims():
    # The reference VMM places VMs one after another in host RAM (HostMap.guest_region): the
    # frames right after the paravirtual adversary's memory, which conformance/guests/paravirt/
    # attack.s aims at, are the victim's (conformance/test_safety_paravirt.py runs it first).
    from cffi_core.asm import assemble_file
    from cffi_core.machine import Machine
    from conformance.api import default_host_memory
    from conformance.test_safety import VICTIM_CONFIG, _victim
    from conformance.test_safety_paravirt import ATTACK, ATTACK_CONFIG

    host = Machine(PROFILE, default_host_memory(ATTACK_CONFIG.memory + VICTIM_CONFIG.memory))
    monitor = ParavirtVMM(host)
    first = monitor.create_vm(assemble_file(ATTACK), ATTACK_CONFIG)
    second = monitor.create_vm(_victim(True), VICTIM_CONFIG)
    assert second.mem_base == first.mem_base + ATTACK_CONFIG.memory


_FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FEW
@given(adversary=hypercall_adversaries())
def test_hypercall_adversaries_reach_the_vmm_and_stop(adversary):
    # Each drawn program assembles, runs alone under the paravirtual VMM to a stop without the
    # VMM raising, and makes its hypercalls (the library's own, at least set_trap_table,
    # stack_switch and the signature's console_write and shutdown, plus the drawn ones).
    obs = observe(ParavirtVMM, adversary.image, adversary.config, profile=PROFILE)
    assert obs.stop in ("exit", "shutdown", "halted", "budget")
    assert obs.counters["hypercalls"] >= 2
    assert "hypercall_page + " in adversary.source and adversary.listing() == adversary.source


@_FEW
@given(program=adversary_programs())
def test_generated_adversaries_run_in_a_paravirtual_kernel(program):
    ported = paravirt_adversary(program)
    assert (ported.config.memory, ported.config.disk) == (program.config.memory, program.config.disk)
    obs = observe(ParavirtVMM, ported.image, ported.config, profile=PROFILE)
    assert obs.stop in ("exit", "shutdown", "halted", "budget")
    assert obs.counters["hypercall_set_trap_table"] >= 1  # it got past the library's start
