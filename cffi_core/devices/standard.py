"""The platform's device set of docs/architecture.md §11, wired together on one port bus.

The PIC takes the timer's IRQ 0, the console's IRQ 4, the disk's IRQ 14 and the second disk's
IRQ 15; each disk exists only when its image is given (without one its ports are unclaimed and
read all ones).  The POST port is always there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from cffi_core.devices.base import DMA, Clock
from cffi_core.devices.bus import PortBus
from cffi_core.devices.console import Console
from cffi_core.devices.disk import DISK2_BASE, DISK2_IRQ, Disk
from cffi_core.devices.pic import PIC
from cffi_core.devices.post import PostPort
from cffi_core.devices.result import ResultPort
from cffi_core.devices.timer import Timer


@dataclass(frozen=True)
class StandardDevices:
    """The devices of a standard set, by role."""

    pic: PIC
    timer: Timer
    console: Console
    disk: Disk | None
    result: ResultPort
    post: PostPort
    disk2: Disk | None = None


def standard_devices(
    clock: Clock,
    dma: DMA,
    *,
    disk: bytes | None = None,
    console_input: bytes = b"",
    disk2: bytes | None = None,
    dma2: DMA | None = None,
) -> tuple[PortBus, StandardDevices]:
    """Build the §11 devices on a new bus: PIC, timer, console (IRQ 4), disk (if ``disk``), result
    port, second disk (if ``disk2``), POST port.  The second disk's DMA goes through ``dma2``
    (default ``dma``): a host gives it its own requester id, a VMM may pass it through to the
    guest."""
    pic = PIC()
    devices = StandardDevices(
        pic=pic,
        timer=Timer(clock, pic.raise_irq),
        console=Console(console_input, irq=pic.raise_irq),
        disk=None if disk is None else Disk(clock, pic.raise_irq, dma, disk),
        result=ResultPort(),
        post=PostPort(),
        disk2=None
        if disk2 is None
        else Disk(
            clock, pic.raise_irq, dma if dma2 is None else dma2, disk2, line=DISK2_IRQ, name="disk2", base=DISK2_BASE
        ),
    )
    bus = PortBus()
    d = devices
    for device in (d.pic, d.timer, d.console, d.disk, d.result, d.disk2, d.post):
        if device is not None:
            bus.attach(device)
    return bus, devices


class _Unused:
    """The clock and DMA of a device set built only to read its port map: never used."""

    def now(self) -> int:
        raise AssertionError("no clock in a port map")

    def read(self, addr: int, size: int) -> bytes:
        raise AssertionError("no DMA in a port map")

    def write(self, addr: int, data: bytes) -> None:
        raise AssertionError("no DMA in a port map")


@cache
def standard_port_map() -> Mapping[int, str]:
    """Port -> name of the device that claims it in the §11 set with both disks: how the host
    names the device a guest's ``in``/``out`` reaches, whoever models it (the platform's devices
    or a VMM's virtual ones answer the same ports)."""
    bus, _ = standard_devices(_Unused(), _Unused(), disk=bytes(512), disk2=bytes(512))
    return {port: device.name for device in bus.devices for port in device.ports}
