"""Equivalence on the directed guests: under the VMM each guest's observation equals its native run's."""

from __future__ import annotations

from functools import cache

import pytest

from conformance.api import Observation, observe
from conformance.checks import assert_equivalent
from conformance.guests import DIRECTED_GUESTS, DirectedGuest

# The guests whose CPL-0 part reads or writes state that a deprivileged guest kernel sees
# wrongly under trap-and-emulate on the x86-like profiles: sensitive, unprivileged
# instructions, for which Popek & Goldberg's Theorem 1 (1974) does not hold (§4.3).
SENSITIVE_UNPRIVILEGED = frozenset({"smsw", "sidt", "rdcs", "pushf", "popf", "iret"})
X86_PROFILES = ("x86-2005", "x86-64-2005")


def _param(guest: DirectedGuest) -> pytest.ParameterSet:
    marks = [pytest.mark.popek_property("equivalence", category=guest.category)]
    if guest.name in SENSITIVE_UNPRIVILEGED:
        marks.append(
            pytest.mark.popek_deviation(
                "trap-and-emulate",
                f"{guest.name} is sensitive but not privileged (Popek & Goldberg 1974, Theorem 1)",
                profiles=X86_PROFILES,
            )
        )
    return pytest.param(guest, id=guest.name, marks=marks)


@cache
def _native(guest: DirectedGuest, profile: str) -> Observation:
    from reference_vmm.native import NativeVMM

    return observe(NativeVMM, guest.image(), guest.config, profile=profile)


@pytest.mark.parametrize("guest", [_param(g) for g in DIRECTED_GUESTS])
def test_directed_guest_is_equivalent(guest: DirectedGuest, vmm, popek_profile, popek_record):
    expected = _native(guest, popek_profile)
    actual = observe(vmm, guest.image(), guest.config, profile=popek_profile)
    popek_record(**{k: v for k, v in actual.counters.items() if v})
    assert_equivalent(expected, actual, names=("native", vmm.name), program=guest.source())
