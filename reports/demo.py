"""``popek demo`` and ``popek grade``: run VMMs through the conformance suite on the profiles that
matter to them (``relevant_profiles``), one pytest process per (VMM, profile), then write the
grade sheet.

Each run is ``python -m pytest <conformance package> --popek-vmm V --popek-profile P --popek-results DIR
--popek-hypothesis-profile=ci``: the plugin is loaded through its ``pytest11`` entry point, exactly as
in a user's own run, and a VMM that crashes the process costs only its own run.  A run's pytest
output goes to ``DIR/<vmm>--<profile>.log`` (``RunKey.filename``); the console gets a line when
each run starts and when it ends, in the order they end, and the summary.

A VMM is named as ``load_vmm`` takes it (an entry-point name, ``pkg.module:Class``), or by a file
or package path (``alice.py``, ``alice.py:AliceVMM``, ``submissions/bob``): ``resolve_vmm``
imports it from its directory, and the run's pytest process gets that directory on its
``PYTHONPATH`` (with the caller's own ``PYTHONPATH`` made absolute: the process runs elsewhere).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from cffi_core.profiles import FEATURE_BITS, PROFILES, available_profiles, get_profile
from conformance.api import ENTRY_POINT_GROUP, VMM, VMMLoadError, load_vmm
from conformance.results import RunKey, load_results

if TYPE_CHECKING:
    from reports.bench_report import BenchRun

__all__ = [
    "DEFAULT_HYPOTHESIS_PROFILE",
    "DEMO_BENCH_PROFILES",
    "DEMO_BENCH_SUITES",
    "DEMO_BENCH_VMMS",
    "Outcome",
    "Plan",
    "Submission",
    "default_jobs",
    "describe",
    "find_submissions",
    "format_seconds",
    "log_tail",
    "plan_runs",
    "problem",
    "reference_vmms",
    "relevant_profiles",
    "resolve_vmm",
    "run_demo_bench",
    "run_plan",
    "supported_profiles",
    "tests_done",
]

DEFAULT_HYPOTHESIS_PROFILE = "ci"
_DISTRIBUTION = "popek"  # the reference VMMs are the ones popek itself registers
_LOG_TAIL = 15  # lines of a crashed run's log shown on the console
# The base machine's flavours (classic-1974's trapping sensitive instructions, x86-2005's
# segment limits) change what every VMM faces; every other feature is a hardware assist
# (Fisher-Ogden 2006 §3) that changes only what a VMM using it can do.
_ASSISTS = frozenset(FEATURE_BITS) - {"classic", "seglimit"}


@dataclass(frozen=True)
class Submission:
    """A VMM as the user named it (``given``), resolved: the ``pkg.module:Class`` a pytest process
    is given (``spec``), the class, and the directory that process needs on its import path
    (``path``; None for a VMM importable as it is)."""

    given: str
    spec: str
    vmm: type[VMM]
    path: Path | None = None


@dataclass(frozen=True)
class Plan:
    """One run to make: a VMM (``spec`` as its pytest process names it) on a profile."""

    spec: str
    vmm: type[VMM]
    profile: str
    path: Path | None = None
    """A directory the run's process needs on its import path (``Submission.path``)."""
    label: str = ""
    """How the console names the VMM: its ``name``, with its class when another VMM planned
    shares the name (``plan_runs``)."""

    @property
    def title(self) -> str:
        """``vmm on profile``, the VMM by its ``label`` (its ``name`` without one)."""
        return f"{self.label or self.vmm.name} on {self.profile}"

    @property
    def filename(self) -> str:
        """The results file the plugin writes for this run."""
        key = RunKey(self.vmm.name, self.vmm.technique, f"{self.vmm.__module__}:{self.vmm.__qualname__}", self.profile)
        return key.filename


@dataclass(frozen=True)
class Outcome:
    """How one run went: pytest's exit status, its wall time, and where its output went."""

    plan: Plan
    status: int
    seconds: float
    results: Path
    log: Path

    @property
    def wrote_results(self) -> bool:
        return self.results.is_file()


def reference_vmms() -> list[str]:
    """The entry-point names of group ``popek.vmms`` that popek registers itself, in its order."""
    names = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        ours = dist.name == _DISTRIBUTION if dist is not None else ep.value.startswith("reference_vmm.")
        if ours:
            names.append(ep.name)
    return list(dict.fromkeys(names))


def supported_profiles(vmm: type[VMM]) -> list[str]:
    """The profiles the core implements whose features include everything ``vmm`` requires."""
    return [p for p in available_profiles() if frozenset(vmm.requires) <= PROFILES[p].features]


def relevant_profiles(vmm: type[VMM]) -> list[str]:
    """The profiles a VMM is graded on by default: those it supports, less the profiles with
    hardware assists (vmx and what builds on it) when it uses none, required or optional.  A VMM that never executes
    ``vmrun`` sees an assisted machine as the machine without the assist, so the run would say
    nothing new; a VMM that uses assists is graded on every profile that offers what it needs,
    and again with the ``optional`` features it uses when present (``vtx-2009+iommu``)."""
    uses_assists = bool(frozenset(vmm.requires | vmm.optional) & _ASSISTS)
    out = []
    for p in supported_profiles(vmm):
        assisted = PROFILES[p].features & _ASSISTS
        if uses_assists or not assisted:
            out.append(p)
            # An optional feature builds on the assists of an assisted machine (an IOMMU on a
            # vtx host); an unassisted one is graded as it is.
            extra = sorted(frozenset(vmm.optional) - PROFILES[p].features)
            if extra and assisted:
                out.append("+".join((p, *extra)))
    return out


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


def resolve_vmm(given: str) -> Submission:
    """The VMM named ``given``: an entry-point name or ``pkg.module:Class`` (found as installed, or
    else in the current directory, as ``python -m`` would find it), or a path: a ``.py`` file or a
    package directory, with ``:Class`` or holding exactly one VMM class of its own.
    ``VMMLoadError`` says what is wrong (and what to rename, for a file whose name is no module
    name or is taken by an installed module)."""
    text = given.strip()
    where, _, attr = text.partition(":")
    path = Path(where)
    if where.endswith(".py") or "/" in where or os.sep in where or (path / "__init__.py").is_file():
        return _from_path(given, path, attr)
    try:
        return Submission(given, text, load_vmm(text))
    except VMMLoadError as e:
        # pkg.module:Class in the current directory: found there as `python -m pytest` finds it.
        cause = e.__cause__
        top = where.split(".")[0]
        here = Path.cwd()
        if ":" not in text or not isinstance(cause, ModuleNotFoundError) or cause.name != top:
            raise
        if not (here / f"{top}.py").is_file() and not (here / top / "__init__.py").is_file():
            raise
    _on_path(here)
    return Submission(given, text, load_vmm(text), here)


def _on_path(directory: Path) -> None:
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
        importlib.invalidate_caches()


def _from_path(given: str, path: Path, attr: str) -> Submission:
    path = path.resolve()
    package = path.is_dir()
    if package and not (path / "__init__.py").is_file():
        raise VMMLoadError(f"VMM {given!r}: {path} is a directory without __init__.py (not a package)")
    if not package and (path.suffix != ".py" or not path.is_file()):
        raise VMMLoadError(f"VMM {given!r}: no such file (a VMM by path is a .py file or a package directory)")
    name = path.name if package else path.stem
    if not _IDENTIFIER.match(name) or "." in name:
        raise VMMLoadError(f"VMM {given!r}: {name!r} is not a module name; rename it (letters, digits and _)")
    origin = path / "__init__.py" if package else path
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        found = None
    if found is not None and found.origin and Path(found.origin).resolve() != origin:
        raise VMMLoadError(
            f"VMM {given!r}: the module name {name!r} is taken by {found.origin}; rename the "
            f"{'package' if package else 'file'}"
        )
    _on_path(path.parent)
    if not attr:
        attr = _the_vmm_class(given, name)
    cls = load_vmm(f"{name}:{attr}")
    return Submission(given, f"{name}:{attr}", cls, path.parent)


def _the_vmm_class(given: str, module_name: str) -> str:
    """The one VMM class defined in the module (or package) ``module_name``."""
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise VMMLoadError(f"VMM {given!r}: importing {module_name!r} raised {type(e).__name__}: {e}") from e
    own = [
        v
        for v in vars(module).values()
        if isinstance(v, type)
        and issubclass(v, VMM)
        and (v.__module__ == module_name or v.__module__.startswith(module_name + "."))
        and not getattr(v, "__abstractmethods__", None)
    ]
    own = list(dict.fromkeys(own))
    if len(own) != 1:
        found = ", ".join(v.__qualname__ for v in own) or "none"
        raise VMMLoadError(
            f"VMM {given!r}: expected one VMM subclass defined in {module_name!r}, found {found}; "
            f"name it: {given.partition(':')[0]}:Class"
        )
    return own[0].__qualname__


def find_submissions(directory: Path) -> list[str]:
    """The submissions in ``directory``: each ``.py`` file and each package directory in it
    (names starting with ``_`` or ``.`` left out), as paths ``resolve_vmm`` takes, sorted."""
    if not directory.is_dir():
        raise VMMLoadError(f"submissions: {directory} is not a directory")
    found = [
        p
        for p in directory.iterdir()
        if not p.name.startswith(("_", "."))
        and ((p.is_file() and p.suffix == ".py") or (p.is_dir() and (p / "__init__.py").is_file()))
    ]
    return [str(p) for p in sorted(found)]


def plan_runs(specs: Sequence[str | Submission], profiles: Sequence[str] | None) -> tuple[list[Plan], list[str]]:
    """The runs for VMMs ``specs`` (names or paths as ``resolve_vmm`` takes them, or resolved) on
    ``profiles`` (default: each VMM's ``relevant_profiles``), and a note for each asked-for pair
    left out because the profile lacks what the VMM requires.  Two names of one class are one VMM."""
    plans, notes = [], []
    seen: set[type[VMM]] = set()
    for given in dict.fromkeys(specs):
        sub = given if isinstance(given, Submission) else resolve_vmm(given)
        cls = sub.vmm
        if cls in seen:
            continue
        seen.add(cls)
        for profile in dict.fromkeys(profiles) if profiles else relevant_profiles(cls):
            missing = ", ".join(sorted(frozenset(cls.requires) - get_profile(profile).features))
            if missing:
                notes.append(f"{cls.name} not run on {profile}: it requires {missing}")
            else:
                plans.append(Plan(sub.spec, cls, profile, sub.path))
    # Two submissions that kept one name are told apart by their class, on the console too.
    classes: dict[str, set[type[VMM]]] = {}
    for plan in plans:
        classes.setdefault(plan.vmm.name, set()).add(plan.vmm)
    plans = [
        replace(p, label=f"{p.vmm.name} ({p.vmm.__module__}:{p.vmm.__qualname__})")
        if len(classes[p.vmm.name]) > 1
        else p
        for p in plans
    ]
    return plans, notes


def _command(plan: Plan, results: Path, hypothesis_profile: str, extra: Sequence[str], workers: int = 0) -> list[str]:
    import conformance

    suite = Path(conformance.__file__).resolve().parent
    return [
        sys.executable, "-m", "pytest", str(suite),
        "--popek-vmm", plan.spec,
        "--popek-profile", plan.profile,
        "--popek-results", str(results),
        f"--popek-hypothesis-profile={hypothesis_profile}",
        "-p", "no:cacheprovider",  # a demo leaves no .pytest_cache behind
        "-q", "-ra",  # -ra: the FAILED lines the report quotes for a run that failed
        *(["-n", str(workers)] if workers > 1 else []),  # pytest-xdist's workers within the run
        *extra,
    ]  # fmt: skip


def _environment(plan: Plan) -> dict[str, str]:
    """The run's environment: the VMM's directory and the caller's ``PYTHONPATH`` (made absolute:
    the run's working directory is the suite's, and ``PYTHONPATH=.`` there would name it), and
    unbuffered output, so that the log shows each test as it ends (``tests_done``)."""
    env = dict(os.environ)
    entries = [str(Path(e).resolve()) for e in env.get("PYTHONPATH", "").split(os.pathsep) if e]
    if plan.path is not None:
        entries.insert(0, str(plan.path))
    if entries:
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(entries))
    env["PYTHONUNBUFFERED"] = "1"
    return env


_PROGRESS_LINE = re.compile(r"([.sSxXfFE]+)\s*(?:\[\s*(\d+)%\])?\s*\Z")


def tests_done(log: Path) -> tuple[int, int | None]:
    """How far a run is, read from its log (pytest ``-q`` writes a character per finished test,
    and the percentage at each line's end): the tests finished and the last percentage written
    (None before the first full line)."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0, None
    done, percent = 0, None
    for line in text.splitlines():
        match = _PROGRESS_LINE.match(line)
        if match:
            done += len(match.group(1))
            if match.group(2) is not None:
                percent = int(match.group(2))
    return done, percent


def _run_one(
    plan: Plan,
    results: Path,
    hypothesis_profile: str,
    extra: Sequence[str],
    workers: int = 0,
    started: Callable[[Plan, Path], None] | None = None,
) -> Outcome:
    out = results / plan.filename
    log = out.with_suffix(".log")
    out.unlink(missing_ok=True)  # a run that dies must not leave an older file looking like its own
    log.unlink(missing_ok=True)
    if started is not None:
        started(plan, log)
    start = time.monotonic()
    # Each run writes into a private directory, and only its own VMM's file is kept: a test that
    # names its VMM (the theorem test names trap-and-emulate) runs in every run and is recorded
    # under that VMM, and runs side by side must not overwrite each other's files.
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}-", dir=results) as private:
        command = _command(plan, Path(private), hypothesis_profile, extra, workers)
        with log.open("w", encoding="utf-8") as sink:
            sink.write("$ " + shlex.join(command) + "\n")
            sink.flush()
            # The suite's directory's parent is the working directory, so node ids (and the
            # rerun commands of the report) read conformance/test_....py.
            status = subprocess.run(
                command,
                cwd=Path(command[3]).parent,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_environment(plan),
                check=False,
            ).returncode
        written = Path(private) / plan.filename
        if written.is_file():
            written.replace(out)
    return Outcome(plan, status, time.monotonic() - start, out, log)


def run_plan(
    plans: Sequence[Plan],
    results: Path,
    *,
    hypothesis_profile: str = DEFAULT_HYPOTHESIS_PROFILE,
    jobs: int = 1,
    workers: int = 0,
    extra: Sequence[str] = (),
    progress: Callable[[Outcome], None] | None = None,
    started: Callable[[Plan, Path], None] | None = None,
) -> list[Outcome]:
    """Make every run (``jobs`` at a time, each with ``workers`` pytest-xdist workers when more
    than one; those an earlier results file in ``results`` timed longest first), calling
    ``started`` with the plan and its log as each starts and ``progress`` as each ends, in the
    order they end; the outcomes come back in plan order."""
    results = results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    # The longest runs first (as the results files of an earlier grade timed them; a run not timed
    # yet counts as long): a few slow runs started last would leave the other CPUs idle at the end
    # (Graham 1969, longest processing time first).
    previous = [_previous_seconds(results / plan.filename) for plan in plans]
    order = sorted(range(len(plans)), key=lambda i: (previous[i] is not None, -(previous[i] or 0.0)))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {
            pool.submit(_run_one, plans[i], results, hypothesis_profile, extra, workers, started): i for i in order
        }
        outcomes: dict[int, Outcome] = {}
        try:
            for future in as_completed(futures):
                outcome = future.result()
                if progress is not None:
                    progress(outcome)
                outcomes[futures[future]] = outcome
        except BaseException:  # Ctrl-C: the runs not started yet are not started
            for future in futures:
                future.cancel()
            raise
    return [outcomes[i] for i in range(len(plans))]


def _previous_seconds(path: Path) -> float | None:
    """The tests' total duration in the results file at ``path`` (an earlier run), None without one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return float(sum(t.get("duration", 0.0) for t in doc["tests"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def format_seconds(seconds: float) -> str:
    """``41.2 s``, ``3 min 12 s``, ``1 h 02 min``: a run's or a demo's wall time."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def describe(outcome: Outcome) -> str:
    """One console line for a finished run: ``vmm on profile: verdict (time)``, the verdict with
    its test counts from the results file, and the log named when the run did not pass."""
    head = f"{outcome.plan.title}: "
    tests = failures = 0
    partial = False
    if outcome.wrote_results:
        try:
            run = load_results(outcome.results)
        except ValueError:  # unreadable: the report says so; the line keeps to pytest's status
            pass
        else:
            tests = len(run.tests)
            failures = sum(1 for t in run.tests if t.outcome in ("failed", "error"))
            partial = run.partial is not None
    of = f"{tests} {'test' if tests == 1 else 'tests'}" + (", partial" if partial else "")
    if outcome.status == 0:
        state = f"as expected, {of}" if tests else "as expected"
    elif outcome.status == 1:
        state = f"{failures} unexpected failure(s) of {of}" if failures else "unexpected failures"
    elif outcome.status == 5:
        state = "no tests ran"
    else:
        state = f"pytest exited with status {outcome.status}"
    where = "" if outcome.status == 0 else f", log {outcome.log}"
    return f"{head}{state} ({format_seconds(outcome.seconds)}{where})"


def problem(outcome: Outcome) -> tuple[str, str] | None:
    """What went wrong in a run beyond what its results file shows, for the report: ``None`` for
    a run that passed, or that failed only in tests its results file records; else a headline and
    the other ``FAILED``/``ERROR`` lines of pytest's summary (a test that names its VMM runs in
    every run and is recorded under that VMM), or the log's tail when there are none."""
    if outcome.status == 0:
        return None
    try:
        lines = outcome.log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    recorded = set()
    if outcome.wrote_results:
        recorded = {t.nodeid for t in load_results(outcome.results).tests if t.outcome in ("failed", "error")}
    summary = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    others = [line for line in summary if line.split(" ", 2)[1] not in recorded]
    if outcome.status == 1 and summary and not others:
        return None
    return f"{describe(outcome)}.", "\n".join(others or lines[-_LOG_TAIL:])


def log_tail(outcome: Outcome) -> str:
    """The last lines of a run's log (for a run that wrote no results)."""
    try:
        lines = outcome.log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_LOG_TAIL:])


DEMO_BENCH_SUITES = ("nanobench", "forkwait")
DEMO_BENCH_VMMS = ("native", "binary-translation", "hardware", "hardware-ept")
DEMO_BENCH_PROFILES = ("p4-2006",)
"""The demo's benchmark run: Adams & Agesen 2006's nanobenchmarks and forkwait at scale 1, under
native, the paper's two VMMs and nested paging, priced on the paper's Pentium 4."""


def run_demo_bench(out: Path, progress: Callable[[str], None]) -> BenchRun | None:
    """The demo's small benchmark run into ``out`` (``bench.json``, ``bench.md``, ``bench.html``):
    the ``DEMO_BENCH_SUITES`` that are installed; ``None`` (said through ``progress``) when none is.
    Returns the ``reports.bench_report.BenchRun``."""
    from benchmarks.suites import all_suites
    from reports.bench_report import run_benchmarks

    installed = all_suites()
    suites = [s for s in DEMO_BENCH_SUITES if s in installed]
    if not suites:
        progress(f"popek: no benchmark suite of the demo ({', '.join(DEMO_BENCH_SUITES)}) is installed; skipped")
        return None
    progress(
        f"popek: benchmark suites {', '.join(suites)} under {', '.join(DEMO_BENCH_VMMS)}, scale 1, "
        f"priced on {', '.join(DEMO_BENCH_PROFILES)}; records and report in {out}"
    )
    return run_benchmarks(suites, DEMO_BENCH_VMMS, out, scale=1, profiles=DEMO_BENCH_PROFILES, progress=progress)


def default_jobs() -> int:
    """Runs at once by default: one per CPU this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
