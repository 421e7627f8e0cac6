"""The POST port: the latched low byte, reset to 0, no interrupt or deadline, snapshots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cffi_core.devices import POST_CODE, DeviceError, PostPort


def test_the_port_is_0x80_and_named_post():
    post = PostPort()
    assert (POST_CODE, post.ports, post.name) == (0x80, (0x80,), "post")


def test_reset_value_is_zero():
    assert PostPort().read(POST_CODE) == 0


@given(st.lists(st.integers(0, (1 << 64) - 1), min_size=1, max_size=8))
def test_a_read_returns_the_low_byte_of_the_last_write(values):
    post = PostPort()
    for value in values:
        post.write(POST_CODE, value)
    assert post.read(POST_CODE) == post.code == values[-1] % 256


def test_reads_do_not_change_the_code():
    post = PostPort()
    post.write(POST_CODE, 0x1A5)
    assert [post.read(POST_CODE) for _ in range(3)] == [0xA5] * 3


def test_no_deadline_ever():
    post = PostPort()
    post.write(POST_CODE, 7)
    assert post.next_deadline() is None
    post.update(10**6)
    assert post.read(POST_CODE) == 7


def test_reset_clears_the_code():
    post = PostPort()
    post.write(POST_CODE, 0x55)
    post.reset()
    assert post.read(POST_CODE) == 0


def test_snapshot_restore_round_trip():
    post = PostPort()
    post.write(POST_CODE, 0x42)
    twin = PostPort()
    twin.restore(post.snapshot())
    assert (twin.read(POST_CODE), twin.snapshot()) == (0x42, post.snapshot())
    post.write(POST_CODE, 1)  # the snapshot is a copy: the twin keeps its code
    assert twin.read(POST_CODE) == 0x42


def test_a_snapshot_of_another_kind_is_refused():
    post = PostPort()
    with pytest.raises(DeviceError):
        post.restore({"kind": "ResultPort", "stopped": False, "exit_code": None})
    with pytest.raises(DeviceError):
        post.restore({"kind": "PostPort"})  # a field missing


def test_another_port_is_a_host_error():
    with pytest.raises(DeviceError):
        PostPort().read(0x81)
