"""The popek pytest plugin, run inside pytest: VMM selection, skips, failure reports, results JSON."""

from __future__ import annotations

import json

import pytest

pytest_plugins = ["pytester"]

# A test file for the inner pytest: one equivalence test on a small guest, and the toy VMMs
# it is graded against.  BrokenVMM's VMs flip the exit code and drop the last console byte: a
# seeded bug the suite must catch (aesthetics-anchors E, "quality").
TOYS = '''
import pytest

pytest_plugins = ["pytester"]

from cffi_core.asm import assemble
from conformance.api import VM, VMConfig, observe
from conformance.checks import ExpectedDeviation, assert_equivalent
from reference_vmm.native import NativeVMM
from reference_vmm.native.monitor import NativeVM

PROGRAM = """
_start: li r1, 'k'
        out 0x3f8, r1
        out 0x500, r0
"""
CONFIG = VMConfig(memory=1 << 16, budget=1000)


class FlippedVM(NativeVM):
    @property
    def exit_code(self):
        code = super().exit_code
        return None if code is None else code ^ 1

    @property
    def console(self):
        return super().console[:-1]


class BrokenVMM(NativeVMM):
    name = "broken"
    technique = "a seeded bug"

    def create_vm(self, image, config):
        vm = super().create_vm(image, config)
        broken = FlippedVM.__new__(FlippedVM)
        broken.__dict__.update(vm.__dict__)
        self.vms[-1] = broken
        return broken


class NeedsVmx(NativeVMM):
    name = "needs-vmx"
    technique = "hardware assistance"
    requires = frozenset({"vmx"})


@pytest.mark.popek_property("equivalence", category="mechanism")
def test_console_and_exit(vmm, popek_profile, popek_record):
    image = assemble(PROGRAM)
    expected = observe(NativeVMM, image, CONFIG, profile=popek_profile)
    actual = observe(vmm, image, CONFIG, profile=popek_profile)
    popek_record(checked=1)
    assert_equivalent(expected, actual, program=PROGRAM)


@pytest.mark.popek_deviation("broken", "the seeded bug (silent failure)")
def test_expected_deviation(vmm):
    if vmm.name == "broken":
        raise ExpectedDeviation("the seeded bug, as the deviation explains it")
'''


@pytest.fixture(autouse=True)
def _inner_ini(pytester: pytest.Pytester) -> None:
    # The inner run sees the outer one's xdist worker environment; pytest-benchmark would warn.
    pytester.makeini("[pytest]\naddopts = -p no:benchmark\n")


@pytest.fixture
def toys(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_toys=TOYS)
    pytester.syspathinsert()  # so that --vmm test_toys:BrokenVMM imports the file
    return pytester


def test_native_passes(toys):
    result = toys.runpytest("--vmm", "native", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_console_and_exit?native? PASSED*"])


def test_broken_vmm_fails_with_the_observation_diff(toys):
    result = toys.runpytest("--vmm", "test_toys:BrokenVMM")
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*observations differ*",
            "*exit code: native 0 (0x0), vmm 1 (0x1)*",
            "*console: differs from byte 0*",
            "*guest program:*",
            "*out 0x500, r0*",
        ]
    )


def test_observations_compared_with_eq_show_the_diff(pytester):
    pytester.makepyfile(
        """
        from conformance.api import Observation

        def test_eq():
            assert Observation(b"a", 0, b"", "exit") == Observation(b"b", 0, b"", "exit")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*console: differs from byte 0*left b'a', right b'b'*"])


def test_unknown_vmm_is_a_usage_error(toys):
    result = toys.runpytest("--vmm", "pkg:Missing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*popek: --vmm pkg:Missing:*cannot import module 'pkg'*"])


def test_unknown_entry_point_lists_the_known_ones(toys):
    result = toys.runpytest("--vmm", "nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no VMM named 'nosuch'*known:*emulate*native*"])


def test_vmm_from_the_environment(toys, monkeypatch):
    monkeypatch.setenv("POPEK_VMM", "native, test_toys:BrokenVMM")
    result = toys.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1, xfailed=1)


def test_default_is_native_and_emulate(toys, monkeypatch):
    monkeypatch.delenv("POPEK_VMM", raising=False)
    result = toys.runpytest("-v")
    result.stdout.fnmatch_lines(["*test_console_and_exit?native? PASSED*", "*test_console_and_exit?emulate? PASSED*"])


def test_vmm_requiring_vmx_is_skipped_with_the_reason(toys):
    result = toys.runpytest("--vmm", "test_toys:NeedsVmx", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*requires host features vmx, which profile 'x86-2005' lacks*"])


def test_unknown_profile_is_a_usage_error(toys):
    result = toys.runpytest("--popek-profile", "pdp-11")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--popek-profile pdp-11*unknown profile*"])


def test_results_json_has_the_documented_fields(toys, tmp_path):
    out = tmp_path / "results"
    result = toys.runpytest("--vmm", "native", "--vmm", "test_toys:BrokenVMM", "--popek-results", str(out))
    result.stdout.fnmatch_lines(["popek: wrote 2 results file(s) to *"])
    assert sorted(p.name for p in out.iterdir()) == ["broken--x86-2005.json", "native--x86-2005.json"]
    broken = json.loads((out / "broken--x86-2005.json").read_text())
    assert (broken["format"], broken["schema"]) == ("popek-results", 1)
    assert (broken["vmm"], broken["technique"], broken["profile"]) == ("broken", "a seeded bug", "x86-2005")
    assert broken["vmm_class"] == "test_toys:BrokenVMM"
    assert set(broken["versions"]) == {"popek", "python", "pytest", "hypothesis"}
    assert broken["summary"]["failed"] == 1 and broken["summary"]["xfailed"] == 1
    tests = {t["nodeid"].split("::")[1]: t for t in broken["tests"]}
    failed = tests["test_console_and_exit[broken]"]
    assert (failed["property"], failed["category"], failed["outcome"]) == ("equivalence", "mechanism", "failed")
    assert "exit code: native 0 (0x0), vmm 1 (0x1)" in failed["message"]
    assert failed["counters"] == {"checked": 1}
    xfailed = tests["test_expected_deviation[broken]"]
    assert xfailed["outcome"] == "xfailed" and "expected deviation of broken" in xfailed["message"]
    native = json.loads((out / "native--x86-2005.json").read_text())
    assert [t["outcome"] for t in native["tests"]] == ["passed", "passed"]
    assert native["tests"][0]["message"] is None


def test_help_shows_the_popek_group(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "popek: grade VMMs on Popek & Goldberg's properties:",
            "*--vmm=NAME*",
            "*--popek-profile=NAME*",
            "*--popek-results=DIR*",
        ]
    )


def test_markers_are_declared(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["*popek_property(name, category=None)*", "*popek_requires(*", "*popek_deviation(*"])
