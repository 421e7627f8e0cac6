"""JUnit XML: ``write_junit`` from loaded results, read back by ``load_junit``; properties as JSON, old dict literals."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from conformance.results import ResultsWriter, RunKey, RunResults, load_results
from reports.junit import load_junit, write_junit

KEY = RunKey("toy", "a toy technique", "toys.monitor:ToyVMM", "x86-2005")
OTHER = RunKey("toy", "a toy technique", "toys.monitor:ToyVMM", "classic-1974")
SUITE = "conformance/test_equivalence.py::test_directed_guest_is_equivalent"
COUNTEREXAMPLE = "observations differ (Popek & Goldberg 1974: equivalence):\n  exit code: native 0, toy 1"
TESTS = [
    ("smsw", "passed", None),
    ("pushf", "failed", COUNTEREXAMPLE + "\n  console: b'\\x00' \x01"),
    ("popf", "xfailed", "expected deviation of toy: popf is sensitive\n" + COUNTEREXAMPLE),
    ("sti", "xpassed", None),
    ("vmx", "skipped", "needs host features vmx"),
    ("disk", "error", "ValueError: boom"),
]


def _run(tmp_path, key: RunKey = KEY) -> RunResults:
    writer = ResultsWriter(tmp_path / "results")
    for i, (test_id, outcome, message) in enumerate(TESTS):
        record = writer.result(key, f"{SUITE}[{key.vmm}-{test_id}]", "equivalence", "obstacle")
        record.outcome, record.message, record.duration = outcome, message, 0.25 * i
        record.counters = {"instructions": 100 + i, "traps": i}
        record.coverage = {"insn/smsw/cpl0/flat/tf0": i} if i else {}
    (path,) = (p for p in writer.write() if p.name == key.filename)
    return load_results(path)


def test_written_junit_reads_back_as_the_results_it_was_written_from(tmp_path):
    runs = [_run(tmp_path / "a"), _run(tmp_path / "b", OTHER)]
    xml = tmp_path / "out" / "popek.xml"
    write_junit(runs, xml)
    back = load_junit(xml)
    assert [r.key for r in back] == [KEY, OTHER]
    for run, read in zip(runs, back, strict=True):
        assert read.versions == run.versions and read.hypothesis_profile == run.hypothesis_profile
        for test, got in zip(run.tests, read.tests, strict=True):
            assert (got.nodeid, got.property, got.category, got.outcome) == (
                test.nodeid, test.property, test.category, test.outcome
            )  # fmt: skip
            assert got.counters == test.counters and got.coverage == test.coverage
            assert got.duration == pytest.approx(test.duration, abs=1e-3)
            # A character XML cannot hold is shown as #xNN (as pytest does); all else is kept.
            assert got.message == (test.message.replace("\x01", "#x01") if test.message else None)


def test_junit_counts_and_elements_follow_the_outcomes(tmp_path):
    xml = tmp_path / "popek.xml"
    write_junit([_run(tmp_path)], xml)
    root = ET.parse(xml).getroot()
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "toy on x86-2005"
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": "6", "failures": "1", "errors": "1", "skipped": "2"
    }  # fmt: skip
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert cases["test_directed_guest_is_equivalent[toy-pushf]"].get("classname") == "conformance.test_equivalence"
    failure = cases["test_directed_guest_is_equivalent[toy-pushf]"].find("failure")
    assert failure.get("message") == COUNTEREXAMPLE.splitlines()[0]
    # The expected deviation keeps its counterexample: the reason is the message, the failure the text.
    xfail = cases["test_directed_guest_is_equivalent[toy-popf]"].find("skipped")
    assert (
        xfail.get("type") == "pytest.xfail" and xfail.get("message") == "expected deviation of toy: popf is sensitive"
    )
    assert "exit code: native 0, toy 1" in xfail.text
    assert cases["test_directed_guest_is_equivalent[toy-disk]"].find("error") is not None
    assert len(cases["test_directed_guest_is_equivalent[toy-sti]"]) == 1  # an xpass: its properties only
    # Every property value is JSON.
    for prop in root.iter("property"):
        assert isinstance(json.loads(prop.get("value")), dict)


def test_write_junit_of_no_runs_is_an_empty_valid_file(tmp_path):
    xml = tmp_path / "empty.xml"
    write_junit([], xml)
    assert load_junit(xml) == []
    assert ET.parse(xml).getroot().get("tests") == "0"


CASE = """<testsuites><testsuite name="pytest">
<testcase classname="conformance.test_equivalence" name="test_g[toy-popf]" time="0.1">
  <properties>
    <property name="popek" value="{run}" />
    <property name="popek_counters" value="{counters}" />
    <property name="popek_deviation" value="{deviation}" />
  </properties>
  <skipped type="pytest.xfail" message="expected deviation of toy: popf" />
</testcase></testsuite></testsuites>
"""
INFO = {**{k: getattr(KEY, k) for k in ("vmm", "technique", "vmm_class", "profile")}, "property": None, "category": "x"}


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace("\n", "&#10;")


@pytest.mark.parametrize("encode", [json.dumps, repr], ids=["json", "old-dict-literal"])
def test_pytest_junit_properties_are_read_as_json_or_old_dict_literals(tmp_path, encode):
    xml = tmp_path / "pytest.xml"
    deviation = json.dumps(COUNTEREXAMPLE) if encode is json.dumps else COUNTEREXAMPLE
    xml.write_text(
        CASE.format(run=_attr(encode(INFO)), counters=_attr(encode({"traps": 3})), deviation=_attr(deviation))
    )
    ((run,),) = [load_junit(xml)]
    (test,) = run.tests
    assert run.key == KEY and test.property is None and test.counters == {"traps": 3}
    assert test.outcome == "xfailed"
    assert test.message == "expected deviation of toy: popf\n" + COUNTEREXAMPLE


def test_pytest_junitxml_of_a_run_on_xdist_has_json_properties_and_the_deviation_counterexample(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import conformance

    xml = tmp_path / "run.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_equivalence.py", "--popek-vmm", "trap-and-emulate",
         "--popek-profile", "x86-2005", "-k", "smsw or paging", "-p", "no:cacheprovider", "-q", "-n", "2",
         f"--junitxml={xml}"],
        cwd=Path(conformance.__file__).resolve().parents[1], check=True, capture_output=True,
    )  # fmt: skip
    for prop in ET.parse(xml).getroot().iter("property"):
        if prop.get("name").startswith("popek"):
            json.loads(prop.get("value"))  # JSON, not a Python literal
    (run,) = load_junit(xml)
    outcomes = {t.nodeid.rsplit("-", 1)[1]: t for t in run.tests}
    assert {k: t.outcome for k, t in outcomes.items()} == {"smsw]": "xfailed", "paging]": "passed"}
    assert outcomes["paging]"].counters["vmm_interventions"] > 0  # counters recorded during the test
    smsw = outcomes["smsw]"].message
    assert smsw.startswith("expected deviation of trap-and-emulate: smsw")
    assert "observations differ (Popek & Goldberg 1974: equivalence)" in smsw  # the counterexample
