"""Hypothesis stateful tests over the VMM API: create VMs, run slices, look at them, in any order.

The state machine drives one VMM through a random sequence of ``create_vm`` and ``run(n)``
calls (docs/vmm-api.md §9), and checks after every step what the contract promises (docs/vmm-api.md §3,
§4): a VM's console only grows; once stopped a VM stays stopped, with the same observation; a
VM never runs past its own budget; and at the end, the same sequence on a fresh VMM gives the
same observations (determinism: time is the guest's clock, never the host's).  The contract has
no call to inject an interrupt or destroy a VM, so the machine does neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from conformance import hypothesis_profiles
from conformance.api import (
    VM,
    VMM,
    HostRefused,
    HostWatch,
    NoProgress,
    Observation,
    VMConfig,
    VMMError,
    default_host_memory,
    observation_from,
    plain_observation,
    vmm_label,
)
from conformance.guests import DISK_IMAGE, GUEST_DIR, by_name
from conformance.isolation import Session

MAX_VMS = 4
SLICES = (1, 37, 500, 3000)  # ticks per VMM.run call, odd sizes included


@dataclass(frozen=True)
class _Guest:
    name: str
    config: VMConfig

    def image(self, abi: str):
        """The guest's build for a VMM of guest ABI ``abi`` (docs/vmm-api.md §10)."""
        from cffi_core.asm import assemble, assemble_file

        if self.name == "spin":
            # Natively interrupts off; a paravirtual kernel starts with its events masked (docs/
            # paravirt-abi.md §3) and has no cli, so it only spins.
            if abi == "native":
                return assemble("_start: cli\nspin: jmp spin\n")
            return assemble("_start: jmp _start\n.align 4096\nhypercall_page: .space 4096\n")
        if abi == "paravirt":
            from conformance.guests.paravirt import PARAVIRT_DIR, paravirt_build

            if self.name == "victim":
                return assemble_file(PARAVIRT_DIR / "victim.s")
            port = paravirt_build(self.name)
            assert not isinstance(port, str), port
            return port.image()
        if self.name == "victim":
            return assemble_file(GUEST_DIR / "victim.s")
        return by_name(self.name).image()


# Guests that stop in different ways and at different times, by role: a quick exit with
# console output, a timer-driven guest that halts between interrupts, the victim (disk DMA,
# timer, paging), and one that spins with interrupts off until its budget ends it.  A
# paravirtual VMM gets their paravirtual builds, the quick exit being the ``transfers`` port
# (``smsw`` has none).
GUESTS = {
    "quick": _Guest("smsw", VMConfig(memory=1 << 20, budget=20_000)),
    "timer": _Guest("timer", VMConfig(memory=1 << 20, budget=20_000)),
    "victim": _Guest("victim", VMConfig(memory=1 << 20, disk=DISK_IMAGE, budget=30_000)),
    "spin": _Guest("spin", VMConfig(memory=1 << 16, budget=7_000)),
}
PARAVIRT_GUESTS = GUESTS | {
    "quick": _Guest("transfers", VMConfig(memory=1 << 20, budget=20_000)),
    "spin": _Guest("spin", VMConfig(memory=1 << 20, budget=7_000)),  # a PV area and a hypercall page
}


def _guests(abi: str) -> dict[str, _Guest]:
    return PARAVIRT_GUESTS if abi == "paravirt" else GUESTS


@cache
def _image(name: str, abi: str):
    return _guests(abi)[name].image(abi)


class VMMMachine(RuleBasedStateMachine):
    """One VMM on one host, in a process of its own (``_Driven`` in a ``Session``); the steps
    taken are kept so that the run can be replayed on a fresh one."""

    def __init__(self, vmm: type[VMM], profile: str) -> None:
        super().__init__()
        self.vmm_cls, self.profile = vmm, profile
        self.guests = _guests(vmm.guest_abi)
        self.label = vmm_label(vmm)
        self.session = _session(vmm, profile)
        self.names: list[str] = []
        self.seen: list[Observation] = []
        self.stopped: list[bool] = []  # which VMs had stopped at the previous check
        self.steps: list[tuple[str, object]] = []

    @precondition(lambda self: len(self.names) < MAX_VMS)
    @rule(guest=st.sampled_from(sorted(GUESTS)))
    def create_vm(self, guest: str) -> None:
        first = observation_from(self.session.call("create_vm", guest), self.label)
        self.names.append(guest)
        self.seen.append(first)
        self.steps.append(("create_vm", guest))

    @rule(ticks=st.sampled_from(SLICES))
    def run(self, ticks: int) -> None:
        self.session.call("run", ticks, what=f"run({ticks})", ticks=ticks * MAX_VMS)
        self.steps.append(("run", ticks))

    @invariant()
    def observations_only_grow(self) -> None:
        now_all = [(observation_from(o, self.label), stopped) for o, stopped in self.session.call("observations")]
        for i, (now, stopped) in enumerate(now_all):
            before = self.seen[i]
            where = f"VM {i} ({self.guests[self.names[i]].name})"
            assert now.console.startswith(before.console), f"{where}: console shrank or changed: " + "; ".join(
                before.diff(now, ("before", "now"))
            )
            if before.exit_code is not None:
                assert now.exit_code == before.exit_code, f"{where}: exit code changed after it was written"
            if i < len(self.stopped) and self.stopped[i]:
                assert stopped and now == before, f"{where} ran again after it stopped: " + "; ".join(
                    before.diff(now, ("before", "now"))
                )
            ticks = now.counters.get("ticks")
            if isinstance(ticks, int):
                assert ticks <= self.guests[self.names[i]].config.budget, f"{where} ran {ticks} ticks, past its budget"
            self.seen[i] = now
        self.stopped = [stopped for _, stopped in now_all]

    def teardown(self) -> None:
        try:
            if self.steps:
                with _session(self.vmm_cls, self.profile) as again:
                    for step, arg in self.steps:
                        again.call(step, arg, what=f"{step}({arg!r}) replayed", ticks=MAX_VMS * max(SLICES))
                    replayed = [observation_from(o, self.label) for o, _ in again.call("observations")]
                for i, (first, second) in enumerate(zip(self.seen, replayed, strict=True)):
                    assert first == second, (
                        f"VM {i} ({self.guests[self.names[i]].name}): the same steps gave another observation: "
                        + "; ".join(first.diff(second, ("first", "replayed")))
                    )
        finally:
            self.session.close()


class _Driven:
    """The VMM's side of the state machine, in its process: one VMM on a fresh host, driven by
    the grader's requests; every reply is plain data."""

    def __init__(self, vmm: type[VMM], profile: str) -> None:
        from cffi_core.machine import Machine

        self.guests = _guests(vmm.guest_abi)
        self.abi = vmm.guest_abi
        host = Machine(profile, default_host_memory(sum(g.config.memory for g in self.guests.values())))
        self.label = vmm_label(vmm)
        self.vmm = vmm(host)
        self.vms: list[VM] = []

    def create_vm(self, guest: str) -> dict:
        vm = self.vmm.create_vm(_image(guest, self.abi), self.guests[guest].config)
        if not isinstance(vm, VM):
            raise VMMError(f"{self.label}: create_vm returned {type(vm).__name__}, not a VM")
        if vm.stop is not None:
            raise VMMError(f"{self.label}: a new VM is already stopped ({vm.stop!r}) before it ran")
        self.vms.append(vm)
        return plain_observation(vm.observation(), self.label)

    def run(self, ticks: int) -> None:
        _bounded_run(self.vmm, ticks)

    def observations(self) -> list:
        return [(plain_observation(vm.observation(), self.label), vm.stopped) for vm in self.vms]


def _session(vmm: type[VMM], profile: str) -> Session:
    return Session(lambda: _Driven(vmm, profile), label=vmm_label(vmm))


def _bounded_run(vmm: VMM, ticks: int) -> None:
    """``vmm.run(ticks)`` within the bounds of one slice (docs/vmm-api.md §5): a VMM that spins
    on its host fails with "no progress" instead of hanging the test."""
    watch = HostWatch.of(vmm.host)
    watch.label = vmm_label(type(vmm))
    watch.begin_slice(ticks * max(1, sum(not vm.stopped for vm in vmm.vms)))
    try:
        vmm.run(ticks)
    except HostRefused as e:
        raise NoProgress(str(e)) from None
    finally:
        watch.end_slice()
    if watch.failure is not None:
        raise NoProgress(watch.failure)


@pytest.mark.popek_property("safety", category="stateful")
@pytest.mark.popek_guest_abi("native", "paravirt")
def test_vmm_api_in_any_order_keeps_the_contract(vmm, popek_profile):
    # A fraction of the profile's examples: each is a sequence of up to 12 steps.
    base = hypothesis_profiles.settings()
    run_state_machine_as_test(
        lambda: VMMMachine(vmm, popek_profile),
        settings=settings(
            base,
            max_examples=max(5, base.max_examples // 5),
            stateful_step_count=12,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
