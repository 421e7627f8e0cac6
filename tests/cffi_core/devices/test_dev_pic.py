"""The PIC: registers, masking, fully nested priority, acknowledge and EOI, the vector base."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cffi_core.devices import PIC, PIC_BASE, PIC_CMD, PIC_EOI, PIC_IRR, PIC_MASK, DeviceError


def _pic(unmasked: int = 0xFFFF, *lines: int) -> PIC:
    pic = PIC()
    pic.write(PIC_MASK, ~unmasked & 0xFFFF)
    for line in lines:
        pic.raise_irq(line)
    return pic


def _take(pic: PIC) -> int:
    """Acknowledge the presented vector, as the CPU would; return it."""
    vector = pic.pending_vector()
    pic.acknowledge(vector)
    return vector


def test_reset_values():
    pic = PIC()
    regs = [pic.read(p) for p in (PIC_CMD, PIC_MASK, PIC_IRR, PIC_BASE)]
    assert regs == [0, 0xFFFF, 0, 32]
    assert pic.pending_vector() == -1


def test_masked_request_latches_but_is_not_presented():
    pic = PIC()
    pic.raise_irq(3)
    assert (pic.read(PIC_IRR), pic.pending_vector()) == (1 << 3, -1)
    pic.write(PIC_MASK, ~(1 << 3))
    assert pic.pending_vector() == 32 + 3


def test_mask_register_keeps_16_bits():
    pic = PIC()
    pic.write(PIC_MASK, 0xFFFF_0000_1234_5678)
    assert pic.read(PIC_MASK) == pic.mask == 0x5678


def test_lowest_numbered_line_wins():
    pic = _pic(0xFFFF, 9, 4, 12)
    assert pic.pending_vector() == 36


def test_acknowledge_moves_request_to_in_service():
    pic = _pic(0xFFFF, 5)
    assert _take(pic) == 37
    assert (pic.read(PIC_IRR), pic.read(PIC_CMD), pic.pending_vector()) == (0, 1 << 5, -1)
    assert (pic.requested, pic.in_service) == (0, 1 << 5)


def test_in_service_irq_blocks_itself_and_lower_priorities():
    pic = _pic(0xFFFF, 5)
    _take(pic)
    pic.raise_irq(5)
    pic.raise_irq(9)
    assert pic.pending_vector() == -1
    assert pic.read(PIC_IRR) == 1 << 5 | 1 << 9


def test_higher_priority_irq_nests_over_an_in_service_one():
    pic = _pic(0xFFFF, 5)
    _take(pic)
    pic.raise_irq(2)
    assert _take(pic) == 34
    assert pic.read(PIC_CMD) == 1 << 2 | 1 << 5


def test_eoi_ends_the_highest_priority_in_service_irq():
    pic = _pic(0xFFFF, 5)
    _take(pic)
    pic.raise_irq(2)
    _take(pic)
    pic.raise_irq(7)
    pic.write(PIC_CMD, PIC_EOI)
    assert pic.read(PIC_CMD) == 1 << 5
    assert pic.pending_vector() == -1  # 7 still below 5
    pic.write(PIC_CMD, PIC_EOI)
    assert (pic.read(PIC_CMD), pic.pending_vector()) == (0, 39)


def test_request_raised_while_in_service_is_presented_after_eoi():
    pic = _pic(0xFFFF, 0)
    _take(pic)
    pic.raise_irq(0)
    assert pic.pending_vector() == -1
    pic.write(PIC_CMD, PIC_EOI)
    assert pic.pending_vector() == 32


def test_two_edges_before_acknowledge_make_one_request():
    pic = _pic(0xFFFF, 1, 1)
    _take(pic)
    assert pic.read(PIC_IRR) == 0


def test_eoi_with_nothing_in_service_does_nothing():
    pic = _pic(0xFFFF, 3)
    pic.write(PIC_CMD, PIC_EOI)
    assert (pic.read(PIC_CMD), pic.pending_vector()) == (0, 35)


@pytest.mark.parametrize("value", [0, 0x21, 0x60, 0x120])
def test_other_commands_are_ignored(value):
    pic = _pic(0xFFFF, 3)
    _take(pic)
    pic.write(PIC_CMD, value)
    assert pic.read(PIC_CMD) == 1 << 3


def test_irr_is_read_only():
    pic = _pic(0xFFFF, 3)
    pic.write(PIC_IRR, 0)
    pic.write(PIC_IRR, 0xFFFF)
    assert pic.read(PIC_IRR) == 1 << 3


@pytest.mark.parametrize(
    ("value", "base"),
    [(48, 48), (240, 240), (32, 32), (0, 32), (16, 32), (33, 32), (256, 32), (241, 32), (1 << 63 | 48, 32)],
)
def test_base_takes_multiples_of_16_from_32_to_240(value, base):
    pic = PIC()
    pic.write(PIC_BASE, value)
    assert pic.read(PIC_BASE) == pic.base == base


def test_vectors_follow_the_base():
    pic = _pic(0xFFFF, 15)
    pic.write(PIC_BASE, 240)
    assert pic.pending_vector() == 255
    pic.acknowledge(255)
    assert pic.in_service == 1 << 15


@pytest.mark.parametrize("line", [-1, 16])
def test_raising_a_line_that_does_not_exist_is_refused(line):
    with pytest.raises(ValueError, match=r"lines 0\.\.15"):
        PIC().raise_irq(line)


def test_acknowledging_a_vector_not_presented_raises():
    pic = _pic(0xFFFF, 4)
    with pytest.raises(DeviceError, match="acknowledge of vector 37, but the presented vector is 36"):
        pic.acknowledge(37)
    assert (pic.requested, pic.in_service) == (1 << 4, 0)


def test_acknowledging_with_nothing_presented_raises():
    pic = _pic(0, 4)
    with pytest.raises(DeviceError, match="presented vector is -1"):
        pic.acknowledge(36)


def test_reset_forgets_everything():
    pic = _pic(0xFFFF, 4, 6)
    _take(pic)
    pic.write(PIC_BASE, 64)
    pic.reset()
    assert [pic.read(p) for p in (PIC_CMD, PIC_MASK, PIC_IRR, PIC_BASE)] == [0, 0xFFFF, 0, 32]


def test_snapshot_restore_continues_identically():
    pic = _pic(0x00FF, 4, 6, 9)
    _take(pic)
    twin = PIC()
    twin.restore(pic.snapshot())
    for p in (pic, twin):
        p.raise_irq(1)
        _take(p)
        p.write(PIC_CMD, PIC_EOI)
        p.write(PIC_CMD, PIC_EOI)
    assert twin.snapshot() == pic.snapshot()
    assert twin.pending_vector() == pic.pending_vector() == 38


class PICPriorities(RuleBasedStateMachine):
    """Random raise/mask/acknowledge/EOI/base sequences keep the fully nested invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.pic = PIC()

    @rule(line=st.integers(0, 15))
    def raise_irq(self, line: int) -> None:
        self.pic.raise_irq(line)

    @rule(mask=st.integers(0, 0xFFFF))
    def set_mask(self, mask: int) -> None:
        self.pic.write(PIC_MASK, mask)

    @rule(base=st.sampled_from([0, 32, 40, 48, 240, 250]))
    def set_base(self, base: int) -> None:
        self.pic.write(PIC_BASE, base)

    @precondition(lambda self: self.pic.pending_vector() >= 0)
    @rule()
    def acknowledge(self) -> None:
        before = self.pic.in_service
        vector = self.pic.pending_vector()
        self.pic.acknowledge(vector)
        line = vector - self.pic.base
        # The new in-service IRQ outranks every one it interrupted.
        assert before & ((1 << (line + 1)) - 1) == 0
        assert self.pic.in_service == before | 1 << line

    @rule()
    def eoi(self) -> None:
        before = self.pic.in_service
        self.pic.write(PIC_CMD, PIC_EOI)
        assert self.pic.in_service == before & (before - 1)

    @rule(vector=st.integers(-1, 255))
    def wrong_acknowledge_raises(self, vector: int) -> None:
        if vector != self.pic.pending_vector() or vector < 0:
            snap = self.pic.snapshot()
            with pytest.raises(DeviceError):
                self.pic.acknowledge(vector)
            assert self.pic.snapshot() == snap

    @invariant()
    def presented_irq_is_the_best_one(self) -> None:
        pic = self.pic
        vector = pic.pending_vector()
        eligible = [
            n
            for n in range(16)
            if pic.requested >> n & 1
            and not pic.mask >> n & 1
            and all(n < m for m in range(16) if pic.in_service >> m & 1)
        ]
        assert vector == (pic.base + min(eligible) if eligible else -1)


TestPICPriorities = PICPriorities.TestCase
