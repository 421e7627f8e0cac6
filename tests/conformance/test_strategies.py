"""Generated guests: well defined (native runs end in their signature), shrinkable to the bare obstacle."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from cffi_core.isa.table import SENSITIVE_UNPRIVILEGED
from conformance.api import observe
from conformance.strategies import GuestProgram, guest_programs
from conformance.theorem import is_theorem_counterexample, smallest_counterexample
from reference_vmm.native import NativeVMM


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(program=guest_programs())
def test_generated_guests_run_natively_to_their_signature(program: GuestProgram):
    obs = observe(NativeVMM, program.image, program.config, profile="x86-2005")
    assert (obs.stop, obs.exit_code) == ("exit", 0), program.listing()
    assert b"data=" in obs.console and b"exceptions=" in obs.console


def test_listing_shows_the_body_as_written_and_disassembled():
    from conformance.strategies import Block

    program = GuestProgram(cpl=3, paging=True, flags=0x200, body=(Block(("pushf", "pop r2")),))
    listing = program.listing()
    assert "body at CPL 3, paging on, FLAGS 0x200" in listing
    assert "    pushf\n    pop r2\n" in listing
    assert program.body_mnemonics() == ["pushf", "pop"]
    assert program.sensitive_unprivileged() == ["pushf"]


def _x86_differs_from_classic(program: GuestProgram) -> bool:
    x86 = observe(NativeVMM, program.image, program.config, profile="x86-2005")
    classic = observe(NativeVMM, program.image, program.config, profile="classic-1974")
    return x86 != classic


def test_search_shrinks_a_difference_to_one_sensitive_instruction():
    # The machinery of the theorem test, on two bare machines: a guest tells x86-2005 from
    # classic-1974 only through an instruction that traps at CPL > 0 on one and not the other.
    found = smallest_counterexample(_x86_differs_from_classic, max_examples=100)
    assert found is not None
    assert is_theorem_counterexample(found), found.listing()
    assert found.cpl == 3 and set(found.body_mnemonics()) & SENSITIVE_UNPRIVILEGED
