"""Fixtures shared by the device tests: a hand-set clock, an IRQ recorder, a small RAM."""

from __future__ import annotations

import pytest

from cffi_core.devices import BufferDMA, ManualClock

RAM_SIZE = 64 * 1024


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def irqs() -> list[int]:
    """The lines raised so far; pass ``irqs.append`` as a device's IRQ callback."""
    return []


@pytest.fixture
def ram() -> bytearray:
    return bytearray(RAM_SIZE)


@pytest.fixture
def dma(ram: bytearray) -> BufferDMA:
    return BufferDMA(ram)
