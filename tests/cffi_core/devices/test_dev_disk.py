"""The disk: registers, DMA transfers at exactly DISK_LATENCY, errors with nothing transferred, IRQ 14."""

from __future__ import annotations

import pytest

from cffi_core.devices import (
    DISK_ADDR,
    DISK_CMD,
    DISK_CMD_ACK,
    DISK_CMD_READ,
    DISK_CMD_WRITE,
    DISK_COUNT,
    DISK_IRQ,
    DISK_LATENCY,
    DISK_MAX_COUNT,
    DISK_SECTOR,
    DISK_SIZE,
    DISK_STATUS_BUSY,
    DISK_STATUS_DONE,
    DISK_STATUS_ERROR,
    DISK_STATUS_IDLE,
    SECTOR_SIZE,
    BufferDMA,
    DeviceError,
    Disk,
    ManualClock,
)

SECTORS = 200  # more than DISK_MAX_COUNT, so count 128 fits


def _image(sectors: int = SECTORS) -> bytes:
    """Every sector filled with its own number."""
    return b"".join(bytes([n & 0xFF]) * SECTOR_SIZE for n in range(sectors))


@pytest.fixture
def disk(clock, irqs, dma) -> Disk:
    return Disk(clock, irqs.append, dma, _image())


def _issue(disk: Disk, cmd: int, sector: int, count: int, addr: int) -> None:
    disk.write(DISK_SECTOR, sector)
    disk.write(DISK_COUNT, count)
    disk.write(DISK_ADDR, addr)
    disk.write(DISK_CMD, cmd)


def _complete(disk: Disk, clock: ManualClock) -> int:
    """Let time run to the completion; return the status."""
    clock.ticks = disk.next_deadline()
    disk.update(clock.ticks)
    return disk.read(DISK_CMD)


def test_reset_values_and_size(disk):
    regs = [disk.read(p) for p in (DISK_SECTOR, DISK_COUNT, DISK_ADDR, DISK_CMD, DISK_SIZE)]
    assert regs == [0, 0, 0, DISK_STATUS_IDLE, SECTORS]
    assert disk.next_deadline() is None


def test_registers_read_back_as_written_and_size_is_read_only(disk):
    _issue(disk, 99, 1 << 40, 1 << 63, 0x1234_5678_9ABC)
    disk.write(DISK_SIZE, 5)
    regs = [disk.read(p) for p in (DISK_SECTOR, DISK_COUNT, DISK_ADDR, DISK_SIZE)]
    assert regs == [1 << 40, 1 << 63, 0x1234_5678_9ABC, SECTORS]


def test_read_lands_in_memory_at_exactly_the_latency(disk, clock, irqs, ram):
    clock.ticks = 500
    _issue(disk, DISK_CMD_READ, 3, 2, 0x1000)
    assert (disk.read(DISK_CMD), disk.next_deadline()) == (DISK_STATUS_BUSY, 500 + DISK_LATENCY)
    disk.update(500 + DISK_LATENCY - 1)
    assert (disk.read(DISK_CMD), irqs, ram[0x1000]) == (DISK_STATUS_BUSY, [], 0)
    disk.update(500 + DISK_LATENCY)
    assert (disk.read(DISK_CMD), irqs, disk.next_deadline()) == (DISK_STATUS_DONE, [DISK_IRQ], None)
    assert ram[0x1000 : 0x1000 + 2 * SECTOR_SIZE] == bytes([3]) * SECTOR_SIZE + bytes([4]) * SECTOR_SIZE
    assert ram[0x0FFF] == ram[0x1400] == 0


def test_write_stores_memory_on_the_disk(disk, clock, irqs, ram):
    ram[0x2000 : 0x2000 + SECTOR_SIZE] = b"\xab" * SECTOR_SIZE
    _issue(disk, DISK_CMD_WRITE, 7, 1, 0x2000)
    assert _complete(disk, clock) == DISK_STATUS_DONE
    assert disk.data == _image()[: 7 * SECTOR_SIZE] + b"\xab" * SECTOR_SIZE + _image()[8 * SECTOR_SIZE :]
    assert irqs == [DISK_IRQ]


def test_acknowledge_returns_done_to_idle(disk, clock):
    _issue(disk, DISK_CMD_READ, 0, 1, 0)
    _complete(disk, clock)
    disk.write(DISK_CMD, DISK_CMD_ACK)
    assert disk.read(DISK_CMD) == disk.status == DISK_STATUS_IDLE


def test_acknowledge_when_idle_does_nothing(disk):
    disk.write(DISK_CMD, DISK_CMD_ACK)
    assert (disk.read(DISK_CMD), disk.ignored_commands) == (DISK_STATUS_IDLE, 0)


@pytest.mark.parametrize("status_before", [DISK_STATUS_DONE, DISK_STATUS_ERROR])
def test_a_new_command_is_accepted_after_done_or_error(disk, clock, ram, status_before):
    count = 1 if status_before == DISK_STATUS_DONE else 0
    _issue(disk, DISK_CMD_READ, 0, count, 0)
    assert _complete(disk, clock) == status_before
    _issue(disk, DISK_CMD_READ, 9, 1, 0x3000)
    assert _complete(disk, clock) == DISK_STATUS_DONE
    assert ram[0x3000] == 9


@pytest.mark.parametrize(
    ("sector", "count"),
    [(0, 0), (0, DISK_MAX_COUNT + 1), (SECTORS - 1, 2), (SECTORS, 1), (1 << 63, 1), (0, 1 << 63)],
)
@pytest.mark.parametrize("cmd", [DISK_CMD_READ, DISK_CMD_WRITE])
def test_out_of_range_transfer_is_an_error_and_moves_nothing(disk, clock, irqs, ram, sector, count, cmd):
    ram[:] = b"\x55" * len(ram)
    _issue(disk, cmd, sector, count, 0)
    assert _complete(disk, clock) == DISK_STATUS_ERROR
    assert (ram, disk.data, irqs) == (b"\x55" * len(ram), _image(), [DISK_IRQ])
    assert disk.error is not None


def test_largest_transfer_reaches_the_last_sector(clock, irqs):
    ram = bytearray(DISK_MAX_COUNT * SECTOR_SIZE)
    disk = Disk(clock, irqs.append, BufferDMA(ram), _image())
    _issue(disk, DISK_CMD_READ, SECTORS - DISK_MAX_COUNT, DISK_MAX_COUNT, 0)
    assert _complete(disk, clock) == DISK_STATUS_DONE
    assert ram == _image()[-len(ram) :]
    assert disk.error is None


def test_read_into_memory_beyond_ram_is_an_error_with_no_partial_write(disk, clock, irqs, ram):
    end = len(ram) - SECTOR_SIZE  # the second sector would not fit
    _issue(disk, DISK_CMD_READ, 1, 2, end)
    assert _complete(disk, clock) == DISK_STATUS_ERROR
    assert (ram[end:], irqs) == (bytes(SECTOR_SIZE), [DISK_IRQ])
    assert "outside" in disk.error


def test_write_from_memory_beyond_ram_is_an_error_and_the_disk_is_unchanged(disk, clock, irqs, ram):
    _issue(disk, DISK_CMD_WRITE, 1, 1, len(ram) - 4)
    assert _complete(disk, clock) == DISK_STATUS_ERROR
    assert (disk.data, irqs) == (_image(), [DISK_IRQ])


def test_commands_while_busy_are_ignored_and_counted(disk, clock, irqs, ram):
    _issue(disk, DISK_CMD_READ, 5, 1, 0x1000)
    clock.ticks = 10
    for cmd in (DISK_CMD_READ, DISK_CMD_WRITE, DISK_CMD_ACK):
        disk.write(DISK_CMD, cmd)
    assert (disk.ignored_commands, disk.next_deadline(), disk.read(DISK_CMD)) == (3, DISK_LATENCY, DISK_STATUS_BUSY)
    assert _complete(disk, clock) == DISK_STATUS_DONE
    assert (ram[0x1000], irqs) == (5, [DISK_IRQ])


@pytest.mark.parametrize("cmd", [3, 0x20, 1 << 63])
def test_unknown_commands_are_ignored_and_counted(disk, cmd):
    disk.write(DISK_CMD, cmd)
    assert (disk.read(DISK_CMD), disk.ignored_commands, disk.next_deadline()) == (DISK_STATUS_IDLE, 1, None)


def test_registers_written_while_busy_do_not_change_the_command(disk, clock, ram):
    _issue(disk, DISK_CMD_READ, 5, 1, 0x1000)
    disk.write(DISK_SECTOR, 6)
    disk.write(DISK_COUNT, 0)
    disk.write(DISK_ADDR, 0x2000)
    assert _complete(disk, clock) == DISK_STATUS_DONE
    assert (ram[0x1000], ram[0x2000], disk.read(DISK_SECTOR)) == (5, 0, 6)


def test_irq_line_is_configurable(clock, irqs, dma):
    disk = Disk(clock, irqs.append, dma, _image(1), line=7)
    _issue(disk, DISK_CMD_READ, 0, 1, 0)
    _complete(disk, clock)
    assert irqs == [7]


def test_image_must_be_whole_sectors(clock, irqs, dma):
    with pytest.raises(ValueError, match="whole number of 512-byte sectors"):
        Disk(clock, irqs.append, dma, bytes(513))


def test_empty_disk_has_no_sectors(clock, irqs, dma):
    disk = Disk(clock, irqs.append, dma, b"")
    _issue(disk, DISK_CMD_READ, 0, 1, 0)
    assert (disk.read(DISK_SIZE), _complete(disk, clock)) == (0, DISK_STATUS_ERROR)


def test_the_disk_keeps_its_own_copy_of_the_image(clock, irqs, dma, ram):
    image = bytearray(SECTOR_SIZE)
    disk = Disk(clock, irqs.append, dma, image)
    ram[:4] = b"data"
    _issue(disk, DISK_CMD_WRITE, 0, 1, 0)
    _complete(disk, clock)
    assert (image[:4], disk.data[:4]) == (bytes(4), b"data")


def test_dma_accessor_returning_a_short_read_is_a_host_bug(clock, irqs):
    class ShortDMA:
        def read(self, addr: int, size: int) -> bytes:
            return bytes(size - 1)

        def write(self, addr: int, data: bytes) -> None:
            raise AssertionError("not called")

    disk = Disk(clock, irqs.append, ShortDMA(), _image(1))
    _issue(disk, DISK_CMD_WRITE, 0, 1, 0)
    clock.ticks = DISK_LATENCY
    with pytest.raises(DeviceError, match="returned 511"):
        disk.update(clock.ticks)


def test_reset_cancels_the_command_but_keeps_the_image(disk, clock, irqs, ram):
    ram[:SECTOR_SIZE] = b"\x77" * SECTOR_SIZE
    _issue(disk, DISK_CMD_WRITE, 0, 1, 0)
    _complete(disk, clock)
    _issue(disk, DISK_CMD_READ, 1, 1, 0)
    disk.write(DISK_CMD, 9)
    disk.reset()
    regs = [disk.read(p) for p in (DISK_SECTOR, DISK_COUNT, DISK_ADDR, DISK_CMD)]
    assert (regs, disk.next_deadline(), disk.ignored_commands) == ([0, 0, 0, DISK_STATUS_IDLE], None, 0)
    assert disk.data[:1] == b"\x77"
    disk.update(10 * DISK_LATENCY)
    assert irqs == [DISK_IRQ]  # only the first command's


def test_snapshot_restore_mid_command_continues_identically():
    rams = [bytearray(0x4000), bytearray(0x4000)]
    clocks, logs = [ManualClock(), ManualClock()], [[], []]
    disk = Disk(clocks[0], logs[0].append, BufferDMA(rams[0]), _image(8))
    rams[0][0x2000:0x2200] = b"\x99" * SECTOR_SIZE
    _issue(disk, DISK_CMD_WRITE, 2, 1, 0x2000)
    _complete(disk, clocks[0])
    clocks[0].ticks = 5000
    _issue(disk, DISK_CMD_READ, 1, 2, 0x100)
    twin = Disk(clocks[1], logs[1].append, BufferDMA(rams[1]), _image(1))
    twin.restore(disk.snapshot())
    rams[1][:] = rams[0]
    clocks[1].ticks = 5000
    for d, c in zip((disk, twin), clocks, strict=True):
        assert _complete(d, c) == DISK_STATUS_DONE
    assert (rams[1], twin.data, logs[1]) == (rams[0], disk.data, logs[0][1:])
    assert twin.snapshot() == disk.snapshot()
