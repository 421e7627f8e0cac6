"""The PIC: 16 edge-triggered IRQ lines, a mask, fully nested priority, one presented vector.

Modeled on the 8259A in its default mode (fully nested, non-specific EOI), reduced to what
docs/architecture.md §6.5 and §11 need: the host asks ``pending_vector`` what to present to the
CPU and reports the CPU's acknowledgement with ``acknowledge``.
"""

from __future__ import annotations

from typing import Any

from cffi_core.devices.base import Device, DeviceError

PIC_CMD = 0x20  # write PIC_EOI: end of interrupt; read: in-service bits
PIC_MASK = 0x21  # 16 mask bits, 1 = masked
PIC_IRR = 0x22  # read: requested bits
PIC_BASE = 0x23  # vector of IRQ 0

PIC_EOI = 0x20  # the PIC_CMD value that ends the highest-priority in-service IRQ
PIC_LINES = 16
PIC_MASK_RESET = 0xFFFF  # every line masked at reset
PIC_BASE_RESET = 32  # IRQ n -> vector 32 + n
PIC_BASE_MIN = 32  # vectors 0-31 are exceptions (§6.1)
PIC_BASE_MAX = 240  # IRQ 15 -> vector 255
PIC_BASE_ALIGN = 16  # a base is a multiple of 16, so IRQs share its priority class (§6.5)

_LINES_MASK = (1 << PIC_LINES) - 1


class PIC(Device):
    """Programmable interrupt controller (ports 0x20-0x23).

    Priority is fully nested: IRQ 0 is the highest, IRQ 15 the lowest.  An IRQ is *presented*
    when it is requested, unmasked, and of higher priority than every IRQ in service; of those,
    the highest wins.  So while IRQ n is in service only IRQs 0..n-1 can interrupt it, and EOI
    (which ends the highest-priority in-service IRQ, the one the handler that runs now serves)
    lets the lower ones through again.

    Invariant: the in-service IRQs form a stack ordered by priority; the presented IRQ, if any,
    is of higher priority than all of them.
    """

    ports = (PIC_CMD, PIC_MASK, PIC_IRR, PIC_BASE)

    def __init__(self, name: str = "pic") -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        """Nothing requested or in service, every line masked, base 32."""
        self._irr = 0  # requested: raised and not yet acknowledged
        self._isr = 0  # in service: acknowledged and not yet ended by EOI
        self._mask = PIC_MASK_RESET
        self._base = PIC_BASE_RESET

    # -- the host side --------------------------------------------------------------------
    def raise_irq(self, line: int) -> None:
        """An edge on ``line``: set its request bit (a second edge before the acknowledge is lost).

        Requests latch whatever the mask says; masking only stops them from being presented.
        """
        if not 0 <= line < PIC_LINES:
            raise ValueError(f"IRQ line {line}: the PIC has lines 0..{PIC_LINES - 1}")
        self._irr |= 1 << line

    def pending_vector(self) -> int:
        """The vector to present to the CPU (the host writes it into ``intr_vector``); -1 if none."""
        if not self._irr:
            return -1  # nothing requested: the host asks at every run of its CPU
        irq = self._presented_irq()
        return -1 if irq < 0 else self._base + irq

    def acknowledge(self, vector: int) -> None:
        """The CPU took ``vector``: its IRQ moves from requested to in service.

        ``vector`` must be the one presented now; anything else is a host bug, and raises
        ``DeviceError``.
        """
        irq = self._presented_irq()
        if irq < 0 or vector != self._base + irq:
            raise DeviceError(
                f"{self.name}: acknowledge of vector {vector}, but the presented vector is {self.pending_vector()}"
            )
        self._irr &= ~(1 << irq)
        self._isr |= 1 << irq

    @property
    def requested(self) -> int:
        """The request bits (PIC_IRR)."""
        return self._irr

    @property
    def in_service(self) -> int:
        """The in-service bits (a read of PIC_CMD)."""
        return self._isr

    @property
    def mask(self) -> int:
        """The mask bits (PIC_MASK), 1 = masked."""
        return self._mask

    @property
    def base(self) -> int:
        """The vector of IRQ 0 (PIC_BASE)."""
        return self._base

    # -- the guest side -------------------------------------------------------------------
    def _read(self, port: int) -> int:
        """PIC_CMD: in-service bits; PIC_MASK: mask; PIC_IRR: requested bits; PIC_BASE: base."""
        return {PIC_CMD: self._isr, PIC_MASK: self._mask, PIC_IRR: self._irr, PIC_BASE: self._base}[port]

    def _write(self, port: int, value: int) -> None:
        """PIC_CMD: EOI; PIC_MASK: the 16 mask bits; PIC_BASE: a new base.  PIC_IRR is read-only.

        Values that mean nothing (a PIC_CMD other than PIC_EOI, a base that is not a multiple of
        16 in 32..240) are ignored, as is a write of PIC_IRR.
        """
        if port == PIC_CMD and value == PIC_EOI:
            self._end_of_interrupt()
        elif port == PIC_MASK:
            self._mask = value & _LINES_MASK
        elif port == PIC_BASE and _valid_base(value):
            self._base = value

    def _end_of_interrupt(self) -> None:
        # Non-specific EOI: the highest-priority in-service IRQ is the one being served.
        self._isr &= self._isr - 1  # clears the lowest set bit, i.e. the lowest-numbered IRQ

    def _presented_irq(self) -> int:
        ready = self._irr & ~self._mask
        if self._isr:
            ready &= (self._isr & -self._isr) - 1  # only lines above the highest in service
        return (ready & -ready).bit_length() - 1  # lowest set bit, -1 if none

    # -- snapshots ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {"irr": self._irr, "isr": self._isr, "mask": self._mask, "base": self._base}

    def _load(self, state: dict[str, Any]) -> None:
        self._irr, self._isr = state["irr"], state["isr"]
        self._mask, self._base = state["mask"], state["base"]


def _valid_base(value: int) -> bool:
    return PIC_BASE_MIN <= value <= PIC_BASE_MAX and value % PIC_BASE_ALIGN == 0
