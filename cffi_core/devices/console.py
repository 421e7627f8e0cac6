"""The console: a byte-wide output port collected by the host and an input queue the host fills.

No interrupts, no flow control: output never blocks, input is polled through CONSOLE_STATUS.
"""

from __future__ import annotations

from typing import Any

from cffi_core.devices.base import ALL_ONES, Device

CONSOLE_DATA = 0x3F8  # write: one output byte; read: the next input byte, all ones if none
CONSOLE_STATUS = 0x3F9  # read: input bytes waiting

CONSOLE_OUTPUT_LIMIT = 1 << 20  # bytes of output kept; beyond, output is dropped (1 MiB)

_COMPACT_AFTER = 4096  # read input bytes kept before the queue is compacted


class Console(Device):
    """Console (ports 0x3f8-0x3f9).

    Output is capped at ``output_limit`` bytes so that a guest stuck in a print loop cannot
    exhaust host memory: bytes beyond the limit are dropped and ``truncated`` is set.
    """

    ports = (CONSOLE_DATA, CONSOLE_STATUS)

    def __init__(
        self, input_data: bytes = b"", *, output_limit: int = CONSOLE_OUTPUT_LIMIT, name: str = "console"
    ) -> None:
        if output_limit < 0:
            raise ValueError(f"output_limit = {output_limit}: must be >= 0")
        self.name = name
        self.output_limit = output_limit
        self._initial_input = bytes(input_data)
        self.reset()

    def reset(self) -> None:
        """No output; the input queue holds the construction-time input again."""
        self._output = bytearray()
        self._input = bytearray(self._initial_input)
        self._taken = 0  # bytes of _input already read; dropped from the front now and then
        self.truncated = False  # some output was dropped at the limit

    @property
    def output(self) -> bytes:
        """Every byte the guest wrote, up to the limit."""
        return bytes(self._output)

    @property
    def waiting(self) -> int:
        """Input bytes not yet read (CONSOLE_STATUS)."""
        return len(self._input) - self._taken

    def feed(self, data: bytes) -> None:
        """Append ``data`` to the input queue."""
        self._input += data

    def _read(self, port: int) -> int:
        """CONSOLE_DATA pops the next input byte (all ones when empty); CONSOLE_STATUS counts them."""
        if port == CONSOLE_STATUS:
            return self.waiting
        if not self.waiting:
            return ALL_ONES
        byte = self._input[self._taken]
        self._taken += 1
        if self._taken >= _COMPACT_AFTER:  # popping the front byte by byte would be quadratic
            del self._input[: self._taken]
            self._taken = 0
        return byte

    def _write(self, port: int, value: int) -> None:
        """CONSOLE_DATA appends the low byte of ``value``; CONSOLE_STATUS is read-only."""
        if port != CONSOLE_DATA:
            return
        if len(self._output) < self.output_limit:
            self._output.append(value & 0xFF)
        else:
            self.truncated = True

    def _state(self) -> dict[str, Any]:
        return {"output": bytes(self._output), "input": bytes(self._input[self._taken :]), "truncated": self.truncated}

    def _load(self, state: dict[str, Any]) -> None:
        self._output = bytearray(state["output"])
        self._input = bytearray(state["input"])
        self._taken = 0
        self.truncated = state["truncated"]
