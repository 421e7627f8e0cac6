"""Resource control checked from outside (Popek & Goldberg 1974, §2): VMs side by side on one host.

``run_side_by_side`` builds a host Machine of the profile, fills ALL its RAM with the canary
pattern (``canary_pattern``), watches every ``run``/``vmrun`` the VMM makes on it
(``conformance.api.HostWatch``), creates the VMs and drives ``VMM.run`` in slices of
``HOST_TIMER_PERIOD`` ticks — the host timer — until every VM has stopped.  It returns what
the safety tests judge (``SideBySide``):

- each VM's observation, and its guest-physical RAM at the end when it can be read
  (``conformance.host_view.guest_ram``): the test compares the victim's with its solo and
  native runs;
- the damage to host memory that belongs to no VM and to no structure of the VMM
  (``VM.host_regions``, ``VMM.host_regions``, docs/vmm-api.md §9) — the top canary region
  (``conformance.api.host_canary``) always, every other such byte when the VMM says where it
  keeps what; and regions that overlap each other or the canary region;
- instructions the host core retired at CPL 0 in host mode: guest code must never run there
  (the VMM's own code is Python; a deprivileged guest runs at CPL 1-3 or in guest mode);
- the longest stretch of ticks one host run lasted, against the bound ``HOST_TIMER_PERIOD +
  CONTROL_LATENCY`` (``cli; jmp .`` must not keep the VMM from regaining control);
- the exception the VMM raised, if it raised: the host process survives and the test fails.

A VMM that does not run guest code on the host machine (the full emulator, the native oracle's
separate machines) passes the host-machine checks trivially: it gave the guest nothing to abuse.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from conformance.api import (
    CONTROL_LATENCY,
    ENTRIES_PER_TICK,
    ENTRY_SLACK,
    HOST_TIMER_PERIOD,
    VM,
    VMM,
    HostWatch,
    NoProgress,
    Observation,
    VMConfig,
    VMMError,
    _frame_line,
    check_vmm_class,
    default_host_memory,
    host_canary,
    vmm_label,
)
from conformance.host_view import guest_ram, vm_host_regions, vmm_host_regions

if TYPE_CHECKING:
    from cffi_core.image import GuestImage
    from cffi_core.machine import Machine

__all__ = ["HostWatch", "Runaway", "SideBySide", "canary_pattern", "host_memory_damage", "run_side_by_side"]

# A VMM may make many short host runs per slice (one per exit); this many per tick of the
# slice (observe's bound, docs/vmm-api.md §5) without the guests' clocks getting through it
# means it is spinning (a livelock), and the run is ended.
_RUNS_PER_TICK = ENTRIES_PER_TICK
# The canary pattern's quadword at address a is a + _CANARY_TAG: distinct everywhere below
# 4 GiB (the largest host, docs/architecture.md §5.1), and never zero, so that a VMM that
# zeroes or copies host memory where it should not shows.  Its low bits are P|W|U (§7.2):
# read as a page-table entry, unused RAM is a present, writable user mapping of a frame near
# it, so a VMM that takes host pages for tables without clearing them maps garbage and shows.
_CANARY_TAG = (0xC0FFEE << 40) | 0b111

Runaway = NoProgress
"""The error a VMM's host run raises when it has run far more than its slices allow."""


def canary_pattern(start: int, size: int) -> bytes:
    """The bytes the host's unused RAM holds: each quadword is its own address plus a tag."""
    return _pattern(start - start % 8, -(-(start % 8 + size) // 8))[start % 8 : start % 8 + size]


@lru_cache(maxsize=4)
def _pattern(start: int, quads: int) -> bytes:
    words = array("Q", range(start + _CANARY_TAG, start + _CANARY_TAG + 8 * quads, 8))
    if array("H", [1]).tobytes() != b"\x01\x00":
        words.byteswap()  # the machine's memory is little-endian (architecture §5.1)
    return words.tobytes()


def host_memory_damage(host: Machine, owned: Sequence[tuple[int, int]]) -> list[str]:
    """Where the host's RAM outside ``owned`` ranges no longer holds the canary pattern: one
    line per damaged stretch between owned ranges (the canary region named as such)."""
    size = host.memory_size
    canary = host_canary(host)
    pattern = _pattern(0, size // 8)
    now = host.read(0, size)
    out = []
    for lo, hi in _gaps(owned, size):
        if now[lo:hi] == pattern[lo:hi]:
            continue
        changed = [a for a in range(lo - lo % 8, hi, 8) if now[a : a + 8] != pattern[a : a + 8]]
        first = changed[0]
        what = "host canary region damaged" if lo >= canary[0] else "host memory outside every VM's region changed"
        out.append(
            f"{what}: {len(changed)} quadwords of [{lo:#x}, {hi:#x}) changed, the first at {first:#x}: "
            f"{now[first : first + 8].hex(' ')}"
        )
    return out


def _gaps(owned: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The stretches of [0, size) outside every owned range."""
    out, at = [], 0
    for start, length in sorted(owned):
        if start > at:
            out.append((at, start))
        at = max(at, start + length)
    if at < size:
        out.append((at, size))
    return out


def _region_problems(host: Machine, named: list[tuple[str, int, int]]) -> list[str]:
    """Declared host regions that fall outside host RAM, overlap the canary region, or overlap
    each other (docs/vmm-api.md §9)."""
    canary_start, canary_size = host_canary(host)
    out = []
    for name, start, size in named:
        if size < 0 or start < 0 or start + size > host.memory_size:
            out.append(f"{name} [{start:#x}, {start + size:#x}) is not inside host RAM [0, {host.memory_size:#x})")
        elif start < canary_start + canary_size and canary_start < start + size:
            out.append(f"{name} [{start:#x}, {start + size:#x}) overlaps the canary region at {canary_start:#x}")
    ordered = sorted((s, s + n, name) for name, s, n in named if n > 0)
    reach: tuple[int, int, str] | None = None  # the range reaching furthest so far
    for s2, e2, n2 in ordered:
        if reach is not None and s2 < reach[1]:
            s1, e1, n1 = reach
            out.append(f"{n1} [{s1:#x}, {e1:#x}) overlaps {n2} [{s2:#x}, {e2:#x})")
        if reach is None or e2 > reach[1]:
            reach = (s2, e2, n2)
    return out


@dataclass
class SideBySide:
    """What a side-by-side run showed (see the module docstring)."""

    vmm: str
    observations: list[Observation | None]
    error: str | None = None
    canary_damage: list[str] = field(default_factory=list)
    region_problems: list[str] = field(default_factory=list)
    host_cpl0_instructions: int = 0
    longest_host_run: int = 0
    slices: int = 0
    overrun: str | None = None  # a slice in which the host ran longer than the VMs could
    rams: list[bytes | None] = field(default_factory=list, repr=False)
    """Each VM's guest-physical RAM at the end (None: not checkable, docs/vmm-api.md §9)."""
    checked_bytes: int = 0
    """Bytes of host RAM checked for the canary pattern (all that no VM or VMM structure holds)."""

    @property
    def control_bound(self) -> int:
        return HOST_TIMER_PERIOD + CONTROL_LATENCY

    def violations(self) -> list[str]:
        """One line per broken rule of resource control; empty when the run was safe."""
        out = []
        if self.error is not None:
            out.append(f"the VMM failed (the host survived): {self.error}")
        out += [f"host regions declared by the VMM are inconsistent: {p}" for p in self.region_problems]
        out += self.canary_damage
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
    what the VMM does (its exceptions, a crash or a hang of its process, are recorded in
    ``SideBySide.error``).

    The VMM runs in a child process (``conformance.isolation``); the host's RAM is shared with
    it, and judged here, after the child is gone, from this process's own view of it: a VMM
    cannot hide damage by changing how the host reads (docs/vmm-api.md §11)."""
    from cffi_core.machine import Machine
    from conformance.isolation import run_isolated

    cls = check_vmm_class(vmm, "the VMM given")
    label = vmm_label(cls)
    host = Machine(profile, default_host_memory(sum(c.memory for _, c in guests)), shared_memory=True)
    # All of host RAM, not only the canary region: memory a VMM leaves alone keeps the pattern,
    # and a VMM cannot count on RAM it did not clear being zero (a real machine's is not).
    host.write(0, _pattern(0, host.memory_size // 8))
    result = SideBySide(cls.name, [None] * len(guests))
    try:
        seen = run_isolated(
            lambda: _side_by_side_here(cls, label, host, guests, period),
            label=label,
            what=f"the run of {len(guests)} VMs side by side",
            ticks=sum(c.budget for _, c in guests),
        )
    except VMMError as e:
        result.error = str(e)
        seen = None
    owned = _owned_regions(host, seen, result)
    result.checked_bytes = sum(hi - lo for lo, hi in _gaps(owned, host.memory_size))
    result.canary_damage = host_memory_damage(host, owned)
    return result if seen is None else _fill(result, seen, label)


def _fill(result: SideBySide, seen: dict[str, Any], label: str) -> SideBySide:
    """``result`` with what the VMM's process reported (plain data, checked here)."""
    from conformance.api import observation_from

    result.error = result.error or seen["error"]
    result.slices = seen["slices"]
    result.overrun = seen["overrun"]
    result.longest_host_run = seen["longest"]
    result.host_cpl0_instructions = seen["cpl0"]
    try:
        result.observations = [None if o is None else observation_from(o, label) for o in seen["observations"]]
    except VMMError as e:
        result.error = result.error or str(e)
    rams = seen["rams"]
    result.rams = [r if isinstance(r, bytes) else None for r in rams] if isinstance(rams, list) else []
    return result


def _side_by_side_here(
    cls: type[VMM], label: str, host: Machine, guests: Sequence[tuple[GuestImage, VMConfig]], period: int
) -> dict[str, Any]:
    """The run itself, in the VMM's process: what it saw, as plain data."""
    from conformance.api import plain_observation

    watch = HostWatch.of(host)
    watch.label = label
    cpl0_before = host.counters["insn_host_cpl0"]
    seen: dict[str, Any] = {
        "error": None,
        "observations": [None] * len(guests),
        "rams": [],
        "slices": 0,
        "overrun": None,
        "regions": None,
    }
    vms: list[VM] = []
    monitor: VMM | None = None
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
            if seen["slices"] >= max_slices:
                seen["overrun"] = (
                    f"VMs still running after {seen['slices']} slices of {period} ticks, beyond every VM's budget"
                )
                break
            running = sum(not vm.stopped for vm in vms)
            # The host-tick bound of a slice is checked below, as the rule of §9 says it.
            watch.begin_slice(
                period * running,
                entries=_RUNS_PER_TICK * running * (period + CONTROL_LATENCY) + ENTRY_SLACK,
                host_ticks=1 << 62,
            )
            clock = host.clock
            monitor.run(period)
            watch.end_slice()
            if watch.failure is not None:
                raise NoProgress(watch.failure)
            seen["slices"] += 1
            spent = host.clock - clock
            if spent > running * (period + CONTROL_LATENCY):
                seen["overrun"] = (
                    f"one VMM.run({period}) with {running} VMs running ran the host for {spent} ticks "
                    f"(at most {running} x ({period} + {CONTROL_LATENCY}) expected)"
                )
                break
        phase = "observation"
        seen["observations"] = [plain_observation(vm.observation(), label) for vm in vms]
        seen["rams"] = [guest_ram(vm) for vm in vms]
    except BaseException as e:  # KeyboardInterrupt or SystemExit raised by the VMM is its failure too
        if watch.failure is not None and not isinstance(e, NoProgress):
            e = NoProgress(watch.failure)
        seen["error"] = f"{label}: {phase} raised {type(e).__name__}: {e}{_frame_line(e)}"
    finally:
        watch.end_slice()
    seen["longest"] = watch.longest
    seen["cpl0"] = host.counters["insn_host_cpl0"] - cpl0_before
    seen["regions"] = _declared_regions(monitor, vms)
    return seen


def _declared_regions(monitor: VMM | None, vms: Sequence[VM]) -> dict[str, Any]:
    """What the VMM and its VMs declare of host RAM (docs/vmm-api.md §9), as plain data:
    ``{"shared": [...] | None, "per_vm": [[...] | None, ...], "error": str | None}``."""
    try:
        shared = vmm_host_regions(monitor) if monitor is not None else None
        per_vm = [vm_host_regions(vm) for vm in vms]
        return {
            "shared": None if shared is None else [(int(a), int(n)) for a, n in shared],
            "per_vm": [None if r is None else [(int(a), int(n)) for a, n in r] for r in per_vm],
            "error": None if monitor is not None else "no VMM was built",
        }
    except Exception as e:
        return {"shared": None, "per_vm": [], "error": f"reading them raised {type(e).__name__}: {e}"}


def _owned_regions(host: Machine, seen: dict[str, Any] | None, result: SideBySide) -> list[tuple[int, int]]:
    """The host RAM the VMM may have written: its VMs' and its own declared regions; all of it
    below the canary region when any is not declared, or the VMM's process did not say (the
    safe default, docs/vmm-api.md §9)."""
    canary_start = host_canary(host)[0]
    everything = [(0, canary_start)]
    declared = seen.get("regions") if isinstance(seen, dict) else None
    if not isinstance(declared, dict):
        return everything
    if declared.get("error") is not None:
        if declared["error"] != "no VMM was built":
            result.region_problems.append(declared["error"])
        return everything
    shared, per_vm = _pairs(declared.get("shared")), declared.get("per_vm")
    per_vm = [_pairs(r) for r in per_vm] if isinstance(per_vm, list) else None
    if shared is None or per_vm is None or any(r is None for r in per_vm):
        return everything
    named = [("the VMM's region", a, n) for a, n in shared]
    for i, regions in enumerate(per_vm):
        named += [(f"VM {i}'s region", a, n) for a, n in regions]
    problems = _region_problems(host, named)
    if problems:
        result.region_problems += problems
        return everything
    return [(a, n) for _, a, n in named]


def _pairs(regions: object) -> list[tuple[int, int]] | None:
    """``regions`` as ``(start, size)`` pairs of ints, None when it is not that (the VMM's
    process sent it: anything else is a region not declared)."""
    if not isinstance(regions, list | tuple):
        return None
    out = []
    for r in regions:
        if not (isinstance(r, list | tuple) and len(r) == 2 and all(type(x) is int for x in r)):
            return None
        out.append((r[0], r[1]))
    return out
