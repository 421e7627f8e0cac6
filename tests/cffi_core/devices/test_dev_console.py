"""The console: output bytes, the input queue and its status, the output limit, the input interrupt."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cffi_core.devices import (
    ALL_ONES,
    CONSOLE_CTRL,
    CONSOLE_DATA,
    CONSOLE_IRQ,
    CONSOLE_OUTPUT_LIMIT,
    CONSOLE_RX_IRQ,
    CONSOLE_STATUS,
    Console,
)


def _read_all(console: Console) -> bytes:
    out = bytearray()
    while console.read(CONSOLE_STATUS):
        out.append(console.read(CONSOLE_DATA))
    return bytes(out)


def test_output_collects_the_low_byte_of_each_write():
    console = Console()
    for value in (ord("h"), 0x169, -1 & 0xFFFF_FFFF_FFFF_FFFF):
        console.write(CONSOLE_DATA, value)
    assert console.output == b"hi\xff"
    assert isinstance(console.output, bytes)


def test_input_is_read_in_order_and_counted():
    console = Console(b"ab")
    assert console.read(CONSOLE_STATUS) == console.waiting == 2
    assert console.read(CONSOLE_DATA) == ord("a")
    assert console.read(CONSOLE_STATUS) == 1
    assert console.read(CONSOLE_DATA) == ord("b")
    assert console.read(CONSOLE_STATUS) == 0


def test_empty_input_reads_all_ones():
    console = Console()
    assert console.read(CONSOLE_DATA) == ALL_ONES
    assert console.read(CONSOLE_STATUS) == 0


def test_feed_appends_to_the_input():
    console = Console(b"x")
    console.feed(b"yz")
    assert _read_all(console) == b"xyz"
    console.feed(b"!")
    assert _read_all(console) == b"!"


def test_long_input_reads_back_whole():
    data = bytes(range(256)) * 40
    console = Console(data[:5000])
    console.feed(data[5000:])
    assert _read_all(console) == data


def test_status_writes_are_ignored():
    console = Console(b"abc")
    console.write(CONSOLE_STATUS, 0)
    assert (console.read(CONSOLE_STATUS), console.output) == (3, b"")


def test_output_beyond_the_limit_is_dropped_and_flagged():
    console = Console(output_limit=3)
    for byte in b"abcde":
        console.write(CONSOLE_DATA, byte)
    assert (console.output, console.truncated) == (b"abc", True)


def test_output_at_the_limit_is_not_truncated():
    console = Console(output_limit=3)
    for byte in b"abc":
        console.write(CONSOLE_DATA, byte)
    assert (console.output, console.truncated) == (b"abc", False)


def test_default_limit_is_one_mebibyte():
    assert CONSOLE_OUTPUT_LIMIT == 1 << 20
    assert Console().output_limit == CONSOLE_OUTPUT_LIMIT


def test_negative_limit_is_refused():
    with pytest.raises(ValueError, match="output_limit"):
        Console(output_limit=-1)


def test_reset_clears_output_and_restores_the_initial_input():
    console = Console(b"in", output_limit=1)
    console.write(CONSOLE_DATA, 1)
    console.write(CONSOLE_DATA, 2)
    console.read(CONSOLE_DATA)
    console.feed(b"more")
    console.reset()
    assert (console.output, console.truncated, _read_all(console)) == (b"", False, b"in")


def test_snapshot_restore_continues_identically():
    console = Console(bytes(5000))
    for _ in range(4500):  # past a compaction of the input queue
        console.read(CONSOLE_DATA)
    console.write(CONSOLE_DATA, 65)
    console.feed(b"tail")
    twin = Console()
    twin.restore(console.snapshot())
    for c in (console, twin):
        c.write(CONSOLE_DATA, 66)
    assert _read_all(twin) == _read_all(console) == bytes(500) + b"tail"
    assert twin.snapshot() == console.snapshot()
    assert twin.output == b"AB"


# ---- CONSOLE_CTRL and the input interrupt (docs/devices.md §5) ----


def test_control_register_is_at_0x3fa_bit_0_on_irq_4():
    assert (CONSOLE_CTRL, CONSOLE_RX_IRQ, CONSOLE_IRQ) == (0x3FA, 1, 4)
    assert Console().ports == (0x3F8, 0x3F9, 0x3FA)


def test_control_resets_to_0_and_keeps_only_bit_0():
    console = Console()
    assert console.read(CONSOLE_CTRL) == 0
    console.write(CONSOLE_CTRL, 0xFFFF_FFFF_FFFF_FFFE)
    assert console.read(CONSOLE_CTRL) == 0
    console.write(CONSOLE_CTRL, 0xFF)
    assert console.read(CONSOLE_CTRL) == console.ctrl == CONSOLE_RX_IRQ


def test_enabling_with_input_waiting_raises_the_line(irqs):
    console = Console(b"ab", irq=irqs.append)
    assert irqs == []  # input alone raises nothing while the bit is clear
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    assert irqs == [CONSOLE_IRQ]


def test_enabling_with_no_input_raises_nothing(irqs):
    console = Console(irq=irqs.append)
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    assert irqs == []


def test_each_enabling_write_with_input_waiting_is_an_edge(irqs):
    console = Console(b"a", irq=irqs.append)
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    console.write(CONSOLE_CTRL, 0)
    assert irqs == [CONSOLE_IRQ, CONSOLE_IRQ]


def test_feed_raises_the_line_while_enabled(irqs):
    console = Console(irq=irqs.append, line=9)
    console.feed(b"x")
    assert irqs == []  # bit clear
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    assert irqs == [9]  # "x" was waiting
    console.feed(b"yz")
    console.feed(b"")  # no byte, no edge
    assert irqs == [9, 9]
    assert _read_all(console) == b"xyz"
    console.feed(b"!")  # the queue was drained: a new byte is a new edge
    assert irqs == [9, 9, 9]


def test_reading_and_disabling_raise_nothing(irqs):
    console = Console(b"abc", irq=irqs.append)
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    _read_all(console)
    console.write(CONSOLE_CTRL, 0)
    console.feed(b"d")
    assert irqs == [CONSOLE_IRQ]


def test_without_a_callback_the_register_works_and_nothing_is_raised():
    console = Console(b"a")  # today's constructor: no IRQ wired
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    console.feed(b"b")
    assert (console.read(CONSOLE_CTRL), _read_all(console)) == (CONSOLE_RX_IRQ, b"ab")


def test_control_writes_leave_output_and_input_alone(irqs):
    console = Console(b"in", irq=irqs.append)
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    assert (console.output, console.read(CONSOLE_STATUS)) == (b"", 2)


def test_reset_clears_the_control_register(irqs):
    console = Console(b"in", irq=irqs.append)
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    console.reset()
    console.feed(b"x")
    assert (console.read(CONSOLE_CTRL), irqs) == (0, [CONSOLE_IRQ])


def test_the_control_register_is_in_the_snapshot(irqs):
    console = Console(irq=irqs.append)
    console.write(CONSOLE_CTRL, CONSOLE_RX_IRQ)
    snap = console.snapshot()
    assert snap["ctrl"] == CONSOLE_RX_IRQ
    twin_irqs: list[int] = []
    twin = Console(irq=twin_irqs.append)
    twin.restore(snap)
    assert twin_irqs == []  # restoring is not an edge
    twin.feed(b"q")
    assert (twin.read(CONSOLE_CTRL), twin_irqs) == (CONSOLE_RX_IRQ, [CONSOLE_IRQ])


# One host or guest action on a console with the interrupt wired.
_ACTION = st.one_of(
    st.tuples(st.just("feed"), st.binary(max_size=3)),
    st.tuples(st.just("ctrl"), st.integers(0, 3)),
    st.tuples(st.just("read")),
    st.tuples(st.just("status")),
)


@given(st.lists(_ACTION, max_size=40))
def test_edges_follow_a_model_of_the_rule(actions):
    """An edge exactly at a CONSOLE_CTRL write with bit 0 set and input waiting, and at a
    non-empty feed with bit 0 set; reads never raise one.  The model is a plain count."""
    irqs: list[int] = []
    console = Console(irq=irqs.append)
    waiting, enabled, edges = 0, False, 0
    for action in actions:
        if action[0] == "feed":
            console.feed(action[1])
            waiting += len(action[1])
            edges += bool(action[1]) and enabled
        elif action[0] == "ctrl":
            console.write(CONSOLE_CTRL, action[1])
            enabled = bool(action[1] & 1)
            edges += enabled and waiting > 0
        elif action[0] == "read":
            console.read(CONSOLE_DATA)
            waiting = max(0, waiting - 1)
        else:
            assert console.read(CONSOLE_STATUS) == waiting
        assert irqs == [CONSOLE_IRQ] * edges
