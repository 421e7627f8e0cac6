"""A bare P64 computer: a Machine wired to the standard devices, run natively to the end.

This is the oracle of the conformance suite — the machine as specified, with no monitor in
between — and what ``popek run`` executes.  The host side of docs/architecture.md §10 (port
I/O answered by the devices of §11, the PIC's vector, halted time) is ``DeviceHost``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cffi_core._binding import RangeError, check_bytes, check_int, lib
from cffi_core.devices import DISK2_DMA_DEVICE, DISK_DMA_DEVICE, DMAError, standard_devices
from cffi_core.devices.host import DeviceHost, MachineError
from cffi_core.machine import DEFAULT_MEMORY, Machine, TLBConfig
from cffi_core.profiles import DEFAULT_PROFILE, Profile

if TYPE_CHECKING:
    from cffi_core.image import GuestImage

DEFAULT_BUDGET = 100_000_000
__all__ = ["DEFAULT_BUDGET", "MachineDMA", "MachineError", "Platform", "RunResult"]


@dataclass(frozen=True)
class RunResult:
    """What a native run shows to the outside: the raw material of an observation."""

    stop: str  # "exit" (result port), "halted" (nothing can wake it), "shutdown", "budget"
    exit_code: int | None
    console: bytes
    disk: bytes
    clock: int
    counters: dict[str, int] = field(default_factory=dict)
    console_truncated: bool = False
    disk2: bytes = b""


class MachineDMA:
    """DMA into the machine's physical memory as device ``device``, keeping decoded code
    coherent.  A device the host attached to an IOMMU domain is remapped (docs/vmx.md V.10): a
    DMA its domain refuses transfers nothing and raises ``DMAError``, so the device fails the
    command (the disk ends it with status error)."""

    def __init__(self, machine: Machine, device: int = DISK_DMA_DEVICE) -> None:
        if not 0 <= device < lib.P64_IOMMU_DEVICES:
            raise ValueError(f"device = {device}: device ids are 0..{lib.P64_IOMMU_DEVICES - 1}")
        self._m = machine
        self.device = device

    def read(self, addr: int, size: int) -> bytes:
        try:
            data = self._m.dma_read(self.device, addr, size)
        except (RangeError, ValueError) as e:
            raise DMAError(f"DMA read of {size} bytes at {addr:#x}: {e}") from None
        if data is None:
            raise DMAError(f"DMA read of {size} bytes at {addr:#x}: refused by the IOMMU (device {self.device})")
        return data

    def write(self, addr: int, data: bytes) -> None:
        try:
            done = self._m.dma_write(self.device, addr, data)
        except (RangeError, ValueError) as e:
            raise DMAError(f"DMA write of {len(data)} bytes at {addr:#x}: {e}") from None
        if not done:
            raise DMAError(f"DMA write of {len(data)} bytes at {addr:#x}: refused by the IOMMU (device {self.device})")


class Platform:
    """A Machine plus PIC, timer, console, disks and result port, run until the guest stops.

    The disk is DMA device 0, the second disk device 1 (docs/vmx.md V.10): on a bare platform
    no IOMMU domain is attached, so both reach physical memory directly."""

    def __init__(
        self,
        profile: str | Profile = DEFAULT_PROFILE,
        memory: int = DEFAULT_MEMORY,
        *,
        disk: bytes | None = None,
        console_input: bytes = b"",
        tlb: TLBConfig | None = None,
        disk2: bytes | None = None,
    ) -> None:
        disk = None if disk is None else check_bytes("disk", disk)
        disk2 = None if disk2 is None else check_bytes("disk2", disk2)
        console_input = check_bytes("console_input", console_input)
        self.machine = Machine(profile, memory, tlb)
        self.bus, self.devices = standard_devices(
            self.machine,
            MachineDMA(self.machine, DISK_DMA_DEVICE),
            disk=disk,
            console_input=console_input,
            disk2=disk2,
            dma2=MachineDMA(self.machine, DISK2_DMA_DEVICE),
        )
        m = self.machine
        # run is looked up at each entry, so that a watch wrapping the machine's run later
        # (conformance.api.HostWatch) sees every entry
        self._host = DeviceHost(
            m.cpu, self.bus, self.devices, clock=m.now, run=lambda ticks: m.run(ticks), advance_clock=m.advance_clock
        )

    def load(self, image: GuestImage) -> None:
        """Copy ``image`` into RAM and set pc to its entry point (``Machine.load``)."""
        self.machine.load(image)

    def run(self, budget: int = DEFAULT_BUDGET) -> RunResult:
        """Run until the guest writes the result port, shuts down, halts for good, or
        ``budget`` ticks of the clock have passed (halted time included).  Ctrl-C stops a
        long run as ``Machine.run`` allows (``KeyboardInterrupt``)."""
        stop = self._host.run_until(self.machine.clock + check_int("budget", budget))
        return self._result(stop or "budget")

    def _result(self, stop: str) -> RunResult:
        d = self.devices
        return RunResult(
            stop=stop,
            exit_code=d.result.exit_code if d.result.stopped else None,
            console=d.console.output,
            disk=bytes(d.disk.data) if d.disk is not None else b"",
            clock=self.machine.clock,
            counters=dict(self.machine.counters),
            console_truncated=d.console.truncated,
            disk2=bytes(d.disk2.data) if d.disk2 is not None else b"",
        )
