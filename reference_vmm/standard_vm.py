"""``StandardDevicesVM``: a VM whose outside is the standard devices (architecture §11), once for every reference VMM that models them."""

from __future__ import annotations

from typing import Any

from conformance.api import VM

__all__ = ["StandardDevicesVM"]


class StandardDevicesVM(VM):
    """What the suite observes of a guest wired to ``cffi_core.devices.standard_devices``: the
    console's output, the result port's exit code, the disk images; ``stop`` is the device
    loop's verdict (``DeviceHost.run_until``), kept by the subclass in ``_stop``."""

    devices: Any  # cffi_core.devices.standard.Devices
    _stop: str | None

    @property
    def console(self) -> bytes:
        return self.devices.console.output

    @property
    def exit_code(self) -> int | None:
        result = self.devices.result
        return result.exit_code if result.stopped else None

    @property
    def disk(self) -> bytes:
        return self.devices.disk.data if self.devices.disk is not None else b""

    @property
    def disk2(self) -> bytes:
        return self.devices.disk2.data if self.devices.disk2 is not None else b""

    @property
    def stop(self) -> str | None:
        return self._stop
