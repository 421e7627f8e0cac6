"""The standard device set of §11: its ports, its IRQ wiring, and whole-set snapshots."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cffi_core.devices import (
    ALL_ONES,
    CONSOLE_CTRL,
    CONSOLE_DATA,
    CONSOLE_RX_IRQ,
    CONSOLE_STATUS,
    DISK2_BASE,
    DISK2_IRQ,
    DISK_CMD,
    DISK_CMD_READ,
    DISK_COUNT,
    DISK_LATENCY,
    DISK_SIZE,
    PIC_EOI,
    PIC_MASK,
    POST_CODE,
    RESULT_EXIT,
    SECTOR_SIZE,
    TIMER_COUNT,
    TIMER_CTRL,
    BufferDMA,
    ManualClock,
    standard_devices,
)

PORTS = {
    "pic": (0x20, 0x21, 0x22, 0x23),
    "timer": (0x40, 0x41, 0x42),
    "console": (0x3F8, 0x3F9, 0x3FA),
    "disk": (0x1F0, 0x1F1, 0x1F2, 0x1F3, 0x1F4),
    "result": (0x500,),
    "post": (0x80,),
}


def _system(disk: bytes | None = bytes(4 * SECTOR_SIZE), console_input: bytes = b"in"):
    clock, ram = ManualClock(), bytearray(0x1000)
    bus, devices = standard_devices(clock, BufferDMA(ram), disk=disk, console_input=console_input)
    return clock, ram, bus, devices


def test_ports_are_those_of_the_manual():
    _, _, bus, _ = _system()
    assert {d.name: d.ports for d in bus.devices} == PORTS


def test_without_a_disk_its_ports_are_unclaimed():
    _, _, bus, devices = _system(disk=None)
    assert devices.disk is None
    assert bus.read(DISK_SIZE) == ALL_ONES
    assert [d.name for d in bus.devices] == ["pic", "timer", "console", "result", "post"]


def test_console_input_and_result_are_wired():
    _, _, bus, devices = _system()
    assert bus.read(CONSOLE_DATA) == ord("i")
    bus.write(RESULT_EXIT, 5)
    assert (devices.result.stopped, devices.result.exit_code) == (True, 5)


def test_timer_interrupt_reaches_the_pic_as_vector_32():
    clock, _, bus, devices = _system()
    bus.write(PIC_MASK, 0xFFFE)
    bus.write(TIMER_COUNT, 100)
    bus.write(TIMER_CTRL, 1)
    clock.ticks = bus.next_deadline()
    bus.update(clock.ticks)
    assert devices.pic.pending_vector() == 32


def test_disk_interrupt_reaches_the_pic_as_vector_46():
    clock, ram, bus, devices = _system(disk=b"\x42" * SECTOR_SIZE)
    bus.write(PIC_MASK, ~(1 << 14))
    bus.write(DISK_COUNT, 1)
    bus.write(DISK_CMD, DISK_CMD_READ)
    assert bus.next_deadline() == DISK_LATENCY
    clock.ticks = DISK_LATENCY
    bus.update(clock.ticks)
    assert (devices.pic.pending_vector(), ram[0]) == (46, 0x42)


def test_console_input_interrupt_reaches_the_pic_as_vector_36():
    _, _, bus, devices = _system(console_input=b"in")
    bus.write(PIC_MASK, 0xFFFF & ~(1 << 4))
    assert devices.pic.pending_vector() == -1  # input waiting, interrupt not enabled
    bus.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    assert devices.pic.pending_vector() == 36
    devices.pic.acknowledge(36)
    while bus.read(CONSOLE_STATUS):  # the handler drains the queue, then EOI
        bus.read(CONSOLE_DATA)
    bus.write(0x20, PIC_EOI)
    assert devices.pic.pending_vector() == -1
    devices.console.feed(b"more")  # the host's input while enabled: a new edge
    assert devices.pic.pending_vector() == 36


def test_the_post_port_is_always_there():
    for disk in (None, bytes(SECTOR_SIZE)):
        _, _, bus, devices = _system(disk=disk)
        assert bus.read(POST_CODE) == 0
        bus.write(POST_CODE, 0x1234)
        assert bus.read(POST_CODE) == devices.post.code == 0x34
        assert bus.unclaimed_reads == bus.unclaimed_writes == 0


# One step of a random workload: ("out", port, value), ("in", port), ("wait", ticks),
# ("feed", bytes) (console input from the host).
_PORT = st.sampled_from([p for ports in PORTS.values() for p in ports] + [0x99])
_STEP = st.one_of(
    st.tuples(st.just("out"), _PORT, st.integers(0, 0x3FF) | st.sampled_from([PIC_EOI, 0xFFFE, ALL_ONES])),
    st.tuples(st.just("in"), _PORT),
    st.tuples(st.just("wait"), st.integers(0, 2 * DISK_LATENCY)),
    st.tuples(st.just("ack")),
    st.tuples(st.just("feed"), st.binary(max_size=2)),
)


def _play(system, steps) -> list[int]:
    """Run ``steps`` as a host would; return what the guest and the CPU saw."""
    clock, _, bus, devices = system
    seen = []
    for step in steps:
        if step[0] == "out":
            bus.write(step[1], step[2])
        elif step[0] == "in":
            seen.append(bus.read(step[1]))
        elif step[0] == "feed":
            devices.console.feed(step[1])
        elif step[0] == "ack" and devices.pic.pending_vector() >= 0:
            devices.pic.acknowledge(devices.pic.pending_vector())
        elif step[0] == "wait":
            end = clock.ticks + step[1]
            while (d := bus.next_deadline()) is not None and d <= end:
                clock.ticks = max(clock.ticks, d)
                bus.update(clock.ticks)
            clock.ticks = end
        seen.append(devices.pic.pending_vector())
    return seen


@given(st.lists(_STEP, max_size=30), st.lists(_STEP, max_size=30))
def test_snapshot_restore_of_the_whole_set_continues_identically(before, after):
    first = _system()
    _play(first, before)
    second = _system(disk=bytes(4 * SECTOR_SIZE), console_input=b"other")
    second[2].restore(first[2].snapshot())
    second[0].ticks = first[0].ticks
    second[1][:] = first[1]
    assert _play(second, after) == _play(first, after)
    assert (second[1], second[2].snapshot()) == (first[1], first[2].snapshot())


def test_the_second_disk_is_the_disk_at_0x170_on_irq_15_through_its_own_dma():
    clock, ram, ram2 = ManualClock(), bytearray(0x1000), bytearray(0x1000)
    image = bytes(range(256)) * 2
    bus, devices = standard_devices(clock, BufferDMA(ram), disk2=image, dma2=BufferDMA(ram2))
    assert devices.disk is None and devices.disk2 is not None
    assert bus.read(DISK_SIZE) == ALL_ONES and bus.read(DISK2_BASE + 4) == 1
    devices.pic.write(PIC_MASK, 0)
    bus.write(DISK2_BASE + 1, 1)  # DISK2_COUNT
    bus.write(DISK2_BASE + 2, 0x200)  # DISK2_ADDR
    bus.write(DISK2_BASE + 3, DISK_CMD_READ)
    clock.advance(DISK_LATENCY)
    bus.update(clock.now())
    assert ram2[0x200:0x400] == image and not any(ram)  # through dma2, not dma
    assert devices.pic.pending_vector() == 32 + DISK2_IRQ


def test_without_dma2_the_second_disk_uses_the_sets_dma():
    clock, ram = ManualClock(), bytearray(0x1000)
    bus, _ = standard_devices(clock, BufferDMA(ram), disk2=b"\x5a" * SECTOR_SIZE)
    bus.write(DISK2_BASE + 1, 1)
    bus.write(DISK2_BASE + 3, DISK_CMD_READ)
    clock.advance(DISK_LATENCY)
    bus.update(clock.now())
    assert ram[:SECTOR_SIZE] == b"\x5a" * SECTOR_SIZE
