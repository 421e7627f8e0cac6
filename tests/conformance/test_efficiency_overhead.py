"""The efficiency grader's overhead: what the host's core retires deprivileged beyond the guest's count is the VMM's, credited as no guest's and bounded on plain code."""

from __future__ import annotations

from conformance.guests import GUEST_DIR
from conformance.test_efficiency import (
    GUESTS,
    OVERHEAD_SLACK_PER_1000,
    SEQUENCE_BUDGET,
    Measured,
    guest_equ,
    shortfalls,
    transfers_overhead,
)

_BY_NAME = {g.name: g for g in GUESTS}
_FEATURES = frozenset({"seglimit"})


def test_what_the_core_retired_beyond_the_guest_count_is_not_direct_but_overhead():
    m = Measured(guest_instructions=1000, direct=1300, entries=0)
    assert m.direct_fraction == 1.0
    assert m.overhead == 300 and m.overhead_per_1000 == 300.0
    short = Measured(guest_instructions=1000, direct=700, entries=0)
    assert short.direct_fraction == 0.7 and short.overhead == 0


def test_plain_code_may_not_be_expanded():
    """compute's overhead bound is the slack alone: a translation that doubles plain code fails,
    however few its host entries, with the figures in the message."""
    compute = _BY_NAME["compute"]
    bound = compute.overhead_bound({"instructions": 50_000}, _FEATURES)
    assert bound == OVERHEAD_SLACK_PER_1000
    copied = Measured(guest_instructions=50_000, direct=50_010, entries=10)
    assert shortfalls(compute, copied, 5.0, bound) == []
    expanded = Measured(guest_instructions=50_000, direct=100_000, entries=10)
    (problem,) = shortfalls(compute, expanded, 5.0, bound)
    assert "50000 of the VMM's own (1000.0 per 1,000)" in problem and "at most 1.0 per 1,000" in problem


def test_transfers_get_a_short_sequence_each_and_no_more():
    """eff_calls allows SEQUENCE_BUDGET words for each of its five transfers a round."""
    eff_calls = _BY_NAME["eff_calls"]
    source = (GUEST_DIR / "eff_calls.s").read_text(encoding="utf-8")
    rounds = guest_equ(source, "ROUNDS")
    native = {"instructions": 60_000}
    bound = eff_calls.overhead_bound(native, _FEATURES)
    assert bound == transfers_overhead(source, native, _FEATURES)
    allowed = 5 * rounds * SEQUENCE_BUDGET
    assert abs(bound - (1000 * allowed / 60_000 + OVERHEAD_SLACK_PER_1000)) < 1e-9
    within = Measured(guest_instructions=60_000, direct=60_000 + allowed, entries=0)
    beyond = Measured(guest_instructions=60_000, direct=60_000 + allowed + 5 * rounds * 4, entries=0)
    assert shortfalls(eff_calls, within, 5.0, bound) == []
    assert len(shortfalls(eff_calls, beyond, 5.0, bound)) == 1


def test_guests_of_sensitive_instructions_have_no_overhead_bound():
    for name in ("system", "eff_ops"):
        assert _BY_NAME[name].overhead_bound({"instructions": 1000}, _FEATURES) is None


def test_a_vm_that_admits_emulation_is_believed_and_one_that_claims_more_is_not():
    """A translator whose long sequences make it emulate the rest of a slice still has the core
    retire more than the guest's count; its own count shows the emulated part."""
    n = 50_000
    emulating = Measured(guest_instructions=n, direct=60_000, entries=0, admitted=40_000)
    assert emulating.credited == 40_000 and emulating.direct_fraction == 0.8
    boasting = Measured(guest_instructions=n, direct=30_000, entries=0, admitted=n)
    assert boasting.credited == 30_000
    (problem,) = shortfalls(_BY_NAME["compute"], emulating, 5.0)
    assert "40000 of the guest's 50000 instructions (80.0%) ran directly" in problem
    assert "the VM counts 40000 guest_insns_direct" in problem
