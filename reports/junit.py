"""JUnit XML of conformance runs: read one (``pytest --junitxml``, for ``popek report``) and write one from results.

The plugin attaches each VMM test's run and property to the test as the user property
``popek`` (its counters as ``popek_counters``, its coverage cells as ``popek_coverage``, the
failure an expected deviation produced as ``popek_deviation``), each value a JSON document;
pytest's junitxml writes them as ``<property name="popek" value="{...}">``.  Files written
before the values were JSON hold a Python dict literal there, which is read too.  Tests without
the ``popek`` property (not tests of a VMM) are left out.

``write_junit`` writes the same properties from loaded results (``popek grade --junitxml``), one
``<testsuite>`` per run, and adds what pytest's file lacks: the exact outcome (pytest's JUnit
has no xpass), the versions and hypothesis profile of the run, and the text of an expected
deviation's failure inside its ``<skipped>`` element.  A file pytest wrote has no versions and
no hypothesis profile, and there a non-strict xpass reads as a pass.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conformance.results import OUTCOMES, ResultsError, RunKey, RunResults, TestResult

__all__ = ["load_junit", "write_junit"]

_RUN = "popek"
_COUNTERS = "popek_counters"
_COVERAGE = "popek_coverage"
_DEVIATION = "popek_deviation"
_SUITE = "popek_run"  # a <testsuite> property of write_junit's files: versions, hypothesis profile
_RUN_KEYS = ("vmm", "technique", "vmm_class", "profile")


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
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite") or [root]
    for suite in suites:
        suite_props = {p.get("name"): p.get("value") for p in suite.findall("properties/property")}
        env = (
            _document(path, suite.get("name") or "testsuite", _SUITE, suite_props[_SUITE])
            if _SUITE in suite_props
            else {}
        )
        for case in suite.iter("testcase"):
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            if _RUN not in props:
                continue
            nodeid = _nodeid(case)
            info = _document(path, nodeid, _RUN, props[_RUN])
            try:
                key = RunKey(*(str(info[k]) for k in _RUN_KEYS))
            except KeyError as e:
                raise ResultsError(f"{path}: {nodeid}: property {_RUN} has no key {e}") from None
            nodeid = str(info.get("nodeid") or nodeid)  # write_junit records it exactly
            test = TestResult(nodeid, info.get("property"), info.get("category"))
            test.duration = float(case.get("time") or 0.0)
            test.outcome, test.message = _outcome(case)
            if info.get("outcome") in OUTCOMES:
                test.outcome = info["outcome"]
            if test.outcome == "xfailed" and _DEVIATION in props:
                failure = props[_DEVIATION] or ""
                with contextlib.suppress(ValueError):  # not JSON: the text itself
                    failure = json.loads(failure)
                if isinstance(failure, str) and failure and failure not in (test.message or ""):
                    test.message = f"{test.message}\n{failure}" if test.message else failure
            for name, attr in ((_COUNTERS, "counters"), (_COVERAGE, "coverage")):
                if name in props:
                    values = _document(path, nodeid, name, props[name])
                    setattr(test, attr, {str(k): v for k, v in values.items() if type(v) is int})
            run = runs.setdefault(key, RunResults(key, [], source=path))
            if env and not run.versions:
                versions = env.get("versions")
                run.versions = {str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {}
                hp = env.get("hypothesis_profile")
                run.hypothesis_profile = hp if isinstance(hp, str) else None
            run.tests.append(test)
    return list(runs.values())


def _document(path: Path, nodeid: str, name: str, value: str | None) -> dict:
    """A property's value: a JSON object, or (files written before it was JSON) a dict literal."""
    parsed: Any = None
    try:
        parsed = json.loads(value or "")
    except ValueError:
        try:
            parsed = ast.literal_eval(value or "")
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
    if not isinstance(parsed, dict):
        raise ResultsError(f"{path}: {nodeid}: property {name} is not a dict literal or JSON object")
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
        reason = skipped.get("message") or ""
        text = (skipped.text or "").strip()
        if skipped.get("type") == "pytest.xfail":
            # write_junit puts the whole message (reason, then the failure it expected) in the text.
            return "xfailed", (text if text.startswith(reason) else "\n".join(filter(None, (reason, text)))) or None
        return "skipped", reason or text or None
    return "passed", None


# ---- writing ------------------------------------------------------------------------------

# Characters XML 1.0 cannot hold, shown as pytest's junitxml shows them (#xNN) so the file parses.
_ILLEGAL_XML = re.compile("[^\u0009\u000a\u000d\u0020-\u007e\u0080-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: object) -> str:
    return _ILLEGAL_XML.sub(lambda m: f"#x{ord(m.group()):02X}", str(text))


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _classname_and_name(nodeid: str) -> tuple[str, str]:
    # As pytest's junitxml spells a node id (mangle_test_address), so that CI test viewers group
    # popek's file like pytest's and load_junit reads the node id back from either.
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0][:500]


def write_junit(runs: Sequence[RunResults], path: Path) -> None:
    """Write ``runs`` to ``path`` as JUnit XML: one ``<testsuite>`` per run, named
    ``"<vmm> on <profile>"``, one ``<testcase>`` per test.  A failed test is a ``<failure>``, an
    error an ``<error>``, a skipped test and an expected deviation (xfail) a ``<skipped>`` (the
    latter with ``type="pytest.xfail"`` and the failure it expected as its text), an xpass a
    pass; every test carries the ``popek`` properties as JSON, so ``load_junit`` (and ``popek
    report``) reads the file back as the results it was written from.  The directory is created."""
    root = ET.Element("testsuites", name="popek")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for run in runs:
        suite = ET.SubElement(root, "testsuite", name=_xml_text(f"{run.key.vmm} on {run.key.profile}"))
        counts = dict.fromkeys(totals, 0)
        suite_time = 0.0
        env = ET.SubElement(ET.SubElement(suite, "properties"), "property", name=_SUITE)
        env.set("value", _xml_text(_json({"versions": run.versions, "hypothesis_profile": run.hypothesis_profile})))
        for test in run.tests:
            classname, name = _classname_and_name(test.nodeid)
            case = ET.SubElement(
                suite, "testcase", classname=_xml_text(classname), name=_xml_text(name), time=f"{test.duration:.3f}"
            )
            info = {k: getattr(run.key, k) for k in _RUN_KEYS}
            info |= {
                "property": test.property,
                "category": test.category,
                "nodeid": test.nodeid,
                "outcome": test.outcome,
            }
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", name=_RUN, value=_xml_text(_json(info)))
            ET.SubElement(props, "property", name=_COUNTERS, value=_xml_text(_json(test.counters)))
            if test.coverage:
                ET.SubElement(props, "property", name=_COVERAGE, value=_xml_text(_json(test.coverage)))
            counts["tests"] += 1
            suite_time += test.duration
            message = _xml_text(test.message or "")
            if test.outcome in ("failed", "error"):
                tag = "failure" if test.outcome == "failed" else "error"
                counts["failures" if tag == "failure" else "errors"] += 1
                ET.SubElement(case, tag, message=_first_line(message)).text = message
            elif test.outcome in ("skipped", "xfailed"):
                counts["skipped"] += 1
                kind = "pytest.xfail" if test.outcome == "xfailed" else "pytest.skip"
                ET.SubElement(case, "skipped", type=kind, message=_first_line(message)).text = message or None
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("time", f"{suite_time:.3f}")
        total_time += suite_time
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
