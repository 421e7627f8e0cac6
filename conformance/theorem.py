"""Popek & Goldberg's Theorem 1 (1974), shown: the search for the smallest guest a VMM gets wrong.

Theorem 1: a VMM may be built for a machine when its sensitive instructions are a subset of its
privileged ones.  ``classic-1974`` is such a machine, so a trap-and-emulate VMM passes
equivalence there; ``x86-2005`` has sensitive instructions that do not trap
(docs/architecture.md §4.3), so the same VMM must fail it, and hypothesis finds and shrinks a
counterexample to the bare obstacle: a body of one or two instructions including a sensitive,
unprivileged one (the instruction table's class).  ``conformance/test_theorem.py`` asserts both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st

from conformance.api import VMM, VMMError, observe
from conformance.strategies import GuestProgram, guest_programs

__all__ = [
    "CLASSIC_PROFILE",
    "MAX_COUNTEREXAMPLE_INSTRUCTIONS",
    "THEOREM_VMM",
    "X86_PROFILE",
    "difference",
    "is_theorem_counterexample",
    "smallest_counterexample",
]

THEOREM_VMM = "trap-and-emulate"  # the entry-point name of the reference VMM the theorem is about
CLASSIC_PROFILE = "classic-1974"
X86_PROFILE = "x86-2005"
MAX_COUNTEREXAMPLE_INSTRUCTIONS = 2


def difference(vmm: type[VMM], profile: str, program: GuestProgram) -> list[str] | None:
    """How ``program`` under ``vmm`` differs from its native run on ``profile`` (None: it does
    not).  A VMM that raises is a difference too, described by its error."""
    from reference_vmm.native import NativeVMM

    expected = observe(NativeVMM, program.image, program.config, profile=profile)
    try:
        actual = observe(vmm, program.image, program.config, profile=profile)
    except VMMError as e:
        return [f"the VMM raised: {e}"]
    lines = expected.diff(actual, ("native", vmm.name))
    return lines or None


class _Wrong(Exception):
    """Raised inside the search for a program the predicate holds for."""


def smallest_counterexample(
    wrong: Callable[[GuestProgram], bool],
    *,
    max_examples: int,
    programs: st.SearchStrategy[GuestProgram] | None = None,
) -> GuestProgram | None:
    """The simplest generated guest for which ``wrong`` holds, or None if ``max_examples``
    found none.  Derandomized: the same answer every run.

    The search is a ``@given`` test that fails on such a guest: hypothesis shrinks the failure
    and replays the smallest one last.  Its shrinker sometimes cannot delete a whole block
    (the choices after it no longer line up), so single blocks are then dropped while ``wrong``
    still holds — the deletion pass of TestRIG's shrinker (conformance-anchors §2)."""
    found: list[GuestProgram] = []

    @settings(
        max_examples=max_examples,
        database=None,
        derandomize=True,
        deadline=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(program=programs or guest_programs())
    def search(program: GuestProgram) -> None:
        if wrong(program):
            found.append(program)
            raise _Wrong

    try:
        search()
    except _Wrong:
        return _drop_blocks(found[-1], wrong)
    return None


def _drop_blocks(program: GuestProgram, wrong: Callable[[GuestProgram], bool]) -> GuestProgram:
    """Remove single body blocks, first to last, as long as ``wrong`` still holds."""
    i = 0
    while i < len(program.body):
        candidate = replace(program, body=program.body[:i] + program.body[i + 1 :])
        if wrong(candidate):
            program = candidate
        else:
            i += 1
    return program


def is_theorem_counterexample(program: GuestProgram) -> bool:
    """True for a body of one or two instructions including a sensitive, unprivileged one."""
    return 1 <= len(program.body_words()) <= MAX_COUNTEREXAMPLE_INSTRUCTIONS and bool(program.sensitive_unprivileged())
