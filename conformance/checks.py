"""Assertion helpers of the conformance suite: an equivalence failure that explains itself."""

from __future__ import annotations

from conformance.api import Observation

__all__ = ["assert_equivalent", "equivalence_report"]

_PROGRAM_LINES = 200  # a guest's listing beyond this is cut: the diff is the point


def equivalence_report(
    expected: Observation,
    actual: Observation,
    *,
    names: tuple[str, str] = ("native", "vmm"),
    program: str | None = None,
) -> list[str]:
    """The lines that explain why two observations differ: one per differing field
    (``Observation.diff``), then the guest program when given."""
    lines = ["observations differ (Popek & Goldberg 1974: equivalence):"]
    lines += [f"  {line}" for line in expected.diff(actual, names)]
    if program is not None:
        text = program.rstrip("\n").splitlines()
        lines.append("guest program:")
        lines += [f"  | {line}" for line in text[:_PROGRAM_LINES]]
        if len(text) > _PROGRAM_LINES:
            lines.append(f"  | ... ({len(text) - _PROGRAM_LINES} more lines)")
    return lines


def assert_equivalent(
    expected: Observation,
    actual: Observation,
    *,
    names: tuple[str, str] = ("native", "vmm"),
    program: str | None = None,
) -> None:
    """Raise AssertionError, with the differences and the program, unless the two runs are
    indistinguishable to the guest (console, exit code, disk, stop; counters ignored)."""
    if not expected.equivalent(actual):
        raise AssertionError("\n".join(equivalence_report(expected, actual, names=names, program=program)))
