"""The disk controller: whole-sector DMA transfers between a disk image and memory, one command at a time.

A command completes a fixed ``DISK_LATENCY`` ticks after it is issued, and the transfer happens
then, all or nothing; completion raises the disk's IRQ whether it succeeded or not.  The
platform has two of them (docs/architecture.md §11): the disk at 0x1f0, IRQ 14, DMA device 0,
and the second disk at 0x170, IRQ 15, DMA device 1 — one register layout, at two bases.
"""

from __future__ import annotations

from typing import Any

from cffi_core.devices.base import DMA, Clock, Device, DeviceError, DMAError, IrqLine

DISK_SECTOR = 0x1F0  # first sector of the transfer
DISK_COUNT = 0x1F1  # sectors to transfer, 1..DISK_MAX_COUNT
DISK_ADDR = 0x1F2  # physical address of the memory buffer
DISK_CMD = 0x1F3  # write: a command (DISK_CMD_*); read: the status (DISK_STATUS_*)
DISK_SIZE = 0x1F4  # read: the size of the disk in sectors
DISK2_BASE = 0x170  # the second disk: the same registers at 0x170..0x174 (DISK2_SECTOR...)
DISK2_IRQ = 15
DISK2_DMA_DEVICE = 1  # its DMA requester id (docs/vmx.md V.10); the disk's is 0

DISK_CMD_ACK = 0  # done/error -> idle
DISK_CMD_READ = 1  # disk -> memory
DISK_CMD_WRITE = 2  # memory -> disk

DISK_STATUS_IDLE = 0
DISK_STATUS_BUSY = 1  # a command is in flight
DISK_STATUS_DONE = 2  # the last command transferred everything
DISK_STATUS_ERROR = 3  # the last command transferred nothing (bad range or DMA outside memory)

SECTOR_SIZE = 512
DISK_MAX_COUNT = 128  # sectors per command (64 KiB)
DISK_LATENCY = 1000  # ticks from command to completion: the modeled device latency, fixed
DISK_IRQ = 14  # the PIC line of the disk
DISK_DMA_DEVICE = 0
_REGISTERS = 5  # DISK_SECTOR..DISK_SIZE, at base + 0..4


class Disk(Device):
    """Disk controller (ports ``base``..``base + 4``, 0x1f0-0x1f4 by default) over an in-memory image.

    Writing DISK_CMD_READ or DISK_CMD_WRITE in state idle, done or error latches DISK_SECTOR,
    DISK_COUNT and DISK_ADDR, makes the disk busy and sets its deadline ``DISK_LATENCY`` ticks
    ahead; later writes of those registers do not affect the command in flight.  At the deadline
    the whole range is checked (1 <= count <= 128, sector + count <= size, the buffer inside
    what the DMA accessor maps) and then transferred in one DMA access, or not at all: the
    status becomes done or error and IRQ 14 is raised.  DISK_CMD_ACK returns done or error to
    idle.  A command written while busy, and any unknown command, is ignored and counted in
    ``ignored_commands``.
    """

    def __init__(
        self,
        clock: Clock,
        irq: IrqLine,
        dma: DMA,
        image: bytes,
        *,
        line: int = DISK_IRQ,
        name: str = "disk",
        base: int = DISK_SECTOR,
    ) -> None:
        if len(image) % SECTOR_SIZE:
            raise ValueError(f"{name} image of {len(image)} bytes: not a whole number of {SECTOR_SIZE}-byte sectors")
        self.name = name
        self.ports = tuple(range(base, base + _REGISTERS))
        self._base = base
        self._clock = clock
        self._irq = irq
        self._dma = dma
        self._line = line
        self._image = bytearray(image)  # our own copy: the medium, kept across reset
        self.reset()

    def reset(self) -> None:
        """Registers 0, idle, no command in flight; the image is unchanged."""
        self._sector = self._count = self._addr = 0
        self._status = DISK_STATUS_IDLE
        self._command: tuple[int, int, int, int] | None = None  # (cmd, sector, count, addr) in flight
        self._deadline: int | None = None
        self.ignored_commands = 0  # commands written while busy, or unknown
        self.error: str | None = None  # why the last command failed (for the host, not the guest)

    @property
    def data(self) -> bytes:
        """The disk image now."""
        return bytes(self._image)

    @property
    def sectors(self) -> int:
        """The size of the disk in sectors (DISK_SIZE)."""
        return len(self._image) // SECTOR_SIZE

    @property
    def status(self) -> int:
        """The status (a read of DISK_CMD)."""
        return self._status

    # -- registers ------------------------------------------------------------------------
    def _read(self, port: int) -> int:
        """The registers as last written; DISK_CMD reads the status, DISK_SIZE the size."""
        return (self._sector, self._count, self._addr, self._status, self.sectors)[port - self._base]

    def _write(self, port: int, value: int) -> None:
        """DISK_SECTOR, DISK_COUNT, DISK_ADDR store ``value``; DISK_CMD runs a command; DISK_SIZE is read-only."""
        port += DISK_SECTOR - self._base  # the register, named by the first disk's port
        if port == DISK_SECTOR:
            self._sector = value
        elif port == DISK_COUNT:
            self._count = value
        elif port == DISK_ADDR:
            self._addr = value
        elif port == DISK_CMD:
            self._command_written(value)

    def _command_written(self, cmd: int) -> None:
        if self._status == DISK_STATUS_BUSY or cmd not in (DISK_CMD_ACK, DISK_CMD_READ, DISK_CMD_WRITE):
            self.ignored_commands += 1
        elif cmd == DISK_CMD_ACK:
            self._status = DISK_STATUS_IDLE
        else:
            self._command = (cmd, self._sector, self._count, self._addr)
            self._status = DISK_STATUS_BUSY
            self._deadline = self._clock.now() + DISK_LATENCY

    # -- completion -----------------------------------------------------------------------
    def next_deadline(self) -> int | None:
        """The completion tick of the command in flight; None when not busy."""
        return self._deadline

    def update(self, now: int) -> None:
        """Complete the command in flight if its deadline has come."""
        if self._deadline is None or now < self._deadline or self._command is None:
            return
        self.error = self._transfer(*self._command)
        self._status = DISK_STATUS_ERROR if self.error else DISK_STATUS_DONE
        self._command = self._deadline = None
        self._irq(self._line)

    def _transfer(self, cmd: int, sector: int, count: int, addr: int) -> str | None:
        """Do the whole transfer or nothing; return why not, or None on success."""
        if not 1 <= count <= DISK_MAX_COUNT:
            return f"count {count}: must be 1..{DISK_MAX_COUNT}"
        if sector + count > self.sectors:
            return f"sectors {sector}..{sector + count - 1}: beyond the disk's {self.sectors}"
        start, size = sector * SECTOR_SIZE, count * SECTOR_SIZE
        try:
            if cmd == DISK_CMD_READ:
                self._dma.write(addr, bytes(self._image[start : start + size]))
            else:
                data = self._dma.read(addr, size)
                if len(data) != size:
                    raise DeviceError(f"{self.name}: DMA read of {size} bytes returned {len(data)}")
                self._image[start : start + size] = data
        except DMAError as e:
            return str(e)
        return None

    # -- snapshots ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "image": bytes(self._image),
            "sector": self._sector,
            "count": self._count,
            "addr": self._addr,
            "status": self._status,
            "command": self._command,
            "deadline": self._deadline,
            "ignored_commands": self.ignored_commands,
            "error": self.error,
        }

    def _load(self, state: dict[str, Any]) -> None:
        self._image = bytearray(state["image"])
        self._sector, self._count, self._addr = state["sector"], state["count"], state["addr"]
        self._status = state["status"]
        self._command = None if state["command"] is None else tuple(state["command"])
        self._deadline = state["deadline"]
        self.ignored_commands, self.error = state["ignored_commands"], state["error"]
