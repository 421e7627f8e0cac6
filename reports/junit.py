"""Results from a JUnit XML file (``pytest --junitxml``) of a conformance run, for ``popek report``.

The plugin attaches each VMM test's run and property to the test as the user property
``popek`` (and its counters as ``popek_counters``); pytest's junitxml writes them as
``<property name="popek" value="{...}">`` with the dict's Python literal as the value.  Tests
without it (not tests of a VMM) are left out.  JUnit XML has no versions and no hypothesis
profile, and a non-strict xpass reads as a pass.
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path

from conformance.results import ResultsError, RunKey, RunResults, TestResult

__all__ = ["load_junit"]

_RUN = "popek"
_COUNTERS = "popek_counters"


def load_junit(path: Path) -> list[RunResults]:
    """The runs recorded in the JUnit XML file ``path``, in the order first seen;
    ``ResultsError`` names the file (and the test) when it cannot be read."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except (ET.ParseError, OSError) as e:
        raise ResultsError(f"{path}: not readable JUnit XML: {e}") from None
    if root.tag not in ("testsuites", "testsuite"):
        raise ResultsError(f"{path}: not JUnit XML (root element <{root.tag}>)")
    runs: dict[RunKey, RunResults] = {}
    for case in root.iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        if _RUN not in props:
            continue
        nodeid = _nodeid(case)
        info = _literal(path, nodeid, _RUN, props[_RUN])
        try:
            key = RunKey(*(str(info[k]) for k in ("vmm", "technique", "vmm_class", "profile")))
        except KeyError as e:
            raise ResultsError(f"{path}: {nodeid}: property {_RUN} has no key {e}") from None
        test = TestResult(nodeid, info.get("property"), info.get("category"))
        test.duration = float(case.get("time") or 0.0)
        test.outcome, test.message = _outcome(case)
        if _COUNTERS in props:
            counters = _literal(path, nodeid, _COUNTERS, props[_COUNTERS])
            test.counters = {str(k): v for k, v in counters.items() if type(v) is int}
        runs.setdefault(key, RunResults(key, [], source=path)).tests.append(test)
    return list(runs.values())


def _literal(path: Path, nodeid: str, name: str, value: str | None) -> dict:
    try:
        parsed = ast.literal_eval(value or "")
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise ResultsError(f"{path}: {nodeid}: property {name} is not a dict literal")
    return parsed


def _nodeid(case: ET.Element) -> str:
    # junitxml writes "pkg.module[.Class]" and the test's name; a part that starts with "Test"
    # is taken for a class (conformance tests are functions, so this rarely matters).
    parts = (case.get("classname") or "").split(".")
    classes: list[str] = []
    while parts and parts[-1][:4] == "Test":
        classes.insert(0, parts.pop())
    return "::".join(["/".join(parts) + ".py", *classes, case.get("name") or "?"])


def _outcome(case: ET.Element) -> tuple[str, str | None]:
    for tag, outcome in (("error", "error"), ("failure", "failed")):
        found = case.find(tag)
        if found is not None:
            return outcome, (found.text or found.get("message") or "").strip() or None
    skipped = case.find("skipped")
    if skipped is not None:
        reason = skipped.get("message") or (skipped.text or "").strip() or None
        return ("xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"), reason
    return "passed", None
