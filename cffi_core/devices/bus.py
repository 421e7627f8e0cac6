"""The port bus: routes each ``in``/``out`` exit to the device that claims the port (§10, §11).

The bus also gathers the devices' deadlines, so the host knows how far it may run the CPU (or
skip a halted CPU's time) before some device must act.  A device's deadline changes only when
the bus calls it (a port access, ``update``, ``reset``, ``restore``: docs/devices.md §1), so the
bus keeps the earliest one between two such calls: a host that asks at every run of its CPU
scans the devices only after one of them may have moved its deadline.
"""

from __future__ import annotations

from typing import Any

from cffi_core.devices.base import ALL_ONES, MASK64, PORT_LIMIT, Device, DeviceError


class PortBus:
    """Maps 16-bit ports to devices; unclaimed ports read all ones and ignore writes."""

    def __init__(self) -> None:
        self._devices: list[Device] = []
        self._by_port: dict[int, Device] = {}
        self.unclaimed_reads = 0  # ``in`` from a port no device claims
        self.unclaimed_writes = 0  # ``out`` to a port no device claims
        self._deadline: int | None = None
        self._deadline_known = True  # no device: no deadline

    @property
    def devices(self) -> list[Device]:
        """The attached devices, in attach order (a copy)."""
        return list(self._devices)

    def attach(self, device: Device) -> Device:
        """Claim ``device.ports`` for ``device``; ``DeviceError`` if a port or the name is taken."""
        for other in self._devices:
            if other.name == device.name:
                raise DeviceError(f"two devices named {device.name!r} on one bus")
        for port in device.ports:
            _check_port(port)
            owner = self._by_port.get(port)
            if owner is not None:
                raise DeviceError(f"port {port:#x} claimed by both {owner.name!r} and {device.name!r}")
        self._devices.append(device)
        self._by_port.update(dict.fromkeys(device.ports, device))
        self._deadline_known = False
        return device

    def read(self, port: int) -> int:
        """An ``in`` from ``port``: the device's value, or all ones if no device claims it."""
        _check_port(port)
        device = self._by_port.get(port)
        if device is None:
            self.unclaimed_reads += 1
            return ALL_ONES
        self._deadline_known = False
        return device.read(port) & MASK64

    def write(self, port: int, value: int) -> None:
        """An ``out`` of ``value`` (taken modulo 2^64) to ``port``; ignored if no device claims it."""
        _check_port(port)
        device = self._by_port.get(port)
        if device is None:
            self.unclaimed_writes += 1
            return
        self._deadline_known = False
        device.write(port, value & MASK64)

    def next_deadline(self) -> int | None:
        """The earliest deadline over all devices; None if none is waiting for time.  Kept
        until the bus next calls a device (the module's docstring)."""
        if self._deadline_known:
            return self._deadline
        deadlines = [d for d in (dev.next_deadline() for dev in self._devices) if d is not None]
        self._deadline = min(deadlines, default=None)
        self._deadline_known = True
        return self._deadline

    def update(self, now: int) -> None:
        """Let every device whose deadline has come act, in attach order."""
        self._deadline_known = False
        for device in self._devices:
            deadline = device.next_deadline()
            if deadline is not None and deadline <= now:
                device.update(now)

    def reset(self) -> None:
        """Reset every device (the unclaimed-access counts too)."""
        self._deadline_known = False
        for device in self._devices:
            device.reset()
        self.unclaimed_reads = self.unclaimed_writes = 0

    def snapshot(self) -> dict[str, Any]:
        """Every device's snapshot by name, plus the bus's own counts (plain data)."""
        return {
            "devices": {d.name: d.snapshot() for d in self._devices},
            "unclaimed_reads": self.unclaimed_reads,
            "unclaimed_writes": self.unclaimed_writes,
        }

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Restore a snapshot taken from a bus with the same devices."""
        states = snapshot["devices"]
        names = [d.name for d in self._devices]
        if sorted(states) != sorted(names):
            raise DeviceError(f"snapshot of devices {sorted(states)} does not fit a bus with {sorted(names)}")
        for device in self._devices:  # check them all first, so a bad snapshot changes nothing
            device.check_snapshot(states[device.name])
        self._deadline_known = False
        for device in self._devices:
            device.restore(states[device.name])
        self.unclaimed_reads = int(snapshot["unclaimed_reads"])
        self.unclaimed_writes = int(snapshot["unclaimed_writes"])


def _check_port(port: int) -> None:
    if not 0 <= port < PORT_LIMIT:
        raise ValueError(f"port {port:#x}: ports are 16-bit")
