"""The console: a byte-wide output port collected by the host and an input queue the host fills.

No flow control: output never blocks.  Input is polled through CONSOLE_STATUS or, with
CONSOLE_RX_IRQ set in CONSOLE_CTRL, signalled on IRQ 4 (docs/devices.md §5).
"""

from __future__ import annotations

from typing import Any

from cffi_core.devices.base import ALL_ONES, Device, IrqLine

CONSOLE_DATA = 0x3F8  # write: one output byte; read: the next input byte, all ones if none
CONSOLE_STATUS = 0x3F9  # read: input bytes waiting
CONSOLE_CTRL = 0x3FA  # read/write: CONSOLE_RX_IRQ

CONSOLE_RX_IRQ = 1 << 0  # raise the console's IRQ when input is waiting
CONSOLE_CTRL_BITS = CONSOLE_RX_IRQ  # other bits of a CONSOLE_CTRL write are ignored
CONSOLE_IRQ = 4  # the PIC line of the console (the PC's COM1 line)

CONSOLE_OUTPUT_LIMIT = 1 << 20  # bytes of output kept; beyond, output is dropped (1 MiB)

_COMPACT_AFTER = 4096  # read input bytes kept before the queue is compacted


class Console(Device):
    """Console (ports 0x3f8-0x3fa).

    Output is capped at ``output_limit`` bytes so that a guest stuck in a print loop cannot
    exhaust host memory: bytes beyond the limit are dropped and ``truncated`` is set.

    With CONSOLE_RX_IRQ set in CONSOLE_CTRL the console raises ``line`` through ``irq`` when
    input is waiting: at each CONSOLE_CTRL write with the bit set while bytes are waiting, and
    at each ``feed`` of at least one byte while the bit is set.  The line is edge-triggered
    (docs/devices.md §3), so one interrupt may stand for many bytes: a driver drains the queue
    in its handler.  Without ``irq`` the register still reads and writes, and nothing is raised.
    """

    ports = (CONSOLE_DATA, CONSOLE_STATUS, CONSOLE_CTRL)

    def __init__(
        self,
        input_data: bytes = b"",
        *,
        output_limit: int = CONSOLE_OUTPUT_LIMIT,
        name: str = "console",
        irq: IrqLine | None = None,
        line: int = CONSOLE_IRQ,
    ) -> None:
        if output_limit < 0:
            raise ValueError(f"output_limit = {output_limit}: must be >= 0")
        self.name = name
        self.output_limit = output_limit
        self._initial_input = bytes(input_data)
        self._irq = irq
        self._line = line
        self.reset()

    def reset(self) -> None:
        """No output, CONSOLE_CTRL 0; the input queue holds the construction-time input again."""
        self._output = bytearray()
        self._input = bytearray(self._initial_input)
        self._taken = 0  # bytes of _input already read; dropped from the front now and then
        self._ctrl = 0
        self.truncated = False  # some output was dropped at the limit

    @property
    def ctrl(self) -> int:
        """The control bits (CONSOLE_CTRL)."""
        return self._ctrl

    @property
    def output(self) -> bytes:
        """Every byte the guest wrote, up to the limit."""
        return bytes(self._output)

    @property
    def waiting(self) -> int:
        """Input bytes not yet read (CONSOLE_STATUS)."""
        return len(self._input) - self._taken

    def feed(self, data: bytes) -> None:
        """Append ``data`` to the input queue; raise the IRQ if it is enabled and ``data`` is not empty."""
        self._input += data
        if data:
            self._signal()

    def _signal(self) -> None:
        """Raise the line if CONSOLE_RX_IRQ is set and input is waiting (an edge, §3)."""
        if self._ctrl & CONSOLE_RX_IRQ and self.waiting and self._irq is not None:
            self._irq(self._line)

    def _read(self, port: int) -> int:
        """CONSOLE_DATA pops the next input byte (all ones when empty); CONSOLE_STATUS counts
        them; CONSOLE_CTRL reads as written."""
        if port == CONSOLE_STATUS:
            return self.waiting
        if port == CONSOLE_CTRL:
            return self._ctrl
        if not self.waiting:
            return ALL_ONES
        byte = self._input[self._taken]
        self._taken += 1
        if self._taken >= _COMPACT_AFTER:  # popping the front byte by byte would be quadratic
            del self._input[: self._taken]
            self._taken = 0
        return byte

    def _write(self, port: int, value: int) -> None:
        """CONSOLE_DATA appends the low byte of ``value``; CONSOLE_CTRL sets the control bits
        (a write with CONSOLE_RX_IRQ set raises the IRQ if input is waiting); CONSOLE_STATUS is read-only."""
        if port == CONSOLE_CTRL:
            self._ctrl = value & CONSOLE_CTRL_BITS
            self._signal()
            return
        if port != CONSOLE_DATA:
            return
        if len(self._output) < self.output_limit:
            self._output.append(value & 0xFF)
        else:
            self.truncated = True

    def _state(self) -> dict[str, Any]:
        return {
            "output": bytes(self._output),
            "input": bytes(self._input[self._taken :]),
            "truncated": self.truncated,
            "ctrl": self._ctrl,
        }

    def _load(self, state: dict[str, Any]) -> None:
        self._output = bytearray(state["output"])
        self._input = bytearray(state["input"])
        self._taken = 0
        self.truncated = state["truncated"]
        self._ctrl = state["ctrl"]
