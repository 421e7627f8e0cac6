"""Equivalence on generated guests whose body runs at CPL 1 or 2: the rings a VMM may compress or alias."""

from __future__ import annotations

import pytest
from hypothesis import example, given

from conformance.strategies import guest_programs
from conformance.test_equivalence import X86_PROFILES
from conformance.test_generated import _BT_DEVIATION, _SETTINGS, _check, compression_example, sensitive_example

# Rings 1 and 2 make supervisor accesses (docs/architecture.md §4.1, §7.4) and run only the
# user- and IOPL-class instructions (§4.2).  A VMM that runs the guest kernel in ring 1 must
# still tell the guest's own ring 1 from it.  On the x86-like profiles trap-and-emulate cannot
# see the sensitive, unprivileged instructions at these rings either, and the guest kernel's
# iret to ring 1 or 2 pops the real ring the kernel already runs at: the VMM never sees it, and
# the body keeps the kernel's rights (ring aliasing, Popek & Goldberg 1974, Theorem 1; Robin &
# Irvine 2000).  A failure is excused only when the body behaves as the same body entered at
# ring 0 once the sensitive blocks are gone (conformance.checks.explained_by_deviation).
_DEVIATION = pytest.mark.popek_deviation(
    "trap-and-emulate",
    "sensitive unprivileged instructions (smsw, sidt, rdcs, pushf, popf, iret) run unseen, and the guest "
    "kernel's iret to CPL 1-2 is not seen, so the body keeps the kernel's rights (ring aliasing): the "
    "x86-like machine is not classically virtualizable (Popek & Goldberg 1974, Theorem 1)",
    profiles=X86_PROFILES,
)


@pytest.mark.popek_property("equivalence", category="generated-rings")
@_DEVIATION
@_BT_DEVIATION
@_SETTINGS
@given(program=guest_programs(cpl=(1, 2)))
@example(program=sensitive_example(1))
@example(program=compression_example(1))
def test_generated_ring_guest_is_equivalent(vmm, popek_profile, program):
    """Bodies at guest CPL 1 and 2 (entered by iret, TF drawn): privileged instructions trap,
    IOPL-class ones trap at IOPL 0, paging treats the ring as supervisor."""
    _check(vmm, popek_profile, program, ring_aliasing=True)
