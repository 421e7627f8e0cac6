"""The VMM contract (DESIGN §6): what a monitor under test implements, what the suite observes of it.

A VMM is a Python class.  The suite gives it a *host* — a ``cffi_core.machine.Machine`` of the
profile under test — asks it to create one or more VMs from guest images, runs it, and looks at
each VM from the outside: its console, exit code, disk and why it stopped.  That outside view is
an ``Observation``; Popek & Goldberg's *equivalence* property (1974, §2) says the observation
under the VMM equals the one of a native run (``reference_vmm.native``, the oracle).

Nothing here knows a technique: trap-and-emulate, binary translation, paravirtualization and
hardware assistance (Fisher-Ogden 2006 §2-§3) all fit the same three calls.  The manual is
``docs/vmm-api.md``.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, ClassVar

from cffi_core.devices.disk import SECTOR_SIZE
from cffi_core.profiles import DEFAULT_PROFILE

if TYPE_CHECKING:
    from cffi_core.image import GuestImage
    from cffi_core.machine import Machine

__all__ = [
    "CONTROL_LATENCY",
    "COUNTER_DIRECT",
    "COUNTER_EMULATED",
    "COUNTER_INTERVENTIONS",
    "DEFAULT_BUDGET",
    "DEFAULT_GUEST_MEMORY",
    "EFFICIENCY_COUNTERS",
    "ENTRY_POINT_GROUP",
    "HOST_CANARY_SIZE",
    "HOST_TIMER_PERIOD",
    "STOPS",
    "VM",
    "VMM",
    "Observation",
    "VMConfig",
    "VMMError",
    "VMMLoadError",
    "VMMUnsupported",
    "available_vmms",
    "check_vmm_class",
    "default_host_memory",
    "host_canary",
    "load_vmm",
    "observe",
    "vmm_label",
]

# Copies of cffi_core.machine's and cffi_core.platform's values (a test keeps them equal):
# importing those modules loads the compiled core, and this module is imported by the pytest
# plugin in environments that may not have built it.
MiB = 1 << 20
PAGE_SIZE = 4096
MIN_MEMORY = 64 * 1024  # the smallest Machine
MAX_MEMORY = 4 << 30  # the largest Machine
DEFAULT_GUEST_MEMORY = 16 * MiB
DEFAULT_BUDGET = 100_000_000  # guest ticks
ENTRY_POINT_GROUP = "popek.vmms"

STOPS = ("exit", "halted", "shutdown", "budget")
"""Why a guest stopped: it wrote the result port; it halted with nothing able to wake it; it
triple-faulted (docs/architecture.md §6.6); it used up ``VMConfig.budget`` ticks."""

# Efficiency (Popek & Goldberg 1974: "a statistically dominant subset of the virtual
# processor's instructions be executed directly by the real processor"): the keys of
# ``VM.counters`` a VMM reports so that the suite can measure it (docs/vmm-api.md §8).
COUNTER_DIRECT = "guest_insns_direct"
"""Guest instructions retired directly by the host's core (host mode at a deprivileged ring,
or guest mode), with no VMM software involved."""
COUNTER_EMULATED = "guest_insns_emulated"
"""Guest instructions the VMM carried out in software (interpreted, emulated after a trap,
or run as translated code other than the guest's own)."""
COUNTER_INTERVENTIONS = "vmm_interventions"
"""Times VMM software took control from the guest: traps, exits, host gates, port I/O,
interrupt injections; a full emulator intervenes at every instruction it interprets."""
EFFICIENCY_COUNTERS = (COUNTER_DIRECT, COUNTER_EMULATED, COUNTER_INTERVENTIONS)

# Resource control (docs/vmm-api.md §9).  The top HOST_CANARY_SIZE bytes of the host's RAM are
# off limits to every VMM: the safety tests fill them with a pattern and check it afterwards.
HOST_CANARY_SIZE = 64 * 1024
# The safety tests drive VMM.run in slices of HOST_TIMER_PERIOD ticks, the host timer; a VMM
# that runs guest code on the host machine must regain control (the host's run or vmrun
# returns) within CONTROL_LATENCY ticks of the end of each slice, whatever the guest does.
HOST_TIMER_PERIOD = 2_000
CONTROL_LATENCY = 1_000

_DIFF_CONTEXT = 16  # bytes of console shown on each side of the first difference


# ---- configuration and observation ----------------------------------------------------------


@dataclass(frozen=True)
class VMConfig:
    """How to build one VM: its RAM, disk images, console input and tick budget.

    ``disk2`` is the image of the second disk (architecture §11, ports 0x170-0x174): a VMM may
    emulate it like the first or pass it through to the guest (``hardware-ept`` does, through
    the IOMMU, on profiles with ``iommu``).

    ``budget`` counts the guest's own ticks (docs/architecture.md §9), halted time included,
    exactly like ``Platform.run(budget)`` does for a native run: a VM whose clock reaches it
    stops with ``stop == "budget"``.  Host-side work of the VMM is not charged to it.
    """

    memory: int = DEFAULT_GUEST_MEMORY
    disk: bytes | None = None
    console_input: bytes = b""
    budget: int = DEFAULT_BUDGET
    disk2: bytes | None = None

    def __post_init__(self) -> None:
        # The bounds of a Machine: every guest must also run natively, on the oracle.
        if type(self.memory) is not int or self.memory % PAGE_SIZE or not MIN_MEMORY <= self.memory <= MAX_MEMORY:
            raise ValueError(f"memory = {self.memory!r}: must be a multiple of {PAGE_SIZE} bytes from 64 KiB to 4 GiB")
        if type(self.budget) is not int or self.budget < 0:
            raise ValueError(f"budget = {self.budget!r}: must be an int >= 0")
        for name in ("disk", "disk2"):
            image = getattr(self, name)
            if image is not None:
                if not isinstance(image, bytes | bytearray | memoryview) or len(image) % SECTOR_SIZE:
                    raise ValueError(f"{name}: must be bytes of whole {SECTOR_SIZE}-byte sectors")
                object.__setattr__(self, name, bytes(image))
        object.__setattr__(self, "console_input", bytes(self.console_input))


@dataclass(frozen=True)
class Observation:
    """What the outside sees of one guest run.

    Equivalence (Popek & Goldberg 1974) compares ``console``, ``exit_code``, ``disk``,
    ``disk2`` and ``stop``; ``counters`` are the VMM's own report (for efficiency and
    benchmarks) and take no part in equality.
    """

    console: bytes
    exit_code: int | None
    disk: bytes
    stop: str
    counters: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    disk2: bytes = b""

    def __post_init__(self) -> None:
        # Checked here so that a VMM returning garbage fails at the boundary, with a message.
        if not isinstance(self.console, bytes | bytearray):
            raise TypeError(f"console is a {type(self.console).__name__}, not bytes")
        for name in ("disk", "disk2"):
            if not isinstance(getattr(self, name), bytes | bytearray):
                raise TypeError(f"{name} is a {type(getattr(self, name)).__name__}, not bytes")
        if self.exit_code is not None and (type(self.exit_code) is not int or not 0 <= self.exit_code < 1 << 32):
            raise TypeError(f"exit_code = {self.exit_code!r}: must be None or an unsigned 32-bit int")
        if self.stop not in STOPS:
            raise ValueError(f"stop = {self.stop!r}: must be one of {', '.join(STOPS)}")
        if (self.stop == "exit") != (self.exit_code is not None):
            raise ValueError(
                f"stop = {self.stop!r} with exit_code = {self.exit_code!r}: an exit code comes with stop 'exit' only"
            )
        if not isinstance(self.counters, Mapping):
            raise TypeError(f"counters is a {type(self.counters).__name__}, not a mapping")
        object.__setattr__(self, "console", bytes(self.console))
        object.__setattr__(self, "disk", bytes(self.disk))
        object.__setattr__(self, "disk2", bytes(self.disk2))
        object.__setattr__(self, "counters", dict(self.counters))  # a copy: picklable, unshared

    def equivalent(self, other: Observation) -> bool:
        """True when a guest could not tell the two runs apart (counters ignored)."""
        return self == other

    def diff(self, other: Observation, names: tuple[str, str] = ("expected", "actual")) -> list[str]:
        """One readable line per difference, ``self`` named ``names[0]``, ``other`` ``names[1]``;
        empty when the observations are equivalent."""
        a, b = names
        lines = []
        if self.stop != other.stop:
            lines.append(f"stop: {a} {self.stop!r}, {b} {other.stop!r}")
        if self.exit_code != other.exit_code:
            lines.append(f"exit code: {a} {_code(self.exit_code)}, {b} {_code(other.exit_code)}")
        if self.console != other.console:
            lines.append(_console_diff(self.console, other.console, a, b))
        for name in ("disk", "disk2"):
            x, y = getattr(self, name), getattr(other, name)
            if x != y:
                lines.append(_disk_diff(name, x, y, a, b))
        return lines


def host_canary(host: Machine) -> tuple[int, int]:
    """The host's canary region ``(start, size)``: the top ``HOST_CANARY_SIZE`` bytes of its RAM
    (all of it above the first half on a host too small for that).  No VMM may write there."""
    size = min(HOST_CANARY_SIZE, host.memory_size // 2)
    return host.memory_size - size, size


def _code(code: int | None) -> str:
    return "none" if code is None else f"{code} ({code:#x})"


def _first_difference(x: bytes, y: bytes) -> int:
    return next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))


def _console_diff(x: bytes, y: bytes, a: str, b: str) -> str:
    i = _first_difference(x, y)
    lo, hi = max(0, i - _DIFF_CONTEXT), i + _DIFF_CONTEXT
    dots = "…" if lo else ""
    return (
        f"console: differs from byte {i} ({a} {len(x)} bytes, {b} {len(y)}): "
        f"{a} {dots}{x[lo:hi]!r}, {b} {dots}{y[lo:hi]!r}"
    )


def _disk_diff(name: str, x: bytes, y: bytes, a: str, b: str) -> str:
    if len(x) != len(y):
        return f"{name}: {a} {len(x)} bytes, {b} {len(y)} bytes"
    differing = [i for i, (p, q) in enumerate(zip(x, y, strict=True)) if p != q]
    i = differing[0]
    return (
        f"{name}: {len(differing)} bytes differ, the first at {i:#x} (sector {i // SECTOR_SIZE}): "
        f"{a} {x[i : i + 8].hex(' ')}, {b} {y[i : i + 8].hex(' ')}"
    )


# ---- the contract ---------------------------------------------------------------------------


class VM(abc.ABC):
    """One virtual machine, as ``VMM.create_vm`` returns it: a live view of the guest's outside.

    Subclasses implement the five properties; ``stopped`` and ``observation`` follow from them.
    """

    @property
    @abc.abstractmethod
    def console(self) -> bytes:
        """Every byte the guest wrote to its console so far."""

    @property
    @abc.abstractmethod
    def exit_code(self) -> int | None:
        """The code the guest wrote to the result port; None if it has not written one."""

    @property
    @abc.abstractmethod
    def disk(self) -> bytes:
        """The guest's disk image now (``b""`` when it was given none)."""

    @property
    def disk2(self) -> bytes:
        """The guest's second disk now (``b""`` when it was given none).  A VMM that models no
        second disk keeps this default, and a guest that uses one shows the difference."""
        return b""

    @property
    @abc.abstractmethod
    def stop(self) -> str | None:
        """Why the guest stopped (one of ``STOPS``), or None while it can still run."""

    @property
    def counters(self) -> Mapping[str, int]:
        """Whatever the VMM wants to report (instruction counts, exits, ...); empty by default.

        The efficiency tests need ``EFFICIENCY_COUNTERS`` here (guest instructions retired
        directly, emulated, and VMM interventions, docs/vmm-api.md §8); a VM without them
        fails those tests with a message saying so."""
        return {}

    @property
    def stopped(self) -> bool:
        """True once the guest can run no further."""
        return self.stop is not None

    def observation(self) -> Observation:
        """The guest's outside now.  A VM that has not stopped is reported as stopped by its
        budget: the caller ran it as long as it meant to."""
        return Observation(
            console=self.console,
            exit_code=self.exit_code,
            disk=self.disk,
            stop=self.stop or "budget",
            counters=self.counters,
            disk2=self.disk2,
        )


class VMM(abc.ABC):
    """A virtual machine monitor under test.

    The suite builds it on a host ``Machine`` (the hardware it may use; a VMM that only
    interprets may ignore it), creates VMs, then calls ``run`` until they stop.  Several VMs may
    be created on one VMM; it multiplexes them as it likes (DESIGN §9, safety tests).
    """

    name: ClassVar[str]
    """Short name for reports and test ids, e.g. ``"trap-and-emulate"``."""
    technique: ClassVar[str]
    """Free label of the technique, e.g. ``"Fisher-Ogden §2.2 trap-and-emulate"``."""
    requires: ClassVar[frozenset[str]] = frozenset()
    """Host features needed (docs/architecture.md §12), e.g. ``{"vmx", "ept"}``."""
    optional: ClassVar[frozenset[str]] = frozenset()
    """Host features used when the host has them, e.g. ``{"iommu"}`` for device passthrough:
    ``popek demo``/``grade`` grade the VMM on its profiles both without and with them."""
    guest_abi: ClassVar[str] = "native"
    """Which build of a guest it runs: ``"native"`` or ``"paravirt"``."""

    def __init__(self, host: Machine) -> None:
        self.host = host
        self.vms: list[VM] = []  # in creation order; subclasses append in create_vm

    @abc.abstractmethod
    def create_vm(self, image: GuestImage, config: VMConfig) -> VM:
        """Build a VM with ``config``, load ``image`` into its memory (pc = the entry point, CPU
        in its reset state, docs/architecture.md §2) and return it, not yet run."""

    @abc.abstractmethod
    def run(self, budget: int) -> None:
        """Run the VMs until every one has stopped or each still running has advanced ``budget``
        ticks of its own clock in this call (a VM also stops at its ``VMConfig.budget``)."""


# ---- errors and the driver ------------------------------------------------------------------


class VMMError(Exception):
    """A VMM misbehaved (raised, or returned something outside the contract), or could not be
    loaded; the message names the VMM and the cause."""


class VMMLoadError(VMMError):
    """``load_vmm`` could not resolve a VMM by the name it was given."""


class VMMUnsupported(VMMError):
    """The host lacks features the VMM ``requires`` (the suite skips such a test)."""


def vmm_label(cls: type) -> str:
    """How errors name a VMM class: ``VMM 'name' (module:Class)``."""
    return _label(cls)


def check_vmm_class(cls: object, origin: str) -> type[VMM]:
    """``cls`` if it is a complete VMM class (a ``VMM`` subclass, nothing abstract, ``name``
    and ``technique`` set); else ``VMMLoadError`` naming ``origin`` and what is missing."""
    return _check_vmm_class(cls, origin)


def _label(cls: type) -> str:
    name = getattr(cls, "name", None)
    where = f"{cls.__module__}:{cls.__qualname__}"
    return f"VMM {name!r} ({where})" if isinstance(name, str) else f"VMM {where}"


def _check_vmm_class(cls: object, origin: str) -> type[VMM]:
    if not (isinstance(cls, type) and issubclass(cls, VMM)):
        raise VMMLoadError(f"{origin} is {cls!r}, not a subclass of conformance.api.VMM")
    if getattr(cls, "__abstractmethods__", None):
        missing = ", ".join(sorted(cls.__abstractmethods__))
        raise VMMLoadError(f"{_label(cls)} from {origin} does not implement {missing}")
    for attr in ("name", "technique"):
        if not isinstance(getattr(cls, attr, None), str):
            raise VMMLoadError(f"{_label(cls)} from {origin} has no class attribute {attr}: str")
    return cls


def observe(
    vmm: type[VMM],
    image: GuestImage,
    config: VMConfig | None = None,
    *,
    host: Machine | None = None,
    profile: str = DEFAULT_PROFILE,
) -> Observation:
    """Run ``image`` alone under a new ``vmm`` and return its observation.

    The host is ``host`` or, by default, a fresh Machine of ``profile`` with room for twice the
    guest's memory (what a VMM keeps beside the guest: shadow tables, translation caches) and,
    above that, the canary region (``host_canary``).  A
    guest that runs out of budget is an observation with ``stop == "budget"``; a VMM that
    raises, or returns anything outside the contract, is a ``VMMError`` naming it and the
    cause; a host without the features the VMM requires is ``VMMUnsupported``.
    """
    config = config or VMConfig()
    cls = _check_vmm_class(vmm, "the VMM given")
    label = _label(cls)
    if host is None:
        from cffi_core.machine import Machine

        host = Machine(profile, default_host_memory(config.memory))
    missing = frozenset(cls.requires) - host.profile.features
    if missing:
        raise VMMUnsupported(
            f"{label} requires host features {', '.join(sorted(missing))}, which profile {host.profile.name!r} lacks"
        )
    phase = "construction"
    try:
        monitor = cls(host)
        phase = "create_vm"
        vm = monitor.create_vm(image, config)
        if not isinstance(vm, VM):
            raise VMMError(f"{label}: create_vm returned {type(vm).__name__}, not a conformance.api.VM")
        phase = "run"
        monitor.run(config.budget)
        phase = "observation"
        obs = vm.observation()
        if not isinstance(obs, Observation):
            raise VMMError(f"{label}: observation() returned {type(obs).__name__}, not an Observation")
    except VMMError:
        raise
    except Exception as e:
        raise VMMError(f"{label}: {phase} raised {type(e).__name__}: {e}") from e
    return obs


def default_host_memory(guest_memory: int) -> int:
    """The RAM of the host the suite builds for a guest of ``guest_memory`` bytes: twice that
    (at least 16 MiB) for the VMM, plus the canary region at the top."""
    return min(MAX_MEMORY, max(DEFAULT_GUEST_MEMORY, 2 * guest_memory) + HOST_CANARY_SIZE)


# ---- finding a VMM by name ------------------------------------------------------------------


def available_vmms() -> dict[str, str]:
    """The installed VMMs: entry-point name -> ``module:Class`` (group ``popek.vmms``)."""
    return {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def load_vmm(spec: str) -> type[VMM]:
    """The VMM class named by ``spec``: ``pkg.module:Class`` or an entry-point name of group
    ``popek.vmms`` (e.g. ``"emulate"``).  ``VMMLoadError`` says what is wrong and what exists."""
    if not isinstance(spec, str) or not spec.strip():
        raise VMMLoadError(f"VMM name {spec!r}: give 'pkg.module:Class' or an entry-point name")
    spec = spec.strip()
    if ":" in spec:
        return _load_by_path(spec)
    matches = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == spec]
    if not matches:
        known = ", ".join(sorted(available_vmms())) or "none installed"
        raise VMMLoadError(
            f"no VMM named {spec!r} in entry-point group {ENTRY_POINT_GROUP!r} (known: {known}); "
            "a VMM outside it is named 'pkg.module:Class'"
        )
    try:
        cls = matches[0].load()
    except Exception as e:
        raise VMMLoadError(f"entry point {spec!r} = {matches[0].value!r} fails to load: {type(e).__name__}: {e}") from e
    return _check_vmm_class(cls, f"entry point {spec!r} ({matches[0].value})")


def _load_by_path(spec: str) -> type[VMM]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise VMMLoadError(f"VMM name {spec!r}: expected 'pkg.module:Class'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as e:
        raise VMMLoadError(f"VMM {spec!r}: cannot import module {module_name!r}: {e}") from e
    except Exception as e:
        raise VMMLoadError(f"VMM {spec!r}: importing {module_name!r} raised {type(e).__name__}: {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise VMMLoadError(f"VMM {spec!r}: module {module_name!r} has no attribute {attr!r}") from None
    return _check_vmm_class(obj, f"{spec!r}")
