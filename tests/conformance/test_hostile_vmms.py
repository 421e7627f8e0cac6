"""Misbehaving VMMs are graded as failures with their cause, the results file and report written, in bounded time (docs/vmm-api.md §11).

Each case runs the conformance suite in a pytest subprocess on one plug-in of
``tests.conformance.hostile`` (trap-and-emulate on ``classic-1974``, where it passes every
test, plus one hostile act), then reads the results JSON and writes the report.  The
subprocess timeout is a guard against a hang of the grader, not a measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conformance.results import load_results
from reports.cli import main as popek

ROOT = Path(__file__).resolve().parents[2]
PROFILE = "classic-1974"
EQUIVALENCE = "conformance/test_equivalence.py::test_directed_guest_is_equivalent"
SAFETY = "conformance/test_safety.py::test_cli_jmp_forever_cannot_keep_the_vmm_from_regaining_control"
GUARD = 600  # seconds: far beyond any case; reaching it means the grader hung


def _command(vmm: str, results: Path, *extra: str, safety: bool = True) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"{EQUIVALENCE}[{vmm}-smsw]",
        *([f"{SAFETY}[{vmm}]"] if safety else []),
        "--popek-vmm",
        f"tests.conformance.hostile:{vmm.capitalize()}",
        "--popek-profile",
        PROFILE,
        "--popek-results",
        str(results),
        "--popek-hypothesis-profile=ci",
        *extra,
    ]


def _grade(vmm: str, tmp_path: Path, *extra: str) -> tuple[int, dict[str, tuple[str, str]]]:
    """Run the two tests on the hostile ``vmm``; the exit status and, per test, its outcome
    and message from the results file."""
    results = tmp_path / "results"
    done = subprocess.run(
        _command(vmm, results, *extra), cwd=ROOT, capture_output=True, text=True, timeout=GUARD, check=False
    )
    files = sorted(results.glob("*.json"))
    assert len(files) == 1, f"no results file written:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    run = load_results(files[0])
    return done.returncode, {t.nodeid.split("::")[1].split("[")[0]: (t.outcome, t.message or "") for t in run.tests}


def _report_written(tmp_path: Path) -> None:
    out = tmp_path / "report"
    status = popek(["report", str(tmp_path / "results"), "-o", str(out)])
    assert status == 1, "a report of failed tests exits with status 1"
    assert (out / "report.md").is_file() and (out / "report.html").is_file()


@pytest.mark.parametrize(
    ("hostile", "extra", "cause"),
    [
        ("looping", ("--popek-timeout", "2"), "did not finish within 2 s"),
        ("exiting", (), "exited with status 3"),
        ("segfaulting", (), "SIGSEGV"),
        ("interrupting", (), "KeyboardInterrupt"),
        ("hoarding", ("--popek-memory", "1"), "MemoryError"),
    ],
)
def test_a_vmm_that_hangs_dies_or_hoards_fails_every_test_it_ran_with_the_cause(tmp_path, hostile, extra, cause):
    status, tests = _grade(hostile, tmp_path, *extra)
    assert status == 1
    for name, (outcome, message) in tests.items():
        assert outcome == "failed", f"{name}: {outcome}"
        assert cause in message, f"{name}: {message[-2000:]}"
        assert hostile in message, f"{name}: the message does not name the VMM: {message[-2000:]}"
    _report_written(tmp_path)


def test_a_thread_left_running_does_not_keep_the_grader_from_ending(tmp_path):
    status, tests = _grade("threading", tmp_path)
    assert status == 0, tests
    assert {outcome for outcome, _ in tests.values()} == {"passed"}


def test_host_damage_hidden_from_the_vmms_own_process_is_still_seen(tmp_path):
    status, tests = _grade("hiding", tmp_path)
    assert status == 1
    outcome, message = tests["test_cli_jmp_forever_cannot_keep_the_vmm_from_regaining_control"]
    assert outcome == "failed"
    assert "host canary region damaged" in message, message[-2000:]


def _sigint_as_at_a_prompt() -> None:
    """Between the fork and the exec of the grader: SIGINT at its default action and not blocked,
    as a command typed at a shell prompt gets it, whatever this process has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextlib.contextmanager
def _sigint_in_this_process(state: str) -> Iterator[None]:
    """This process's SIGINT, for the launch of the grader: as it was ("unchanged"), ignored, or
    blocked.  An ignored or blocked SIGINT passes through fork and exec to a child, and Python
    keeps an inherited SIG_IGN (it installs its ``KeyboardInterrupt`` handler only over SIG_DFL):
    the test suite started as a background job of a shell without job control (a script's
    ``pytest ... &``) ignores SIGINT (POSIX.1-2017, Shell Command Language §2.11), and so would
    every grader it starts, unless the launch gives it the SIGINT a user at a prompt has."""
    if state == "ignored":
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
    elif state == "blocked":
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    else:
        yield


@pytest.mark.parametrize("inherited", ["unchanged", "ignored", "blocked"])
def test_ctrl_c_of_the_grader_records_no_pass_and_leaves_no_process_behind(tmp_path, inherited):
    mark = tmp_path / "pid"
    results = tmp_path / "results"
    env = {**os.environ, "POPEK_HOSTILE_MARK": str(mark)}
    command = _command("sleeping", results, safety=False)
    # The Ctrl-C is the user's: the grader starts with the SIGINT of a command typed at a prompt,
    # not with whatever this test process inherited (_sigint_in_this_process).  The grader
    # itself leaves an ignored SIGINT ignored, as pytest and Python do (docs/vmm-api.md §11).
    with _sigint_in_this_process(inherited):
        grader = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_sigint_as_at_a_prompt,
        )
    try:
        deadline = time.monotonic() + GUARD
        while not mark.exists() or not mark.read_text():
            assert grader.poll() is None, grader.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, "the hostile VMM never started"
            time.sleep(0.05)
        child = int(mark.read_text())
        grader.send_signal(signal.SIGINT)
        output = grader.communicate(timeout=GUARD)[0].decode()
    finally:
        grader.kill()
    assert grader.returncode != 0, output[-3000:]
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # the VMM's process is gone (killed and reaped by the grader)
    files = sorted(results.glob("*.json"))
    assert len(files) == 1, output[-3000:]
    doc = json.loads(files[0].read_text())
    outcomes = {t["outcome"] for t in doc["tests"]}
    assert outcomes == {"error"}, doc["tests"]
    assert all("no outcome" in t["message"] for t in doc["tests"])
    assert doc["summary"]["passed"] == 0


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped yet has ended)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_grader_killed_outright_takes_the_vmms_process_with_it(tmp_path, kill):
    # A grader that cannot run its `finally` (SIGTERM's default action, SIGKILL) must not leave
    # the VMM's process running: it is its own process group, with SIGINT ignored (isolation.py).
    mark = tmp_path / "pid"
    env = {**os.environ, "POPEK_HOSTILE_MARK": str(mark)}
    grader = subprocess.Popen(
        _command("sleeping", tmp_path / "results", safety=False),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + GUARD
        while not mark.exists() or not mark.read_text():
            assert grader.poll() is None, "the grader ended before the hostile VMM started"
            assert time.monotonic() < deadline, "the hostile VMM never started"
            time.sleep(0.05)
        child = int(mark.read_text())
        assert _running(child)
        grader.send_signal(kill)
        grader.wait(timeout=GUARD)
    finally:
        grader.kill()
    deadline = time.monotonic() + 30
    while _running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    still = _running(child)
    if still:
        os.killpg(child, signal.SIGKILL)
    assert not still, "the VMM's process outlived its grader"
