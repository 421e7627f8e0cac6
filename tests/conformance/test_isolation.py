"""The child process that runs a VMM under test: plain data back, errors by kind, deaths, timeouts, memory bounds (conformance.isolation)."""

from __future__ import annotations

import os
import re
import signal

import pytest

from conformance import isolation
from conformance.api import NoProgress, VMConfig, VMMError, VMMUnsupported
from conformance.isolation import Limits, Session, VMMCrashed, VMMTimedOut, run_isolated

LABEL = "VMM 'toy' (toy:Toy)"
QUICK = Limits(timeout=5.0)


def _run(work, limits: Limits = QUICK):
    return run_isolated(work, label=LABEL, what="the toy's run", limits=limits)


def test_plain_data_comes_back_as_it_was():
    data = {"console": b"hi", "exit_code": None, "n": [1, 2.5, True], "t": (1, "x"), "s": frozenset({3})}
    assert _run(lambda: data) == data


def test_work_runs_in_another_process_and_its_changes_stay_there():
    here = os.getpid()
    box = {"touched": False}

    def work():
        box["touched"] = True
        return os.getpid()

    assert _run(work) != here
    assert box == {"touched": False}


def test_a_result_that_is_not_plain_data_is_an_error_naming_it():
    with pytest.raises(VMMError, match=r"toy's run raised UnpicklingError: .*VMConfig is not plain data"):
        _run(VMConfig)


def test_a_forged_reply_naming_a_class_is_refused_by_the_grader():
    def work():
        isolation._loads = lambda data: None  # the child skips its own check: only the grader's remains
        return VMConfig()

    with pytest.raises(VMMCrashed, match=r"sent a reply to the toy's run that is not plain data"):
        _run(work)
    assert isolation._loads(__import__("pickle").dumps(7)) == 7  # the grader's own is untouched


@pytest.mark.parametrize("kind", [NoProgress, VMMUnsupported, VMMError])
def test_the_contracts_errors_cross_with_their_kind_and_message(kind):
    def work():
        raise kind("no progress: it spun")

    with pytest.raises(kind, match=r"^no progress: it spun$"):
        _run(work)


@pytest.mark.parametrize("raised", [ZeroDivisionError("boom"), KeyboardInterrupt("boom"), SystemExit("boom")])
def test_any_other_exception_is_a_vmm_error_naming_its_type(raised):
    def work():
        raise raised

    expected = f"{LABEL}: the toy's run raised {type(raised).__name__}: boom"
    # then the failing frame in the VMM's own code (here, this file)
    with pytest.raises(VMMError, match=f"^{re.escape(expected)}\n  at .*test_isolation.py:\\d+ in work: raise raised$"):
        _run(work)


@pytest.mark.parametrize(
    ("work", "cause"),
    [
        (lambda: os._exit(3), r"it exited with status 3 \(os._exit in the VMM, or a fatal error\)"),
        (lambda: os.kill(os.getpid(), signal.SIGSEGV), r"killed by SIGSEGV \(signal 11\)"),
        (lambda: os.kill(os.getpid(), signal.SIGKILL), r"killed by SIGKILL \(signal 9\)"),
    ],
)
def test_a_child_that_dies_is_a_crash_naming_the_vmm_and_the_cause(work, cause):
    with pytest.raises(VMMCrashed, match=rf"toy.*the process running the VMM died during the toy's run: {cause}"):
        _run(work)


def test_a_child_that_overruns_its_time_is_killed_and_later_requests_of_the_test_fail_at_once():
    with isolation.one_test():
        with pytest.raises(VMMTimedOut, match=r"the toy's run did not finish within 0.5 s .*was killed"):
            _run(lambda: __import__("time").sleep(3600), Limits(timeout=0.5))
        with pytest.raises(VMMTimedOut, match="on an earlier example of this test; not run again"):
            _run(lambda: 1)
    assert _run(lambda: 1) == 1  # another test runs it again


def test_a_child_bounded_in_memory_gets_memory_error():
    with pytest.raises(VMMError, match=r"MemoryError.*may add 0.25 GiB of address space"):
        _run(lambda: bytearray(1 << 30), Limits(timeout=30.0, memory=1 << 28))


def test_a_reply_larger_than_the_limit_is_refused():
    with pytest.raises(VMMCrashed, match=r"sent a reply of \d+ bytes to the toy's run \(at most 1000\)"):
        _run(lambda: b"x" * 5000, Limits(reply=1000))


class _Counter:
    def __init__(self) -> None:
        self.n = 0

    def bump(self, by: int) -> int:
        self.n += by
        return self.n

    def fail(self) -> None:
        raise NoProgress("no progress: stuck")


def test_a_session_keeps_its_state_between_requests_and_survives_an_error():
    with Session(_Counter, label=LABEL, limits=QUICK) as session:
        assert session.call("bump", 2) == 2
        with pytest.raises(NoProgress):
            session.call("fail")
        assert session.call("bump", 3) == 5
        pid = session.pid
    assert session.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_session_whose_state_cannot_be_built_reports_it_at_the_first_request():
    def factory():
        raise RuntimeError("no host")

    with Session(factory, label=LABEL, limits=QUICK) as session, pytest.raises(VMMError, match="RuntimeError: no host"):
        session.call("anything")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"timeout": 0}, "timeout = 0"), ({"memory": -1}, "memory = -1"), ({"reply": 1.5}, "reply = 1.5")],
)
def test_limits_are_checked(kwargs, words):
    with pytest.raises(ValueError, match=words):
        Limits(**kwargs)


def test_a_requests_time_grows_with_the_ticks_it_may_run_unless_fixed():
    from conformance.isolation import BASE_SECONDS, MIN_TICKS_PER_SECOND

    scaled = Limits()
    assert scaled.seconds(0) == BASE_SECONDS
    assert scaled.seconds(3 * MIN_TICKS_PER_SECOND) == BASE_SECONDS + 3
    assert Limits(timeout=7).seconds(10**9) == 7
