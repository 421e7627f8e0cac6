"""The console: output bytes, the input queue and its status, the output limit."""

from __future__ import annotations

import pytest

from cffi_core.devices import ALL_ONES, CONSOLE_DATA, CONSOLE_OUTPUT_LIMIT, CONSOLE_STATUS, Console


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
