"""``popek run --os`` and ``--nanobench``: the guest software from the command line, natively and under a VMM."""

from __future__ import annotations

import json

import pytest

from conformance.guest_os import expected_console
from conformance.guest_os.nanobench import expected_output
from reports.cli import main


def test_run_os_prints_the_workloads_output_and_counters(capsys):
    assert main(["run", "--os", "forkwait", "--n", "5"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(expected_console("forkwait", 5).decode())
    assert "exit code: 0" in out
    assert "exception_14" in out  # copy-on-write faults, counted by the core


def test_run_nanobench_under_a_vmm_shows_the_hosts_counters(capsys):
    code = main(["run", "--nanobench", "in", "--n", "20", "--vmm", "hardware-ept", "--profile", "vtx-2009", "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["console"] == expected_output("in", 20).decode()
    assert doc["vmm"] == "hardware-ept"
    # One I/O exit per `in` at least, counted by the host core, not by the VMM.
    assert doc["host"]["counters"]["vm_exits"] >= 20
    assert doc["host"]["host_entries"] >= 20


def test_run_os_under_a_paravirtual_vmm_runs_the_paravirtual_build(capsys):
    code = main(["run", "--os", "forkwait", "--n", "3", "--vmm", "paravirt", "--json"])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["console"] == expected_console("forkwait", 3).decode()
    # The native build's privileged instructions would stop a paravirtual guest at once; the
    # paravirtual build's fork reaches the VMM as mmu_update hypercalls.
    assert doc["vmm_counters"]["hypercall_mmu_update"] > 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--os", "nosuch"], "nosuch"),
        (["run", "--nanobench", "nosuch"], "nosuch"),
        (["run", "--os", "forkwait", "--memory", "4"], "--memory"),
        (["run", "--os", "forkwait", "--input", "x"], "--input"),
        (["run"], "give a program"),
        (["run", "--nanobench", "in", "--vmm", "paravirt"], "no paravirtual build"),
        (["run", "--n", "3", "x.s"], "--n goes with"),
        (["run", "--os", "forkwait", "--vmm", "nosuch"], "nosuch"),
    ],
)
def test_run_refuses_what_makes_no_sense_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("popek: run: ") and message in err and err.count("\n") == 1
