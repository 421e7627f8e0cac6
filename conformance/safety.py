"""Resource control checked from outside (Popek & Goldberg 1974, §2): VMs side by side on one host.

``run_side_by_side`` builds a host Machine of the profile, fills its canary region
(``conformance.api.host_canary``), watches every ``run``/``vmrun`` the VMM makes on it, creates
the VMs and drives ``VMM.run`` in slices of ``HOST_TIMER_PERIOD`` ticks — the host timer —
until every VM has stopped.  It returns what the safety tests judge (``SideBySide``):

- each VM's observation (the victim's is compared with its solo run by the test);
- the canary region's damage, if any;
- instructions the host core retired at CPL 0 in host mode: guest code must never run there
  (the VMM's own code is Python; a deprivileged guest runs at CPL 1-3 or in guest mode);
- the longest stretch of ticks one host run lasted, against the bound ``HOST_TIMER_PERIOD +
  CONTROL_LATENCY`` (``cli; jmp .`` must not keep the VMM from regaining control);
- the exception the VMM raised, if it raised: the host process survives and the test fails.

A VMM that does not run guest code on the host machine (the full emulator, the native oracle's
separate machines) passes the host-machine checks trivially: it gave the guest nothing to abuse.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.api import (
    CONTROL_LATENCY,
    HOST_TIMER_PERIOD,
    VM,
    VMM,
    Observation,
    VMConfig,
    VMMError,
    check_vmm_class,
    default_host_memory,
    host_canary,
    vmm_label,
)

if TYPE_CHECKING:
    from cffi_core.image import GuestImage
    from cffi_core.machine import Machine

__all__ = ["HostWatch", "Runaway", "SideBySide", "canary_pattern", "run_side_by_side"]

# A VMM may make many short host runs per slice (one per exit); this many without the guests'
# clocks getting through their slice means it is spinning (a livelock), and the run is ended.
_RUNS_PER_TICK = 20


class Runaway(VMMError):
    """Raised inside a VMM's host run when it has run far more than its slices allow."""


def canary_pattern(start: int, size: int) -> bytes:
    """The bytes the canary region holds: each quadword is its own address, xor a constant."""
    return b"".join(
        ((a ^ 0xC0FFEE_CA4A_4100) & (2**64 - 1)).to_bytes(8, "little") for a in range(start, start + size, 8)
    )


class HostWatch:
    """Wraps ``run`` (and ``vmrun``, when the machine has it) of one host Machine, measuring
    each call's ticks with the machine's clock; counts calls to catch a spinning VMM."""

    def __init__(self, host: Machine) -> None:
        self.host = host
        self.longest = 0  # ticks of the longest single run
        self.calls = 0
        self.call_limit: int | None = None
        for name in ("run", "vmrun"):
            original = getattr(host, name, None)
            if original is not None:
                setattr(host, name, self._wrap(name, original))

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        host = self.host

        def watched(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.call_limit is not None and self.calls > self.call_limit:
                raise Runaway(
                    f"the VMM called host.{name} {self.calls} times in one slice of {HOST_TIMER_PERIOD} ticks: "
                    "it is spinning without its guests making progress"
                )
            start = host.clock
            try:
                return original(*args, **kwargs)
            finally:
                self.longest = max(self.longest, host.clock - start)

        return watched


@dataclass
class SideBySide:
    """What a side-by-side run showed (see the module docstring)."""

    vmm: str
    observations: list[Observation | None]
    error: str | None = None
    canary_damage: list[str] = field(default_factory=list)
    host_cpl0_instructions: int = 0
    longest_host_run: int = 0
    slices: int = 0
    overrun: str | None = None  # a slice in which the host ran longer than the VMs could

    @property
    def control_bound(self) -> int:
        return HOST_TIMER_PERIOD + CONTROL_LATENCY

    def violations(self) -> list[str]:
        """One line per broken rule of resource control; empty when the run was safe."""
        out = []
        if self.error is not None:
            out.append(f"the VMM failed (the host survived): {self.error}")
        out += [f"host canary region damaged: {d}" for d in self.canary_damage]
        if self.host_cpl0_instructions:
            out.append(
                f"{self.host_cpl0_instructions} instructions retired at real CPL 0 in host mode while guests ran "
                "(insn_host_cpl0): guest code ran with the host's full privilege"
            )
        if self.longest_host_run > self.control_bound:
            out.append(
                f"one host run lasted {self.longest_host_run} ticks: the VMM must regain control within "
                f"{CONTROL_LATENCY} ticks of each host timer tick (every {HOST_TIMER_PERIOD}), i.e. "
                f"<= {self.control_bound}"
            )
        if self.overrun is not None:
            out.append(self.overrun)
        return out


def run_side_by_side(
    vmm: type[VMM],
    guests: Sequence[tuple[GuestImage, VMConfig]],
    profile: str,
    *,
    period: int = HOST_TIMER_PERIOD,
) -> SideBySide:
    """Run ``guests`` together on one new ``vmm`` over a host of ``profile``; never raises for
    what the VMM does (its exceptions are recorded in ``SideBySide.error``)."""
    from cffi_core.machine import Machine

    cls = check_vmm_class(vmm, "the VMM given")
    label = vmm_label(cls)
    host = Machine(profile, default_host_memory(sum(c.memory for _, c in guests)))
    start, size = host_canary(host)
    pattern = canary_pattern(start, size)
    host.write(start, pattern)
    watch = HostWatch(host)
    cpl0_before = host.counters["insn_host_cpl0"]
    result = SideBySide(cls.name, [None] * len(guests))
    vms: list[VM] = []
    phase = "construction"
    try:
        monitor = cls(host)
        phase = "create_vm"
        for image, config in guests:
            vm = monitor.create_vm(image, config)
            if not isinstance(vm, VM):
                raise VMMError(f"{label}: create_vm returned {type(vm).__name__}, not a conformance.api.VM")
            vms.append(vm)
        # Every VM stops at its own budget: after that many slices (and one for good measure)
        # a VMM that still has running VMs is not keeping the contract.
        max_slices = max(c.budget for _, c in guests) // period + 2
        phase = "run"
        while not all(vm.stopped for vm in vms):
            if result.slices >= max_slices:
                result.overrun = (
                    f"VMs still running after {result.slices} slices of {period} ticks, beyond every VM's budget"
                )
                break
            running = sum(not vm.stopped for vm in vms)
            watch.calls = 0
            watch.call_limit = _RUNS_PER_TICK * running * (period + CONTROL_LATENCY) + 1000
            clock = host.clock
            monitor.run(period)
            result.slices += 1
            spent = host.clock - clock
            if spent > running * (period + CONTROL_LATENCY):
                result.overrun = (
                    f"one VMM.run({period}) with {running} VMs running ran the host for {spent} ticks "
                    f"(at most {running} x ({period} + {CONTROL_LATENCY}) expected)"
                )
                break
        phase = "observation"
        result.observations = [vm.observation() for vm in vms]
    except Exception as e:
        result.error = f"{label}: {phase} raised {type(e).__name__}: {e}"
    finally:
        watch.call_limit = None
    result.longest_host_run = watch.longest
    result.host_cpl0_instructions = host.counters["insn_host_cpl0"] - cpl0_before
    now = host.read(start, size)
    if now != pattern:
        changed = [i for i in range(0, size, 8) if now[i : i + 8] != pattern[i : i + 8]]
        result.canary_damage.append(
            f"{len(changed)} quadwords of [{start:#x}, {start + size:#x}) changed, the first at {start + changed[0]:#x}: "
            f"{now[changed[0] : changed[0] + 8].hex(' ')}"
        )
    return result
