"""The interval timer: raises IRQ 0 after a programmed number of ticks, once or periodically.

Time is the machine's clock (§9), read through the ``Clock`` it is given; the timer's only
deadline is the tick of its next interrupt.
"""

from __future__ import annotations

from typing import Any

from cffi_core.devices.base import Clock, Device, IrqLine

TIMER_COUNT = 0x40  # ticks per period; 0 stops the timer
TIMER_CTRL = 0x41  # TIMER_ENABLE | TIMER_PERIODIC
TIMER_NOW = 0x42  # read: the clock

TIMER_ENABLE = 1 << 0  # counting
TIMER_PERIODIC = 1 << 1  # re-arm after each interrupt (else one-shot)
TIMER_CTRL_BITS = TIMER_ENABLE | TIMER_PERIODIC
TIMER_IRQ = 0  # the PIC line of the timer


class Timer(Device):
    """Interval timer (ports 0x40-0x42).

    Arming sets ``deadline = now + count``; it happens on every write of TIMER_CTRL with
    TIMER_ENABLE set and on every write of TIMER_COUNT while enabled (a write restarts the
    period).  A count of 0, or a TIMER_CTRL write without TIMER_ENABLE, disarms.

    At the deadline the timer raises its IRQ once.  A one-shot timer then disarms (TIMER_CTRL
    still reads as written).  A periodic timer re-arms at ``deadline + count``; if the host
    updates it so late that several periods have passed, it still raises the IRQ once — an
    edge-triggered line cannot count — and the next deadline is the first ``deadline + k*count``
    after ``now``, so the phase of the period is kept and no burst of interrupts follows.
    """

    ports = (TIMER_COUNT, TIMER_CTRL, TIMER_NOW)

    def __init__(self, clock: Clock, irq: IrqLine, *, line: int = TIMER_IRQ, name: str = "timer") -> None:
        self.name = name
        self._clock = clock
        self._irq = irq
        self._line = line
        self.reset()

    def reset(self) -> None:
        """Stopped: count 0, control 0, no deadline."""
        self._count = 0
        self._ctrl = 0
        self._deadline: int | None = None
        self.fired = 0  # interrupts raised so far (a statistic; not visible to the guest)

    @property
    def count(self) -> int:
        """The period in ticks (TIMER_COUNT)."""
        return self._count

    @property
    def ctrl(self) -> int:
        """The control bits (TIMER_CTRL)."""
        return self._ctrl

    def _read(self, port: int) -> int:
        """TIMER_COUNT and TIMER_CTRL as last written; TIMER_NOW the clock."""
        if port == TIMER_COUNT:
            return self._count
        if port == TIMER_CTRL:
            return self._ctrl
        return self._clock.now()

    def _write(self, port: int, value: int) -> None:
        """TIMER_COUNT sets the period, TIMER_CTRL the control bits; TIMER_NOW is read-only."""
        if port == TIMER_COUNT:
            self._count = value
            if self._ctrl & TIMER_ENABLE:
                self._arm()
        elif port == TIMER_CTRL:
            self._ctrl = value & TIMER_CTRL_BITS
            if self._ctrl & TIMER_ENABLE:
                self._arm()
            else:
                self._deadline = None

    def _arm(self) -> None:
        self._deadline = self._clock.now() + self._count if self._count else None

    def next_deadline(self) -> int | None:
        """The tick of the next interrupt; None when stopped."""
        return self._deadline

    def update(self, now: int) -> None:
        """Raise the IRQ if the deadline has come, then re-arm (periodic) or disarm (one-shot)."""
        deadline = self._deadline
        if deadline is None or now < deadline:
            return
        self.fired += 1
        if self._ctrl & TIMER_PERIODIC:
            late = (now - deadline) % self._count  # ticks past the last period boundary
            self._deadline = now + self._count - late
        else:
            self._deadline = None
        self._irq(self._line)

    def _state(self) -> dict[str, Any]:
        return {"count": self._count, "ctrl": self._ctrl, "deadline": self._deadline, "fired": self.fired}

    def _load(self, state: dict[str, Any]) -> None:
        self._count, self._ctrl = state["count"], state["ctrl"]
        self._deadline, self.fired = state["deadline"], state["fired"]
