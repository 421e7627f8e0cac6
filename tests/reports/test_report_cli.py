"""``popek report``: grade sheets from results files the tests write, exit codes, malformed input."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cffi_core.profiles import PROFILES
from conformance.results import ResultsWriter, RunKey, load_results
from reports.cli import main
from reports.grades import collect_files, counterexample, grade, load_runs, rerun_command, summary_table, verdict

KEY = RunKey("toy", "a toy technique", "toys.monitor:ToyVMM", "x86-2005")
SUITE = "conformance/test_equivalence.py::test_directed_guest_is_equivalent"

DIFF = """observations differ (Popek & Goldberg 1974: equivalence):
  exit code: native 0 (0x0), toy 1 (0x1)
guest program:
  | _start: smsw r1
  |         out 0x500, r1"""


def write_run(directory: Path, key: RunKey, tests: list[tuple[str, str | None, str | None, str, str | None]]) -> Path:
    """Write one results file with the real writer: tests are (id, property, category, outcome, message)."""
    writer = ResultsWriter(directory)
    for test_id, prop, category, outcome, message in tests:
        record = writer.result(key, f"{SUITE}[{key.vmm}-{test_id}]", prop, category)
        record.outcome = outcome
        record.message = message
        record.counters = {"instructions": 100, "traps": 0}
    (path,) = writer.write()
    return path


CLEAN = [
    ("smsw", "equivalence", "obstacle", "passed", None),
    ("sidt", "equivalence", "obstacle", "passed", None),
    ("popf", "equivalence", "obstacle", "xfailed", "expected deviation of toy: popf is sensitive\nmore"),
    ("paging", "equivalence", "mechanism", "passed", None),
    ("compute", "efficiency", "compute", "skipped", "needs host features vmx"),
]
FAILING = [*CLEAN, ("pushf", "equivalence", "obstacle", "failed", DIFF)]


def _unexpected_only(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_grade_counts_outcomes_per_property_and_category(tmp_path):
    (run,) = load_runs([write_run(tmp_path, KEY, FAILING)])
    g = grade(run)
    assert g.counts[("equivalence", "obstacle")] == Counter(passed=2, xfailed=1, failed=1)
    assert g.counts[("equivalence", "mechanism")] == Counter(passed=1)
    assert g.counts[("efficiency", "compute")] == Counter(skipped=1)
    assert [t.nodeid.rsplit("-", 1)[1] for t in g.failures] == ["pushf]"]
    assert [t.nodeid.rsplit("-", 1)[1] for t in g.deviations] == ["popf]"]
    assert g.skips == Counter({"needs host features vmx": 1})
    assert g.properties() == ["equivalence", "efficiency"]  # Popek & Goldberg's order, not the files'
    assert not g.ok


@pytest.mark.parametrize(
    ("counts", "word"),
    [
        (Counter(passed=3), "pass (3)"),
        (Counter(passed=2, xfailed=1), "fails as expected"),
        (Counter(passed=2, xfailed=1, failed=1), "FAIL (1 of 4)"),
        (Counter(error=1), "FAIL (1 of 1)"),
        (Counter(skipped=4), "skipped (4)"),
        (Counter(), "-"),
    ],
)
def test_verdict_of_a_property(counts, word):
    assert verdict(counts).startswith(word)


def test_summary_has_a_row_per_run_and_a_column_per_property(tmp_path):
    write_run(tmp_path, KEY, CLEAN)
    write_run(tmp_path, RunKey("toy", "a toy technique", "toys.monitor:ToyVMM", "classic-1974"), CLEAN[:2])
    headers, rows = summary_table([grade(r) for r in load_runs(collect_files([tmp_path]))])
    # Only the profiles a VMM ran (no "not run" cells), in the manual's order (cffi_core.profiles),
    # whatever the order of the files; the properties in Popek & Goldberg's order.
    assert headers == ["VMM", "profile", "equivalence", "efficiency"]
    order = [p for p in PROFILES if p in ("classic-1974", "x86-2005")]
    assert [row[:2] for row in rows] == [["toy", p] for p in order]
    by_profile = {row[1]: dict(zip(headers[2:], row[2:], strict=True)) for row in rows}
    assert by_profile["classic-1974"]["equivalence"].startswith("pass (2)")
    assert by_profile["x86-2005"]["equivalence"].startswith("fails as expected (1 xfail, 3 pass)")
    assert by_profile["classic-1974"]["efficiency"] == "-"
    assert by_profile["x86-2005"]["efficiency"] == "skipped (1)"


def test_clean_results_exit_zero_and_write_both_files(tmp_path, capsys):
    write_run(tmp_path / "results", KEY, CLEAN)
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "results"), "-o", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## toy on x86-2005" in md
    assert "Unexpected failures" not in md
    deviations = md.split("### Expected deviations (xfail)")[1].split("\n## ")[0]
    table, folded = deviations.split("<details>", 1)
    assert "| expected deviation of toy: popf is sensitive" in table and "more" not in table  # the reason alone
    assert "more" in folded  # the rest of the report, folded beneath
    assert (out / "report.html").is_file()
    assert "equivalence" in capsys.readouterr().out  # the summary table on the console


def test_an_unexpected_failure_exits_one_with_counterexample_and_rerun_command(tmp_path, capsys):
    path = write_run(tmp_path, KEY, FAILING)
    out = tmp_path / "report"
    assert main(["report", str(path), "-o", str(out)]) == 1
    assert "toy on x86-2005: 1 unexpected failure(s)" in capsys.readouterr().err
    md = (out / "report.md").read_text()
    section = md.split("### Unexpected failures", 1)[1]
    for line in DIFF.splitlines():
        # The listing is folded under its own summary, without its title and "|" margin.
        assert line.removeprefix("  | ") in section or line == "guest program:"
    assert "<details><summary>guest program (2 lines)" in section
    (run,) = load_runs([path])
    failed = next(t for t in run.tests if t.outcome == "failed")
    command = rerun_command(run, failed)
    assert command in section
    argv = shlex.split(command)
    # the installed suite's module, not a path: the command works from any directory
    assert argv[:5] == ["python", "-m", "pytest", "--pyargs", failed.nodeid.replace("conformance/", "conformance.", 1).replace(".py::", "::", 1)]
    assert argv[argv.index("--popek-vmm") + 1] == KEY.vmm_class
    assert argv[argv.index("--popek-profile") + 1] == KEY.profile


def test_the_counterexample_is_the_assertion_text_without_the_traceback():
    report = "    def test():\n>       assert_equivalent(a, b)\n\nconformance/checks.py:42: in f\nE   AssertionError: differ\nE     console: x\nE\nE   Falsifying example: f(x=1)\n"
    assert counterexample(report) == "AssertionError: differ\n  console: x\n\nFalsifying example: f(x=1)"
    assert counterexample("a skip reason") == "a skip reason"


def test_html_is_well_formed_and_escapes_what_the_guest_printed(tmp_path):
    nasty = "console: <script>alert(1)</script> & </pre>"
    write_run(tmp_path, KEY, [*CLEAN, ("pushf", "equivalence", "obstacle", "failed", nasty)])
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "out")]) == 1
    page = (tmp_path / "out" / "report.html").read_text()
    checker = _TagBalance()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert {"table", "pre", "details"} <= checker.seen  # the grade sheet, the failure, the folded deviation
    assert "script" not in checker.seen
    assert nasty in checker.text  # shown verbatim once the entities are decoded


def test_results_of_one_run_from_two_files_merge_keeping_the_worse_outcome(tmp_path):
    write_run(tmp_path / "a", KEY, [("smsw", "equivalence", "obstacle", "passed", None)])
    write_run(tmp_path / "b", KEY, [("smsw", "equivalence", "obstacle", "failed", DIFF), CLEAN[1]])
    (run,) = load_runs(collect_files([tmp_path / "a", tmp_path / "b"]))
    assert sorted(t.outcome for t in run.tests) == ["failed", "passed"]


def test_keys_the_reader_does_not_know_are_ignored(tmp_path, capsys):
    path = write_run(tmp_path, KEY, CLEAN)
    doc = json.loads(path.read_text())
    doc["new_run_field"] = {"anything": 1}
    for test in doc["tests"]:
        test["new_test_field"] = [1, 2]
    path.write_text(json.dumps(doc))
    assert main(["report", str(path), "-o", str(tmp_path / "out")]) == 0
    assert len(load_results(path).tests) == len(CLEAN)


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda doc: "{ not json", "not valid JSON"),
        (lambda doc: json.dumps([1, 2]), "not a popek results file"),
        (lambda doc: json.dumps({**doc, "schema": 99}), '"schema" is 99'),
        (lambda doc: json.dumps({k: v for k, v in doc.items() if k != "tests"}), 'key "tests"'),
        (lambda doc: json.dumps({k: v for k, v in doc.items() if k != "profile"}), 'key "profile"'),
        (lambda doc: json.dumps({**doc, "tests": [{**doc["tests"][0], "outcome": "great"}]}), "'great'"),
        (lambda doc: json.dumps({**doc, "tests": [{**doc["tests"][0], "counters": {"x": "1"}}]}), '"counters"'),
    ],
)
def test_a_malformed_results_file_is_one_line_naming_it(tmp_path, capsys, mangle, words):
    path = write_run(tmp_path, KEY, CLEAN)
    path.write_text(mangle(json.loads(path.read_text())))
    assert main(["report", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    _unexpected_only(err)
    assert err.startswith(f"popek: {path}: ")
    assert words in err
    assert not (tmp_path / "out").exists()


def test_a_missing_file_and_an_empty_directory_are_named(tmp_path, capsys):
    missing = tmp_path / "nothing.json"
    assert main(["report", str(missing), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    _unexpected_only(err)
    assert str(missing) in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    _unexpected_only(err)
    assert f"{empty}: no results files" in err


class _TagBalance(HTMLParser):
    """Checks that every opened element is closed in order (void elements aside)."""

    VOID = frozenset({"meta", "br", "hr", "img", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: set[str] = set()
        self.text = ""

    def handle_starttag(self, tag, attrs):
        self.seen.add(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text += data


def test_junit_xml_of_a_conformance_run_reads_like_its_results_json(tmp_path):
    import subprocess
    import sys

    import conformance

    xml, results = tmp_path / "run.xml", tmp_path / "results"
    subprocess.run(
        [sys.executable, "-m", "pytest", "conformance", "--popek-vmm", "native", "--popek-profile", "classic-1974",
         "-k", "smsw or paging or disk", "-p", "no:cacheprovider", "-q",
         f"--junitxml={xml}", f"--popek-results={results}"],
        cwd=Path(conformance.__file__).resolve().parents[1], check=True, capture_output=True,
    )  # fmt: skip
    (from_xml,) = load_runs([xml])
    (from_json,) = load_runs(collect_files([results]))
    assert from_xml.key == from_json.key
    assert [(t.nodeid, t.property, t.category, t.outcome) for t in from_xml.tests] == [
        (t.nodeid, t.property, t.category, t.outcome) for t in from_json.tests
    ]
    assert [t.counters for t in from_xml.tests] == [t.counters for t in from_json.tests]
    assert main(["report", str(xml), "-o", str(tmp_path / "out")]) == 0


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3">
<testcase classname="conformance.test_equivalence" name="test_g[toy-smsw]" time="0.5">
  <properties><property name="popek" value="{prop}" /></properties>
  <failure message="observations differ">observations differ (Popek &amp; Goldberg 1974: equivalence)</failure>
</testcase>
<testcase classname="conformance.test_equivalence" name="test_g[toy-popf]" time="0.1">
  <properties><property name="popek" value="{prop}" /></properties>
  <skipped type="pytest.xfail" message="expected deviation of toy: popf" />
</testcase>
<testcase classname="tests.test_other" name="test_not_a_vmm_test" time="0.1" />
</testsuite></testsuites>
"""
PROP = repr({**{k: getattr(KEY, k) for k in ("vmm", "technique", "vmm_class", "profile")},
             "property": "equivalence", "category": "obstacle"}).replace("'", "&apos;")  # fmt: skip


def test_junit_failures_count_and_exit_one(tmp_path, capsys):
    xml = tmp_path / "toy.xml"
    xml.write_text(JUNIT.format(prop=PROP))
    (run,) = load_runs([xml])
    assert run.key == KEY
    assert [(t.nodeid, t.outcome) for t in run.tests] == [
        ("conformance/test_equivalence.py::test_g[toy-popf]", "xfailed"),
        ("conformance/test_equivalence.py::test_g[toy-smsw]", "failed"),
    ]
    assert main(["report", str(xml), "-o", str(tmp_path / "out")]) == 1
    assert "Popek & Goldberg 1974: equivalence" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("<testsuites><testcase", "not readable JUnit XML"),
        ("<html></html>", "root element <html>"),
        (JUNIT.format(prop="{not a dict"), "property popek is not a dict literal"),
    ],
)
def test_malformed_junit_xml_is_one_line_naming_it(tmp_path, capsys, text, words):
    xml = tmp_path / "bad.xml"
    xml.write_text(text)
    assert main(["report", str(xml), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    _unexpected_only(err)
    assert err.startswith(f"popek: {xml}: ") and words in err


def test_problems_beyond_the_results_files_are_shown_and_fail_the_report(tmp_path):
    from reports.report import write_report

    path = write_run(tmp_path, KEY, CLEAN)
    report = write_report([path], tmp_path / "out", [("toy on x86-2005: pytest exited with status 3", "INTERNALERROR> x")])
    assert not report.ok and all(g.ok for g in report.grades)
    md = report.markdown.read_text()
    assert "## Runs that did not end cleanly" in md and "INTERNALERROR> x" in md


def test_coverage_travels_from_the_results_file_to_both_reports(tmp_path):
    from conformance import coverage

    writer = ResultsWriter(tmp_path / "results")
    record = writer.result(KEY, f"{SUITE}[toy-generated]", "equivalence", "generated-kernel")
    smsw = coverage.instruction_cell("smsw", 0, False, False)
    record.coverage = {smsw: 7, coverage.adjacent_cell("exit-after-sti"): 2}
    other = writer.result(KEY, f"{SUITE}[toy-generated-user]", "equivalence", "generated-user")
    other.coverage = {smsw: 5}
    record.outcome = other.outcome = "passed"
    (path,) = writer.write()
    read = {t.nodeid: t.coverage for t in load_results(path).tests}
    assert read[f"{SUITE}[toy-generated]"][smsw] == 7  # read back
    out = tmp_path / "report"
    assert main(["report", str(path), "-o", str(out)]) == 0
    md = (out / "report.md").read_text()
    section = md.split("### Coverage of the generated guests")[1]
    smsw_row = next(line for line in section.splitlines() if line.startswith("| smsw "))
    assert smsw_row.split("|")[2].strip() == "12"  # CPL 0 flat, summed over the two tests
    assert "| exit-after-sti " in section and "exit-with-pending-db: never" in section
    assert "sidt: never generated" in section and "smsw: CPL 0 flat TF," in section
    assert f"2 of {len(coverage.all_cells())} cells reached" in section
    page = (out / "report.html").read_text()
    assert "Coverage of the generated guests" in page and "sidt: never generated" in page


def test_a_run_without_generated_guests_has_no_coverage_section(tmp_path):
    write_run(tmp_path / "results", KEY, CLEAN)
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "results"), "-o", str(out)]) == 0
    assert "Coverage of the generated guests" not in (out / "report.md").read_text()


def test_coverage_that_is_not_integers_is_a_malformed_file(tmp_path, capsys):
    path = write_run(tmp_path, KEY, CLEAN)
    doc = json.loads(path.read_text())
    doc["tests"][0]["coverage"] = {"insn/add/cpl0/flat/tf0": "many"}
    path.write_text(json.dumps(doc))
    assert main(["report", str(path), "-o", str(tmp_path / "out")]) != 0
    assert '"coverage" is not an object of integers' in capsys.readouterr().err


def test_popek_mutants_lists_the_catalog_of_the_mutation_runner(capsys):
    from reports.cli import main

    assert main(["mutants", "--list"]) == 0
    out = capsys.readouterr().out
    assert "hw-tf-lost-after-exit" in out and "te-invlpg-drops-reserved-page" in out
