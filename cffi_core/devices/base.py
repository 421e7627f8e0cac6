"""What every P64 device shares: the clock and DMA protocols, the errors, and the ``Device`` base.

Devices see the outside world only through what they are given: a ``Clock`` for time (never the
host clock), a ``DMA`` accessor for memory (the machine's RAM in a native run, a map of guest
memory in a VMM), and an IRQ callback.  That is what lets one model serve as both the platform's
device and a VMM's virtual device (docs/architecture.md §11, docs/devices.md).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

MASK64 = 0xFFFF_FFFF_FFFF_FFFF
ALL_ONES = MASK64  # what a write-only register or an unclaimed port reads as
PORT_LIMIT = 0x1_0000  # ports are 16-bit: (rs1 + imm16) & 0xffff (§3)

IrqLine = Callable[[int], None]
"""Raises one interrupt line of a PIC (normally ``PIC.raise_irq``)."""


class DeviceError(Exception):
    """A device was misused by the host (not by the guest: guest mistakes are device behaviour)."""


class DMAError(DeviceError):
    """A DMA range lies outside what the accessor maps."""


@runtime_checkable
class Clock(Protocol):
    """The machine's clock, in ticks (§9)."""

    def now(self) -> int:
        """The current tick."""
        ...


@runtime_checkable
class DMA(Protocol):
    """Device access to physical memory.

    Both methods are all-or-nothing: they raise ``DMAError`` before touching anything when any
    byte of the range is outside what the accessor maps.
    """

    def read(self, addr: int, size: int) -> bytes:
        """The ``size`` bytes at ``addr``."""
        ...

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr``."""
        ...


class ManualClock:
    """A clock the host (or a test) sets by hand."""

    def __init__(self, ticks: int = 0) -> None:
        self.ticks = ticks

    def now(self) -> int:
        """The current tick."""
        return self.ticks

    def advance(self, ticks: int) -> int:
        """Let ``ticks`` pass; return the new time."""
        if ticks < 0:
            raise ValueError(f"ticks = {ticks}: time only moves forward")
        self.ticks += ticks
        return self.ticks


class BufferDMA:
    """DMA into a writable buffer that maps addresses ``[0, len(buffer))``."""

    def __init__(self, buffer: bytearray | memoryview) -> None:
        self._mem = memoryview(buffer).cast("B")
        if self._mem.readonly:
            raise ValueError("BufferDMA needs a writable buffer")

    def read(self, addr: int, size: int) -> bytes:
        """The ``size`` bytes at ``addr``; ``DMAError`` if any is outside the buffer."""
        self._check(addr, size, "read")
        return bytes(self._mem[addr : addr + size])

    def write(self, addr: int, data: bytes) -> None:
        """Store ``data`` at ``addr``; ``DMAError`` (nothing written) if any byte is outside."""
        self._check(addr, len(data), "write")
        self._mem[addr : addr + len(data)] = data

    def _check(self, addr: int, size: int, what: str) -> None:
        if addr < 0 or size < 0 or addr + size > len(self._mem):
            raise DMAError(f"DMA {what} of {size} bytes at {addr:#x}: outside [0, {len(self._mem):#x})")


class Device(ABC):
    """A device on the port bus.

    Subclasses set ``name`` and ``ports``, implement the register accesses (``_read``,
    ``_write``) and ``reset``, and describe their state as plain data in ``_state``/``_load``;
    the base adds the port check, the deep copies and the snapshot checks.  Values are 64-bit;
    a device uses the bits it defines.
    """

    name: str
    ports: tuple[int, ...]

    def read(self, port: int) -> int:
        """The value an ``in`` from ``port`` returns; ``DeviceError`` if the port is not ours."""
        self._check_own(port)
        return self._read(port)

    def write(self, port: int, value: int) -> None:
        """An ``out`` of ``value`` to ``port``; ``DeviceError`` if the port is not ours."""
        self._check_own(port)
        self._write(port, value)

    @abstractmethod
    def _read(self, port: int) -> int:
        """``read`` of one of our ports."""

    @abstractmethod
    def _write(self, port: int, value: int) -> None:
        """``write`` of one of our ports."""

    def _check_own(self, port: int) -> None:
        if port not in self.ports:
            raise DeviceError(f"{self!r} has no port {port:#x}")

    @abstractmethod
    def reset(self) -> None:
        """Return to the power-on state."""

    def next_deadline(self) -> int | None:
        """The earliest tick at which the device needs ``update``; None if it waits for nothing."""
        return None

    def update(self, now: int) -> None:  # noqa: B027 - a deliberate no-op default
        """Act on every deadline at or before ``now``."""

    def snapshot(self) -> dict[str, Any]:
        """The whole device state as plain data (a deep copy)."""
        return {"kind": type(self).__name__, **copy.deepcopy(self._state())}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Load a state taken by ``snapshot``; later behaviour is identical to the original's."""
        self.check_snapshot(snapshot)
        state = copy.deepcopy(snapshot)
        del state["kind"]
        self._load(state)

    def check_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Raise ``DeviceError`` unless ``snapshot`` was taken from a device of this kind."""
        kind = type(self).__name__
        expected = set(self._state()) | {"kind"}
        if snapshot.get("kind") != kind or set(snapshot) != expected:
            raise DeviceError(
                f"{self.name}: snapshot of a {snapshot.get('kind')!r} with fields {sorted(snapshot)} "
                f"does not fit a {kind!r}"
            )

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The mutable state, as plain data."""

    @abstractmethod
    def _load(self, state: dict[str, Any]) -> None:
        """Replace the mutable state by ``state`` (already a private copy)."""

    def __repr__(self) -> str:
        ports = ", ".join(f"{p:#x}" for p in self.ports)
        return f"<{type(self).__name__} {self.name!r} ports ({ports})>"
