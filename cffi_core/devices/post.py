"""The POST/diagnostic port: a one-byte latch at port 0x80, the PC's power-on self-test code port.

A write latches the low byte; a read returns the last code written (0 after reset).  It has no
interrupt and no deadline.  It exists so that guests have an off-CPU register to touch whose
access does nothing but cost an exit: Adams & Agesen (2006) time the `in` instruction on
"port 0x80, an off-CPU chipset register" (docs/devices.md §7.2).
"""

from __future__ import annotations

from typing import Any

from cffi_core.devices.base import Device

POST_CODE = 0x80  # write: latch value & 0xff; read: the last code written
POST_CODE_MASK = 0xFF  # the port is a byte wide, as on the PC


class PostPort(Device):
    """POST/diagnostic port (port 0x80).

    ``code`` is the byte last written (``value & 0xff``); reads return it.  Reset sets it to 0.
    """

    ports = (POST_CODE,)

    def __init__(self, name: str = "post") -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        """Code 0."""
        self.code = 0

    def _read(self, port: int) -> int:
        """The last code written."""
        return self.code

    def _write(self, port: int, value: int) -> None:
        """Latch the low byte of ``value``."""
        self.code = value & POST_CODE_MASK

    def _state(self) -> dict[str, Any]:
        return {"code": self.code}

    def _load(self, state: dict[str, Any]) -> None:
        self.code = state["code"]
