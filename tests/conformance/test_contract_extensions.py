"""The contract's efficiency keys, host canary and host timer, and tests that name their VMM."""

from __future__ import annotations

import json

from cffi_core.asm import assemble
from cffi_core.machine import Machine
from conformance.api import (
    COUNTER_DIRECT,
    COUNTER_EMULATED,
    COUNTER_INTERVENTIONS,
    HOST_CANARY_SIZE,
    VMConfig,
    default_host_memory,
    host_canary,
    observe,
)
from conformance.safety import canary_pattern, run_side_by_side
from reference_vmm.emulate import EmulateVMM
from reference_vmm.hardware_ept import HardwareEptVMM
from reference_vmm.native import NativeVMM

pytest_plugins = ["pytester"]

LOOP = """
_start: li r1, 100
loop:   addi r1, r1, -1
        bnez r1, loop
        out 0x500, r0
"""


def test_canary_is_the_top_of_host_ram_and_outside_what_a_guest_needs():
    host = Machine("x86-2005", default_host_memory(1 << 20))
    start, size = host_canary(host)
    assert (start + size, size) == (host.memory_size, HOST_CANARY_SIZE)
    assert start >= 2 * (1 << 20)  # twice the guest's RAM stays below it
    assert len(canary_pattern(start, size)) == size


def test_reference_vmms_report_the_efficiency_keys():
    image, config = assemble(LOOP), VMConfig(memory=1 << 16, budget=10_000)
    native = observe(NativeVMM, image, config).counters
    emulated = observe(EmulateVMM, image, config).counters
    assert native["instructions"] == emulated["instructions"] > 200
    assert (native[COUNTER_DIRECT], native[COUNTER_EMULATED], native[COUNTER_INTERVENTIONS]) == (
        native["instructions"],
        0,
        0,
    )
    assert emulated[COUNTER_DIRECT] == 0
    assert emulated[COUNTER_EMULATED] == emulated[COUNTER_INTERVENTIONS] == emulated["instructions"]


def test_side_by_side_of_well_behaved_vmms_shows_no_violation():
    image, config = assemble(LOOP), VMConfig(memory=1 << 16, budget=10_000)
    for vmm in (NativeVMM, EmulateVMM):
        run = run_side_by_side(vmm, [(image, config), (image, config)], "x86-2005")
        assert run.violations() == [], vmm.name
        assert [o.exit_code for o in run.observations] == [0, 0]


def test_a_vmm_that_raises_is_reported_not_propagated():
    class Raising(NativeVMM):
        name = "raising"
        technique = "raises in run"

        def run(self, budget):
            raise ZeroDivisionError("seeded")

    run = run_side_by_side(Raising, [(assemble(LOOP), VMConfig(memory=1 << 16, budget=1000))], "x86-2005")
    (violation,) = run.violations()
    message, where = violation.split("\n")  # the message, then the VMM's own failing frame
    assert message == (
        "the VMM failed (the host survived): VMM 'raising' (" + Raising.__module__ + ":"
        "test_a_vmm_that_raises_is_reported_not_propagated.<locals>.Raising): run raised "
        "ZeroDivisionError: seeded"
    )
    assert where.startswith("  at ") and where.endswith(
        'test_contract_extensions.py:70 in run: raise ZeroDivisionError("seeded")'
    )


NAMED = """
import pytest

@pytest.mark.popek_property("equivalence", category="named")
@pytest.mark.parametrize("vmm", ["native"], indirect=True)
def test_names_native(vmm):
    assert vmm.name == "native"

@pytest.mark.parametrize("vmm", ["no-such-vmm"], indirect=True)
def test_names_a_missing_vmm(vmm):
    raise AssertionError("never runs")
"""


def test_a_test_that_names_its_vmm_runs_in_that_vmms_run(pytester, tmp_path):
    pytester.makeini("[pytest]\naddopts = -p no:benchmark\n")
    pytester.makepyfile(test_named=NAMED)
    out = tmp_path / "results"
    result = pytester.runpytest("--popek-vmm", "emulate", "--popek-results", str(out), "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*needs the VMM 'no-such-vmm': no VMM named 'no-such-vmm'*"])
    result.stdout.fnmatch_lines(["*about native, which this run does not select*"])
    assert not out.exists() or not list(out.iterdir())  # native was not selected: not recorded
    result = pytester.runpytest("--popek-vmm", "native", "--popek-results", str(out))
    result.assert_outcomes(passed=1, skipped=1)
    recorded = json.loads((out / "native--x86-2005.json").read_text())
    assert [(t["category"], t["outcome"]) for t in recorded["tests"]] == [("named", "passed")]


BEYOND_RAM = """
_start: li r9, 0x100000
        ld r1, [r9]
        out 0x500, r0
"""


def test_nested_tables_do_not_count_on_host_ram_being_zero():
    # The safety harness fills all host RAM with the canary pattern first, as a real machine's
    # RAM holds whatever it held: a nested table page taken without clearing it maps garbage
    # beyond the guest's RAM (an EPT misconfiguration), where a bare machine raises #MC.
    image, config = assemble(BEYOND_RAM), VMConfig(memory=1 << 20, budget=10_000)
    native = observe(NativeVMM, image, config, profile="vtx-2009")
    run = run_side_by_side(HardwareEptVMM, [(image, config)], "vtx-2009")
    assert run.violations() == []
    assert run.observations == [native]
