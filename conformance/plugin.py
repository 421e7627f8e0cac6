"""The popek pytest plugin (entry point ``pytest11``): VMM selection, markers, results JSON (docs/vmm-api.md §10).

Run the conformance suite from the repository root (the default ``python -m pytest`` collects
only ``tests/``)::

    python -m pytest conformance                                   # the reference VMMs, x86-2005
    python -m pytest conformance --popek-vmm emulate --popek-profile classic-1974
    python -m pytest conformance --popek-vmm mypkg.monitor:MyVMM --popek-results results/
    python -m pytest --pyargs conformance --popek-vmm emulate             # from anywhere, installed

Options (group ``popek``; every one prefixed, so that the plugin, installed, takes no name
another project's options may use):

- ``--popek-vmm NAME`` (repeatable): an entry-point name of group ``popek.vmms`` (``native``,
  ``emulate``, ...) or ``pkg.module:Class``.  Without it, the comma-separated names in the
  environment variable ``POPEK_VMM``; without that, the reference VMMs ``DEFAULT_VMMS``
  (``native``, ``emulate``, ``trap-and-emulate``).
- ``--popek-hypothesis-profile NAME``: the hypothesis profile of popek's tests alone
  (``conformance.hypothesis_profiles``: dev, ci, ci-random, thorough).
- ``--popek-profile NAME``: the machine profile the host and the oracle run (default
  ``x86-2005``, docs/architecture.md §12).
- ``--popek-results DIR``: write one JSON file per (VMM, profile) run (``conformance.results``).
- ``--popek-timeout SECONDS`` and ``--popek-memory GIB``: the bounds of each run of a VMM under
  test, which happens in a child process of its own (``conformance.isolation``, docs/vmm-api.md
  §11): past them the process is killed, or its allocations fail, and the test fails.

A test's result is recorded from its final report only: one interrupted before it finished is
an error in the results file, never a pass.

A test that takes the ``vmm`` fixture runs once per selected VMM (ids = VMM names) and is
skipped, with the reason, when the profile lacks a feature the VMM ``requires``.  A test may
name its VMM instead (``@pytest.mark.parametrize("vmm", ["trap-and-emulate"], indirect=True)``,
as the theorem test does): it runs, and is recorded, in a run that selects that VMM (the default
selection does), and is skipped with the reason otherwise or while the VMM cannot be loaded.  Markers:

- ``popek_property(name, category=None)``: the property graded (equivalence, safety,
  efficiency) and a category (obstacle, mechanism, ...), recorded in the results;
- ``popek_requires(*features)``: skip unless the profile has every feature;
- ``popek_guest_abi(*abis)``: the guest builds the test can give a VMM (``VMM.guest_abi``:
  ``"native"``, ``"paravirt"``); default ``("native",)``.  A VMM whose ABI is not listed is
  skipped with the reason: a paravirtual VMM runs only guests ported to its interface, never the
  native code a test generates (Fisher-Ogden 2006 §2.3.3; docs/vmm-api.md §10.6);
- ``popek_deviation(technique, reason, profiles=None, raises=ExpectedDeviation)``: an expected
  deviation of a technique, named as the paper names it.  It applies to a VMM whose ``name`` is
  ``technique`` (on ``profiles``, default all; ``NAME+FEATURE`` counts as ``NAME``): the technique is recognised by name, and the name
  buys nothing but the deviation's own failures, because the test is a strict
  ``xfail(raises=raises)``: only a failure the test has shown to be explained by the deviation
  (raised as ``conformance.checks.ExpectedDeviation``) is excused; a plain ``AssertionError``
  (a different difference), a ``VMMError`` (the VMM raised) or anything else is a failure.
  While such a test runs, ``conformance.checks.deviation_explained`` notes explained failures
  instead of raising them, so that hypothesis goes on searching for unexplained ones; the test
  then ends in ``ExpectedDeviation`` (docs/vmm-api.md §10).

Fixtures: ``vmm`` (the VMM class), ``popek_profile`` (the profile name), ``popek_record``
(``popek_record(**counters)`` attaches integer counters to the test's result).  The coverage
cells a test's generated guests exercised (``conformance.coverage.note``) are attached to its
result the same way, as ``coverage``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conformance import coverage, hypothesis_profiles, isolation
from conformance.api import VMM, Observation, VMMError, VMMUnsupported, load_vmm
from conformance.checks import (
    COMPARE_HEADLINE,
    ExpectedDeviation,
    disk_diff,
    equivalence_report,
    expecting_deviation,
)
from conformance.isolation import BASE_SECONDS, DEFAULT_LIMITS, MIN_TICKS_PER_SECOND
from conformance.results import ResultsWriter, RunKey, clip

# popek's profiles exist (as popek-dev, popek-ci, ...) before anything reads them; none is
# loaded: popek's tests take the run's choice as their settings' parent (hypothesis_profiles).
hypothesis_profiles.register()

__all__ = [
    "DEFAULT_VMMS",
    "ENV_VMM",
    "GUEST_ABIS",
    "MARK_DEVIATION",
    "MARK_GUEST_ABI",
    "MARK_PROPERTY",
    "MARK_REQUIRES",
    "OPTION_HYPOTHESIS_PROFILE",
    "OPTION_MEMORY",
    "OPTION_PROFILE",
    "OPTION_RESULTS",
    "OPTION_TIMEOUT",
    "OPTION_VMM",
    "PROPERTIES",
    "check_supported",
]

OPTION_VMM = "--popek-vmm"
OPTION_HYPOTHESIS_PROFILE = "--popek-hypothesis-profile"
OPTION_PROFILE = "--popek-profile"
OPTION_RESULTS = "--popek-results"
OPTION_TIMEOUT = "--popek-timeout"
OPTION_MEMORY = "--popek-memory"
ENV_VMM = "POPEK_VMM"
DEFAULT_VMMS = ("native", "emulate", "trap-and-emulate")
DEFAULT_PROFILE = "x86-2005"

MARK_PROPERTY = "popek_property"
MARK_REQUIRES = "popek_requires"
MARK_DEVIATION = "popek_deviation"
MARK_GUEST_ABI = "popek_guest_abi"
GUEST_ABIS = ("native", "paravirt")  # VMM.guest_abi: which build of a guest a VMM runs
PROPERTIES = ("equivalence", "safety", "efficiency")  # Popek & Goldberg 1974, §2

_RUN_PROPERTY = "popek"  # user_properties keys: they travel with reports across xdist workers
_COUNTERS_PROPERTY = "popek_counters"
_COVERAGE_PROPERTY = "popek_coverage"
_DEVIATION_PROPERTY = "popek_deviation"
# Their values are JSON text, so that pytest's junitxml writes JSON (it writes str(value));
# reports/junit.py reads them back, _properties below decodes them (docs/grading.md).
_DEVIATION = pytest.StashKey[tuple[str, str]]()  # (technique, reason) of the deviation that applies
_BLOB_BYTES = 256  # byte strings longer than this are compared as a hex diff (pytest_assertrepr_compare)


@dataclass
class _State:
    specs: list[str]
    profile: str
    vmms: list[type[VMM]] | None = None
    features: frozenset[str] = field(default_factory=frozenset)

    def selected(self) -> list[type[VMM]]:
        """The VMM classes of this run, loaded on first use (a run of ``tests/`` loads none)."""
        if self.vmms is None:
            self.vmms = [_load(spec) for spec in dict.fromkeys(self.specs)]
        return self.vmms


_STATE = pytest.StashKey[_State]()


def _load(spec: str) -> type[VMM]:
    try:
        return load_vmm(spec)
    except VMMError as e:
        raise pytest.UsageError(f"popek: {OPTION_VMM} {spec}: {e}") from None


def check_supported(cls: type[VMM], profile: str, features: frozenset[str]) -> None:
    """Raise VMMUnsupported when ``profile`` (with ``features``) lacks what ``cls`` requires."""
    missing = frozenset(cls.requires) - features
    if missing:
        raise VMMUnsupported(
            f"VMM {cls.name!r} requires host features {', '.join(sorted(missing))}, which profile {profile!r} lacks"
        )


# ---- options and configuration ------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("popek", "popek: grade VMMs on Popek & Goldberg's properties")
    group.addoption(
        OPTION_VMM,
        action="append",
        dest="popek_vmm",
        default=[],
        metavar="NAME",
        help=f"VMM under test: an entry-point name (group popek.vmms) or pkg.module:Class; repeatable. "
        f"Default: ${ENV_VMM} (comma-separated), else {', '.join(DEFAULT_VMMS)}.",
    )
    group.addoption(
        OPTION_HYPOTHESIS_PROFILE,
        dest="popek_hypothesis_profile",
        default=None,
        metavar="NAME",
        help=f"hypothesis profile of popek's tests alone: {', '.join(hypothesis_profiles.PROFILES)} or a registered "
        f"profile's full name (default: ${hypothesis_profiles.ENV_PROFILE}, else ci when $CI is set, else dev).",
    )
    group.addoption(
        OPTION_PROFILE,
        dest="popek_profile",
        default=DEFAULT_PROFILE,
        metavar="NAME",
        help=f"machine profile of the host and the native oracle (default {DEFAULT_PROFILE}).",
    )
    group.addoption(
        OPTION_RESULTS,
        dest="popek_results",
        default=None,
        metavar="DIR",
        help="write one results JSON file per (VMM, profile) run into DIR.",
    )
    group.addoption(
        OPTION_TIMEOUT,
        dest="popek_timeout",
        default=None,
        type=_positive_seconds,
        metavar="SECONDS",
        help=f"wall-clock seconds one run of the VMM under test may take in its process before it is killed "
        f"and the test fails (default {BASE_SECONDS:g} plus 1 per {MIN_TICKS_PER_SECOND:,} guest ticks of the run's budget).",
    )
    group.addoption(
        OPTION_MEMORY,
        dest="popek_memory",
        default=None,
        type=_gibibytes,
        metavar="GIB",
        help=f"GiB of address space the process running the VMM under test may add to the grader's "
        f"(default {DEFAULT_LIMITS.memory >> 30}).",
    )


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds")
    return value


def _gibibytes(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GiB") from None
    if not 0 < value <= 1 << 20:
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of GiB (at most 1048576)")
    return int(value * (1 << 30))


@pytest.hookimpl(tryfirst=True)  # before hypothesis's own plugin loads the profile it was given
def pytest_configure(config: pytest.Config) -> None:
    _check_hypothesis_profile(config)
    config.addinivalue_line(
        "markers", f"{MARK_PROPERTY}(name, category=None): the property graded ({', '.join(PROPERTIES)})"
    )
    config.addinivalue_line("markers", f"{MARK_REQUIRES}(*features): skip unless the machine profile has them")
    config.addinivalue_line(
        "markers",
        f"{MARK_GUEST_ABI}(*abis): the guest builds the test can give a VMM ({', '.join(GUEST_ABIS)}; "
        "default native); a VMM of another guest_abi is skipped",
    )
    config.addinivalue_line(
        "markers",
        f"{MARK_DEVIATION}(technique, reason, profiles=None, raises=ExpectedDeviation): for the VMM named "
        "technique, a strict xfail that accepts only the failures the deviation explains",
    )
    from cffi_core.profiles import ProfileError, get_profile  # pure Python: no compiled core

    profile = config.getoption("popek_profile")
    try:
        features = get_profile(profile).features
    except ProfileError as e:
        raise pytest.UsageError(f"popek: {OPTION_PROFILE} {profile}: {e}") from None
    given = list(config.getoption("popek_vmm"))
    env = [s.strip() for s in os.environ.get(ENV_VMM, "").split(",") if s.strip()]
    state = _State(specs=given or env or list(DEFAULT_VMMS), profile=profile, features=features)
    if given or env:
        state.selected()  # a VMM named by the user that does not load is a usage error, at once
    results = config.getoption("popek_results")
    isolation.configure(timeout=config.getoption("popek_timeout"), memory=config.getoption("popek_memory"))
    config.stash[_STATE] = state
    if results and not hasattr(config, "workerinput"):  # xdist: only the controller writes
        config.pluginmanager.register(_Recorder(ResultsWriter(Path(results))), "popek-results")


def _check_hypothesis_profile(config: pytest.Config) -> None:
    """Activate the run's choice for popek's tests (``--popek-hypothesis-profile``); an unknown
    one, or an unknown ``--hypothesis-profile``, is one line naming the profiles there are, not
    the INTERNALERROR traceback hypothesis's plugin gives the latter."""
    choice = config.getoption("popek_hypothesis_profile", None) or hypothesis_profiles.default_choice()
    try:
        hypothesis_profiles.activate(choice)
    except ValueError as e:
        raise pytest.UsageError(f"popek: {OPTION_HYPOTHESIS_PROFILE} {choice}: {e}") from None
    name = config.getoption("hypothesis_profile", None)
    if not isinstance(name, str):
        return
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    try:
        settings.get_profile(name)
    except InvalidArgument:
        from cffi_core.profiles import did_you_mean

        known = hypothesis_profiles.PROFILES
        hint = (
            f"popek's profiles are chosen with {OPTION_HYPOTHESIS_PROFILE} {name}"
            if name in known
            else f"popek's tests take theirs from {OPTION_HYPOTHESIS_PROFILE} ({', '.join(known)})"
        )
        raise pytest.UsageError(
            f"popek: --hypothesis-profile {name}: no such hypothesis profile{did_you_mean(name, known)}; {hint}"
        ) from None


# ---- parametrization, markers, fixtures ---------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vmm" in metafunc.fixturenames and not _parametrizes_vmm_itself(metafunc):
        vmms = metafunc.config.stash[_STATE].selected()
        metafunc.parametrize("vmm", vmms, ids=[cls.name for cls in vmms], indirect=True)


def _parametrizes_vmm_itself(metafunc: pytest.Metafunc) -> bool:
    # A test that names its VMMs itself (e.g. tests/reference_vmm) keeps them: explicit wins.
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", "")
        if "vmm" in ([n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)):
            return True
    return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[_STATE]
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "vmm" not in callspec.params:
            continue
        cls = callspec.params["vmm"]
        if isinstance(cls, str):  # a test that names its VMM (the theorem: "trap-and-emulate")
            try:
                cls = load_vmm(cls)
            except VMMError as e:
                item.add_marker(pytest.mark.skip(reason=f"needs the VMM {callspec.params['vmm']!r}: {e}"))
                continue
            if cls not in state.selected():
                # It belongs to a run of that VMM: a results file is one process's account of
                # one (VMM, profile), and the search costs seconds that other runs need not pay.
                item.add_marker(pytest.mark.skip(reason=f"about {cls.name}, which this run does not select"))
                continue
        abi_reason = _guest_abi_mismatch(item, cls)
        if abi_reason is not None:
            item.add_marker(pytest.mark.skip(reason=abi_reason))
        for mark in item.iter_markers(MARK_DEVIATION):
            technique, reason = mark.args[0], mark.args[1]
            profiles = mark.kwargs.get("profiles")
            raises = mark.kwargs.get("raises", ExpectedDeviation)
            # A profile with added features (vtx-2009+iommu) is its base profile's for this.
            base = state.profile.split("+", 1)[0]
            if cls.name == technique and (profiles is None or state.profile in profiles or base in profiles):
                item.add_marker(
                    pytest.mark.xfail(reason=f"expected deviation of {technique}: {reason}", strict=True, raises=raises)
                )
                item.stash[_DEVIATION] = (technique, reason)
        prop = item.get_closest_marker(MARK_PROPERTY)
        name = prop.args[0] if prop and prop.args else None
        if name is not None and name not in PROPERTIES:
            raise pytest.UsageError(f"{item.nodeid}: {MARK_PROPERTY}({name!r}) is not one of {', '.join(PROPERTIES)}")
        info = {
            "vmm": cls.name,
            "technique": cls.technique,
            "vmm_class": f"{cls.__module__}:{cls.__qualname__}",
            "profile": state.profile,
            "property": name,
            "category": prop.kwargs.get("category") if prop else None,
        }
        item.user_properties.append((_RUN_PROPERTY, json.dumps(info)))


def _guest_abi_mismatch(item: pytest.Item, cls: type[VMM]) -> str | None:
    """Why ``item`` cannot give ``cls`` a guest it runs, or None when it can."""
    abi = getattr(cls, "guest_abi", "native")
    if abi not in GUEST_ABIS:
        raise pytest.UsageError(
            f"popek: VMM {cls.name!r}: guest_abi {abi!r} is not one of {', '.join(GUEST_ABIS)} (docs/vmm-api.md §2)"
        )
    mark = item.get_closest_marker(MARK_GUEST_ABI)
    abis = mark.args if mark is not None else ("native",)
    unknown = set(abis) - set(GUEST_ABIS)
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: {MARK_GUEST_ABI}{tuple(abis)}: unknown {', '.join(sorted(unknown))}")
    if abi in abis:
        return None
    if abi == "paravirt":
        return (
            f"{cls.name} runs guests ported to the paravirtual ABI (guest_abi 'paravirt'); this test runs "
            "native guest code, whose privileged and sensitive instructions paravirtualization removes "
            "from the guest's source (Fisher-Ogden 2006 §2.3.3)"
        )
    return f"{cls.name} runs {abi} guests; this test has only {', '.join(abis)} builds of its guests"


@pytest.fixture
def vmm(request: pytest.FixtureRequest) -> type[VMM]:
    """The VMM class under test (parametrized over ``--vmm``, or by a test that names its VMM:
    ``@pytest.mark.parametrize("vmm", ["trap-and-emulate"], indirect=True)``, which runs when
    ``--vmm`` selects it and is skipped, with the reason, while that VMM cannot be loaded); skipped
    when unsupported."""
    state = request.config.stash[_STATE]
    cls: type[VMM] | str = request.param
    if isinstance(cls, str):
        try:
            cls = load_vmm(cls)
        except VMMError as e:
            pytest.skip(f"needs the VMM {request.param!r}: {e}")
    try:
        check_supported(cls, state.profile, state.features)
    except VMMUnsupported as e:
        pytest.skip(str(e))
    for mark in request.node.iter_markers(MARK_REQUIRES):
        missing = frozenset(mark.args) - state.features
        if missing:
            pytest.skip(f"needs host features {', '.join(sorted(missing))}, which profile {state.profile!r} lacks")
    return cls


@pytest.fixture
def popek_profile(request: pytest.FixtureRequest) -> str:
    """The machine profile of this run (``--popek-profile``)."""
    return request.config.stash[_STATE].profile


@pytest.fixture
def popek_record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``popek_record(name=value, ...)``: attach integer counters to this test's result."""
    counters: dict[str, int] = {}
    slot = len(request.node.user_properties)
    request.node.user_properties.append((_COUNTERS_PROPERTY, "{}"))

    def record(**values: int) -> None:
        for key, value in values.items():
            if type(value) is not int:
                raise TypeError(f"counter {key} = {value!r}: counters are ints")
            counters[key] = value
        request.node.user_properties[slot] = (_COUNTERS_PROPERTY, json.dumps(counters))  # JSON, as above

    return record


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """Run the test with its deviation's ledger (when one applies) and a coverage tally; a
    test that noted explained failures and raised nothing else ends in ``ExpectedDeviation``,
    and the coverage cells its guests exercised go into its user properties."""
    __tracebackhide__ = True  # the report shows the test's failure, not this wrapper
    deviation = item.stash.get(_DEVIATION, None)
    with isolation.one_test(), coverage.tally() as cells:
        try:
            if deviation is None:
                result = yield
            else:
                with expecting_deviation(*deviation) as ledger:
                    result = yield
                if ledger.explained:
                    raise ledger.exception()
        finally:
            if cells:
                item.user_properties.append((_COVERAGE_PROPERTY, json.dumps(dict(sorted(cells.items())))))
    return result


# ---- reporting ----------------------------------------------------------------------------


def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object, right: object) -> list[str] | None:
    """Two observations compared with ``==``: the observation diff (headed ``COMPARE_HEADLINE``,
    which the results drop when the assertion's own message gave the diff); two long byte
    strings of one size (disks): a hex diff of the differing sectors, never kilobytes of repr."""
    if op != "==":
        return None
    if isinstance(left, Observation) and isinstance(right, Observation):
        return [COMPARE_HEADLINE, *equivalence_report(left, right, names=("left", "right"))[1:]]
    if isinstance(left, bytes) and isinstance(right, bytes) and len(left) == len(right) > _BLOB_BYTES:
        return [f"two byte strings of {len(left)} bytes differ:", *disk_diff("bytes", left, right, ("left", "right"))]
    return None


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return report.longreprtext


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """An expected deviation's failure (its counterexample) as the user property
    ``popek_deviation``: pytest's junitxml writes an xfail's reason alone, and the test's
    teardown report, whose properties it writes, is made after this one."""
    report = yield
    xfailed = report.when == "call" and report.skipped and hasattr(report, "wasxfail")
    if xfailed and any(name == _RUN_PROPERTY for name, _ in item.user_properties):
        item.user_properties.append((_DEVIATION_PROPERTY, json.dumps(clip(report.longreprtext))))
    return report


def _properties(report: pytest.TestReport) -> dict[str, object]:
    """The user properties of ``report`` by name, popek's JSON values decoded."""
    props = dict(report.user_properties)
    for name in (_RUN_PROPERTY, _COUNTERS_PROPERTY, _COVERAGE_PROPERTY):
        if isinstance(props.get(name), str):
            try:
                props[name] = json.loads(props[name])
            except ValueError:
                props[name] = None  # not popek's: another plugin took the name
    return props


class _Recorder:
    """Registered when ``--popek-results`` is given: turns reports into ``ResultsWriter`` records
    (on the xdist controller, reports arrive from the workers with their user properties)."""

    def __init__(self, writer: ResultsWriter) -> None:
        self.writer = writer
        self.written: list[Path] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = _properties(report)
        info = props.get(_RUN_PROPERTY)
        if not isinstance(info, dict):
            return  # not a test of a VMM
        key = RunKey(info["vmm"], info["technique"], info["vmm_class"], info["profile"])
        result = self.writer.result(key, report.nodeid, info["property"], info["category"])
        result.duration += report.duration
        counters = props.get(_COUNTERS_PROPERTY)
        if isinstance(counters, dict):
            result.counters.update(counters)
        cells = props.get(_COVERAGE_PROPERTY)
        if isinstance(cells, dict):
            result.coverage.update(cells)
        wasxfail = getattr(report, "wasxfail", None)
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                result.outcome = "xpassed" if wasxfail is not None else "passed"
            elif report.skipped:
                result.outcome = "xfailed" if wasxfail is not None else "skipped"
                text = f"{wasxfail}\n{report.longreprtext}" if wasxfail is not None else _reason(report)
                result.message = clip(text)
            else:  # a strict xpass is reported failed, with "[XPASS(strict)]" in its text
                result.outcome = "failed" if report.when == "call" else "error"
                result.message = clip(report.longreprtext)
        elif report.when == "teardown" and report.failed and result.outcome in ("passed", "xpassed"):
            result.outcome = "error"
            result.message = clip(report.longreprtext)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.writer.deselected(items)  # a run narrowed by -k/-m is recorded as partial

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.writer.finish(session.config, int(exitstatus), session.shouldfail or session.shouldstop)
        self.written = self.writer.write()

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.written:
            where = self.written[0].parent
            terminalreporter.write_line(f"popek: wrote {len(self.written)} results file(s) to {where}")
