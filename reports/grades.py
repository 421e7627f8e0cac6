"""Grades from results files: per run the property × category outcome counts, the unexpected
failures with their rerun commands, the expected deviations, and the cross-VMM summary."""

from __future__ import annotations

import shlex
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cffi_core.profiles import PROFILES
from conformance.plugin import PROPERTIES
from conformance.results import OUTCOMES, ResultsError, RunKey, RunResults, TestResult, load_results
from reports.junit import load_junit

__all__ = [
    "UNEXPECTED",
    "Grade",
    "collect_files",
    "counterexample",
    "grade",
    "load_runs",
    "rerun_command",
    "summary_table",
    "verdict",
]

UNEXPECTED = ("failed", "error")
"""Outcomes that make a grade fail (a strict xfail that passes is reported ``failed``)."""

UNCLASSIFIED = "(unclassified)"  # a test without a popek_property marker
NO_CATEGORY = "-"

# When two files hold the same test of the same run (a sharded CI matrix that overlapped), the
# worse outcome is kept: a merge never hides a failure.
# An outcome added to the format later ranks as the worst until it is placed here.
_SEVERITY = {name: rank for rank, name in enumerate(("passed", "skipped", "xfailed", "xpassed", "failed", "error"))}


def _severity(outcome: str) -> int:
    return _SEVERITY.get(outcome, len(_SEVERITY))


def collect_files(paths: Iterable[Path]) -> list[Path]:
    """The results files named by ``paths``: a directory stands for every ``*.json`` in it (sorted);
    a file stands for itself (``*.xml`` is read as JUnit XML, anything else as results JSON).
    ``ResultsError`` names a path that does not exist or a directory without results."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.glob("*.json") if p.is_file())
            if not files:
                raise ResultsError(f"{path}: no results files (*.json) in this directory")
            found += files
        elif path.exists():
            found.append(path)
        else:
            raise ResultsError(f"{path}: no such file or directory")
    return list(dict.fromkeys(found))


def load_runs(files: Sequence[Path]) -> list[RunResults]:
    """Read every file and merge the files of one run (same VMM class and profile), in the order
    first seen; tests are sorted by node id."""
    merged: dict[RunKey, RunResults] = {}
    runs = [run for path in files for run in (load_junit(path) if path.suffix == ".xml" else [load_results(path)])]
    for run in runs:
        into = merged.get(run.key)
        if into is None:
            merged[run.key] = run
            continue
        by_id = {t.nodeid: t for t in into.tests}
        for test in run.tests:
            old = by_id.get(test.nodeid)
            if old is None or _severity(test.outcome) > _severity(old.outcome):
                by_id[test.nodeid] = test
        into.tests = list(by_id.values())
    for run in merged.values():
        run.tests.sort(key=lambda t: t.nodeid)
    # Runs of one VMM together (VMMs in the order first seen), profiles in the manual's order.
    vmms = list(dict.fromkeys(key.vmm for key in merged))
    return sorted(merged.values(), key=lambda r: (vmms.index(r.key.vmm), _profile_rank(r.key.profile)))


def _profile_rank(profile: str) -> int:
    order = list(PROFILES)
    return order.index(profile) if profile in order else len(order)


@dataclass
class Grade:
    """One run graded: outcome counts per (property, category) and the tests worth showing."""

    run: RunResults
    counts: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    failures: list[TestResult] = field(default_factory=list)
    deviations: list[TestResult] = field(default_factory=list)
    xpasses: list[TestResult] = field(default_factory=list)
    skips: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        """True when no test of the run failed unexpectedly."""
        return not self.failures

    def properties(self) -> list[str]:
        """The properties this run has tests for, in the order of first appearance."""
        return list(dict.fromkeys(prop for prop, _ in self.counts))

    def property_counts(self, prop: str) -> Counter[str]:
        """The outcome counts of every category of ``prop`` together."""
        total: Counter[str] = Counter()
        for (p, _), counts in self.counts.items():
            if p == prop:
                total.update(counts)
        return total


def grade(run: RunResults) -> Grade:
    """Count the outcomes of ``run`` per property and category, and pick out its failures."""
    result = Grade(run)
    for test in sorted(run.tests, key=lambda t: (_property_rank(t.property), t.category or NO_CATEGORY, t.nodeid)):
        key = (test.property or UNCLASSIFIED, test.category or NO_CATEGORY)
        result.counts.setdefault(key, Counter())[test.outcome] += 1
        if test.outcome in UNEXPECTED:
            result.failures.append(test)
        elif test.outcome == "xfailed":
            result.deviations.append(test)
        elif test.outcome == "xpassed":
            result.xpasses.append(test)
        elif test.outcome == "skipped":
            result.skips[first_line(test.message) or "no reason given"] += 1
    return result


def _property_rank(prop: str | None) -> tuple[int, str]:
    # Popek & Goldberg's order (equivalence, safety, efficiency), then any other, then none.
    if prop is None:
        return (len(PROPERTIES) + 1, "")
    return (PROPERTIES.index(prop), "") if prop in PROPERTIES else (len(PROPERTIES), prop)


def first_line(text: str | None) -> str:
    """The first non-empty line of ``text`` (a reason's headline), or ``""``."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def counterexample(message: str | None) -> str:
    """The part of a failure report that explains it: the lines pytest marks ``E`` (the
    assertion's text: observation diff, guest program, hypothesis's falsifying example), without
    the traceback around them; the whole report when it has no such lines."""
    if not message:
        return "(no report recorded)"
    marked = [line[1:] for line in message.splitlines() if line == "E" or line.startswith("E ")]
    return textwrap.dedent("\n".join(marked)).strip("\n") if marked else message


def verdict(counts: Counter[str]) -> str:
    """One cell of the summary: how a property fared in one run.

    ``FAIL`` when any test failed unexpectedly; ``fails as expected`` when tests are xfail (a
    technique's documented deviation, e.g. trap-and-emulate's equivalence on x86-2005);
    ``pass``; ``skipped`` when nothing ran.  The counts follow in parentheses."""
    bad = counts["failed"] + counts["error"]
    ran = sum(counts[o] for o in OUTCOMES if o != "skipped")
    if bad:
        return f"FAIL ({bad} of {ran})"
    if counts["xfailed"]:
        return f"fails as expected ({counts['xfailed']} xfail, {counts['passed']} pass)"
    if ran:
        extra = f", {counts['xpassed']} xpass" if counts["xpassed"] else ""
        return f"pass ({counts['passed'] + counts['xpassed']}{extra})"
    return f"skipped ({counts['skipped']})" if counts["skipped"] else "-"


def summary_table(grades: Sequence[Grade]) -> tuple[list[str], list[list[str]]]:
    """The cross-VMM summary: one row per (VMM, property), one column per profile."""
    profiles = sorted(dict.fromkeys(g.run.key.profile for g in grades), key=_profile_rank)
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for g in grades:
        for prop in g.properties():
            rows.setdefault((g.run.key.vmm, prop), {})[g.run.key.profile] = verdict(g.property_counts(prop))
    headers = ["VMM", "property", *profiles]
    return headers, [[vmm, prop, *(cells.get(p, "not run") for p in profiles)] for (vmm, prop), cells in rows.items()]


def rerun_command(run: RunResults, test: TestResult) -> str:
    """The one-line command that reruns ``test`` of ``run`` alone, from any directory: a test of
    the installed suite is named by its module (``--pyargs conformance.test_x::test[...]``), not by
    a path relative to the directory the run was started in."""
    target = _pyargs(test.nodeid)
    parts = ["python", "-m", "pytest", *(["--pyargs", target] if target else [test.nodeid])]
    parts += ["--popek-vmm", run.key.vmm_class, "--popek-profile", run.key.profile]
    if run.hypothesis_profile and run.hypothesis_profile != "default":
        parts.append(f"--popek-hypothesis-profile={run.hypothesis_profile}")
    return shlex.join(parts)


def _pyargs(nodeid: str) -> str | None:
    """``conformance.test_x::test[...]`` for a node id of the conformance package (its path may
    be relative to any rootdir: ``conformance/test_x.py::...``, ``.../conformance/test_x.py::...``),
    else None."""
    path, sep, rest = nodeid.partition("::")
    parts = path.replace("\\", "/").split("/")
    if not sep or len(parts) < 2 or parts[-2] != "conformance" or not parts[-1].endswith(".py"):
        return None
    return f"conformance.{parts[-1][:-3]}::{rest}"
