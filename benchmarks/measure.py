"""Measurement for the benchmark suites: counter deltas of a guest run at two sizes, natively or under a VMM.

A benchmark record holds **counts only** (docs/benchmarks.md §1): the counters of a run of size
``2n`` less those of a run of size ``n`` — boot, setup and the report cancel out, and what is left
is ``n`` iterations of the measured loop.  Host-side counters (the host core's ``Machine.counters``
as ``run_alone`` returns them, or the bare platform's for native) keep their names; the VMM's own
counters (``Observation.counters``: what it says of itself) are kept apart under the prefix
``vmm.``, so that a price on one of them is visibly a price on the graded VMM's word
(docs/vmm-api.md §11: a grader measures, it never trusts the graded).

Pricing is not done here (``benchmarks.cost_model``): records are plain data, saved as JSON and
re-priced under any cost profile.  Wall-clock time is recorded separately, never as a counter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "IO_PREFIX",
    "NATIVE",
    "RECORD_VERSION",
    "VMM_PREFIX",
    "BenchmarkError",
    "Record",
    "RunCounters",
    "delta",
    "measure",
    "port_counters",
    "run_counters",
]

NATIVE = "native"
"""The column of the bare machine: the guest on the platform with no VMM (what ``popek run`` does)."""
VMM_PREFIX = "vmm."
"""Prefix of the counters a VMM reports about itself (``Observation.counters``)."""
IO_PREFIX = "io_"
"""Prefix of the host's count of port accesses by device (``port_counters``)."""
RECORD_VERSION = 1


class BenchmarkError(RuntimeError):
    """A benchmark run that did not finish as a correct machine would (wrong stop, exit code or
    output): its counts would measure something else, so no record is made."""


@dataclass(frozen=True)
class RunCounters:
    """One run's counters: the host's (measured) and the VMM's own (reported), and its wall time."""

    host: dict[str, int]
    vmm: dict[str, int]
    wall_s: float
    console: bytes


@dataclass(frozen=True)
class Record:
    """The counts of ``n`` iterations of ``benchmark`` (suite ``suite``) under ``vmm`` on the
    machine profile ``machine``: ``delta`` = counters(size 2n) − counters(size n), host counters
    by name and the VMM's own under ``vmm.``.  ``wall_s``: the simulator's wall time of the two
    runs (never an input of the cost model); ``guest_instructions``: instructions the guest
    retired in the delta, counted by the host (for guest MIPS)."""

    suite: str
    benchmark: str
    vmm: str
    machine: str
    n: int
    delta: dict[str, int]
    wall_s: float
    guest_instructions: int
    version: int = RECORD_VERSION
    notes: list[str] = field(default_factory=list)

    def per_iteration(self, counter: str) -> float:
        """``counter``'s count per iteration (0 when it did not count)."""
        return self.delta.get(counter, 0) / self.n

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        """A record read back from JSON; an unknown version or a missing field is an error."""
        if data.get("version") != RECORD_VERSION:
            raise ValueError(f"benchmark record version {data.get('version')!r}: this popek reads {RECORD_VERSION}")
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except TypeError as e:
            raise ValueError(f"benchmark record: {e}") from None


def run_counters(vmm: str, machine: str, image: Any, config: Any) -> RunCounters:
    """Run ``image`` with ``config`` natively (``vmm == NATIVE``) or under the registered or
    importable VMM ``vmm`` (``run_alone``: in a child process, the host's counters as the host
    core counted them) on machine profile ``machine``."""
    started = time.perf_counter()
    if vmm == NATIVE:
        from cffi_core.platform import Platform
        from conformance.api import HostWatch

        platform = Platform(
            machine, config.memory, disk=config.disk, disk2=config.disk2, console_input=config.console_input
        )
        platform.load(image)
        watch = HostWatch.of(platform.machine)
        result = platform.run(config.budget)
        wall = time.perf_counter() - started
        if (result.stop, result.exit_code) != ("exit", 0):
            raise BenchmarkError(f"native on {machine}: stop {result.stop}, exit code {result.exit_code}")
        return RunCounters(dict(result.counters) | port_counters(watch.ports), {}, wall, bytes(result.console))
    from conformance.api import load_vmm, run_alone

    run = run_alone(load_vmm(vmm), image, config, profile=machine)
    wall = time.perf_counter() - started
    obs = run.observation
    if (obs.stop, obs.exit_code) != ("exit", 0):
        raise BenchmarkError(f"{vmm} on {machine}: stop {obs.stop}, exit code {obs.exit_code}")
    reported = {k: v for k, v in obs.counters.items() if isinstance(v, int) and not isinstance(v, bool)}
    return RunCounters(dict(run.host.counters) | port_counters(run.host.ports), reported, wall, bytes(obs.console))


def port_counters(ports: Mapping[str, int]) -> dict[str, int]:
    """``HostWatch.ports`` as host counters: ``io_<device>``, the guest's port accesses the host
    saw leave it, by device (an exit to the host or an I/O VM exit; a software VMM that emulates
    ``in``/``out`` behind a callout shows none)."""
    return {f"{IO_PREFIX}{device}": n for device, n in ports.items()}


def delta(big: Mapping[str, int], small: Mapping[str, int], *, dropped: list[str] | None = None) -> dict[str, int]:
    """``big − small`` counter by counter (zeros dropped).  A counter that went down is left out,
    with a line in ``dropped``: the run of ``2 n`` took a different path through its first ``n``
    iterations (host-timer slices fall elsewhere, a code cache warms up differently), so a count
    that is a one-time cost (translations, decoded pages) or that the path moves (TLB hits, halted
    ticks) can come out a little lower; its per-iteration share is then nil."""
    out: dict[str, int] = {}
    for name in sorted(set(big) | set(small)):
        d = big.get(name, 0) - small.get(name, 0)
        if d < 0:
            if dropped is not None:
                dropped.append(f"counter {name!r} went down by {-d} from size n to 2n: left out (taken as 0)")
            continue
        if d:
            out[name] = d
    return out


def measure(
    suite: str,
    benchmark: str,
    vmm: str,
    machine: str,
    n: int,
    make: Callable[[int], tuple[Any, Any]],
    *,
    check: Callable[[int, bytes], None] | None = None,
) -> Record:
    """The record of ``n`` iterations: ``make(size)`` gives the image and ``VMConfig`` of a run
    of ``size`` iterations; the runs of size ``n`` and ``2 n`` are made and subtracted.
    ``check(size, console)`` raises if a run's output is not what a correct machine prints."""
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    runs = {}
    for size in (n, 2 * n):
        image, config = make(size)
        runs[size] = run_counters(vmm, machine, image, config)
        if check is not None:
            check(size, runs[size].console)
    notes: list[str] = []
    host = delta(runs[2 * n].host, runs[n].host, dropped=notes)
    own = delta(runs[2 * n].vmm, runs[n].vmm, dropped=notes)
    merged = {**host, **{VMM_PREFIX + k: v for k, v in own.items()}}
    return Record(
        suite=suite,
        benchmark=benchmark,
        vmm=vmm,
        machine=machine,
        n=n,
        delta=merged,
        wall_s=round(runs[n].wall_s + runs[2 * n].wall_s, 4),
        guest_instructions=host.get("instructions", 0),
        notes=notes,
    )
