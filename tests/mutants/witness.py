"""Witnesses of the mutants: a guest program whose run differs from native, or a measured fact about the host."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

from conformance.api import VM, VMM, Observation, VMConfig, VMMError, default_host_memory, observe
from conformance.guests import GUEST_DIR

__all__ = [
    "WITNESS_CONFIG",
    "Fact",
    "OsWorkload",
    "ParavirtProgram",
    "Port",
    "Program",
    "Witness",
    "host_run",
    "paravirt_kernel",
]

WITNESS_CONFIG = VMConfig(memory=1 << 20, budget=200_000)
"""The directed guests' machine (1 MiB, lib/prelude.s's memory map) with their budget."""


@cache
def _image(source: str):
    from cffi_core.asm import assemble

    # Includes ("lib/prelude.s") resolve against the conformance guests, as a generated guest's do.
    return assemble(source, filename=str(GUEST_DIR / "witness.s"))


def _observe(vmm: type[VMM], source: str, config: VMConfig, profile: str) -> Observation | str:
    try:
        return observe(vmm, _image(source), config, profile=profile)
    except VMMError as e:
        return f"VMMError: {e}"


@dataclass(frozen=True)
class Program:
    """A tiny guest (assembly text; ``.include "lib/prelude.s"`` and friends resolve against
    conformance/guests) whose observation under a buggy VMM differs from its native run."""

    source: str
    config: VMConfig = WITNESS_CONFIG

    def problem(self, vmm: type[VMM], profile: str) -> str | None:
        """How ``vmm``'s run of the program differs from the native oracle's; None when it
        does not (or when the VMM raised: that is reported as the difference)."""
        from reference_vmm.native import NativeVMM

        native = _observe(NativeVMM, self.source, self.config, profile)
        if isinstance(native, str):
            raise AssertionError(f"the witness does not run natively: {native}")
        actual = _observe(vmm, self.source, self.config, profile)
        if isinstance(actual, str):
            return actual
        return "; ".join(native.diff(actual, ("native", vmm.name))) or None


@dataclass(frozen=True)
class Fact:
    """A measured fact about a VMM's use of the host (memory written outside every VM, host
    entries per guest instruction, ...): ``measure`` returns the problem it found, or None."""

    what: str
    measure: Callable[[type[VMM], str], str | None]

    def problem(self, vmm: type[VMM], profile: str) -> str | None:
        return self.measure(vmm, profile)


def _paravirt(vmm: type[VMM]) -> bool:
    """Whether ``vmm`` runs guests ported to the paravirtual ABI (docs/paravirt-abi.md)."""
    return getattr(vmm, "guest_abi", "native") == "paravirt"


@cache
def _os_observe(vmm: type[VMM], name: str, n: int, profile: str) -> Observation | str:
    from conformance.guest_os import os_config, os_image

    try:
        # A paravirtual VMM runs the paravirtual build of p64os, held to the native build's
        # native run (conformance/test_os.py).
        return observe(vmm, os_image(paravirt=_paravirt(vmm)), os_config(name, n), profile=profile)
    except VMMError as e:
        return f"VMMError: {e}"


@dataclass(frozen=True)
class OsWorkload:
    """A run of the reference guest OS p64os (conformance/guest_os): workload ``name`` at size
    ``n``, the image and configuration of the os category (``os_image()``, ``os_config(name,
    n)``), whose observation under a buggy VMM differs from its native run — the witness of a
    bug that only a multi-process guest shows (address spaces created and freed, copy-on-write,
    device interrupts while a process runs).  A paravirtual VMM runs the paravirtual build of
    p64os (``os_image(paravirt=True)``) against the same native run, as conformance/test_os.py
    holds it."""

    name: str
    n: int

    def problem(self, vmm: type[VMM], profile: str) -> str | None:
        """How ``vmm``'s run of the workload differs from the native oracle's; None when it
        does not (a VMMError is reported as the difference)."""
        from reference_vmm.native import NativeVMM

        native = _os_observe(NativeVMM, self.name, self.n, profile)
        if isinstance(native, str) or (native.stop, native.exit_code) != ("exit", 0):
            raise AssertionError(f"p64os {self.name} {self.n} does not run natively: {native}")
        actual = _os_observe(vmm, self.name, self.n, profile)
        if isinstance(actual, str):
            return actual
        return "; ".join(native.diff(actual, ("native", vmm.name))) or None


@dataclass(frozen=True)
class Port:
    """The paravirtual port of the directed guest ``name`` (conformance/guests/paravirt), whose
    observation under a buggy paravirtual VMM differs from what its native guest's native run
    expects of it (``native_expectation``, as conformance/test_equivalence.py holds it)."""

    name: str

    def problem(self, vmm: type[VMM], profile: str) -> str | None:
        from conformance.guests import by_name
        from conformance.guests.paravirt import native_expectation, paravirt_build
        from reference_vmm.native import NativeVMM

        native, port = by_name(self.name), paravirt_build(self.name)
        if isinstance(port, str):
            raise AssertionError(f"directed guest {self.name} has no paravirtual port: {port}")
        expected = native_expectation(observe(NativeVMM, native.image(), native.config, profile=profile))
        try:
            actual = observe(vmm, port.image(), port.config, profile=profile)
        except VMMError as e:
            return f"VMMError: {e}"
        return "; ".join(expected.diff(actual, ("native", vmm.name))) or None


@cache
def _paravirt_image(source: str):
    from cffi_core.asm import assemble

    # Includes ("lib/directed.s", "lib/end.s") resolve against the paravirtual directed guests.
    return assemble(source, filename=str(GUEST_DIR / "paravirt" / "witness.s"))


@dataclass(frozen=True)
class ParavirtProgram:
    """A tiny paravirtual guest (assembly text with conformance/guests/paravirt's ``lib/
    directed.s`` and ``lib/end.s``, most built by ``paravirt_kernel``) and the registers its
    signature must show by docs/paravirt-abi.md — there is no native run of a paravirtual guest
    to compare with, so the witness states the ABI's answer; it must exit with code 0."""

    source: str
    registers: tuple[tuple[int, int], ...]
    """(n, value): the signature's line ``rN=<value>``."""
    output: bytes = b""
    """What the console shows before the signature."""
    config: VMConfig = WITNESS_CONFIG

    def problem(self, vmm: type[VMM], profile: str) -> str | None:
        try:
            actual = observe(vmm, _paravirt_image(self.source), self.config, profile=profile)
        except VMMError as e:
            return f"VMMError: {e}"
        problems = []
        if (actual.stop, actual.exit_code) != ("exit", 0):
            problems.append(f"stop {actual.stop!r}, exit code {actual.exit_code}: the ABI's run exits with 0")
        if not actual.console.startswith(self.output):
            got = actual.console.split(b"r1=")[0]
            problems.append(f"{len(self.output)} bytes of output by the ABI, {vmm.name} shows {len(got)} before r1")
        lines = actual.console.splitlines()
        for n, value in self.registers:
            line = f"r{n}={value & (1 << 64) - 1:016x}".encode()
            if line not in lines:
                got = next((x for x in lines if x.startswith(f"r{n}=".encode())), b"nothing")
                problems.append(f"{line.decode()} by the ABI, {vmm.name} shows {got.decode()}")
        return "; ".join(problems) or None


def paravirt_kernel(main: str, handlers: str = "") -> str:
    """A paravirtual directed-style guest: conformance/guests/paravirt/lib/directed.s (its trap
    table, the console and block drivers), ``main`` in its kernel, then ``jmp finish`` and
    lib/end.s's signature (r1-r8, the event log, exit code 0 unless a fatal handler ran) and the
    hypercall page.  ``handlers`` is code placed after the jump."""
    return "\n".join(
        ['.include "lib/directed.s"', "main:", main.rstrip("\n"), "        jmp     finish", handlers,
         '.include "lib/end.s"', ""]
    )  # fmt: skip


Witness = Program | Fact | OsWorkload | Port | ParavirtProgram


# ---- driving a VMM by hand, for the facts -----------------------------------------------------


@dataclass
class HostRun:
    """What ``host_run`` saw: the VMs' observations (or the error), the host, the monitor, the
    host's memory before the VMM was built, and how often the VMM entered the host's core."""

    observations: list[Observation]
    error: str | None
    host: object
    monitor: VMM | None
    before: bytes
    entries: int
    longest: int = 0
    """Ticks of the longest single ``run``/``vmrun`` call."""
    host_cpl0: int = 0
    """Instructions the host's core retired at CPL 0 in host mode (counter ``insn_host_cpl0``)."""
    exits: dict[str, int] = field(default_factory=dict)
    """The exits the host's ``run``/``vmrun`` calls ended with, by ``ExitReason`` name (a VM exit
    as ``VM_<basic exit reason>``)."""


def host_run(
    vmm: type[VMM],
    guests: Sequence[tuple[str, VMConfig]],
    profile: str,
    *,
    slice_ticks: int = 2_000,
    max_slices: int = 2_000,
    fill: bool = False,
    paravirt: bool = False,
) -> HostRun:
    """Run the guests (assembly sources) side by side on one new ``vmm`` over a fresh host of
    ``profile`` (its RAM first filled with a pattern with ``fill``: only for VMMs that clear
    every page they use, which the reference VMMs' page-table allocators do not), counting the VMM's calls of
    the host's ``run``/``vmrun``; stops after ``max_slices`` slices (a VMM that never lets its
    guests stop is not waited for).  ``paravirt``: the sources are paravirtual guests, whose
    includes resolve against conformance/guests/paravirt."""
    from cffi_core.machine import Machine

    host = Machine(profile, default_host_memory(sum(c.memory for _, c in guests)))
    if fill:
        host.write(0, _pattern(host.memory_size))
    before = bytes(host.memory)
    counts = [0, 0]  # calls, longest call in ticks
    exits: dict[str, int] = {}
    cpl0 = host.counters["insn_host_cpl0"]
    for name in ("run", "vmrun"):
        original = getattr(host, name, None)
        if original is not None:
            setattr(host, name, _counting(host, original, counts, exits))
    monitor: VMM | None = None
    vms: list[VM] = []
    error = None
    try:
        monitor = vmm(host)
        image = _paravirt_image if paravirt else _image
        vms = [monitor.create_vm(image(src), config) for src, config in guests]
        for _ in range(max_slices):
            if all(vm.stopped for vm in vms):
                break
            monitor.run(slice_ticks)
    except Exception as e:  # the VMM's failure is a finding, not an error of the witness
        error = f"{type(e).__name__}: {e}"
    observations = [vm.observation() for vm in vms] if error is None else []
    cpl0 = host.counters["insn_host_cpl0"] - cpl0
    return HostRun(observations, error, host, monitor, before, counts[0], counts[1], cpl0, exits)


def _counting(host, original: Callable[..., object], counts: list[int], exits: dict[str, int]) -> Callable[..., object]:
    def counted(*args: object, **kwargs: object) -> object:
        counts[0] += 1
        start = host.clock
        try:
            ex = original(*args, **kwargs)
        finally:
            counts[1] = max(counts[1], host.clock - start)
        reason = getattr(getattr(ex, "reason", None), "name", "?")
        key = f"VM_{ex.number}" if reason == "VM" else reason
        exits[key] = exits.get(key, 0) + 1
        return ex

    return counted


def _pattern(size: int) -> bytes:
    # Every quadword differs from its neighbours and from zero: any write shows.
    unit = b"".join(((0x5EED_0000_0000_0000 | q) ^ 0xA5A5).to_bytes(8, "little") for q in range(512))
    return (unit * (size // len(unit) + 1))[:size]


def kernel(main: str, handlers: str = "", *, paging: bool = False) -> str:
    """A directed-style guest: lib/prelude.s (IDT with logging handlers, stacks), ``main`` at
    CPL 0 (optionally after lib/paging.s's ``paging_on``), then ``jmp finish`` and the signature
    (r1-r8, CR0/CR3/CR4, the exception log, exit code 0 unless a fatal handler ran).
    ``handlers`` is code placed after the jump: the guest's own handlers."""
    head = ['.include "lib/prelude.s"'] + (['.include "lib/paging.s"'] if paging else [])
    start = ["main:"] + (["        call    paging_on"] if paging else [])
    return "\n".join(
        [*head, *start, main.rstrip("\n"), "        jmp     finish", handlers, '.include "lib/signature.s"', ""]
    )
