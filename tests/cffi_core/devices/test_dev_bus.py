"""The port bus and the device base: routing, conflicts, unclaimed ports, deadlines, snapshots."""

from __future__ import annotations

from typing import Any

import pytest

from cffi_core.devices import ALL_ONES, BufferDMA, Device, DeviceError, DMAError, ManualClock, PortBus


class Latch(Device):
    """A test device: each port holds the last value written; an optional deadline."""

    def __init__(self, name: str, ports: tuple[int, ...], deadline: int | None = None) -> None:
        self.name, self.ports = name, ports
        self.deadline = deadline
        self.updates: list[int] = []
        self.reset()

    def reset(self) -> None:
        self.values = dict.fromkeys(self.ports, 0)

    def _read(self, port: int) -> int:
        return self.values[port]

    def _write(self, port: int, value: int) -> None:
        self.values[port] = value

    def next_deadline(self) -> int | None:
        return self.deadline

    def update(self, now: int) -> None:
        self.updates.append(now)

    def _state(self) -> dict[str, Any]:
        return {"values": self.values}

    def _load(self, state: dict[str, Any]) -> None:
        self.values = state["values"]


def test_reads_and_writes_reach_the_device_that_claims_the_port():
    bus = PortBus()
    a = bus.attach(Latch("a", (0x10, 0x11)))
    b = bus.attach(Latch("b", (0x12,)))
    bus.write(0x11, 7)
    bus.write(0x12, 9)
    assert (a.values, b.values) == ({0x10: 0, 0x11: 7}, {0x12: 9})
    assert (bus.read(0x11), bus.read(0x12)) == (7, 9)
    assert bus.devices == [a, b]


def test_port_conflict_names_both_devices_and_the_port():
    bus = PortBus()
    bus.attach(Latch("first", (0x10, 0x11)))
    with pytest.raises(DeviceError, match=r"port 0x11 claimed by both 'first' and 'second'"):
        bus.attach(Latch("second", (0x11,)))
    assert bus.read(0x11) == 0  # still the first device's


def test_two_devices_with_one_name_are_refused():
    bus = PortBus()
    bus.attach(Latch("x", (0x10,)))
    with pytest.raises(DeviceError, match="two devices named 'x'"):
        bus.attach(Latch("x", (0x11,)))


def test_unclaimed_port_reads_all_ones_and_ignores_writes():
    bus = PortBus()
    bus.attach(Latch("a", (0x10,)))
    bus.write(0x99, 5)
    assert bus.read(0x99) == ALL_ONES
    assert bus.read(0x99) == 0xFFFF_FFFF_FFFF_FFFF
    assert (bus.unclaimed_reads, bus.unclaimed_writes) == (2, 1)


def test_written_values_are_taken_modulo_2_to_the_64():
    bus = PortBus()
    a = bus.attach(Latch("a", (0x10,)))
    bus.write(0x10, -1)
    assert a.values[0x10] == 0xFFFF_FFFF_FFFF_FFFF
    bus.write(0x10, 1 << 64 | 3)
    assert bus.read(0x10) == 3


@pytest.mark.parametrize("port", [-1, 0x10000])
def test_ports_outside_16_bits_are_refused(port):
    bus = PortBus()
    with pytest.raises(ValueError, match="16-bit"):
        bus.read(port)
    with pytest.raises(ValueError, match="16-bit"):
        bus.write(port, 0)
    with pytest.raises(ValueError, match="16-bit"):
        bus.attach(Latch("a", (port,)))


def test_device_refuses_a_port_it_does_not_own():
    with pytest.raises(DeviceError, match="no port 0x11"):
        Latch("a", (0x10,)).read(0x11)
    with pytest.raises(DeviceError, match="no port 0x11"):
        Latch("a", (0x10,)).write(0x11, 0)


def test_next_deadline_is_the_earliest_over_devices():
    bus = PortBus()
    assert bus.next_deadline() is None
    bus.attach(Latch("a", (0x10,)))
    assert bus.next_deadline() is None
    bus.attach(Latch("b", (0x11,), deadline=50))
    bus.attach(Latch("c", (0x12,), deadline=30))
    assert bus.next_deadline() == 30


def test_update_reaches_only_devices_whose_deadline_has_come():
    bus = PortBus()
    idle = bus.attach(Latch("idle", (0x10,)))
    due = bus.attach(Latch("due", (0x11,), deadline=30))
    later = bus.attach(Latch("later", (0x12,), deadline=31))
    bus.update(30)
    assert (idle.updates, due.updates, later.updates) == ([], [30], [])


def test_bus_snapshot_restores_devices_and_counts():
    bus = PortBus()
    a = bus.attach(Latch("a", (0x10,)))
    bus.write(0x10, 4)
    bus.read(0x77)
    snap = bus.snapshot()
    bus.write(0x10, 5)
    bus.read(0x77)
    bus.restore(snap)
    assert (a.values[0x10], bus.unclaimed_reads) == (4, 1)
    snap["devices"]["a"]["values"][0x10] = 99  # the snapshot is a copy, both ways
    assert bus.read(0x10) == 4


def test_bus_restore_of_other_devices_changes_nothing():
    bus = PortBus()
    a = bus.attach(Latch("a", (0x10,)))
    bus.write(0x10, 4)
    other = PortBus()
    other.attach(Latch("b", (0x10,)))
    with pytest.raises(DeviceError, match="does not fit"):
        bus.restore(other.snapshot())
    bad = bus.snapshot()
    bad["devices"]["a"]["kind"] = "PIC"
    bad["unclaimed_reads"] = 7
    with pytest.raises(DeviceError, match="does not fit"):
        bus.restore(bad)
    assert (a.values[0x10], bus.unclaimed_reads) == (4, 0)


def test_bus_reset_resets_devices_and_counts():
    bus = PortBus()
    a = bus.attach(Latch("a", (0x10,)))
    bus.write(0x10, 4)
    bus.write(0x20, 4)
    bus.reset()
    assert (a.values[0x10], bus.unclaimed_writes) == (0, 0)


def test_device_repr_names_kind_and_ports():
    assert repr(Latch("a", (0x10, 0x1F))) == "<Latch 'a' ports (0x10, 0x1f)>"


def test_buffer_dma_reads_and_writes_inside_the_buffer():
    ram = bytearray(16)
    dma = BufferDMA(ram)
    dma.write(12, b"abcd")
    assert dma.read(11, 5) == b"\0abcd"
    assert dma.read(16, 0) == b""


@pytest.mark.parametrize(("addr", "size"), [(13, 4), (-1, 1), (0, 17), (1 << 64, 1)])
def test_buffer_dma_outside_the_buffer_raises_and_writes_nothing(addr, size):
    ram = bytearray(16)
    dma = BufferDMA(ram)
    with pytest.raises(DMAError, match="outside"):
        dma.read(addr, size)
    with pytest.raises(DMAError, match="outside"):
        dma.write(addr, b"x" * size)
    assert ram == bytearray(16)


def test_buffer_dma_needs_a_writable_buffer():
    with pytest.raises(ValueError, match="writable"):
        BufferDMA(memoryview(b"read only"))


def test_manual_clock_only_moves_forward():
    clock = ManualClock(5)
    assert (clock.advance(3), clock.now()) == (8, 8)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
