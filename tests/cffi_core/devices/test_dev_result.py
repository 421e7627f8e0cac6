"""The result port: the exit code, the stop flag, all-ones reads."""

from __future__ import annotations

from cffi_core.devices import ALL_ONES, RESULT_EXIT, ResultPort


def test_reset_values():
    result = ResultPort()
    assert (result.stopped, result.exit_code, result.read(RESULT_EXIT)) == (False, None, ALL_ONES)


def test_write_records_the_code_and_stops():
    result = ResultPort()
    result.write(RESULT_EXIT, 42)
    assert (result.stopped, result.exit_code) == (True, 42)


def test_exit_code_is_the_unsigned_low_32_bits():
    result = ResultPort()
    result.write(RESULT_EXIT, 0xFFFF_FFFF_FFFF_FFFF)
    assert result.exit_code == 0xFFFF_FFFF
    result.write(RESULT_EXIT, 0x1_0000_0007)
    assert result.exit_code == 7


def test_a_second_write_replaces_the_code():
    result = ResultPort()
    result.write(RESULT_EXIT, 1)
    result.write(RESULT_EXIT, 0)
    assert (result.stopped, result.exit_code) == (True, 0)


def test_reset_clears_the_stop():
    result = ResultPort()
    result.write(RESULT_EXIT, 3)
    result.reset()
    assert (result.stopped, result.exit_code) == (False, None)


def test_snapshot_restore_round_trip():
    result = ResultPort()
    result.write(RESULT_EXIT, 3)
    twin = ResultPort()
    twin.restore(result.snapshot())
    assert (twin.stopped, twin.exit_code, twin.snapshot()) == (True, 3, result.snapshot())
