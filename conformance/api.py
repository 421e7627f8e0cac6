"""The VMM contract (docs/vmm-api.md): what a monitor under test implements, what the suite observes of it.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

from cffi_core.devices.disk import SECTOR_SIZE
from cffi_core.profiles import DEFAULT_PROFILE

if TYPE_CHECKING:
    from cffi_core.exits import ExitReason
    from cffi_core.image import GuestImage
    from cffi_core.machine import Exit, Machine

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
    "OBSERVE_SLICE",
    "STOPS",
    "VM",
    "VMM",
    "HostFigures",
    "HostRefused",
    "HostWatch",
    "HostedRun",
    "NoProgress",
    "Observation",
    "VMConfig",
    "VMMError",
    "VMMLoadError",
    "VMMUnsupported",
    "available_vmms",
    "check_vmm_class",
    "default_host_memory",
    "drive",
    "host_canary",
    "load_vmm",
    "observation_from",
    "observe",
    "plain_observation",
    "run_alone",
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
# A real host timer interrupts every millisecond or so: Linux at HZ=1000 on the 3.8 GHz
# Pentium 4 of Adams & Agesen 2006 (§6) is 3.8 M cycles, some two million guest instructions
# at the price the fit gives an instruction there (docs/benchmarks.md, p4-2006).  The period
# is a twentieth of that or so: long enough that a host-timer exit is a small part of a slice
# (a round trip of 4,340 cycles, Table 1, against some 210,000 of guest work; the simulator's
# Python per slice against 0.1 ms of guest code), short enough that the adversaries of the
# safety tests outlast it within budgets the full emulator runs in a fraction of a second
# (docs/vmm-api.md §9).  The latency is half a period: what a VMM's own deprivileged code (a
# translator's in-TC sequences, hidden faults) may add to a slice.
HOST_TIMER_PERIOD = 100_000
CONTROL_LATENCY = HOST_TIMER_PERIOD // 2

# Progress (docs/vmm-api.md §5): ``observe`` drives VMM.run in slices of OBSERVE_SLICE guest
# ticks: ten host-timer periods, the slice the deprivileged reference VMMs give a VM themselves
# (half a real millisecond of the P4's guest work, see above).  The host timer's bound is the
# safety tests' (they call VMM.run(HOST_TIMER_PERIOD)); these slices only check progress, and
# each costs the grader a pass of Python (its bounds, the VM's clock) and a VMM its own entry
# and exit of run, which at one a host-timer period took a fifth to two fifths of the time of a
# compute-bound guest once the core ran it at 2 GIPS (benchmarks/test_vmm_speed.py).  A slice may enter the host at most ENTRIES_PER_TICK times per tick of the slice (plus
# ENTRY_SLACK) and run the host's clock at most HOST_TICKS_PER_TICK times the slice (plus
# CONTROL_LATENCY); a VM whose clock stands still for STALL_SLICES slices in a row, or that
# has not stopped after its budget's worth of slices (and two more), makes no progress.  The
# reference VMMs enter the host at most 0.75 times a tick (a fork-heavy guest under shadow
# paging); a VMM that steps its guest one tick a run enters once a tick: two a tick is room
# for both, and bounds what a VMM that spins without progress costs before it is stopped.
OBSERVE_SLICE = 10 * HOST_TIMER_PERIOD
ENTRIES_PER_TICK = 2
ENTRY_SLACK = 1_000
HOST_TICKS_PER_TICK = 2
STALL_SLICES = 8
# A host entry moves the host's clock by a tick at least when the guest does anything (an
# instruction, a fault, an exit); this many entries in a row that leave it where it was enter
# a guest that cannot run (halted, with its clock not advanced to its next deadline): a VMM
# spinning there is stopped at once, not after a slice's worth of entries.
STILL_ENTRIES = 1_000

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
    def ticks(self) -> int | None:
        """The guest's clock now (docs/architecture.md §9: its ticks, halted time included), or
        None when the VM does not say.  It serves only to name a VM that stops making progress
        (docs/vmm-api.md §5); no verdict of equivalence, safety or efficiency rests on it."""
        return None

    @property
    def pc(self) -> int | None:
        """The guest's pc now, or None: named in a "no progress" error when the host's own
        state cannot tell it (docs/vmm-api.md §5)."""
        return None

    def ram(self) -> bytes | None:
        """The guest-physical RAM now, all ``VMConfig.memory`` bytes of it; None (the default)
        when the VM cannot show it.  The safety tests compare a victim's whole RAM at the end
        with its native run's (docs/vmm-api.md §9)."""
        return None

    @property
    def host_regions(self) -> Sequence[tuple[int, int]] | None:
        """The host-physical ranges ``(start, size)`` holding this VM: its RAM and the VMM's
        structures kept for it alone (shadow or nested tables, VMCS pages, bitmaps); None (the
        default) when the VMM does not say (docs/vmm-api.md §9)."""
        return None

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
    be created on one VMM; it multiplexes them as it likes (docs/vmm-api.md §9, safety tests).
    """

    name: ClassVar[str]
    """Short name for reports and test ids, e.g. ``"trap-and-emulate"``."""
    technique: ClassVar[str]
    """Free label of the technique, e.g. ``"Fisher-Ogden §2.2 trap-and-emulate"``."""
    requires: ClassVar[frozenset[str]] = frozenset()
    """Host features needed (docs/architecture.md §12), e.g. ``{"vmx", "ept"}``."""
    optional: ClassVar[frozenset[str]] = frozenset()
    """Host features used when the host has them, e.g. ``{"iommu"}`` for device passthrough:
    ``popek demo``/``grade`` grade the VMM on its assisted profiles both without and with them;
    an optional assist (``{"vmx"}``: the paravirtual VMM runs its guests in guest mode where it
    can) adds the profiles that have it."""
    guest_abi: ClassVar[str] = "native"
    """Which build of a guest it runs: ``"native"`` or ``"paravirt"``."""

    def __init__(self, host: Machine) -> None:
        self.host = host
        self.vms: list[VM] = []  # in creation order; subclasses append in create_vm

    @property
    def host_regions(self) -> Sequence[tuple[int, int]] | None:
        """The host-physical ranges ``(start, size)`` of the VMM's structures shared by all its
        VMs (its IDT of host gates, I/O and MSR bitmaps...); ``()`` when it keeps none in host
        RAM.  None (the default): the VMM does not say, and the suite takes every byte of host
        RAM below the canary region as possibly its own (docs/vmm-api.md §9)."""
        return None

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


class NoProgress(VMMError):
    """A VMM stopped making progress (docs/vmm-api.md §5): it entered the host far more often,
    or ran the host's clock far longer, than its guests' ticks justify, or its guests' clocks
    stood still; the message starts with ``no progress:`` and names the VMM and, when it can
    be known, the guest's pc."""


class HostRefused(BaseException):
    """Raised by every host entry after a ``NoProgress``: a ``BaseException``, as pytest's own
    stops are, so that a VMM whose ``except Exception`` swallowed the first cannot go on
    entering its host forever.  The suite turns it back into ``NoProgress``."""


class HostWatch:
    """What a VMM does with its host, measured from the host's side: every call of the host
    Machine's ``run`` and ``vmrun`` (a *host entry*) is counted, with the host ticks it lasted
    and the exit it ended with (``exits``, by ``ExitReason`` name: ``HOST_GATE`` returns, ``VM``
    exits, ...).  One watch per host (``HostWatch.of``): the efficiency and safety tests and
    ``observe`` read the same figures.

    ``begin_slice`` sets how many entries and host ticks the next ``VMM.run`` slice may take;
    the entry that would pass either, or that follows ``STILL_ENTRIES`` entries in a row that
    left the host's clock where it was, raises ``NoProgress`` inside the VMM, and every later
    entry raises it again (a VMM that swallows the first cannot go on)."""

    _ATTRIBUTE = "_popek_host_watch"

    def __init__(self, host: Machine) -> None:
        self.host = host
        self.entries = 0
        """Host entries (``run`` and ``vmrun`` calls) so far."""
        self.host_ticks = 0
        """Host ticks spent inside them."""
        self.longest = 0
        """Ticks of the longest single entry."""
        self._exits: dict[ExitReason, int] = {}  # by the reason itself: no name looked up per entry
        self.max_slice_entries = 0
        """The most entries one slice took (for calibrating the bounds)."""
        self.ports: dict[str, int] = {}
        """Port accesses that left the guest (``IO_IN``/``IO_OUT`` exits, I/O VM exits), by the
        device of docs/architecture.md §11 that claims the port (``unclaimed`` for the rest)."""
        self.failure: str | None = None
        self.label = "the VMM"
        self._last_name: str | None = None  # "run" or "vmrun", None before any entry
        self._last_args: tuple[Any, ...] = ()  # vmrun's arguments: the VMCS first
        self._last_exit: Exit | None = None
        self._slice_entries = 0
        self._still = 0  # entries in a row that left the host's clock where it was
        reader = getattr(host, "clock_reader", None)  # a Machine's; a stand-in host reads its property
        self._clock: Callable[[], int] = reader() if callable(reader) else lambda: host.clock
        self._slice_start = self._clock()
        self._slice_ticks = 0
        self._limits: tuple[int, int] | None = None
        for name in ("run", "vmrun"):
            original = getattr(host, name, None)
            if original is not None:
                setattr(host, name, self._wrap(name, original))
        setattr(host, self._ATTRIBUTE, self)

    @classmethod
    def of(cls, host: Machine) -> HostWatch:
        """The watch of ``host``, made on first use."""
        watch = getattr(host, cls._ATTRIBUTE, None)
        return watch if isinstance(watch, HostWatch) else cls(host)

    # -- slices ---------------------------------------------------------------------------------
    def begin_slice(self, ticks: int, *, entries: int | None = None, host_ticks: int | None = None) -> None:
        """A ``VMM.run`` slice of ``ticks`` guest ticks begins: it may enter the host at most
        ``entries`` times and run the host's clock at most ``host_ticks`` ticks (by default
        the bounds of docs/vmm-api.md §5)."""
        self._slice_entries = 0
        self._still = 0
        self._slice_start = self._clock()
        self._slice_ticks = ticks
        self._limits = (
            ENTRIES_PER_TICK * ticks + ENTRY_SLACK if entries is None else entries,
            HOST_TICKS_PER_TICK * ticks + CONTROL_LATENCY if host_ticks is None else host_ticks,
        )

    def end_slice(self) -> None:
        """The slice is over: no bound until the next ``begin_slice``; a bound passed by the
        slice's last entry is reported now (``failure``)."""
        self.max_slice_entries = max(self.max_slice_entries, self._slice_entries)
        if self._limits is not None and self.failure is None:
            self._check(after=True)
        self._limits = None

    @property
    def exits(self) -> dict[str, int]:
        """Entries by the exit that ended them (``ExitReason`` names)."""
        return {reason.name: n for reason, n in self._exits.items()}

    @property
    def slice_entries(self) -> int:
        """Entries of the current (or last) slice."""
        return self._slice_entries

    @property
    def guest_pc(self) -> int | None:
        """The guest's pc as the host holds it after the last exit: the host CPU's pc after a
        ``run``, GUEST_PC of the VMCS after a ``vmrun`` (docs/vmx.md V.2); None before any."""
        if self._last_name is None:
            return None
        if self._last_name == "run":
            return int(self.host.cpu.pc)
        from cffi_core.vmx import VmcsField

        return int(self._last_args[0][VmcsField.GUEST_PC])

    def figures(self) -> dict[str, Any]:
        """What the watch saw, and the host core's counters now, as plain data (``HostFigures``)."""
        return {
            "entries": self.entries,
            "host_ticks": self.host_ticks,
            "longest": self.longest,
            "exits": self.exits,
            "max_slice_entries": self.max_slice_entries,
            "counters": dict(self.host.counters),
            "ports": dict(self.ports),
        }

    def where(self) -> str:
        """``"the guest's pc is 0x1234 (last exit: VM exit EXCEPTION)"``, or ``""`` before any entry."""
        pc = self.guest_pc
        return "" if pc is None else f"the guest's pc is {pc:#x} (last exit: {self._last_exit_text()})"

    def _last_exit_text(self) -> str:
        ex = self._last_exit  # kept as the Exit, named only when a message needs it
        if ex is None:
            return "none"
        reason = ex.reason.name
        if reason == "VM":
            return f"VM exit {getattr(ex.number, 'name', ex.number)}"
        if reason == "HOST_GATE":
            return f"HOST_GATE vector {ex.vector}"
        return reason

    # -- the wrapper ------------------------------------------------------------------------------
    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        # Every host entry of every VMM passes here (an exit-heavy guest makes hundreds of
        # thousands): two clock reads, the bounds checked against them, the exit counted by
        # its reason object; names, ports and the rest only when an exit asks for them.
        from cffi_core.exits import ExitReason
        from cffi_core.vmx import VmExitReason

        host, vm_exit_io = self.host, VmExitReason.IO_INSTRUCTION
        clock = self._clock
        port_exits, vm = frozenset({ExitReason.IO_IN, ExitReason.IO_OUT}), ExitReason.VM

        def watched(*args: Any, **kwargs: Any) -> Any:
            if self.failure is not None:
                raise HostRefused(self.failure)
            start = clock()
            limits = self._limits
            if limits is not None and (
                self._slice_entries >= limits[0]
                or start - self._slice_start > limits[1]
                or self._still >= STILL_ENTRIES
            ):
                self._check(after=False)
            try:
                ex = original(*args, **kwargs)
            finally:
                spent = clock() - start
                self.entries += 1
                self._slice_entries += 1
                self.host_ticks += spent
                if spent > self.longest:
                    self.longest = spent
                self._still = 0 if spent else self._still + 1
            self._last_name = name
            self._last_args = args if args else (kwargs.get("vmcs"),)
            self._last_exit = ex
            exits, reason = self._exits, ex.reason
            exits[reason] = exits.get(reason, 0) + 1
            if reason in port_exits:
                self._port(ex.port)
            elif reason is vm and ex.number == vm_exit_io:
                self._port(host.exit_qualification >> 16)  # the port, bits 31:16 (docs/vmx.md V.5)
            return ex

        return watched

    def _port(self, port: int) -> None:
        from cffi_core.devices.standard import standard_port_map

        device = standard_port_map().get(port, "unclaimed")
        self.ports[device] = self.ports.get(device, 0) + 1

    def _check(self, *, after: bool) -> None:
        assert self._limits is not None
        max_entries, max_ticks = self._limits
        entries = self._slice_entries + (0 if after else 1)
        ticks = self._clock() - self._slice_start
        if self._still >= STILL_ENTRIES and not after:
            what = (
                f"entered the host {self._still + 1} times in a row without the host's clock moving (at most "
                f"{STILL_ENTRIES}): its guest cannot run"
            )
        elif entries > max_entries:
            what = f"entered the host {entries} times in one slice of {self._slice_ticks} guest ticks (at most {max_entries})"
        elif ticks > max_ticks:
            what = (
                f"ran the host for {ticks} ticks in one slice of {self._slice_ticks} guest ticks (at most {max_ticks})"
            )
        else:
            return
        where = self.where()
        self.failure = f"no progress: {self.label} {what}" + (f"; {where}" if where else "")
        if not after:
            raise NoProgress(self.failure)


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


@dataclass(frozen=True)
class HostFigures:
    """What ``HostWatch`` saw of a VMM's use of its host during one run, and the host core's
    counters at the end (``Machine.counters``: instructions by mode and CPL, exits, ...)."""

    entries: int
    host_ticks: int
    longest: int
    exits: Mapping[str, int]
    max_slice_entries: int
    counters: Mapping[str, int]
    ports: Mapping[str, int] = field(default_factory=dict)
    """Port accesses seen leaving the guest, by device (``HostWatch.ports``)."""


@dataclass(frozen=True)
class HostedRun:
    """One guest run alone under a VMM (``run_alone``): the observation and the host's figures."""

    observation: Observation
    host: HostFigures


def observe(
    vmm: type[VMM],
    image: GuestImage,
    config: VMConfig | None = None,
    *,
    host: Machine | None = None,
    profile: str = DEFAULT_PROFILE,
    isolate: bool = True,
) -> Observation:
    """Run ``image`` alone under a new ``vmm`` and return its observation.

    The host is ``host`` or, by default, a fresh Machine of ``profile`` with room for twice the
    guest's memory (what a VMM keeps beside the guest: shadow tables, translation caches) and,
    above that, the canary region (``host_canary``).  A
    guest that runs out of budget is an observation with ``stop == "budget"``; a VMM that
    raises, or returns anything outside the contract, is a ``VMMError`` naming it and the
    cause; a host without the features the VMM requires is ``VMMUnsupported``.

    ``VMM.run`` is called in slices of ``OBSERVE_SLICE`` ticks, each bounded (docs/vmm-api.md
    §5): a VMM that stops making progress is a ``NoProgress`` error, never a hang.

    By default the VMM runs in a child process (``run_alone``, docs/vmm-api.md §11): a crash,
    a hang or runaway memory there is a ``VMMError``.  The native oracle, a ``host`` given by
    the caller (whose ``HostWatch.of(host)`` then keeps the figures) and ``isolate=False`` run
    in this process.
    """
    config = config or VMConfig()
    cls = _check_vmm_class(vmm, "the VMM given")
    if host is None and isolate and not _is_oracle(cls):
        return run_alone(cls, image, config, profile=profile).observation
    if host is None:
        from cffi_core.machine import Machine

        _check_features(cls, profile)
        host = Machine(profile, default_host_memory(config.memory))
    return _observe_here(cls, image, config, host)[0]


def run_alone(
    vmm: type[VMM], image: GuestImage, config: VMConfig | None = None, *, profile: str = DEFAULT_PROFILE
) -> HostedRun:
    """``observe`` in a child process of its own (``conformance.isolation``), with what the
    host saw: the VMM's host entries and exits (``HostWatch``) and the host core's counters.
    The grader keeps its verdicts out of the VMM's reach (docs/vmm-api.md §11)."""
    from conformance.isolation import run_isolated

    config = config or VMConfig()
    cls = _check_vmm_class(vmm, "the VMM given")
    label = _label(cls)
    _check_features(cls, profile)

    def work() -> dict[str, Any]:
        from cffi_core.machine import Machine

        host = Machine(profile, default_host_memory(config.memory))
        obs, watch = _observe_here(cls, image, config, host)
        return {"observation": plain_observation(obs, label), "host": watch.figures()}

    data = run_isolated(work, label=label, what="the run of one guest", ticks=config.budget)
    return HostedRun(observation_from(data["observation"], label), HostFigures(**data["host"]))


def _is_oracle(cls: type[VMM]) -> bool:
    from reference_vmm.native import NativeVMM  # the oracle: popek's own, judged by nobody

    return cls is NativeVMM


def _check_features(cls: type[VMM], profile: str) -> None:
    from cffi_core.profiles import get_profile

    missing = frozenset(cls.requires) - get_profile(profile).features
    if missing:
        raise VMMUnsupported(
            f"{_label(cls)} requires host features {', '.join(sorted(missing))}, which profile {profile!r} lacks"
        )


def plain_observation(obs: Observation, label: str) -> dict[str, Any]:
    """An observation as plain data, to cross from a VMM's process to the grader's
    (``observation_from`` reads it back); ``VMMError`` when its counters are not all ints."""
    for key, value in obs.counters.items():
        if not isinstance(key, str) or type(value) is not int:
            raise VMMError(f"{label}: VM.counters[{key!r}] = {value!r}: counters map names to ints")
    return {
        "console": bytes(obs.console),
        "exit_code": obs.exit_code,
        "disk": bytes(obs.disk),
        "disk2": bytes(obs.disk2),
        "stop": obs.stop,
        "counters": dict(obs.counters),
    }


def observation_from(data: object, label: str) -> Observation:
    """The ``Observation`` of ``plain_observation``'s data; ``VMMError`` naming ``label`` when the
    data is not one (a VMM's process sends it: it is checked like anything a VMM returns)."""
    try:
        if not isinstance(data, dict):
            raise TypeError(f"a {type(data).__name__}, not a dict")
        return Observation(**data)
    except (TypeError, ValueError) as e:
        raise VMMError(f"{label}: the observation sent back is outside the contract: {e}") from None


def _observe_here(cls: type[VMM], image: GuestImage, config: VMConfig, host: Machine) -> tuple[Observation, HostWatch]:
    """The run of ``observe`` in this process, on ``host``."""
    label = _label(cls)
    _check_features(cls, host.profile.name)
    watch = HostWatch.of(host)
    watch.label = label
    phase = "construction"
    try:
        monitor = cls(host)
        phase = "create_vm"
        vm = monitor.create_vm(image, config)
        if not isinstance(vm, VM):
            raise VMMError(f"{label}: create_vm returned {type(vm).__name__}, not a conformance.api.VM")
        phase = "run"
        drive(monitor, [vm], watch, period=OBSERVE_SLICE, budget=config.budget)
        phase = "observation"
        obs = vm.observation()
        if not isinstance(obs, Observation):
            raise VMMError(f"{label}: observation() returned {type(obs).__name__}, not an Observation")
    except HostRefused as e:
        raise NoProgress(str(e)) from None
    except VMMError:
        raise
    except BaseException as e:  # KeyboardInterrupt or SystemExit raised by the VMM is its failure too
        if watch.failure is not None:  # the VMM turned our NoProgress into its own exception
            raise NoProgress(watch.failure) from e
        raise VMMError(f"{label}: {phase} raised {type(e).__name__}: {e}{_frame_line(e)}") from e
    finally:
        watch.end_slice()
    return obs, watch


def drive(monitor: VMM, vms: Sequence[VM], watch: HostWatch, *, period: int, budget: int) -> None:
    """Call ``monitor.run(period)`` until every VM of ``vms`` has stopped, each slice bounded by
    ``watch`` (docs/vmm-api.md §5); ``budget`` is the largest ``VMConfig.budget`` of the VMs.

    ``NoProgress`` when a slice enters the host or runs its clock beyond its bounds, when a
    running VM's clock (``VM.ticks``, or what its counters say) stands still for
    ``STALL_SLICES`` slices, or when a VM still runs after ``budget // period + 2`` slices."""
    from conformance.host_view import guest_ticks

    label = watch.label
    max_slices = budget // period + 2
    stalled = 0
    # Per slice only what the bounds need: which VMs still run, and their clocks (``VM.ticks``);
    # counters and observations are read once, after the last slice.
    running = [vm for vm in vms if not vm.stopped]
    before = [guest_ticks(vm) for vm in running]
    for _ in range(max_slices):
        if not running:
            return
        watch.begin_slice(period * len(running))
        monitor.run(period)
        watch.end_slice()
        if watch.failure is not None:
            raise NoProgress(watch.failure)
        still = [vm for vm in running if not vm.stopped]
        now = [guest_ticks(vm) for vm in still]
        if len(still) == len(running):  # nobody stopped: did every clock stand still?
            frozen = all(b is not None and a == b for a, b in zip(before, now, strict=True))
            stalled = stalled + 1 if frozen else 0
        else:
            stalled = 0
        if stalled >= STALL_SLICES:
            raise NoProgress(
                f"no progress: {label}: the guest's clock stood at {now[0]} ticks for {stalled} "
                f"calls of run({period}) in a row; {_where(watch, still[0])}"
            )
        running, before = still, now
    if not all(vm.stopped for vm in vms):
        vm = next(vm for vm in vms if not vm.stopped)
        raise NoProgress(
            f"no progress: {label}: a VM still runs after {max_slices} calls of run({period}), beyond its budget "
            f"of {budget} ticks; {_where(watch, vm)}"
        )


def _where(watch: HostWatch, vm: VM) -> str:
    where = watch.where()
    if where:
        return where
    try:
        pc = vm.pc
    except Exception:
        pc = None
    return f"the guest's pc is {pc:#x}" if isinstance(pc, int) else "the guest's pc is unknown"


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
        from cffi_core.profiles import did_you_mean

        installed = available_vmms()
        known = ", ".join(sorted(installed)) or "none installed"
        raise VMMLoadError(
            f"no VMM named {spec!r}{did_you_mean(spec, installed)} in entry-point group {ENTRY_POINT_GROUP!r} "
            f"(known: {known}); "
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


def vmm_frame(error: BaseException) -> str | None:
    """Where in the VMM's own code ``error`` was raised, for a failure report: the innermost
    frame of its traceback outside popek's grader (``conformance``, ``cffi_core``) and the
    standard library, as ``file:line in function`` and the source line, and the frame that
    called it when that is the VMM's too; None when no frame is the VMM's.  A student reading
    ``KeyError: <ExitReason.HLT: 4>`` needs the line that looked the key up."""
    import sysconfig
    import traceback
    from pathlib import Path

    import cffi_core
    import conformance

    ours = [Path(p).resolve() for p in (*conformance.__path__, *cffi_core.__path__)]
    stdlib = [Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib")]
    frames = []
    for frame in traceback.extract_tb(error.__traceback__):
        path = Path(frame.filename)
        if not path.is_absolute() or not path.exists():
            continue
        path = path.resolve()
        if any(path.is_relative_to(p) for p in ours) or (
            any(path.is_relative_to(p) for p in stdlib) and "site-packages" not in path.parts
        ):
            continue
        frames.append((path, frame))
    if not frames:
        return None

    def where(path: Path, frame: traceback.FrameSummary) -> str:
        try:
            shown = path.relative_to(Path.cwd())
        except ValueError:
            shown = path
        source = f": {frame.line.strip()}" if frame.line else ""
        return f"{shown}:{frame.lineno} in {frame.name}{source}"

    text = f"at {where(*frames[-1])}"
    if len(frames) > 1:
        text += f"\n  called from {where(*frames[-2])}"
    return text


def _frame_line(error: BaseException) -> str:
    """``vmm_frame(error)`` on a line of its own after an error message, or nothing."""
    where = vmm_frame(error)
    return f"\n  {where}" if where else ""
