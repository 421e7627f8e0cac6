"""Mutation testing of the conformance suite: run it against one-idea bug variants of VMMs and report what it kills.

A *mutant* is a VMM class that changes one thing of a base VMM, as a realistic bug would
(``tests/mutants`` holds the catalog of the reference VMMs' mutants; docs/mutants.md is the
manual).  The suite *kills* a mutant when some test fails on it that is not an expected
deviation of the base technique; a mutant it lets through *survives*: either the suite misses
a test, or the mutant is equivalent (no guest can tell it from its base).

Run it as ``python -m conformance.mutation`` (``--help`` for the options)::

    python -m conformance.mutation                        # every mutant of tests.mutants
    python -m conformance.mutation --only hw-tpr-ignored --jobs 2

Each mutant is graded by a subprocess ``python -m pytest conformance --popek-vmm <module:Class>
--popek-profile P --popek-hypothesis-profile=ci -x``, once per profile it names, with the tests of
the property it should break run first (so ``-x`` stops early on a kill).  The table says,
per mutant, killed or survived and the property of the test that killed it; then the kill rate
per property (the property each mutant should break); the exit status is 1 if any survived.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "PROPERTIES",
    "Mutant",
    "Verdict",
    "baseline",
    "grade",
    "load_catalog",
    "main",
    "summary_table",
]

PROPERTIES = ("equivalence", "safety", "efficiency")  # Popek & Goldberg 1974, §2
DEFAULT_CATALOG = "tests.mutants"
DEFAULT_TIMEOUT = 900  # seconds per (mutant, profile) run of the suite
_ENV_TARGET = "POPEK_MUTATION_TARGET"  # the property whose tests run first
_ENV_REPORT = "POPEK_MUTATION_REPORT"  # where the in-run plugin writes the outcomes


@dataclass(frozen=True)
class Mutant:
    """One bug variant of a VMM: what the mutation runner needs to grade it."""

    name: str
    """Catalog id, e.g. ``hw-tpr-ignored``: what ``--only`` selects and the table shows."""
    vmm: str
    """``package.module:Class``, as ``--popek-vmm`` takes it."""
    base: str
    """The VMM it mutates (``hardware``, ``trap-and-emulate``, ...); its deviations apply."""
    property: str
    """The property the bug should break: one of ``PROPERTIES``."""
    profiles: tuple[str, ...]
    """The machine profiles to grade it on (``--popek-profile``)."""
    bug: str
    """One line: the bug, as its author would confess it."""

    def __post_init__(self) -> None:
        if self.property not in PROPERTIES:
            raise ValueError(f"mutant {self.name}: property {self.property!r} is not one of {', '.join(PROPERTIES)}")
        if ":" not in self.vmm:
            raise ValueError(f"mutant {self.name}: vmm {self.vmm!r} must be package.module:Class")
        if not self.profiles:
            raise ValueError(f"mutant {self.name}: names no profile to grade it on")


@dataclass
class Verdict:
    """How the suite did on one mutant (over all its profiles)."""

    mutant: Mutant
    killed: bool = False
    status: str = "survived"  # killed | survived | timeout | error
    by: str = ""  # the property of the first test that failed, and the test
    runs: list[dict] = field(default_factory=list)  # one per profile: outcomes, seconds, return code


def load_catalog(name: str = DEFAULT_CATALOG) -> tuple[Mutant, ...]:
    """The ``MUTANTS`` of module ``name`` (a tuple of ``Mutant``)."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        raise SystemExit(
            f"{name}: cannot import the mutant catalog ({e}); run from a popek checkout, or name one with --catalog"
        ) from None
    mutants = tuple(getattr(module, "MUTANTS", ()))
    if not mutants or not all(isinstance(m, Mutant) for m in mutants):
        raise SystemExit(f"{name}: MUTANTS must be a non-empty tuple of conformance.mutation.Mutant")
    return mutants


# ---- one run of the suite ------------------------------------------------------------------------


def _run_suite(
    vmm: str, target: str | None, profile: str, timeout: float, extra: Sequence[str], *, stop_first: bool = True
) -> dict:
    """Run the conformance suite on ``vmm`` over ``profile`` in a subprocess, the tests of
    property ``target`` first; the outcomes of its tests as the in-run plugin (this module)
    recorded them."""
    with tempfile.TemporaryDirectory(prefix="popek-mutant-") as tmp:
        report = Path(tmp) / "outcomes.json"
        env = dict(os.environ, **{_ENV_TARGET: target or "", _ENV_REPORT: str(report)})
        root = str(Path.cwd())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        command = [
            sys.executable, "-m", "pytest", "conformance", "-p", "conformance.mutation", "-p", "no:cacheprovider",
            "-q", *(["-x"] if stop_first else []), "--popek-vmm", vmm, "--popek-profile", profile,
            "--popek-hypothesis-profile=ci", *extra,
        ]  # fmt: skip
        start = time.monotonic()
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"profile": profile, "status": "timeout", "seconds": round(time.monotonic() - start, 1)}
        seconds = round(time.monotonic() - start, 1)
        outcomes = json.loads(report.read_text()) if report.exists() else []
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        return {
            "profile": profile, "status": "ran", "returncode": done.returncode, "seconds": seconds,
            "outcomes": outcomes, "tail": tail,
        }  # fmt: skip


def baseline(base: str, profile: str, *, timeout: float = DEFAULT_TIMEOUT, extra: Sequence[str] = ()) -> list[str]:
    """The tests the base VMM itself fails on ``profile`` (a bug of the base, or the suite ahead
    of it): a mutant failing them has not been killed, so its runs deselect them."""
    run = _run_suite(base, None, profile, timeout, extra, stop_first=False)
    if run["status"] != "ran":
        raise RuntimeError(f"the suite did not finish on the base VMM {base} ({profile}) in {timeout:g} s")
    return [o["nodeid"] for o in run["outcomes"] if o["outcome"] in ("failed", "error")]


def grade(
    mutant: Mutant,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    extra: Sequence[str] = (),
    base_failures: dict[str, list[str]] | None = None,
) -> Verdict:
    """Run the suite against ``mutant`` on each of its profiles (stopping at the first kill).
    ``base_failures`` (profile -> node ids, from ``baseline``) are deselected: only a failure
    the base VMM does not have kills."""
    verdict = Verdict(mutant)
    for profile in mutant.profiles:
        known = (base_failures or {}).get(profile, [])
        deselect = [arg for nodeid in known for arg in ("--deselect", nodeid)]
        run = _run_suite(mutant.vmm, mutant.property, profile, timeout, [*extra, *deselect])
        run["base_failures"] = known
        verdict.runs.append(run)
        if run["status"] == "timeout":
            # The suite hung on the mutant: a person would notice, so it counts as killed —
            # but shown apart, since no test said what was wrong.
            verdict.killed, verdict.status, verdict.by = True, "timeout", f"[{profile}] no result in {timeout:g} s"
            return verdict
        failed = [o for o in run["outcomes"] if o["outcome"] in ("failed", "error")]
        if failed:
            first = failed[0]
            verdict.killed, verdict.status = True, "killed"
            verdict.by = f"{first['property'] or '?'}: [{profile}] {first['nodeid'].split('::', 1)[-1]}"
            return verdict
        if run["returncode"] not in (0, 1):  # usage error, internal error, nothing collected
            verdict.status, verdict.by = "error", f"[{profile}] pytest exited {run['returncode']}: " + " | ".join(
                run["tail"][-3:]
            )
            return verdict
    return verdict


# ---- the in-run plugin (``-p conformance.mutation``) ---------------------------------------------


def _property_of(item) -> str | None:
    mark = item.get_closest_marker("popek_property")
    return mark.args[0] if mark and mark.args else None


def pytest_configure(config) -> None:
    """In a mutation run, the chosen hypothesis profile without its shrink phase: a kill needs
    one failing example, not the smallest (shrinking a failure costs minutes per test)."""
    if not os.environ.get(_ENV_REPORT):
        return
    from hypothesis import Phase, settings

    from conformance import hypothesis_profiles

    hypothesis_profiles.register()
    name = hypothesis_profiles.full_name(config.getoption("popek_hypothesis_profile", None) or "ci")
    profile = settings.get_profile(name)
    phases = [p for p in profile.phases if p not in (Phase.shrink, Phase.explain)]
    settings.register_profile(name, profile, phases=phases)  # what popek's tests take as parent


def pytest_collection_modifyitems(session, config, items) -> None:
    """Run the tests of the mutant's target property first (a stable sort), so that ``-x``
    stops at the kill a mutant was written to get."""
    target = os.environ.get(_ENV_TARGET)
    if target:
        items.sort(key=lambda item: _property_of(item) != target)


_OUTCOMES: list[dict] = []


def pytest_runtest_logreport(report) -> None:
    path = os.environ.get(_ENV_REPORT)
    if not path:
        return
    props = dict(report.user_properties)
    info = props.get("popek")
    info = json.loads(info) if isinstance(info, str) else info  # JSON text (conformance/plugin.py)
    prop = info.get("property") if isinstance(info, dict) else None
    if report.when == "call" or (report.when in ("setup", "teardown") and report.failed):
        if report.passed:
            outcome = "passed"
        elif report.skipped:
            outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        else:  # a strict XPASS is reported failed too: the mutant changed a deviation's outcome
            outcome = "failed" if report.when == "call" else "error"
        _OUTCOMES.append({"nodeid": report.nodeid, "property": prop, "outcome": outcome})
        Path(path).write_text(json.dumps(_OUTCOMES))


# ---- the command -----------------------------------------------------------------------------------


def summary_table(verdicts: Sequence[Verdict]) -> str:
    """The mutant x property table and the kill rate per property (the property each mutant
    should break), as text."""
    from tabulate import tabulate

    rows = [
        [v.mutant.name, v.mutant.base, v.mutant.property, ",".join(v.mutant.profiles), v.status, v.by or "-"]
        for v in verdicts
    ]
    table = tabulate(rows, headers=["mutant", "base", "property", "profiles", "verdict", "killed by"])
    rates = []
    for prop in PROPERTIES:
        mine = [v for v in verdicts if v.mutant.property == prop]
        if mine:
            killed = sum(v.killed for v in mine)
            rates.append([prop, killed, len(mine), f"{100 * killed / len(mine):.0f}%"])
    total = sum(v.killed for v in verdicts)
    rates.append(["all", total, len(verdicts), f"{100 * total / max(len(verdicts), 1):.0f}%"])
    survivors = [v.mutant.name for v in verdicts if not v.killed]
    lines = [table, "", tabulate(rates, headers=["property", "killed", "mutants", "kill rate"])]
    lines.append("")
    lines.append("survivors: " + (", ".join(survivors) if survivors else "none"))
    return "\n".join(lines)


def _known_for(mutant: Mutant, known: dict[tuple[str, str], list[str]]) -> dict[str, list[str]]:
    return {p: known.get((mutant.base, p), []) for p in mutant.profiles}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.mutation",
        description="Grade the conformance suite by the mutants it kills (docs/mutants.md).",
    )
    parser.add_argument("--catalog", default=DEFAULT_CATALOG, help=f"module with MUTANTS (default {DEFAULT_CATALOG})")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="grade only this mutant (repeatable)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N", help="suite runs in parallel (default 1)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S", help="seconds per suite run")
    parser.add_argument("--json", metavar="FILE", help="also write the verdicts as JSON")
    parser.add_argument("--list", action="store_true", help="list the catalog and exit")
    parser.add_argument(
        "--no-baseline", action="store_true", help="do not run the base VMMs first (their own failures then kill)"
    )
    args, extra = parser.parse_known_args(argv)
    mutants = load_catalog(args.catalog)
    if args.only:
        unknown = sorted(set(args.only) - {m.name for m in mutants})
        if unknown:
            parser.error(f"no such mutant: {', '.join(unknown)} (--list shows the catalog)")
        mutants = tuple(m for m in mutants if m.name in args.only)
    if args.list:
        from tabulate import tabulate

        print(tabulate([[m.name, m.base, m.property, ",".join(m.profiles), m.bug] for m in mutants],
                       headers=["mutant", "base", "property", "profiles", "bug"]))  # fmt: skip
        return 0
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        pairs = sorted({(m.base, p) for m in mutants for p in m.profiles})
        known: dict[tuple[str, str], list[str]] = {}
        if not args.no_baseline:
            runs = {pair: pool.submit(baseline, *pair, timeout=args.timeout, extra=extra) for pair in pairs}
            for (base, profile), future in runs.items():
                known[base, profile] = future.result()
                failing = known[base, profile]
                print(f"baseline {base} [{profile}]: {len(failing)} failing test(s)"
                      + (": " + ", ".join(n.split("::", 1)[-1] for n in failing) if failing else ""), flush=True)  # fmt: skip
        futures = [
            pool.submit(grade, m, timeout=args.timeout, extra=extra, base_failures=_known_for(m, known))
            for m in mutants
        ]
        verdicts = []
        for m, f in zip(mutants, futures, strict=True):
            v = f.result()
            verdicts.append(v)
            print(f"{m.name}: {v.status}{' — ' + v.by if v.by else ''}", flush=True)
    print()
    print(summary_table(verdicts))
    if args.json:
        records = [
            {"mutant": v.mutant.name, "status": v.status, "killed": v.killed, "by": v.by, "runs": v.runs}
            for v in verdicts
        ]
        Path(args.json).write_text(json.dumps(records, indent=1))
    return 0 if all(v.killed for v in verdicts) else 1


if __name__ == "__main__":
    # Run as the module the catalogs import (``conformance.mutation``), not as ``__main__``: its
    # ``Mutant`` is the class their records are instances of.
    from conformance.mutation import main as _main

    sys.exit(_main())
