"""P64's device models (docs/devices.md): the port bus, PIC, timer, console, disk, result port.

One model serves both as the platform's device in a native run and as a VMM's virtual device:
devices see time through a ``Clock``, memory through a ``DMA`` accessor and interrupts through
an IRQ callback, never the host's own.
"""

from cffi_core.devices.base import (
    ALL_ONES,
    DMA,
    BufferDMA,
    Clock,
    Device,
    DeviceError,
    DMAError,
    IrqLine,
    ManualClock,
)
from cffi_core.devices.bus import PortBus
from cffi_core.devices.console import CONSOLE_DATA, CONSOLE_OUTPUT_LIMIT, CONSOLE_STATUS, Console
from cffi_core.devices.disk import (
    DISK2_BASE,
    DISK2_DMA_DEVICE,
    DISK2_IRQ,
    DISK_ADDR,
    DISK_CMD,
    DISK_CMD_ACK,
    DISK_CMD_READ,
    DISK_CMD_WRITE,
    DISK_COUNT,
    DISK_DMA_DEVICE,
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
    Disk,
)
from cffi_core.devices.pic import PIC, PIC_BASE, PIC_CMD, PIC_EOI, PIC_IRR, PIC_MASK
from cffi_core.devices.result import RESULT_EXIT, ResultPort
from cffi_core.devices.standard import StandardDevices, standard_devices
from cffi_core.devices.timer import TIMER_COUNT, TIMER_CTRL, TIMER_ENABLE, TIMER_IRQ, TIMER_NOW, TIMER_PERIODIC, Timer

__all__ = [
    "ALL_ONES",
    "CONSOLE_DATA",
    "CONSOLE_OUTPUT_LIMIT",
    "CONSOLE_STATUS",
    "DISK2_BASE",
    "DISK2_DMA_DEVICE",
    "DISK2_IRQ",
    "DISK_ADDR",
    "DISK_CMD",
    "DISK_CMD_ACK",
    "DISK_CMD_READ",
    "DISK_CMD_WRITE",
    "DISK_COUNT",
    "DISK_DMA_DEVICE",
    "DISK_IRQ",
    "DISK_LATENCY",
    "DISK_MAX_COUNT",
    "DISK_SECTOR",
    "DISK_SIZE",
    "DISK_STATUS_BUSY",
    "DISK_STATUS_DONE",
    "DISK_STATUS_ERROR",
    "DISK_STATUS_IDLE",
    "DMA",
    "PIC",
    "PIC_BASE",
    "PIC_CMD",
    "PIC_EOI",
    "PIC_IRR",
    "PIC_MASK",
    "RESULT_EXIT",
    "SECTOR_SIZE",
    "TIMER_COUNT",
    "TIMER_CTRL",
    "TIMER_ENABLE",
    "TIMER_IRQ",
    "TIMER_NOW",
    "TIMER_PERIODIC",
    "BufferDMA",
    "Clock",
    "Console",
    "DMAError",
    "Device",
    "DeviceError",
    "Disk",
    "IrqLine",
    "ManualClock",
    "PortBus",
    "ResultPort",
    "StandardDevices",
    "Timer",
    "standard_devices",
]
