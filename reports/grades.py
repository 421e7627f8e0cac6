"""Grades from results files: per run the property × category outcome counts, the unexpected
failures with their rerun commands, the expected deviations, and the cross-VMM summary."""

from __future__ import annotations

import shlex
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cffi_core.profiles import PROFILES
from conformance.plugin import PROPERTIES
from conformance.results import OUTCOMES, ResultsError, RunKey, RunResults, TestResult, load_results
from reports.junit import load_junit

__all__ = [
    "UNEXPECTED",
    "Grade",
    "Standing",
    "collect_files",
    "counterexample",
    "grade",
    "load_runs",
    "ranking",
    "rerun_command",
    "shared_names",
    "short_verdict",
    "summary_blocks",
    "summary_table",
    "verdict",
    "vmm_labels",
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
        # Parts of a run that were each partial (a sharded matrix) may add up to the whole, or
        # not: the merge says what each part said, never more than was run.
        reasons = [r for r in (into.partial, run.partial) if r]
        into.partial = "; ".join(dict.fromkeys(reasons)) or None
    for run in merged.values():
        run.tests.sort(key=lambda t: t.nodeid)
    # Runs of one VMM together (VMMs in the order first seen, told apart by their class, never by
    # their name: two submissions may share a name), profiles in the manual's order.
    vmms = list(dict.fromkeys(key.vmm_class for key in merged))
    return sorted(merged.values(), key=lambda r: (vmms.index(r.key.vmm_class), _profile_rank(r.key.profile)))


def _profile_rank(profile: str) -> tuple[int, str]:
    # A profile with added features (vtx-2006+tpr_shadow) follows its base profile.
    order = list(PROFILES)
    base = profile.split("+", 1)[0]
    return (order.index(base) if base in order else len(order), profile)


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


def vmm_labels(keys: Iterable[RunKey]) -> dict[str, str]:
    """How each VMM class among ``keys`` is named in tables: its ``name``, or, for a name that
    two classes share (two submissions that kept the template's name), ``name (module:Class)``:
    submissions are told apart by their class, never merged by their name."""
    names: dict[str, str] = {}
    for key in keys:
        names.setdefault(key.vmm_class, key.vmm)
    counts = Counter(names.values())
    return {cls: name if counts[name] == 1 else f"{name} ({cls})" for cls, name in names.items()}


def shared_names(keys: Iterable[RunKey]) -> dict[str, list[str]]:
    """The VMM names that more than one class among ``keys`` uses, with those classes (a
    warning for the instructor: the summary keeps them apart by class)."""
    by_name: dict[str, list[str]] = {}
    for key in keys:
        classes = by_name.setdefault(key.vmm, [])
        if key.vmm_class not in classes:
            classes.append(key.vmm_class)
    return {name: classes for name, classes in by_name.items() if len(classes) > 1}


def _properties(grades: Sequence[Grade]) -> list[str]:
    found = {prop for g in grades for prop in g.properties()}
    return sorted(found, key=lambda p: (_property_rank(p if p != UNCLASSIFIED else None), p))


def summary_table(grades: Sequence[Grade]) -> tuple[list[str], list[list[str]]]:
    """The cross-VMM summary: one row per run (VMM × profile: only the profiles each VMM ran),
    one column per property; a partial run says so in its profile cell."""
    labels = vmm_labels(g.run.key for g in grades)
    props = _properties(grades)
    rows = []
    for g in grades:
        counts = {prop: g.property_counts(prop) for prop in g.properties()}
        profile = g.run.key.profile + (" (partial)" if g.run.partial else "")
        rows.append(
            [labels[g.run.key.vmm_class], profile, *(verdict(counts[p]) if p in counts else "-" for p in props)]
        )
    return ["VMM", "profile", *props], rows


def short_verdict(counts: Counter[str]) -> str:
    """``verdict`` in a few characters, for the console: ``pass 14``, ``FAIL 2/14``, ``xfail 3
    pass 10``, ``skip 5``, ``-``."""
    bad = counts["failed"] + counts["error"]
    ran = sum(counts[o] for o in OUTCOMES if o != "skipped")
    if bad:
        return f"FAIL {bad}/{ran}"
    if counts["xfailed"]:
        passed = counts["passed"] + counts["xpassed"]
        return f"xfail {counts['xfailed']}" + (f" pass {passed}" if passed else "")
    if ran:
        return f"pass {ran}"
    return f"skip {counts['skipped']}" if counts["skipped"] else "-"


def summary_blocks(grades: Sequence[Grade]) -> list[tuple[str, list[str], list[list[str]]]]:
    """The console's closing summary, narrow enough for 100 columns: one block per VMM (title,
    headers, rows), a row per profile it ran, a column per property, ``short_verdict`` cells."""
    labels = vmm_labels(g.run.key for g in grades)
    blocks: dict[str, tuple[str, list[str], list[list[str]]]] = {}
    for g in grades:
        key = g.run.key
        if key.vmm_class not in blocks:
            mine = [h for h in grades if h.run.key.vmm_class == key.vmm_class]
            title = f"{labels[key.vmm_class]}: {key.technique}"
            blocks[key.vmm_class] = (title, ["profile", *_properties(mine), "unexpected"], [])
        _, headers, rows = blocks[key.vmm_class]
        counts = {prop: short_verdict(g.property_counts(prop)) for prop in g.properties()}
        profile = key.profile + (" (partial)" if g.run.partial else "")
        rows.append([profile, *(counts.get(p, "-") for p in headers[1:-1]), len(g.failures)])
    return list(blocks.values())


@dataclass(frozen=True)
class Standing:
    """One VMM's place in a class's ranking (``ranking``)."""

    rank: int
    vmm_class: str
    label: str
    technique: str
    held: tuple[str, ...]
    """The properties with no unexpected failure on any profile (of those the VMM was tested on)."""
    properties: dict[str, str]
    """Per property, its verdict over every run of the VMM (``short_verdict`` of the summed counts)."""
    runs: int
    clean_runs: int
    failures: int
    passed: int
    partial: bool

    @property
    def ok(self) -> bool:
        """True when no run of the VMM has an unexpected failure."""
        return self.runs > 0 and self.clean_runs == self.runs


def ranking(grades: Sequence[Grade]) -> list[Standing]:
    """The VMMs of ``grades`` (told apart by class) ranked: most properties held on every profile
    first, then the larger share of runs without an unexpected failure, then fewer unexpected
    failures, then more passing tests; equal keys share a rank (1, 1, 3), ordered by label."""
    labels = vmm_labels(g.run.key for g in grades)
    mine: dict[str, list[Grade]] = {}
    for g in grades:
        mine.setdefault(g.run.key.vmm_class, []).append(g)
    props = _properties(grades)
    unranked = []
    for cls, runs in mine.items():
        totals = {p: sum((g.property_counts(p) for g in runs), Counter()) for p in props}
        tested = [p for p in props if sum(totals[p].values())]
        held = tuple(p for p in tested if not totals[p]["failed"] + totals[p]["error"])
        clean = sum(1 for g in runs if g.ok)
        passed = sum(1 for g in runs for t in g.run.tests if t.outcome in ("passed", "xfailed"))
        unranked.append(
            Standing(
                rank=0,
                vmm_class=cls,
                label=labels[cls],
                technique=runs[0].run.key.technique,
                held=held,
                properties={p: short_verdict(totals[p]) for p in tested},
                runs=len(runs),
                clean_runs=clean,
                failures=sum(len(g.failures) for g in runs),
                passed=passed,
                partial=any(g.run.partial for g in runs),
            )
        )

    def merit(s: Standing) -> tuple[int, float, int, int]:
        return (-len(s.held), -s.clean_runs / s.runs, s.failures, -s.passed)

    unranked.sort(key=lambda s: (merit(s), s.label))
    ranked: list[Standing] = []
    for i, s in enumerate(unranked):
        rank = ranked[-1].rank if ranked and merit(ranked[-1]) == merit(s) else i + 1
        ranked.append(replace(s, rank=rank))
    return ranked


def rerun_command(run: RunResults, test: TestResult) -> str:
    """The one-line command that reruns ``test`` of ``run`` alone, from any directory: a test of
    the installed suite is named by its module (``--pyargs conformance.test_x::test[...]``), not by
    a path relative to the directory the run was started in, and a VMM that is not installed has
    its folder on ``PYTHONPATH`` (``RunResults.vmm_path``)."""
    target = _pyargs(test.nodeid)
    parts = ["python", "-m", "pytest", *(["--pyargs", target] if target else [test.nodeid])]
    parts += ["--popek-vmm", run.key.vmm_class, "--popek-profile", run.key.profile]
    if run.hypothesis_profile and run.hypothesis_profile != "default":
        parts.append(f"--popek-hypothesis-profile={run.hypothesis_profile}")
    # A VMM graded from its folder (a submission) imports from anywhere with that folder named.
    env = f"PYTHONPATH={shlex.quote(run.vmm_path)} " if run.vmm_path else ""
    return env + shlex.join(parts)


def _pyargs(nodeid: str) -> str | None:
    """``conformance.test_x::test[...]`` for a node id of the conformance package (its path may
    be relative to any rootdir: ``conformance/test_x.py::...``, ``.../conformance/test_x.py::...``),
    else None."""
    path, sep, rest = nodeid.partition("::")
    parts = path.replace("\\", "/").split("/")
    if not sep or len(parts) < 2 or parts[-2] != "conformance" or not parts[-1].endswith(".py"):
        return None
    return f"conformance.{parts[-1][:-3]}::{rest}"
