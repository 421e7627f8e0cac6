"""Generated guests: well defined (native runs end in their signature), shrinkable to the bare obstacle."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import HealthCheck, Phase, given, settings

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


def _lines(program: GuestProgram) -> list[str]:
    return [line.strip() for line in program.body_source()]


def _after(program: GuestProgram, first: str, then: tuple[str, ...]) -> bool:
    """``first`` is immediately followed by an instruction whose mnemonic is in ``then``."""
    return any(a == first and b.split(" ")[0] in then for a, b in pairwise(_lines(program)))


def _has(program: GuestProgram, mnemonic: str) -> bool:
    """Some line of the body (as written: no assembly, so that the search stays fast) is ``mnemonic``."""
    return any(x.split(" ")[0] == mnemonic for x in _lines(program))


def _remapped_after_use(program: GuestProgram) -> bool:
    lines = _lines(program)
    calls = [i for i, x in enumerate(lines) if x == "int 0x42"]
    return program.cpl == 3 and bool(calls) and any(x.startswith("li r9, 0x20") for x in lines[: calls[-1] - 3])


_EXITING = ("out", "in", "mfcr", "mtcr", "rdtsc", "int", "vmcall", "ud", "rdmsr", "invlpg", "cli", "sd", "hlt")
_ANY = (0, 1, 2, 3)
# What the generator must be able to draw: the blind spots of the suite's earlier guests.
# Each: (the CPLs and paging drawn from, the property of the program).
_BLIND_SPOTS = {
    "a body single-stepped from its start": (_ANY, None, lambda p: p.flags & 0x100 and len(p.body) > 0),
    "a body at CPL 1": ((1, 2), None, lambda p: p.cpl == 1 and len(p.body) > 0),
    "a body at CPL 2 with paging": ((1, 2), True, lambda p: p.cpl == 2 and len(p.body) > 0),
    "an exiting instruction right after sti": (_ANY, None, lambda p: _after(p, "sti", _EXITING)),
    "sti; hlt with the timer armed": (_ANY, None, lambda p: _after(p, "sti", ("hlt",)) and "out 0x41, r9" in _lines(p)),
    "the TPR raised over a pending interrupt and read back": (
        (0,),
        None,
        lambda p: (
            _after(p, "mtcr cr8, r9", ("sti",)) and any(x.startswith("mfcr") and x.endswith("cr8") for x in _lines(p))
        ),
    ),
    "vmcall": (_ANY, None, lambda p: _has(p, "vmcall")),
    "rdtsc and TIMER_NOW": (
        _ANY,
        None,
        lambda p: _has(p, "rdtsc") and any(x.endswith(", 0x42") for x in _lines(p)),
    ),
    "a TSC write read back after an exit": ((0,), None, lambda p: _after(p, "wrmsr r9, r10", ("out",))),
    "a CR4 write with PL = 3": ((0,), None, lambda p: _after(p, "li r9, 0x3", ("mtcr",))),
    "an MSR beyond the bitmap": ((0,), None, lambda p: bool({"li r9, 0x4000", "li r9, 0xffffffff"} & set(_lines(p)))),
    "a load at the end of RAM": (_ANY, None, lambda p: "li r9, 0x100000" in _lines(p)),
    "console input": (_ANY, None, lambda p: bool(p.console_input) and _has(p, "in")),
    "ring 3 uses a page, the kernel remaps it, ring 3 uses it again": ((3,), True, _remapped_after_use),
    "a CR3 switch to the second address space": (_ANY, True, lambda p: "li r9, 0x14000" in _lines(p)),
    "invlpg of the top page": ((0,), None, lambda p: _after(p, "li r9, 0xfffffffffffff000", ("invlpg",))),
    "a first touch of a data page in sti's shadow": (
        (0,),
        None,
        lambda p: any(a == "sti" and b.startswith(("ld", "sd")) and "4096]" in b for a, b in pairwise(_lines(p))),
    ),
}


@pytest.mark.parametrize("what", sorted(_BLIND_SPOTS))
def test_generator_draws_the_blind_spots(what: str):
    from hypothesis import find

    cpls, paging, wanted = _BLIND_SPOTS[what]
    program = find(
        guest_programs(cpl=cpls, paging=paging),
        wanted,
        # Generation alone: the test asks that the generator draws the case, and find's shrinking of
        # the first hit to a minimal program cost nine tenths of the time (some 60 s of the suite).
        settings=settings(
            max_examples=2_000, database=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck)
        ),
    )
    assert wanted(program)
