"""``popek demo`` and ``popek grade``: run VMMs through the conformance suite on the profiles that
matter to them (``relevant_profiles``), one pytest process per (VMM, profile), then write the
grade sheet.

Each run is ``python -m pytest <conformance package> --popek-vmm V --popek-profile P --popek-results DIR
--popek-hypothesis-profile=ci``: the plugin is loaded through its ``pytest11`` entry point, exactly as
in a user's own run, and a VMM that crashes the process costs only its own run.  A run's pytest
output goes to ``DIR/<vmm>--<profile>.log``; the console gets one line per run and the summary.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from cffi_core.profiles import FEATURE_BITS, PROFILES, available_profiles, get_profile
from conformance.api import ENTRY_POINT_GROUP, VMM, load_vmm
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
    "default_jobs",
    "describe",
    "log_tail",
    "plan_runs",
    "problem",
    "reference_vmms",
    "relevant_profiles",
    "run_demo_bench",
    "run_plan",
    "supported_profiles",
]

DEFAULT_HYPOTHESIS_PROFILE = "ci"
_DISTRIBUTION = "popek"  # the reference VMMs are the ones popek itself registers
_LOG_TAIL = 15  # lines of a crashed run's log shown on the console
# The base machine's flavours (classic-1974's trapping sensitive instructions, x86-2005's
# segment limits) change what every VMM faces; every other feature is a hardware assist
# (Fisher-Ogden 2006 §3) that changes only what a VMM using it can do.
_ASSISTS = frozenset(FEATURE_BITS) - {"classic", "seglimit"}


@dataclass(frozen=True)
class Plan:
    """One run to make: a VMM (as named on the command line) on a profile."""

    spec: str
    vmm: type[VMM]
    profile: str

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


def plan_runs(specs: Sequence[str], profiles: Sequence[str] | None) -> tuple[list[Plan], list[str]]:
    """The runs for VMMs ``specs`` on ``profiles`` (default: each VMM's ``relevant_profiles``),
    and a note for each asked-for pair left out because the profile lacks what the VMM requires."""
    plans, notes = [], []
    for spec in dict.fromkeys(specs):
        cls = load_vmm(spec)
        for profile in dict.fromkeys(profiles) if profiles else relevant_profiles(cls):
            missing = ", ".join(sorted(frozenset(cls.requires) - get_profile(profile).features))
            if missing:
                notes.append(f"{cls.name} not run on {profile}: it requires {missing}")
            else:
                plans.append(Plan(spec, cls, profile))
    return plans, notes


def _command(plan: Plan, results: Path, hypothesis_profile: str, extra: Sequence[str]) -> list[str]:
    import conformance

    suite = Path(conformance.__file__).resolve().parent
    return [
        sys.executable, "-m", "pytest", str(suite),
        "--popek-vmm", plan.spec,
        "--popek-profile", plan.profile,
        "--popek-results", str(results),
        f"--popek-hypothesis-profile={hypothesis_profile}",
        "-p", "no:cacheprovider",  # a demo leaves no .pytest_cache behind
        "-q", "-ra", *extra,  # -ra: the FAILED lines the report quotes for a run that failed
    ]  # fmt: skip


def _run_one(plan: Plan, results: Path, hypothesis_profile: str, extra: Sequence[str]) -> Outcome:
    out = results / plan.filename
    log = out.with_suffix(".log")
    out.unlink(missing_ok=True)  # a run that dies must not leave an older file looking like its own
    start = time.monotonic()
    # Each run writes into a private directory, and only its own VMM's file is kept: a test that
    # names its VMM (the theorem test names trap-and-emulate) runs in every run and is recorded
    # under that VMM, and runs side by side must not overwrite each other's files.
    with tempfile.TemporaryDirectory(prefix=f".{out.stem}-", dir=results) as private:
        command = _command(plan, Path(private), hypothesis_profile, extra)
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
    extra: Sequence[str] = (),
    progress: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Make every run (``jobs`` at a time), calling ``progress`` as each ends; the outcomes come
    back in plan order."""
    results = results.resolve()
    results.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_run_one, plan, results, hypothesis_profile, extra) for plan in plans]
        outcomes = []
        for future in futures:
            outcome = future.result()
            if progress is not None:
                progress(outcome)
            outcomes.append(outcome)
    return outcomes


def describe(outcome: Outcome) -> str:
    """One console line for a finished run."""
    plan = outcome.plan
    head = f"{plan.vmm.name} on {plan.profile}: "
    if outcome.status == 0:
        state = "as expected"
    elif outcome.status == 1:
        state = "unexpected failures"
    elif outcome.status == 5:
        state = "no tests ran"
    else:
        state = f"pytest exited with status {outcome.status}"
    return f"{head}{state} ({outcome.seconds:.1f} s, log {outcome.log})"


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
