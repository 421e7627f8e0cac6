"""The CI workflows of examples/ci/: their popek commands exist, their matrices are submission x profile, and their shell steps grade, note and merge as docs/grading.md says."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

import conformance
from cffi_core.profiles import PROFILES
from conformance.results import ResultsWriter, RunKey
from reports.cli import main

ROOT = Path(conformance.__file__).resolve().parents[1]
GITHUB = ROOT / "examples" / "ci" / "github-grade.yml"
GITLAB = ROOT / "examples" / "ci" / "gitlab-grade.yml"


def _yaml(path: Path) -> dict:
    import yaml  # the test extra installs PyYAML
    return yaml.safe_load(path.read_text())


def _scripts(doc: object) -> list[str]:
    """Every shell script in a workflow: GitHub's ``run`` steps, GitLab's script lists."""
    found: list[str] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "run" and isinstance(value, str):
                found.append(value)
            elif key in ("script", "before_script", "after_script"):
                found += [value] if isinstance(value, str) else list(value)
            else:
                found += _scripts(value)
    elif isinstance(doc, list):
        for value in doc:
            found += _scripts(value)
    return found


def _popek_commands(script: str) -> list[list[str]]:
    """The ``popek`` command lines of a script, as words (up to ``||``, ``&&`` or ``;``)."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        match = re.search(r"(?:^|[;&|]\s*)popek\s", line.strip())
        if match:
            words = shlex.split(line.strip()[match.end() - len("popek ") :])
            cut = next((i for i, w in enumerate(words) if w in ("||", "&&", ";")), len(words))
            commands.append(words[:cut])
    return commands


def _help(capsys, *words: str) -> str:
    with pytest.raises(SystemExit):
        main([*words, "--help"])
    return capsys.readouterr().out


def _raw_scripts(path: Path) -> str:
    # Without PyYAML the scripts are still found in the text: every "popek " after the indentation.
    return path.read_text()


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=["github", "gitlab"])
def test_every_popek_command_of_a_workflow_exists_in_popek_help(capsys, path):
    try:
        scripts = _scripts(_yaml(path))
    except pytest.skip.Exception:
        scripts = [_raw_scripts(path)]
    commands = [c for s in scripts for c in _popek_commands(s)]
    assert {c[1] for c in commands} == {"grade", "report"}
    top = _help(capsys)
    for command in commands:
        assert command[0] == "popek"
        assert re.search(rf"\b{command[1]}\b", top), f"popek has no subcommand {command[1]}"
        text = _help(capsys, command[1])
        for word in command[2:]:
            if word.startswith("-"):
                option = word.split("=", 1)[0]
                assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text), (
                    f"popek {command[1]} has no {option}"
                )


def test_github_workflow_grades_submission_x_profile_and_merges_in_a_final_job():
    doc = _yaml(GITHUB)
    jobs = doc["jobs"]
    strategy = jobs["grade"]["strategy"]
    assert strategy["fail-fast"] is False
    assert set(strategy["matrix"]) == {"submission", "profile"}
    assert "fromJSON(needs.plan.outputs.submissions)" in strategy["matrix"]["submission"]
    assert set(strategy["matrix"]["profile"]) <= set(PROFILES)
    uploads = [s for s in jobs["grade"]["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["if"] == "always()"
    assert jobs["report"]["needs"] == "grade" and jobs["report"]["if"] == "always()"
    assert any(str(s.get("uses", "")).startswith("actions/download-artifact") for s in jobs["report"]["steps"])


def test_gitlab_pipeline_grades_submission_x_profile_and_merges_in_a_final_job():
    doc = _yaml(GITLAB)
    (axes,) = doc["grade"]["parallel"]["matrix"]
    assert set(axes) == {"SUBMISSION", "PROFILE"} and set(axes["PROFILE"]) <= set(PROFILES)
    assert doc["grade"]["artifacts"]["when"] == "always"
    assert doc["report"]["when"] == "always" and doc["report"]["needs"][0]["job"] == "grade"
    assert doc["grade"]["artifacts"]["reports"]["junit"] == "results/junit--*.xml"


# ---- the shell steps, run here -------------------------------------------------------------


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # GitHub runs a step as `bash -e` (with pipefail); GitLab stops a job at a failing line.
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True
    )


def _fake_popek(directory: Path, status: int, writes: bool) -> Path:
    """A ``popek`` that records its arguments and PYTHONPATH, writes a results file when
    ``writes``, and exits with ``status``."""
    directory.mkdir(parents=True, exist_ok=True)
    fake = directory / "popek"
    write = "mkdir -p results && echo {} > results/run.json\n" if writes else ""
    fake.write_text(
        f'#!/bin/sh\necho "$@" >> "$(dirname "$0")/calls"\necho "$PYTHONPATH" >> "$(dirname "$0")/paths"\n'
        f"{write}exit {status}\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return directory


def _step(doc: dict, job: str, name_part: str) -> str:
    (step,) = [s for s in doc["jobs"][job]["steps"] if name_part in str(s.get("name", s.get("id", "")))]
    return step["run"]


def test_github_plan_step_lists_the_submission_directories(tmp_path):
    doc = _yaml(GITHUB)
    for name in ("alice", "bob-2"):
        (tmp_path / "submissions" / name).mkdir(parents=True)
    (tmp_path / "submissions" / "README.md").write_text("not a submission")
    output = tmp_path / "github-output"
    result = _bash(_step(doc, "plan", "list"), tmp_path, {"GITHUB_OUTPUT": str(output)})
    assert result.returncode == 0, result.stderr
    assert output.read_text().strip() == 'submissions=["alice", "bob-2"]'


@pytest.mark.parametrize(
    ("which", "status", "writes", "graded"),
    [
        ("github", 0, True, True),
        ("github", 1, True, True),  # unexpected failures: a grade
        ("github", 2, False, False),  # the VMM does not load
        ("github", 1, False, False),  # the run crashed before writing its results
        ("gitlab", 1, True, True),
        ("gitlab", 2, False, False),
        ("gitlab", 0, False, False),
    ],
)
def test_grade_step_names_the_submission_a_package_and_fails_only_when_it_cannot_be_graded(
    tmp_path, which, status, writes, graded
):
    if which == "github":
        doc = _yaml(GITHUB)
        script, env = _step(doc, "grade", "Grade"), dict(doc["env"])
    else:
        doc = _yaml(GITLAB)
        script, env = "\n".join(doc["grade"]["script"]), dict(doc["variables"])
    submission = tmp_path / "submissions" / "bob-2"
    submission.mkdir(parents=True)
    (submission / "student_vmm.py").write_text("class StudentVMM: ...\n")
    bin_dir = _fake_popek(tmp_path / "bin", status, writes)
    env |= {"SUBMISSION": "bob-2", "PROFILE": "x86-2005", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    result = _bash(script, tmp_path, env)
    assert result.returncode == (0 if graded else max(status, 1)), result.stderr
    (call,) = (bin_dir / "calls").read_text().splitlines()
    assert call.split()[:5] == ["grade", "--vmm", "sub_bob_2.student_vmm:StudentVMM", "--profile", "x86-2005"]
    assert "--junitxml results/junit--sub_bob_2--x86-2005.xml" in call
    (path,) = (bin_dir / "paths").read_text().splitlines()
    assert path.split(os.pathsep) == [str(tmp_path / "graded"), str(tmp_path / "graded" / "sub_bob_2")]
    assert (tmp_path / "graded" / "sub_bob_2" / "__init__.py").exists()
    assert (tmp_path / "graded" / "sub_bob_2" / "student_vmm.py").exists()
    notes = list((tmp_path / "results").glob("not-graded--*.txt")) if (tmp_path / "results").exists() else []
    assert bool(notes) != graded
    if notes:
        assert "bob-2 on x86-2005: not graded" in notes[0].read_text()


def test_github_report_step_merges_every_job_and_names_what_was_not_graded(tmp_path):
    doc = _yaml(GITHUB)
    for student, outcome in (("alice", "passed"), ("bob", "failed")):
        key = RunKey("student", "trap-and-emulate", f"sub_{student}.student_vmm:StudentVMM", "x86-2005")
        writer = ResultsWriter(tmp_path / "all-results" / f"results-{student}-x86-2005")
        record = writer.result(key, f"conformance/test_equivalence.py::test_g[student-{student}]", "equivalence", "x")
        record.outcome = outcome
        record.message = "observations differ" if outcome == "failed" else None
        writer.write()
    note = tmp_path / "all-results" / "results-carol-x86-2005" / "not-graded--sub_carol--x86-2005.txt"
    note.parent.mkdir(parents=True)
    note.write_text("carol on x86-2005: not graded, popek grade exited with status 2\n")
    summary = tmp_path / "summary.md"
    result = _bash(_step(doc, "report", "Merge"), tmp_path, {"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.returncode == 0, result.stderr  # bob's failure is a grade, not a broken job
    text = summary.read_text()
    assert "carol on x86-2005: not graded" in text
    report = (tmp_path / "popek-report" / "report.md").read_text()
    assert "sub_alice.student_vmm:StudentVMM" in report and "sub_bob.student_vmm:StudentVMM" in report
    assert report.splitlines()[0] in text  # the grade sheet follows in the step summary


def test_github_steps_grade_two_submissions_with_the_real_popek_and_merge_them(tmp_path):
    """The plan, grade and report steps end to end, as a runner runs them, with popek itself (the
    grade narrowed by -k to one test, in one process, so that it takes seconds)."""
    import shutil
    import sys

    doc = _yaml(GITHUB)
    template = "from reference_vmm.emulate import EmulateVMM\n\n\nclass StudentVMM(EmulateVMM):\n    name = 'student'\n"
    for student in ("alice", "bob-2"):
        (tmp_path / "submissions" / student).mkdir(parents=True)
        (tmp_path / "submissions" / student / "student_vmm.py").write_text(template)
    real = shutil.which("popek") or f"{sys.executable} -m reports.cli"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    narrowed = bin_dir / "popek"
    narrowed.write_text(
        f'#!/bin/sh\nif [ "$1" = grade ]; then exec {real} "$@" -k smsw --workers 0; fi\nexec {real} "$@"\n'
    )
    narrowed.chmod(narrowed.stat().st_mode | stat.S_IEXEC)
    env = {**doc["env"], "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    for student in ("alice", "bob-2"):
        job = tmp_path / "jobs" / student
        shutil.copytree(tmp_path / "submissions", job / "submissions")
        step = _bash(_step(doc, "grade", "Grade"), job, {**env, "SUBMISSION": student, "PROFILE": "classic-1974"})
        assert step.returncode == 0, step.stdout + step.stderr
        shutil.copytree(job / "results", tmp_path / "all-results" / f"results-{student}-classic-1974")
        assert list((job / "results").glob("junit--*.xml"))
    summary = tmp_path / "summary.md"
    step = _bash(_step(doc, "report", "Merge"), tmp_path, {**env, "GITHUB_STEP_SUMMARY": str(summary)})
    assert step.returncode == 0, step.stdout + step.stderr
    report = (tmp_path / "popek-report" / "report.md").read_text()
    assert "sub_alice.student_vmm:StudentVMM" in report and "sub_bob_2.student_vmm:StudentVMM" in report
    assert "Every job was graded." in summary.read_text()
