"""``popek grade`` of a class: VMMs named by file or in the current folder, results files kept
apart by class, partial runs, the ranking and a sheet per submission, progress as runs end,
the closing summary's width, ``--junitxml``, ``--clean`` and xdist workers for one profile."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from conformance.api import VMMLoadError
from conformance.results import ResultsWriter, RunKey, load_results
from reference_vmm.native import NativeVMM
from reports import cli, demo
from reports.cli import main
from reports.demo import Outcome, Plan, find_submissions, format_seconds, plan_runs, resolve_vmm, run_plan
from reports.grades import Grade, ranking, shared_names, short_verdict, summary_blocks, summary_table, vmm_labels
from reports.progress import RunConsole

NATIVE = "reference_vmm.native:NativeVMM"

TOY = """
from reference_vmm.native import NativeVMM


class {cls}(NativeVMM):
    name = "{name}"
    technique = "native, renamed"
"""

# A VMM with a seeded bug (the low bit of every exit code flipped).
BROKEN = """
from reference_vmm.native import NativeVMM
from reference_vmm.native.monitor import NativeVM


class _OffByOneVM(NativeVM):
    @property
    def exit_code(self):
        code = super().exit_code
        return None if code is None else code ^ 1


class BobVMM(NativeVMM):
    name = "toy"
    technique = "a seeded bug"

    def create_vm(self, image, config):
        vm = super().create_vm(image, config)
        vm.__class__ = _OffByOneVM
        return vm
"""

# One test of one directed guest: enough to grade a toy in seconds.
ONE_TEST = ["-k", "directed_guest_is_equivalent and beyond_ram", "--profile", "classic-1974", "-n", "0"]


@pytest.fixture
def isolated_imports(monkeypatch):
    """sys.path and sys.modules as they were after the test (resolve_vmm imports submissions)."""
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


# ---- results files: one per class and profile, partial runs ---------------------------------


def test_a_reference_vmm_keeps_its_short_file_name():
    assert RunKey("native", "t", NATIVE, "classic-1974").filename == "native--classic-1974.json"
    assert RunKey("hardware", "t", "reference_vmm.hardware:HardwareVMM", "vtx-2006+tpr_shadow").filename == (
        "hardware--vtx-2006_tpr_shadow.json"
    )


def test_two_submissions_sharing_a_name_write_two_files():
    alice = RunKey("toy", "t", "alice:AliceVMM", "x86-2005").filename
    bob = RunKey("toy", "t", "bob:BobVMM", "x86-2005").filename
    assert alice == "toy--x86-2005--alice-AliceVMM.json"
    assert bob == "toy--x86-2005--bob-BobVMM.json"
    # A name that is a reference VMM's does not take the reference VMM's file either.
    assert RunKey("native", "t", "carol:NativeVMM", "x86-2005").filename != "native--x86-2005.json"


def test_a_class_path_that_a_file_name_cannot_hold_gets_a_hash():
    a = RunKey("v", "t", "modé:V", "x86-2005").filename
    b = RunKey("v", "t", "mod_:V", "x86-2005").filename
    assert a != b and a.isascii()
    long = RunKey("v", "t", "a." * 200 + "m:V", "x86-2005").filename
    assert len(long) < 200


def _writer_with_one_test(tmp_path: Path) -> ResultsWriter:
    writer = ResultsWriter(tmp_path)
    result = writer.result(RunKey("toy", "t", "toy:Toy", "x86-2005"), "conformance/test_x.py::t[toy]", None, None)
    result.outcome = "passed"
    return writer


def test_a_whole_run_is_not_partial(tmp_path):
    writer = _writer_with_one_test(tmp_path)
    writer.finish(SimpleNamespace(option=SimpleNamespace(keyword="", markexpr="", deselect=[])), 0, False)
    (path,) = writer.write()
    assert json.loads(path.read_text())["partial"] is None
    assert load_results(path).partial is None


def test_a_run_narrowed_by_k_and_deselection_is_recorded_as_partial(tmp_path):
    writer = _writer_with_one_test(tmp_path)
    vmm_item = SimpleNamespace(callspec=SimpleNamespace(params={"vmm": NativeVMM}))
    writer.deselected([vmm_item, vmm_item, SimpleNamespace()])  # the last is no test of a VMM
    writer.finish(SimpleNamespace(option=SimpleNamespace(keyword="safety", markexpr="", deselect=[])), 2, "-x")
    (path,) = writer.write()
    partial = load_results(path).partial
    assert partial == "-k safety; 2 test(s) deselected; stopped early: -x; interrupted"


# ---- grades of a class: apart by class, the summary, the ranking ----------------------------


def _grade(cls: str, name: str, profile: str, partial: str | None = None, **outcomes: int) -> Grade:
    from conformance.results import RunResults, TestResult

    tests = []
    for outcome, n in outcomes.items():
        for i in range(n):
            for prop in ("equivalence", "safety", "efficiency"):
                t = TestResult(f"conformance/test_{prop}.py::t{i}-{outcome}[{name}]", prop, "c", outcome)
                tests.append(t)
    from reports.grades import grade

    return grade(RunResults(RunKey(name, "technique " + name, cls, profile), tests, partial=partial))


def test_two_classes_sharing_a_name_are_two_rows_and_a_warning():
    grades = [_grade("alice:A", "toy", "x86-2005", passed=3), _grade("bob:B", "toy", "x86-2005", failed=1, passed=2)]
    keys = [g.run.key for g in grades]
    assert vmm_labels(keys) == {"alice:A": "toy (alice:A)", "bob:B": "toy (bob:B)"}
    assert shared_names(keys) == {"toy": ["alice:A", "bob:B"]}
    headers, rows = summary_table(grades)
    assert headers == ["VMM", "profile", "equivalence", "safety", "efficiency"]
    assert [row[:2] for row in rows] == [["toy (alice:A)", "x86-2005"], ["toy (bob:B)", "x86-2005"]]
    assert rows[0][2].startswith("pass") and rows[1][2].startswith("FAIL")


def test_the_summary_shows_only_the_profiles_run_and_says_partial():
    grades = [_grade(NATIVE, "native", "x86-2005", partial="-k x", passed=1)]
    _, rows = summary_table(grades)
    assert rows == [["native", "x86-2005 (partial)", "pass (1)", "pass (1)", "pass (1)"]]


def test_the_closing_summary_fits_100_columns():
    from tabulate import tabulate

    profiles = ["x86-2005", "x86-64-2005", "classic-1974", "vtx-2006", "vtx-2006+tpr_shadow", "vtx-2009+iommu"]
    grades = [
        _grade(f"reference_vmm.v{i}:V{i}", f"vmm-{i}", p, passed=140, xfailed=12, failed=i % 2)
        for i in range(7)
        for p in profiles
    ]
    blocks = summary_blocks(grades)
    assert len(blocks) == 7
    for _title, headers, rows in blocks:
        text = tabulate(rows, headers=headers, tablefmt="simple")
        assert max(map(len, text.splitlines())) <= 100, text
        assert len(rows) == len(profiles)


def test_short_verdicts():
    assert short_verdict(Counter(passed=14)) == "pass 14"
    assert short_verdict(Counter(passed=10, failed=2, skipped=3)) == "FAIL 2/12"
    assert short_verdict(Counter(passed=10, xfailed=3)) == "xfail 3 pass 10"
    assert short_verdict(Counter(xfailed=4)) == "xfail 4"
    assert short_verdict(Counter(skipped=5)) == "skip 5"
    assert short_verdict(Counter()) == "-"


def test_the_ranking_puts_properties_held_first_and_ties_share_a_rank():
    grades = [
        _grade("c:C", "c", "x86-2005", failed=1, passed=5),  # all three properties fail
        _grade("a:A", "a", "x86-2005", passed=5),
        _grade("b:B", "b", "x86-2005", passed=5),
        _grade("d:D", "d", "x86-2005", passed=5),
        _grade("d:D", "d", "classic-1974", failed=1, passed=4),
    ]
    standings = ranking(grades)
    assert [(s.rank, s.label) for s in standings] == [(1, "a"), (1, "b"), (3, "d"), (4, "c")]
    a, _, d, c = standings
    assert a.ok and a.held == ("equivalence", "safety", "efficiency")
    assert (d.runs, d.clean_runs, d.failures, d.ok) == (2, 1, 3, False)
    assert c.properties["equivalence"] == "FAIL 1/6"


# ---- naming VMMs: files, packages, the current folder ---------------------------------------


def test_a_vmm_by_file_with_and_without_its_class(tmp_path, isolated_imports):
    (tmp_path / "alice_vmm.py").write_text(TOY.format(cls="AliceVMM", name="alice"))
    sub = resolve_vmm(str(tmp_path / "alice_vmm.py"))
    assert (sub.spec, sub.vmm.__name__, sub.path) == ("alice_vmm:AliceVMM", "AliceVMM", tmp_path)
    assert resolve_vmm(f"{tmp_path / 'alice_vmm.py'}:AliceVMM").vmm is sub.vmm


def test_a_vmm_by_package_directory(tmp_path, isolated_imports):
    package = tmp_path / "erin_vmm"
    package.mkdir()
    (package / "monitor.py").write_text(TOY.format(cls="ErinVMM", name="erin"))
    (package / "__init__.py").write_text("from .monitor import ErinVMM\n")
    sub = resolve_vmm(str(package))
    assert sub.spec == "erin_vmm:ErinVMM" and sub.vmm.name == "erin"


def test_a_module_in_the_current_folder_is_found_without_pythonpath(tmp_path, monkeypatch, isolated_imports):
    (tmp_path / "here_vmm.py").write_text(TOY.format(cls="HereVMM", name="here"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    sub = resolve_vmm("here_vmm:HereVMM")
    assert (sub.spec, sub.path) == ("here_vmm:HereVMM", tmp_path)


@pytest.mark.parametrize(
    ("file", "source", "message"),
    [
        ("two_vmms.py", TOY.format(cls="A", name="a") + TOY.format(cls="B", name="b"), "found A, B; name it"),
        ("no_vmm.py", "x = 1\n", "found none"),
        ("bad-name.py", TOY.format(cls="A", name="a"), "'bad-name' is not a module name; rename it"),
        ("json.py", TOY.format(cls="A", name="a"), "the module name 'json' is taken by"),
        ("syntax_error.py", "def f(:\n", "SyntaxError"),
    ],
)
def test_a_file_that_cannot_be_graded_says_why(tmp_path, isolated_imports, file, source, message):
    (tmp_path / file).write_text(source)
    with pytest.raises(VMMLoadError, match=message.replace("(", r"\(")):
        resolve_vmm(str(tmp_path / file))


def test_the_submissions_of_a_directory(tmp_path):
    for name in ("bob.py", "alice.py", "_helper.py", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "carol").mkdir()
    (tmp_path / "carol" / "__init__.py").write_text("")
    (tmp_path / "data").mkdir()  # no package
    assert [Path(p).name for p in find_submissions(tmp_path)] == ["alice.py", "bob.py", "carol"]


def test_the_run_gets_the_vmms_folder_and_an_absolute_pythonpath(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([".", "lib"]))
    env = demo._environment(Plan("toy:Toy", NativeVMM, "x86-2005", tmp_path / "subs"))
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path / "subs"), str(tmp_path), str(tmp_path / "lib")]


def test_plans_of_two_classes_sharing_a_name_are_labelled_by_class(tmp_path, isolated_imports):
    (tmp_path / "alice.py").write_text(TOY.format(cls="AliceVMM", name="toy"))
    (tmp_path / "bob.py").write_text(TOY.format(cls="BobVMM", name="toy"))
    plans, _ = plan_runs([str(tmp_path / "alice.py"), str(tmp_path / "bob.py"), "native"], ["x86-2005"])
    assert [p.title for p in plans] == [
        "toy (alice:AliceVMM) on x86-2005",
        "toy (bob:BobVMM) on x86-2005",
        "native on x86-2005",
    ]


# ---- running: workers, progress as runs end, the live line ----------------------------------


def test_one_profile_graded_with_two_jobs_gets_two_xdist_workers():
    pytest.importorskip("xdist")
    args = SimpleNamespace(workers=None, jobs=2)
    assert cli._workers(args, runs=1) == 2
    assert cli._workers(args, runs=2) == 0
    assert cli._workers(SimpleNamespace(workers=3, jobs=1), runs=5) == 3
    command = demo._command(Plan("native", NativeVMM, "x86-2005"), Path("r"), "ci", [], workers=2)
    assert command[command.index("-n") + 1] == "2"


def test_runs_are_reported_as_they_end(tmp_path, monkeypatch):
    plans = [Plan("native", NativeVMM, p) for p in ("x86-2005", "x86-64-2005", "classic-1974")]
    delays = {"x86-2005": 0.6, "x86-64-2005": 0.0, "classic-1974": 0.3}
    started = []

    def fake_run(plan, results, hypothesis_profile, extra, workers=0, started_cb=None):
        if started_cb is not None:
            started_cb(plan, results / plan.filename)
        time.sleep(delays[plan.profile])
        return Outcome(plan, 0, delays[plan.profile], results / plan.filename, results / "x.log")

    monkeypatch.setattr(demo, "_run_one", fake_run)
    ended: list[str] = []
    lock = threading.Lock()
    outcomes = run_plan(
        plans,
        tmp_path,
        jobs=3,
        progress=lambda o: ended.append(o.plan.profile),
        started=lambda plan, log: (lock.acquire(), started.append(plan.profile), lock.release()),
    )
    assert ended == ["x86-64-2005", "classic-1974", "x86-2005"]
    assert [o.plan.profile for o in outcomes] == ["x86-2005", "x86-64-2005", "classic-1974"]
    assert sorted(started) == sorted(delays)


def test_the_log_tells_how_many_tests_ended(tmp_path):
    log = tmp_path / "run.log"
    log.write_text("$ python -m pytest ...\n" + "." * 60 + "sx  [ 40%]\n" + "..F\n")
    assert demo.tests_done(log) == (65, 40)
    assert demo.tests_done(tmp_path / "missing.log") == (0, None)


def _outcome(tmp_path: Path, profile: str) -> Outcome:
    return Outcome(Plan("native", NativeVMM, profile), 0, 75.0, tmp_path / "none.json", tmp_path / "none.log")


def test_the_console_without_a_terminal_writes_plain_lines(tmp_path):
    stream = io.StringIO()
    with RunConsole(2, stream, live=False, interval=0.01, heartbeat=0.05) as console:
        console.started(Plan("native", NativeVMM, "x86-2005"), tmp_path / "a.log")
        time.sleep(0.2)  # at least one status line while the run goes on
        console.finished(_outcome(tmp_path, "x86-2005"))
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "      native on x86-2005: started"
    assert any("0/2 done" in line and "running: native on x86-2005 0 tests" in line for line in lines)
    assert lines[-1].startswith("[1/2] native on x86-2005: ") and lines[-1].endswith("as expected (1 min 15 s)")


def test_the_console_on_a_terminal_rewrites_its_live_line(tmp_path):
    stream = io.StringIO()
    with RunConsole(1, stream, live=True, interval=0.01) as console:
        console.started(Plan("native", NativeVMM, "x86-2005"), tmp_path / "a.log")
        time.sleep(0.05)
        console.finished(_outcome(tmp_path, "x86-2005"))
    text = stream.getvalue()
    assert "\r\x1b[K0/1 done" in text
    assert text.endswith("\r\x1b[K") or text.endswith("\n")  # the live line is erased at the end
    assert "[1/1] native on x86-2005" in text


def test_times_read_as_a_person_reads_them():
    assert format_seconds(41.23) == "41.2 s"
    assert format_seconds(192) == "3 min 12 s"
    assert format_seconds(3720) == "1 h 02 min"


def test_clean_removes_only_the_given_classes_results(tmp_path):
    for cls, name in ((NATIVE, "native--x86-2005"), ("alice:A", "toy--x86-2005--alice-A")):
        (tmp_path / f"{name}.json").write_text(json.dumps({"format": "popek-results", "vmm_class": cls}))
        (tmp_path / f"{name}.log").write_text("")
    (tmp_path / "bench.json").write_text("{}")
    assert cli._clean(tmp_path, {NATIVE}) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bench.json",
        "toy--x86-2005--alice-A.json",
        "toy--x86-2005--alice-A.log",
    ]


# ---- the whole of it: a class directory graded, without PYTHONPATH --------------------------


def test_a_class_is_graded_into_a_ranking_and_a_sheet_each(tmp_path, monkeypatch, capsys, isolated_imports):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "alice.py").write_text(TOY.format(cls="AliceVMM", name="toy"))
    (subs / "bob.py").write_text(BROKEN)
    (subs / "carol.py").write_text("def broken(:\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv("POPEK_VMM", raising=False)
    out = tmp_path / "out"
    junit = tmp_path / "class.xml"
    status = main(["grade", "--submissions", "subs", "-o", str(out), "--junitxml", str(junit), *ONE_TEST])
    captured = capsys.readouterr()
    assert status == 1, captured.out + captured.err
    assert "toy (alice:AliceVMM) on classic-1974: as expected, 1 test, partial" in captured.out
    assert "toy (bob:BobVMM) on classic-1974: 1 unexpected failure(s) of 1 test, partial" in captured.out
    assert "subs/carol.py: not graded" in captured.err and "SyntaxError" in captured.err
    assert "VMM name 'toy' is shared by 2 classes" in captured.err
    results = sorted(p.name for p in (out / "results").glob("*.json"))
    assert results == ["toy--classic-1974--alice-AliceVMM.json", "toy--classic-1974--bob-BobVMM.json"]
    report = (out / "report.md").read_text()
    assert report.index("toy (alice:AliceVMM)") < report.index("toy (bob:BobVMM)")  # ranked
    assert "Submissions that did not load" in report and "subs/carol.py" in report
    for sheet in ("alice-AliceVMM", "bob-BobVMM"):
        assert (out / "sheets" / sheet / "report.html").is_file()
    bob = (out / "sheets" / "bob-BobVMM" / "report.md").read_text()
    assert "exit code" in bob
    assert f"PYTHONPATH={subs} python -m pytest --pyargs " in bob  # the rerun imports bob anywhere
    assert "alice" not in (out / "sheets" / "bob-BobVMM" / "report.md").read_text()
    assert junit.is_file() and junit.read_text().count("<testcase") == 2


def test_a_file_named_on_the_command_line_is_graded_with_pythonpath_dot(tmp_path, monkeypatch, capsys):
    # PYTHONPATH=. once made the run's pytest fail to import the VMM (its working directory is
    # the suite's): it is made absolute for the run.
    (tmp_path / "dot_vmm.py").write_text(TOY.format(cls="DotVMM", name="dot"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", ".")
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    assert main(["grade", "--vmm", "dot_vmm:DotVMM", "-o", str(out), *ONE_TEST]) == 0
    console = capsys.readouterr().out
    assert "[1/1] dot on classic-1974: as expected, 1 test, partial" in console
    assert "no unexpected failure in the 1 partial run(s)" in console
    assert load_results(out / "results" / "dot--classic-1974--dot_vmm-DotVMM.json").partial


# ---- tox: the conformance envs grade with popek grade ---------------------------------------


def test_the_conformance_envs_grade_each_reference_vmm_with_popek_grade():
    import configparser
    import shlex

    from reports.demo import reference_vmms

    root = Path(__file__).resolve().parents[2]
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(root / "tox.ini")
    lines = [
        line.split(":", 1)
        for line in ini["testenv:conformance-{native,emulate,trap,bt,hw,hwept,pv}"]["commands"].splitlines()
        if line.strip()
    ]
    graded = []
    parser = cli.build_parser()
    for _factor, command in lines:
        argv = shlex.split(command.replace("{toxinidir}", "/project").replace("{posargs}", ""))
        assert argv[:2] == ["popek", "grade"], command
        args = parser.parse_args(argv[1:])
        # The profiles are popek's plan (the demo's), never listed here; stale results removed;
        # the report written apart from the demo's popek-report/.
        assert args.profile == [] and args.clean, command
        assert "popek-report" not in args.output and args.results == "/project/.popek-results"
        graded += args.vmm
    assert sorted(graded) == sorted(reference_vmms())
    assert "popek-conformance" in ini["testenv:report"]["commands"]


def test_a_summary_too_wide_for_a_table_becomes_a_line_per_profile(capsys):
    wide = _grade("a:A", "a" * 30, "vtx-2006+tpr_shadow", partial="-k x", passed=140, xfailed=12)
    wide.counts[("(unclassified)", "-")] = Counter(passed=100, xfailed=20)
    cli._print_summary([wide])
    lines = capsys.readouterr().out.splitlines()
    assert max(map(len, lines)) <= 100
    assert lines[1].startswith("vtx-2006+tpr_shadow (partial): equivalence xfail 12 pass 140;")


@pytest.mark.parametrize(
    ("args", "partial"),
    [
        (["conformance"], False),
        ([str(Path(__file__).resolve().parents[2] / "conformance")], False),
        (["conformance/test_safety.py"], True),
        (["conformance.test_safety::test_x[native]"], True),
        (["tests/reports/test_demo.py"], False),  # another project's tests: no part of the suite
    ],
)
def test_a_run_of_part_of_the_suite_by_its_arguments_is_partial(tmp_path, args, partial):
    writer = _writer_with_one_test(tmp_path)
    root = Path(__file__).resolve().parents[2]
    option = SimpleNamespace(keyword="", markexpr="", deselect=[])
    writer.finish(SimpleNamespace(option=option, args=args, invocation_params=SimpleNamespace(dir=root)))
    assert writer.partial == ([f"only {args[0]}"] if partial else [])


def test_report_ranking_merges_a_matrix_of_results_into_a_class_report(tmp_path, capsys):
    # The final job of a CI matrix: every submission × profile's file in one directory.
    writer = ResultsWriter(tmp_path / "results")
    for cls, outcome in (("alice:AliceVMM", "passed"), ("bob:BobVMM", "failed")):
        for profile in ("x86-2005", "classic-1974"):
            key = RunKey("toy", "t", cls, profile)
            test = writer.result(key, "conformance/test_equivalence.py::t[toy]", "equivalence", "c")
            test.outcome = outcome
    assert len(writer.write()) == 4
    out = tmp_path / "class"
    assert main(["report", str(tmp_path / "results"), "--ranking", "-o", str(out)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [line.split()[:3] for line in lines[2:4]] == [["1", "toy", "(alice:AliceVMM)"], ["2", "toy", "(bob:BobVMM)"]]
    assert "shared by 2 classes" in captured.err
    assert (out / "sheets" / "alice-AliceVMM" / "report.md").is_file()
    assert "bob" not in (out / "sheets" / "alice-AliceVMM" / "report.md").read_text()
    html5lib = pytest.importorskip("html5lib")
    html5lib.HTMLParser(strict=True).parse((out / "report.html").read_text())  # valid HTML5, or it raises


def test_the_runs_an_earlier_grade_timed_longest_start_first(tmp_path, monkeypatch):
    plans = [Plan("native", NativeVMM, p) for p in ("x86-2005", "x86-64-2005", "classic-1974", "vtx-2006")]
    for plan, seconds in zip(plans, (1.0, 30.0, None, 5.0), strict=True):
        if seconds is not None:
            tests = [{"nodeid": "t", "duration": seconds / 2}, {"nodeid": "u", "duration": seconds / 2}]
            (tmp_path / plan.filename).write_text(json.dumps({"tests": tests}))
    order = []
    monkeypatch.setattr(
        demo, "_run_one", lambda plan, results, *rest: order.append(plan.profile) or _outcome(tmp_path, plan.profile)
    )
    outcomes = run_plan(plans, tmp_path, jobs=1)
    assert order == ["classic-1974", "x86-64-2005", "vtx-2006", "x86-2005"]  # not timed yet, then longest first
    assert [o.plan.profile for o in outcomes] == ["x86-2005", "x86-64-2005", "classic-1974", "vtx-2006"]


def test_a_profile_with_added_features_follows_its_base_profile(tmp_path):
    from reports.grades import load_runs

    writer = ResultsWriter(tmp_path)
    for profile in ("vtx-2009", "vtx-2006+tpr_shadow", "vtx-2006"):
        writer.result(
            RunKey("hardware", "t", "reference_vmm.hardware:HardwareVMM", profile), "t", None, None
        ).outcome = "passed"
    runs = load_runs(writer.write())
    assert [r.key.profile for r in runs] == ["vtx-2006", "vtx-2006+tpr_shadow", "vtx-2009"]


def test_the_grade_sheet_says_a_clean_partial_run_is_no_grade_of_the_whole_suite():
    from reports.render import to_markdown
    from reports.report import build_blocks

    partial = build_blocks([_grade(NATIVE, "native", "x86-2005", partial="-k x", passed=1)])
    whole = build_blocks([_grade(NATIVE, "native", "x86-2005", passed=1)])
    assert "1 run(s) were partial" in to_markdown(partial)
    assert "partial" not in to_markdown(whole).split("\n\n")[1]
