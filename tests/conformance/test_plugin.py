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
    pytester.syspathinsert()  # so that --popek-vmm test_toys:BrokenVMM imports the file
    return pytester


def test_native_passes(toys):
    result = toys.runpytest("--popek-vmm", "native", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_console_and_exit?native? PASSED*"])


def test_broken_vmm_fails_with_the_observation_diff(toys):
    result = toys.runpytest("--popek-vmm", "test_toys:BrokenVMM")
    result.assert_outcomes(failed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*observations differ*",
            "*exit code: native 0 (0x0), vmm 1 (0x1)*",
            "*console: differs from line 1 (byte 0*",
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
    result.stdout.fnmatch_lines(
        [
            "*assert the two Observations compared with == differ:*",
            "*console: differs from line 1 (byte 0; left 1 bytes, right 1*",
            "*!     1 | a * | b",
        ]
    )


def test_unknown_vmm_is_a_usage_error(toys):
    result = toys.runpytest("--popek-vmm", "pkg:Missing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*popek: --popek-vmm pkg:Missing:*cannot import module 'pkg'*"])


def test_unknown_entry_point_lists_the_known_ones(toys):
    result = toys.runpytest("--popek-vmm", "nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no VMM named 'nosuch'*known:*emulate*native*"])


def test_a_near_miss_vmm_name_gets_a_suggestion(toys):
    result = toys.runpytest("--popek-vmm", "emulat")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no VMM named 'emulat' (did you mean 'emulate'?)*"])


def test_an_unknown_hypothesis_profile_is_one_line_before_any_test(toys):
    result = toys.runpytest("--hypothesis-profile=thorogh")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: popek: --hypothesis-profile thorogh: no such hypothesis profile "
                                 "(did you mean 'thorough'?)*"])  # fmt: skip
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_an_unknown_popek_hypothesis_profile_is_one_line(toys):
    result = toys.runpytest("--popek-hypothesis-profile=thorogh")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: popek: --popek-hypothesis-profile thorogh: no hypothesis profile 'thorogh' "
                                 "(did you mean 'thorough'?)*"])  # fmt: skip


# ---- a good citizen: installed, the plugin changes nothing in another project's run ---------
OTHER_CONFTEST = """
def pytest_addoption(parser):
    parser.addoption("--vmm", default="theirs")  # a name popek's plugin must not take
"""
OTHER_TESTS = """
import json, os
from hypothesis import given, settings, strategies as st


def _defaults():
    d = settings.default
    return {"profile": settings.get_current_profile_name(), "max_examples": d.max_examples,
            "deadline": str(d.deadline), "database": d.database is None, "derandomize": d.derandomize}


def test_hypothesis_defaults_are_what_hypothesis_chose(request):
    assert request.config.getoption("--vmm") == "mine"
    with open(os.environ["OTHER_OUT"], "w") as f:
        json.dump(_defaults(), f)


@given(st.integers())
def test_a_property(x):
    assert not settings.get_current_profile_name().startswith("popek-")
"""


def test_another_projects_run_keeps_its_hypothesis_settings_and_its_options(pytester, monkeypatch):
    # Hypothesis itself picks a profile (its own "ci" one when CI is set), so the reference is
    # the same run with popek's plugin disabled, not a fixed name.
    pytester.makeconftest(OTHER_CONFTEST)
    pytester.makepyfile(test_other=OTHER_TESTS)
    seen = {}
    for plugin in ("popek", "no:popek"):
        out = pytester.path / f"defaults-{plugin.replace(':', '-')}.json"
        monkeypatch.setenv("OTHER_OUT", str(out))
        args = ["--vmm", "mine", "-p", "no:cacheprovider"] + (["-p", plugin] if plugin.startswith("no:") else [])
        result = pytester.runpytest_subprocess(*args)  # its own hypothesis state
        result.assert_outcomes(passed=2)
        seen[plugin] = json.loads(out.read_text())
    assert seen["popek"] == seen["no:popek"]


def test_vmm_from_the_environment(toys, monkeypatch):
    monkeypatch.setenv("POPEK_VMM", "native, test_toys:BrokenVMM")
    result = toys.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1, xfailed=1)


def test_default_is_native_and_emulate(toys, monkeypatch):
    monkeypatch.delenv("POPEK_VMM", raising=False)
    result = toys.runpytest("-v")
    result.stdout.fnmatch_lines(["*test_console_and_exit?native? PASSED*", "*test_console_and_exit?emulate? PASSED*"])


def test_vmm_requiring_vmx_is_skipped_with_the_reason(toys):
    result = toys.runpytest("--popek-vmm", "test_toys:NeedsVmx", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*requires host features vmx, which profile 'x86-2005' lacks*"])


PV_TOYS = '''
import pytest

from reference_vmm.native import NativeVMM


class PvToy(NativeVMM):
    name = "pv-toy"
    technique = "paravirtualization"
    guest_abi = "paravirt"


class OddAbi(NativeVMM):
    name = "odd-abi"
    technique = "a guest ABI of its own"
    guest_abi = "s390"


@pytest.mark.popek_guest_abi("native", "paravirt")
def test_either_build(vmm):
    assert vmm.guest_abi in ("native", "paravirt")


@pytest.mark.popek_guest_abi("paravirt")
def test_paravirtual_only(vmm):
    assert vmm.guest_abi == "paravirt"


@pytest.mark.popek_property("equivalence")
def test_native_only(vmm):
    assert vmm.guest_abi == "native"
'''


@pytest.fixture
def pv_toys(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_pv_toys=PV_TOYS)
    pytester.syspathinsert()
    return pytester


def test_a_paravirtual_vmm_runs_only_the_tests_that_have_its_build(pv_toys):
    result = pv_toys.runpytest("--popek-vmm", "test_pv_toys:PvToy", "--popek-vmm", "native", "-rs", "-v")
    result.assert_outcomes(passed=4, skipped=2)
    result.stdout.fnmatch_lines(
        [
            "*test_either_build?pv-toy? PASSED*",
            "*test_either_build?native? PASSED*",
            "*test_paravirtual_only?pv-toy? PASSED*",
            "*native runs native guests; this test has only paravirt builds of its guests*",
            "*pv-toy runs guests ported to the paravirtual ABI*paravirtualization removes*",
        ]
    )


def test_an_unknown_guest_abi_is_a_usage_error(pv_toys):
    result = pv_toys.runpytest("--popek-vmm", "test_pv_toys:OddAbi")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*odd-abi*guest_abi 's390' is not one of native, paravirt*"])


def test_unknown_profile_is_a_usage_error(toys):
    result = toys.runpytest("--popek-profile", "pdp-11")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--popek-profile pdp-11*unknown profile*"])


def test_results_json_has_the_documented_fields(toys, tmp_path):
    out = tmp_path / "results"
    result = toys.runpytest("--popek-vmm", "native", "--popek-vmm", "test_toys:BrokenVMM", "--popek-results", str(out))
    result.stdout.fnmatch_lines(["popek: wrote 2 results file(s) to *"])
    # A VMM outside popek's own has its class in the name: two submissions never share a file.
    broken_file = "broken--x86-2005--test_toys-BrokenVMM.json"
    assert sorted(p.name for p in out.iterdir()) == [broken_file, "native--x86-2005.json"]
    broken = json.loads((out / broken_file).read_text())
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
            "*--popek-vmm=NAME*",
            "*--popek-profile=NAME*",
            "*--popek-results=DIR*",
        ]
    )


def test_markers_are_declared(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        ["*popek_property(name, category=None)*", "*popek_requires(*", "*popek_guest_abi(*", "*popek_deviation(*"]
    )


# ---- expected deviations excuse only what they explain ------------------------------------
# The conformance suite's own tests, run by an inner pytest against trap-and-emulate and two
# impostors: a subclass whose emulation of mfcr (privileged: it traps and is emulated) sets
# bit 0 of the result, and a native VMM calling itself "trap-and-emulate" whose console loses
# its last byte.  A small derandomized hypothesis profile keeps the inner runs short.
IMPOSTORS = '''
from hypothesis import Phase, settings

from cffi_core import spec
from reference_vmm.native import NativeVMM
from reference_vmm.native.monitor import NativeVM
from reference_vmm.trap_emulate.monitor import TrapEmulateVM, TrapEmulateVMM

settings.register_profile(
    "inner", max_examples=25, derandomize=True, database=None, deadline=None, phases=[Phase.generate]
)


class MfcrBugVM(TrapEmulateVM):
    def _emulate(self):
        v = self.cpu
        try:
            entry = spec.decode_word(spec.fetch(v, self.memory, v.pc))
        except spec.Fault:
            entry = None
        before = v.pc
        ex = super()._emulate()
        if entry is not None and entry[0].insn.mnemonic == "mfcr" and v.pc == before + 4 and entry[0].rd:
            v.r[entry[0].rd] ^= 1
        return ex


class MfcrBugTrap(TrapEmulateVMM):
    def create_vm(self, image, config):
        vm = super().create_vm(image, config)
        vm.__class__ = MfcrBugVM
        return vm


class ShortConsoleVM(NativeVM):
    @property
    def console(self):
        return super().console[:-1]


class NamedTrap(NativeVMM):
    name = "trap-and-emulate"
    technique = "a native VMM that takes trap-and-emulate's name"

    def create_vm(self, image, config):
        vm = super().create_vm(image, config)
        vm.__class__ = ShortConsoleVM
        return vm
'''


@pytest.fixture
def impostors(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(IMPOSTORS)
    pytester.syspathinsert()
    return pytester


def _suite(p: pytest.Pytester, module: str, vmm: str, *args: str) -> pytest.RunResult:
    return p.runpytest(
        "--pyargs", f"conformance.{module}", "--popek-vmm", vmm, "--popek-profile", "x86-2005",
        "--popek-hypothesis-profile=inner", "-p", "no:cacheprovider", "-rfxX", *args,
    )  # fmt: skip


def test_a_trap_and_emulate_subclass_with_a_bug_fails_the_generated_tests(impostors):
    result = _suite(impostors, "test_generated", "conftest:MfcrBugTrap", "-k", "kernel")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: observations differ*", "*console: differs*"])


def test_trap_and_emulate_still_xfails_the_generated_tests(impostors):
    result = _suite(impostors, "test_generated", "trap-and-emulate", "-k", "kernel")
    result.assert_outcomes(xfailed=1)
    result.stdout.fnmatch_lines(["*XFAIL*expected deviation of trap-and-emulate*"])


def test_the_buggy_subclass_fails_obstacle_and_mechanism_guests(impostors):
    # smsw carries the deviation, but with smsw neutralised the guest's cr0 line still differs.
    result = _suite(impostors, "test_equivalence", "conftest:MfcrBugTrap", "-k", "smsw or paging")
    result.assert_outcomes(failed=2)


def test_a_vmm_with_the_name_but_broken_equivalence_fails(impostors):
    # Not explained on the obstacle guests (the neutralised guest differs too), and failing as
    # ever on a mechanism guest.
    result = _suite(impostors, "test_equivalence", "conftest:NamedTrap", "-k", "sidt or timer")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*AssertionError: observations differ*"])


def test_trap_and_emulate_xfails_exactly_the_obstacle_guests(impostors):
    result = _suite(impostors, "test_equivalence", "trap-and-emulate")
    outcomes = result.parseoutcomes()
    assert outcomes.get("xfailed") == 7 and not outcomes.get("failed"), result.stdout.str()


def test_an_explained_failure_without_a_declared_deviation_fails():
    from conformance.checks import DeviationLedger, ExpectedDeviation, deviation_explained, expecting_deviation

    with pytest.raises(ExpectedDeviation, match="none is declared for this VMM"):
        deviation_explained(["the diff"])
    with expecting_deviation("t", "why") as ledger:
        deviation_explained(["big"], size=9)
        deviation_explained(["small"], size=2)
    assert isinstance(ledger, DeviationLedger) and ledger.explained == 2
    assert str(ledger.exception()).splitlines()[-1] == "small"
    with pytest.raises(ExpectedDeviation):  # the ledger is closed with its block
        deviation_explained(["after"])


def test_explanations_need_the_sensitive_instructions():
    from conformance.checks import explained_by_sensitive_unprivileged, explained_directed
    from conformance.guests import by_name
    from conformance.strategies import Block, GuestProgram
    from reference_vmm.trap_emulate.monitor import TrapEmulateVMM

    smsw = GuestProgram(cpl=0, paging=False, flags=0, body=(Block(("smsw r1",)), Block(("addi r2, r0, 5",))))
    assert explained_by_sensitive_unprivileged(TrapEmulateVMM, "x86-2005", smsw)
    plain = GuestProgram(cpl=0, paging=False, flags=0, body=(Block(("addi r2, r0, 5",)),))
    assert not explained_by_sensitive_unprivileged(TrapEmulateVMM, "x86-2005", plain)
    guest = by_name("smsw")
    assert explained_directed(TrapEmulateVMM, "x86-2005", guest.image(), guest.config)
    # No sensitive instruction in the range neutralised: nothing to explain the difference with.
    assert not explained_directed(TrapEmulateVMM, "x86-2005", guest.image(), guest.config, start="main", end="main")


def test_generated_tests_put_their_coverage_in_the_results_json(impostors, tmp_path):
    out = tmp_path / "results"
    result = _suite(impostors, "test_generated", "native", "-k", "kernel", "-n", "2", "--popek-results", str(out))
    result.assert_outcomes(passed=1)
    (test,) = json.loads((out / "native--x86-2005.json").read_text())["tests"]
    cells = test["coverage"]
    assert cells and all(type(n) is int and 1 <= n <= 25 for n in cells.values())  # at most one per example
    assert all((key.startswith("insn/") and "/cpl0/" in key) or key.startswith("adjacent/") for key in cells)


@pytest.mark.parametrize(
    ("option", "value", "words"),
    [
        ("--popek-timeout", "0", "give a positive number of seconds"),
        ("--popek-timeout", "soon", "'soon' is not a number of seconds"),
        ("--popek-memory", "-2", "give a positive number of GiB"),
        ("--popek-memory", "lots", "'lots' is not a number of GiB"),
    ],
)
def test_bad_isolation_limits_are_usage_errors(toys, option, value, words):
    result = toys.runpytest("--popek-vmm", "native", option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{option}*{words}*"])
