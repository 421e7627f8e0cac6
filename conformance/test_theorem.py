"""The theorem, shown: trap-and-emulate passes equivalence on classic-1974 and fails it on x86-2005.

These tests are about the reference VMM ``trap-and-emulate`` (``conformance.theorem``), so they
run, recorded under that VMM, in a run that selects it (the default selection does); they are
skipped, with the reason, in other runs and while it is not installed.  Both profiles are fixed here, whatever ``--popek-profile``
says: the theorem compares them.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given

from conformance import hypothesis_profiles
from conformance.strategies import GuestProgram, guest_programs
from conformance.theorem import (
    CLASSIC_PROFILE,
    MAX_COUNTEREXAMPLE_INSTRUCTIONS,
    THEOREM_VMM,
    X86_PROFILE,
    difference,
    is_theorem_counterexample,
    smallest_counterexample,
)

# Recorded as equivalence tests of the VMM they name (category "theorem").
_PROPERTY = pytest.mark.popek_property("equivalence", category="theorem")
_TRAP_AND_EMULATE = pytest.mark.parametrize("vmm", [THEOREM_VMM], indirect=True)


@_PROPERTY
@_TRAP_AND_EMULATE
def test_trap_and_emulate_is_equivalent_on_the_classically_virtualizable_machine(vmm):
    """Theorem 1's premise holds on classic-1974 (every sensitive instruction traps at CPL > 0),
    so trap-and-emulate is equivalent on every generated guest."""

    @hypothesis_profiles.settings(suppress_health_check=[HealthCheck.too_slow])
    @given(program=guest_programs())
    def equivalent_on_classic(program: GuestProgram) -> None:
        diff = difference(vmm, CLASSIC_PROFILE, program)
        assert diff is None, "\n".join(
            [f"{vmm.name} differs from native on {CLASSIC_PROFILE}:", *diff, program.listing()]
        )

    equivalent_on_classic()


@_PROPERTY
@_TRAP_AND_EMULATE
def test_trap_and_emulate_fails_on_the_x86_machine_by_one_sensitive_instruction(vmm, popek_record):
    """On x86-2005 the premise fails: hypothesis finds a guest trap-and-emulate gets wrong and
    shrinks it to one or two instructions, one of them sensitive and unprivileged."""
    found = smallest_counterexample(
        lambda program: difference(vmm, X86_PROFILE, program) is not None,
        max_examples=max(100, hypothesis_profiles.settings().max_examples),
    )
    assert found is not None, (
        f"{vmm.name} was equivalent on every generated guest on {X86_PROFILE}: Theorem 1 says a "
        "machine with sensitive unprivileged instructions cannot be virtualized by trap-and-emulate"
    )
    popek_record(counterexample_instructions=len(found.body_words()))
    diff = difference(vmm, X86_PROFILE, found) or []
    assert is_theorem_counterexample(found), "\n".join(
        [
            f"the smallest guest {vmm.name} gets wrong on {X86_PROFILE} is not {MAX_COUNTEREXAMPLE_INSTRUCTIONS} "
            "or fewer instructions including a sensitive unprivileged one:",
            found.listing(),
            "difference:",
            *diff,
        ]
    )
