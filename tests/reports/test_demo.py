"""``popek demo`` and ``popek grade`` on reduced selections: runs, results, report, exit codes."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from cffi_core.profiles import PROFILES, available_profiles
from conformance.results import load_results
from reference_vmm.native import NativeVMM
from reports.cli import main
from reports.demo import Outcome, Plan, plan_runs, problem, reference_vmms, relevant_profiles, supported_profiles
from reports.grades import rerun_command

# The demo's tests run only the directed equivalence guests: the whole suite is the demo's own job.
FAST = ["-k", "directed_guest_is_equivalent", "-j", "1"]

# A VMM with a seeded bug (the low bit of every exit code flipped): the suite must grade it failing.
BROKEN = '''
from reference_vmm.native import NativeVMM
from reference_vmm.native.monitor import NativeVM


class _OffByOneVM(NativeVM):
    @property
    def exit_code(self):
        code = super().exit_code
        return None if code is None else code ^ 1


class BrokenVMM(NativeVMM):
    name = "broken"
    technique = "a seeded bug: the exit code's low bit flipped"

    def create_vm(self, image, config):
        vm = super().create_vm(image, config)
        vm.__class__ = _OffByOneVM
        return vm
'''


class _NeedsVmx(NativeVMM):
    name = "needs-vmx"
    technique = "hardware assistance"
    requires = frozenset({"vmx"})


def test_the_reference_vmms_are_popeks_own_entry_points():
    names = reference_vmms()
    assert {"native", "emulate"} <= set(names)


def test_profiles_follow_what_a_vmm_requires():
    assert supported_profiles(NativeVMM) == available_profiles()
    assert supported_profiles(_NeedsVmx) == [p for p in available_profiles() if "vmx" in PROFILES[p].features]


def test_a_vmm_without_hardware_assists_is_graded_on_the_unassisted_profiles():
    relevant = relevant_profiles(NativeVMM)
    assert {"x86-2005", "x86-64-2005", "classic-1974"} <= set(relevant)
    assert not any("vmx" in PROFILES[p].features for p in relevant)
    assert relevant_profiles(_NeedsVmx) == supported_profiles(_NeedsVmx)
    plans, notes = plan_runs(["native"], None)
    assert [p.profile for p in plans] == relevant and notes == []


def test_a_vmm_is_graded_again_with_the_optional_features_it_uses():
    from reference_vmm.hardware_ept import HardwareEptVMM

    assert relevant_profiles(HardwareEptVMM) == ["vtx-2009", "vtx-2009+iommu"]
    plans, notes = plan_runs(["hardware-ept"], None)
    assert [p.profile for p in plans] == ["vtx-2009", "vtx-2009+iommu"] and notes == []


def test_a_vmm_that_uses_vmx_when_present_is_graded_on_every_profile():
    from reference_vmm.paravirt import ParavirtVMM

    # Its kernel runs deprivileged on the unassisted machines and in guest mode on the vmx
    # ones (docs/paravirt-abi.md §1): each is a different VMM at work, never "x86-2005+vmx".
    assert relevant_profiles(ParavirtVMM) == available_profiles()


def test_a_profile_the_vmm_cannot_run_on_is_left_out_with_a_note(monkeypatch, tmp_path):
    (tmp_path / "needs_vmx_toy.py").write_text(
        "from reference_vmm.native import NativeVMM\n\n\n"
        "class NeedsVmx(NativeVMM):\n    name = 'needs-vmx'\n    technique = 'hw'\n    requires = frozenset({'vmx'})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plans, notes = plan_runs(["needs_vmx_toy:NeedsVmx"], ["x86-2005"])
    assert plans == []
    assert notes == ["needs-vmx not run on x86-2005: it requires vmx"]


def test_demo_of_one_vmm_on_one_profile_passes_and_writes_the_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--vmm", "native", "--profile", "classic-1974", "-o", str(out), *FAST]) == 0
    console = capsys.readouterr().out
    assert "native on classic-1974: as expected" in console
    results = out / "results" / "native--classic-1974.json"
    run = load_results(results)
    assert run.key.profile == "classic-1974"
    assert run.hypothesis_profile == "ci"
    assert run.tests and all(t.outcome in ("passed", "skipped", "xfailed") for t in run.tests)
    assert sorted(p.name for p in (out / "results").iterdir()) == ["native--classic-1974.json", "native--classic-1974.log"]
    assert "## native on classic-1974" in (out / "report.md").read_text()
    assert (out / "report.html").is_file()


def test_grade_of_a_broken_vmm_exits_one_and_its_rerun_command_reproduces_the_failure(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_toy.py").write_text(BROKEN)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the pytest processes import the toy from here
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("POPEK_VMM", "broken_toy:BrokenVMM")  # grade's other way of naming the VMM
    out = tmp_path / "report"
    status = main(["grade", "--profile", "x86-2005", "-o", str(out), *FAST])
    assert status == 1
    captured = capsys.readouterr()
    assert re.search(r"\[1/1\] broken on x86-2005: \d+ unexpected failure\(s\) of \d+ tests", captured.out)
    assert "broken on x86-2005: " in captured.err
    run = load_results(out / "results" / "broken--x86-2005--broken_toy-BrokenVMM.json")
    failed = [t for t in run.tests if t.outcome == "failed"]
    assert failed, "a flipped exit code must fail equivalence"
    assert "exit code" in failed[0].message
    command = rerun_command(run, failed[0])
    assert command in (out / "report.md").read_text()
    # The command as printed, run by a shell from another directory than the suite's and without
    # PYTHONPATH (the command names the toy's folder itself): one test, failing again.
    assert command.startswith(f"PYTHONPATH={tmp_path} python -m pytest ")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    rerun = subprocess.run(
        command.replace(" python -m ", f" {shlex.quote(sys.executable)} -m ", 1) + " -p no:cacheprovider",
        shell=True,
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert rerun.returncode == 1, rerun.stdout[-2000:]
    assert "1 failed" in rerun.stdout


def test_grade_without_a_vmm_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("POPEK_VMM", raising=False)
    assert main(["grade"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("popek: grade needs a VMM")
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_vmm_is_a_clear_error(capsys, tmp_path):
    assert main(["demo", "--vmm", "no-such-vmm", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no-such-vmm" in err
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_profile_is_refused_by_the_parser():
    with pytest.raises(SystemExit):
        main(["demo", "--profile", "pentium"])


def _outcome(tmp_path: Path, status: int, log: str, failed_nodeid: str | None) -> Outcome:
    from conformance.results import ResultsWriter, RunKey

    plan = Plan("native", NativeVMM, "x86-2005")
    key = RunKey("native", NativeVMM.technique, "reference_vmm.native.monitor:NativeVMM", "x86-2005")
    writer = ResultsWriter(tmp_path)
    writer.result(key, "conformance/test_a.py::test_a[native]", "equivalence", None).outcome = "passed"
    if failed_nodeid:
        writer.result(key, failed_nodeid, "equivalence", None).outcome = "failed"
    (results,) = writer.write()
    (tmp_path / "run.log").write_text(log)
    return Outcome(plan, status, 1.0, results, tmp_path / "run.log")


OTHER = "FAILED conformance/test_theorem.py::test_t[trap-and-emulate] - AssertionError: boom"
OWN = "FAILED conformance/test_a.py::test_b[native] - AssertionError: exit code"


def test_a_failure_recorded_under_another_vmm_is_a_problem_of_the_run(tmp_path):
    found = problem(_outcome(tmp_path, 1, f"....F\n{OTHER}\n1 failed", None))
    assert found is not None
    assert found[0].startswith("native on x86-2005: unexpected failures")
    assert found[1] == OTHER


def test_a_failure_the_results_file_records_is_no_extra_problem(tmp_path):
    assert problem(_outcome(tmp_path, 1, f"F\n{OWN}\n1 failed", "conformance/test_a.py::test_b[native]")) is None
    assert problem(_outcome(tmp_path, 0, "1 passed", None)) is None


def test_a_crashed_run_shows_its_log_tail(tmp_path):
    found = problem(_outcome(tmp_path, 3, "INTERNALERROR> something broke", None))
    assert found is not None and "status 3" in found[0] and "INTERNALERROR> something broke" in found[1]
