"""The timer: one-shot and periodic interrupts at exact ticks, late updates, stopping, the clock."""

from __future__ import annotations

import pytest

from cffi_core.devices import TIMER_COUNT, TIMER_CTRL, TIMER_ENABLE, TIMER_NOW, TIMER_PERIODIC, ManualClock, Timer

ONE_SHOT = TIMER_ENABLE
PERIODIC = TIMER_ENABLE | TIMER_PERIODIC


def _timer(clock: ManualClock, irqs: list[int], count: int, ctrl: int) -> Timer:
    timer = Timer(clock, irqs.append)
    timer.write(TIMER_COUNT, count)
    timer.write(TIMER_CTRL, ctrl)
    return timer


def _run_to(timer: Timer, clock: ManualClock, tick: int) -> None:
    """Advance the clock to ``tick``, updating at every deadline on the way (as the host does)."""
    while (d := timer.next_deadline()) is not None and d <= tick:
        clock.ticks = d
        timer.update(d)
    clock.ticks = tick


def test_reset_values(clock, irqs):
    timer = Timer(clock, irqs.append)
    assert (timer.read(TIMER_COUNT), timer.read(TIMER_CTRL), timer.next_deadline()) == (0, 0, None)


def test_registers_read_back_as_written(clock, irqs):
    timer = _timer(clock, irqs, 123, 0xFF)
    assert (timer.read(TIMER_COUNT), timer.read(TIMER_CTRL)) == (123, PERIODIC)
    assert (timer.count, timer.ctrl) == (123, PERIODIC)


def test_now_reads_the_clock_and_ignores_writes(clock, irqs):
    timer = Timer(clock, irqs.append)
    clock.ticks = 4242
    timer.write(TIMER_NOW, 7)
    assert timer.read(TIMER_NOW) == 4242


def test_one_shot_fires_once_at_exactly_now_plus_count(clock, irqs):
    clock.ticks = 100
    timer = _timer(clock, irqs, 50, ONE_SHOT)
    assert timer.next_deadline() == 150
    timer.update(149)
    assert irqs == []
    timer.update(150)
    assert (irqs, timer.next_deadline(), timer.read(TIMER_CTRL)) == ([0], None, ONE_SHOT)
    _run_to(timer, clock, 10_000)
    assert irqs == [0]


def test_periodic_fires_every_period(clock, irqs):
    timer = _timer(clock, irqs, 10, PERIODIC)
    seen = []
    for _ in range(4):
        seen.append(timer.next_deadline())
        _run_to(timer, clock, timer.next_deadline())
    assert (seen, irqs, timer.fired) == ([10, 20, 30, 40], [0] * 4, 4)


def test_late_update_raises_once_and_keeps_the_phase(clock, irqs):
    timer = _timer(clock, irqs, 10, PERIODIC)
    timer.update(35)  # deadlines 10, 20, 30 all passed
    assert (irqs, timer.next_deadline()) == ([0], 40)
    timer.update(40)
    assert (irqs, timer.next_deadline()) == ([0, 0], 50)


def test_late_update_on_a_period_boundary_arms_the_next_one(clock, irqs):
    timer = _timer(clock, irqs, 10, PERIODIC)
    timer.update(30)
    assert (irqs, timer.next_deadline()) == ([0], 40)


def test_ctrl_write_without_enable_stops(clock, irqs):
    timer = _timer(clock, irqs, 10, PERIODIC)
    timer.write(TIMER_CTRL, TIMER_PERIODIC)
    assert timer.next_deadline() is None
    timer.update(100)
    assert irqs == []


def test_count_zero_stops(clock, irqs):
    timer = _timer(clock, irqs, 10, PERIODIC)
    timer.write(TIMER_COUNT, 0)
    assert timer.next_deadline() is None
    timer.write(TIMER_CTRL, PERIODIC)
    assert timer.next_deadline() is None


def test_count_write_while_enabled_restarts_the_period(clock, irqs):
    timer = _timer(clock, irqs, 10, PERIODIC)
    clock.ticks = 7
    timer.write(TIMER_COUNT, 20)
    assert timer.next_deadline() == 27


def test_count_write_while_disabled_does_not_arm(clock, irqs):
    timer = Timer(clock, irqs.append)
    timer.write(TIMER_COUNT, 20)
    assert timer.next_deadline() is None


def test_ctrl_write_rearms_from_now(clock, irqs):
    timer = _timer(clock, irqs, 10, ONE_SHOT)
    clock.ticks = 5
    timer.write(TIMER_CTRL, ONE_SHOT)
    assert timer.next_deadline() == 15


def test_one_shot_can_be_rearmed_after_firing(clock, irqs):
    timer = _timer(clock, irqs, 10, ONE_SHOT)
    _run_to(timer, clock, 12)
    timer.write(TIMER_CTRL, ONE_SHOT)
    assert timer.next_deadline() == 22


def test_irq_line_is_configurable(clock, irqs):
    timer = Timer(clock, irqs.append, line=3)
    timer.write(TIMER_COUNT, 1)
    timer.write(TIMER_CTRL, ONE_SHOT)
    timer.update(1)
    assert irqs == [3]


def test_reset_stops(clock, irqs):
    timer = _timer(clock, irqs, 10, PERIODIC)
    timer.reset()
    assert (timer.read(TIMER_COUNT), timer.read(TIMER_CTRL), timer.next_deadline(), timer.fired) == (0, 0, None, 0)


@pytest.mark.parametrize("ctrl", [ONE_SHOT, PERIODIC])
def test_snapshot_restore_continues_identically(ctrl):
    clocks, logs = [ManualClock(), ManualClock()], [[], []]
    timer = _timer(clocks[0], logs[0], 7, ctrl)
    _run_to(timer, clocks[0], 10)
    twin = Timer(clocks[1], logs[1].append)
    twin.restore(timer.snapshot())
    clocks[1].ticks = 10
    for t, c in zip((timer, twin), clocks, strict=True):
        _run_to(t, c, 40)
    assert logs[0][1:] == logs[1]
    assert twin.snapshot() == timer.snapshot()
