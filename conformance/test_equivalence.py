"""Equivalence on the directed guests: under the VMM each guest's observation equals its native run's.

A paravirtual VMM (``guest_abi == "paravirt"``) runs each guest's paravirtual port
(``conformance.guests.paravirt``), held to the native guest's native run less the signature's
lines of machine state a paravirtual kernel does not have; a guest without a port is skipped
with its reason — an obstacle guest exists to execute the sensitive instruction
that paravirtualization removes from the guest (Fisher-Ogden 2006 §2.3.3).
"""

from __future__ import annotations

from functools import cache

import pytest

from cffi_core.profiles import PROFILES
from conformance.api import Observation, observe
from conformance.checks import deviation_expected, deviation_explained, equivalence_report, explained_directed
from conformance.guests import DIRECTED_GUESTS, DirectedGuest

# The guests whose CPL-0 part reads or writes state that a deprivileged guest kernel sees
# wrongly under trap-and-emulate on the x86-like profiles: sensitive, unprivileged
# instructions, for which Popek & Goldberg's Theorem 1 (1974) does not hold (§4.3).
SENSITIVE_UNPRIVILEGED = frozenset({"smsw", "sidt", "rdcs", "pushf", "popf", "iret"})
# Every profile without `classic` is x86-like to a VMM that does not use vmx (the vtx profiles
# are x86-64-2005 plus assists trap-and-emulate ignores).
X86_PROFILES = tuple(name for name, profile in PROFILES.items() if "classic" not in profile.features)
# The iopl guest enters ring 3 with IOPL 3 by an iret from CPL 0.  Under trap-and-emulate that
# iret runs unprivileged at the guest kernel's real ring, where the IOPL change is silently
# dropped (Fisher-Ogden 2006 §2.3.1, silent privilege failure), so ring 3's cli/sti/in/out trap.
# A deviation excuses only the difference it explains: with every sensitive, unprivileged
# instruction of the guest's own code (main up to the signature; the iopl guest's irets
# included) replaced by nop, the guest must run equivalently under the VMM, so the difference
# is the obstacle's and not a bug elsewhere (conformance.checks.explained_directed).
_DEVIATION_REASONS = {
    name: f"{name} is sensitive but not privileged (Popek & Goldberg 1974, Theorem 1)"
    for name in SENSITIVE_UNPRIVILEGED
} | {
    "iopl": "the iret that sets IOPL 3 for ring 3 runs unprivileged and drops the change silently (Popek & Goldberg 1974, Theorem 1)"
}


def _param(guest: DirectedGuest) -> pytest.ParameterSet:
    marks = [pytest.mark.popek_property("equivalence", category=guest.category)]
    if guest.name in _DEVIATION_REASONS:
        marks.append(
            pytest.mark.popek_deviation("trap-and-emulate", _DEVIATION_REASONS[guest.name], profiles=X86_PROFILES)
        )
    return pytest.param(guest, id=guest.name, marks=marks)


@cache
def _native(guest: DirectedGuest, profile: str) -> Observation:
    from reference_vmm.native import NativeVMM

    return observe(NativeVMM, guest.image(), guest.config, profile=profile)


@pytest.mark.popek_guest_abi("native", "paravirt")
@pytest.mark.parametrize("guest", [_param(g) for g in DIRECTED_GUESTS])
def test_directed_guest_is_equivalent(guest: DirectedGuest, vmm, popek_profile, popek_record):
    expected = _native(guest, popek_profile)
    ran = guest
    if vmm.guest_abi == "paravirt":
        from conformance.guests.paravirt import native_expectation, paravirt_build

        port = paravirt_build(guest.name)
        if isinstance(port, str):
            pytest.skip(port)
        # The native run less the signature's machine-state lines, which no paravirtual kernel
        # has (docs/paravirt-abi.md §8; conformance/guests/paravirt/__init__.py says which).
        ran, expected = port, native_expectation(expected)
    actual = observe(vmm, ran.image(), ran.config, profile=popek_profile)
    popek_record(**{k: v for k, v in actual.counters.items() if v})
    if expected.equivalent(actual):
        return
    report = equivalence_report(expected, actual, names=("native", vmm.name), program=ran.source())
    if deviation_expected() and explained_directed(vmm, popek_profile, guest.image(), guest.config):
        deviation_explained(report)
        return
    raise AssertionError("\n".join(report))
