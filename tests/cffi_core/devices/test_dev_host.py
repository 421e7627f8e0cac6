"""The device host's run loop: a vector the CPU took is acknowledged even when the run is interrupted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cffi_core.devices.host import DeviceHost


class _PIC:
    def __init__(self) -> None:
        self.acknowledged: list[int] = []

    def pending_vector(self) -> int:
        return -1 if self.acknowledged else 0x20

    def acknowledge(self, vector: int) -> None:
        self.acknowledged.append(vector)


def test_a_vector_taken_before_an_interrupt_of_the_run_is_acknowledged_once():
    cpu = SimpleNamespace(intr_vector=-1, intr_acked=-1)
    pic = _PIC()
    bus = SimpleNamespace(next_deadline=lambda: None)

    def run(ticks: int):
        cpu.intr_acked = cpu.intr_vector  # the CPU took the vector, then Ctrl-C ends the run
        raise KeyboardInterrupt

    host = DeviceHost(cpu, bus, SimpleNamespace(pic=pic), clock=lambda: 0, run=run, advance_clock=lambda t: None)
    with pytest.raises(KeyboardInterrupt):
        host.run_until(1000)
    assert pic.acknowledged == [0x20]
    assert cpu.intr_acked == -1
