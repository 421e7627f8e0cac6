"""The ``popek`` command line: run guest programs on P64, grade VMMs, write reports.

Subcommands: ``asm FILE.s -o FILE.elf``, ``disasm FILE.elf``, ``run FILE(.s|.elf)``;
``report RESULTS... -o DIR`` (the grade sheet of results files, with the benchmark report of any
``bench.json`` among them), ``demo`` (every reference VMM through the conformance suite and a small
benchmark run, then the report), ``grade --vmm V`` (the same for any VMM; for several, or
``--submissions DIR``, a class: a ranking and a grade sheet per submission) and ``bench`` (the
benchmark suites priced under cost profiles, beside Adams & Agesen 2006).
Errors in the user's input (assembly errors, malformed images or results files, unknown
profiles or VMMs) print one line, ``popek: <message>``, and exit with status 2; a guest that
does not exit cleanly makes ``run`` exit with status 1, and an unexpected failure of a VMM
makes ``report``, ``demo`` and ``grade`` exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tabulate import tabulate

from conformance.hypothesis_profiles import PROFILES as _POPEK_HYPOTHESIS_PROFILES

if TYPE_CHECKING:
    from reports.report import Report

EXIT_USAGE = 2
EXIT_INTERRUPTED = 128 + 2  # 128 + SIGINT, as a shell reports a command Ctrl-C stopped
# Limits of ``popek run`` (docs/limits.md).  The core counts a run's ticks in 64 bits (p64_run
# takes a uint64_t budget), so a budget is 1..2^64-1.  A disk image is held in host memory three
# times (the file's bytes, the disk's own copy, the copy in the run's result): 256 MiB bounds
# that, the largest image an ELF can be too (cffi_core.image.MAX_IMAGE_BYTES).
MAX_BUDGET = (1 << 64) - 1
MAX_DISK_BYTES = 1 << 28
_CONSOLE_COLUMNS = 100  # the closing summary's width: a block per VMM fits a terminal


def _load_image(path: Path, memory: int | None = None):
    """The image of a ``.s`` source or an ELF file; ``memory``: the RAM it must fit in."""
    from cffi_core.asm import assemble_file
    from cffi_core.image import GuestImage

    if path.suffix == ".s":
        return assemble_file(path)
    return GuestImage.load(path, memory=memory)


def _cmd_asm(args: argparse.Namespace) -> int:
    from cffi_core.asm import assemble_file

    image = assemble_file(Path(args.source))
    out = Path(args.output) if args.output else Path(args.source).with_suffix(".elf")
    image.save(out)
    print(
        f"{out}: {sum(len(s.data) for s in image.segments)} bytes, entry {image.entry:#x}, {len(image.symbols)} symbols"
    )
    return 0


def _cmd_disasm(args: argparse.Namespace) -> int:
    from cffi_core.asm.disassembler import TRUNCATED, disassemble

    listing = disassemble(_load_image(Path(args.image)))
    print(listing, end="")
    last = listing.rstrip("\n").rpartition("\n")[2]
    if last.startswith(TRUNCATED):  # say so where it is seen, not only at the end of a long listing
        print(f"popek: {args.image}: {last.removeprefix(TRUNCATED).strip()}", file=sys.stderr)
    return 0


def _counter_rows(counters: dict[str, int]) -> list[tuple[str, int]]:
    return [(k, v) for k, v in counters.items() if v]


class _UsageError(ValueError):
    """A combination of ``popek run`` options that does not make sense (exit status 2); the
    message reads like the parser's own, ``run: ...``."""

    def __init__(self, message: str) -> None:
        super().__init__(f"run: {message}")


def _guest_abi(spec: str | None) -> str:
    """The guest ABI of the VMM named ``spec`` ("native" without one, or when it does not load:
    the run then reports the load error itself)."""
    if spec is None:
        return "native"
    from conformance.api import VMMError, load_vmm

    try:
        return load_vmm(spec).guest_abi
    except VMMError:
        return "native"


def _run_config(args: argparse.Namespace) -> tuple[Any, Any]:
    """The image and VMConfig of ``popek run``: a program with the options' RAM, disks, input
    and budget, or p64os with a workload (``--os``), or nanobench with a benchmark."""
    from cffi_core.image import read_input_file
    from cffi_core.machine import MiB
    from cffi_core.platform import DEFAULT_BUDGET
    from conformance.api import VMConfig

    guest = args.os or args.nanobench
    if guest is not None:
        if args.program is not None:
            raise _UsageError(f"give a program or --os/--nanobench, not both ({args.program})")
        for option, value in (("--memory", args.memory), ("--disk", args.disk), ("--disk2", args.disk2)):
            if value is not None:
                raise _UsageError(f"{option}: the guest software brings its own (conformance/guest_os)")
        if args.input is not None:
            raise _UsageError("--input: the command line of --os/--nanobench is the name and --n")
        paravirt = _guest_abi(args.vmm) == "paravirt"
        if paravirt and args.nanobench is not None:
            raise _UsageError(
                f"--nanobench: {args.vmm} runs paravirtual guests, and nanobench has no paravirtual build"
            )
        try:
            if args.os is not None:
                from conformance.guest_os import os_config, os_image

                # A paravirtual VMM runs the paravirtual build of p64os (guest_os README).
                image, config = os_image(paravirt=paravirt), os_config(args.os, args.n)
            else:
                from conformance.guest_os.nanobench import nanobench_config, nanobench_image

                image, config = nanobench_image(), nanobench_config(args.nanobench, args.n)
        except (KeyError, ValueError) as e:
            raise _UsageError(str(e).strip("'\"")) from None
    else:
        if args.program is None:
            raise _UsageError("give a program (a .s source or an ELF64 image), or --os or --nanobench")
        if args.n is not None:
            raise _UsageError("--n goes with --os or --nanobench")
        memory = (args.memory or 16) * MiB
        image = _load_image(Path(args.program), memory)
        disk, disk2 = (
            read_input_file(name, MAX_DISK_BYTES, "a disk image") if name else None for name in (args.disk, args.disk2)
        )
        config = VMConfig(
            memory=memory,
            disk=disk,
            disk2=disk2,
            console_input=(args.input or "").encode(),
            budget=DEFAULT_BUDGET,
        )
    if args.budget is not None:
        config = replace(config, budget=args.budget)
    return image, config


def _cmd_run(args: argparse.Namespace) -> int:
    image, config = _run_config(args)
    what = (
        str(args.program)
        if args.program is not None
        else f"{'os' if args.os else 'nanobench'} {args.os or args.nanobench}"
    )
    if args.vmm is not None:
        return _run_under_vmm(args, what, image, config)
    from cffi_core.platform import Platform

    platform = Platform(
        args.profile, config.memory, disk=config.disk, disk2=config.disk2, console_input=config.console_input
    )
    platform.load(image)
    result = platform.run(config.budget)
    ok = result.stop == "exit" and result.exit_code == 0
    if args.json:
        doc = {
            "program": what,
            "profile": args.profile,
            "stop": result.stop,
            "exit_code": result.exit_code,
            "console": result.console.decode("utf-8", errors="replace"),
            "clock": result.clock,
            "counters": result.counters,
        }
        print(json.dumps(doc, indent=2))
        return 0 if ok else 1
    _print_console(result.console)
    print(f"-- stop: {result.stop}, exit code: {result.exit_code}, ticks: {result.clock}")
    print(tabulate(_counter_rows(result.counters), headers=["counter", "value"], tablefmt="simple"))
    return 0 if ok else 1


def _print_console(console: bytes) -> None:
    sys.stdout.write(console.decode("utf-8", errors="replace"))
    if console and not console.endswith(b"\n"):
        sys.stdout.write("\n")


def _run_under_vmm(args: argparse.Namespace, what: str, image: Any, config: Any) -> int:
    """``popek run --vmm V``: the guest under a VMM in a child process (``run_alone``).  The
    counters shown are the host's (host entries, VM exits by reason, instructions by mode), the
    grader's figures; the VMM's own counters are shown apart, as what it says of itself."""
    from conformance.api import VMMError, VMMLoadError, load_vmm, run_alone

    try:
        vmm = load_vmm(args.vmm)
    except VMMLoadError as e:
        raise _UsageError(str(e)) from None
    try:
        hosted = run_alone(vmm, image, config, profile=args.profile)
    except VMMError as e:
        print(f"popek: {vmm.name}: {e}", file=sys.stderr)
        return 1
    obs, host = hosted.observation, hosted.host
    ok = obs.stop == "exit" and obs.exit_code == 0
    figures = {"host_entries": host.entries, "host_ticks": host.host_ticks, "longest_entry": host.longest}
    if args.json:
        doc = {
            "program": what,
            "vmm": vmm.name,
            "profile": args.profile,
            "stop": obs.stop,
            "exit_code": obs.exit_code,
            "console": obs.console.decode("utf-8", errors="replace"),
            "host": figures | {"counters": host.counters},
            "vmm_counters": obs.counters,
        }
        print(json.dumps(doc, indent=2))
        return 0 if ok else 1
    _print_console(obs.console)
    print(f"-- under {vmm.name} on {args.profile}: stop: {obs.stop}, exit code: {obs.exit_code}")
    rows = list(figures.items()) + _counter_rows(host.counters)
    print(tabulate(rows, headers=["host counter", "value"], tablefmt="simple"))
    if obs.counters:
        print()
        print(tabulate(_counter_rows(dict(obs.counters)), headers=["as the VMM reports", "value"], tablefmt="simple"))
    return 0 if ok else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from reports.bench_report import is_bench_file, load_bench, merge_bench, profiles_of, write_merged_report
    from reports.report import write_report

    # A bench.json among the inputs (named, or in a directory given) is the benchmark part;
    # everything else is conformance results, read as before.
    results: list[Path] = []
    bench = [Path(p) for p in args.bench]
    for path in map(Path, args.results):
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if p.is_file())
            marked = [p for p in found if is_bench_file(p)]
            bench += marked
            if not marked:
                results.append(path)
            else:
                results += [p for p in found if p not in marked]
        elif is_bench_file(path):
            bench.append(path)
        else:
            results.append(path)
    if args.ranking:
        if bench or not results:
            raise ValueError("report: --ranking ranks conformance results (no bench.json), give results files")
        from reports.classroom import write_class_report

        return _print_class_report(write_class_report(results, Path(args.output)))
    if not bench:
        if not results:
            raise ValueError("report: give results files or directories, or --bench FILE")
        return _print_report(write_report(results, Path(args.output)))
    data = merge_bench(load_bench(p) for p in dict.fromkeys(bench))
    report = write_merged_report(results, data, Path(args.output), profiles=args.cost_profile or profiles_of(data))
    print(f"popek: {len(data.records)} benchmark record(s) from {', '.join(map(str, data.sources))}")
    return _print_report(report)


def _print_report(report: Report) -> int:
    _print_summary(report.grades)
    print(f"popek: report written to {report.markdown} and {report.html}")
    partial = [g.run.key for g in report.grades if g.run.partial]
    for g in report.grades:
        if not g.ok:
            key = g.run.key
            print(f"popek: {key.vmm} on {key.profile}: {len(g.failures)} unexpected failure(s)", file=sys.stderr)
    for headline, detail in report.problems:
        print(f"popek: {headline}", file=sys.stderr)
        if detail:
            print(detail, file=sys.stderr)
    if report.ok:
        print(
            f"popek: no unexpected failure in the {len(partial)} partial run(s) (the tests selected; -k or deselection)"
            if partial
            else "popek: no run has an unexpected failure"
        )
    return 0 if report.ok else 1


def _print_summary(grades: Sequence[Any]) -> None:
    """The closing summary on the console: a block per VMM, a row per profile it ran (fits 100
    columns; the report's summary has the full verdicts)."""
    from reports.grades import shared_names, summary_blocks

    for title, headers, rows in summary_blocks(grades):
        print(textwrap.shorten(title, _CONSOLE_COLUMNS, placeholder=" ..."))
        table = tabulate(rows, headers=headers, tablefmt="simple")
        if max(map(len, table.splitlines())) > _CONSOLE_COLUMNS:  # many properties: a line per profile
            lines = ["; ".join(f"{h} {c}" for h, c in zip(headers[1:], row[1:], strict=True)) for row in rows]
            table = "\n".join(
                textwrap.fill(f"{row[0]}: {line}", _CONSOLE_COLUMNS, subsequent_indent="    ")
                for row, line in zip(rows, lines, strict=True)
            )
        print(table)
        print()
    for name, classes in shared_names(g.run.key for g in grades).items():
        print(f"popek: warning: {len(classes)} VMM classes are named {name!r} ({', '.join(classes)}); kept apart")


def _cmd_demo(args: argparse.Namespace) -> int:
    from reports.demo import reference_vmms

    # The full demo (no selection) tells the paper's story end to end: conformance, then a small
    # benchmark run; a demo narrowed with --vmm, --profile or -k skips it unless --bench says so.
    bench = args.bench if args.bench is not None else not (args.vmm or args.profile or args.keyword)
    return _run_suite(
        args, args.vmm or reference_vmms(), "no reference VMM is registered (entry-point group popek.vmms)", bench
    )


def bench_vmms(given: Sequence[str]) -> list[str]:
    """The columns of ``popek bench``: ``DEFAULT_VMMS`` when none is given, else native and the
    VMMs standing for the paper's columns (binary-translation, hardware) followed by those given,
    so that a user's VMM is shown against the classics."""
    from benchmarks import paper
    from benchmarks.suites import DEFAULT_VMMS

    if not given:
        return list(DEFAULT_VMMS)
    return list(dict.fromkeys([*paper.COLUMN_VMMS.values(), *given]))


def _cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.suites import all_suites, machine_for
    from reports.bench_report import DEFAULT_PROFILES, run_benchmarks

    suites = list(dict.fromkeys(args.suite)) or list(all_suites())
    if not suites:
        raise ValueError("bench: no benchmark suite is installed (benchmarks/suites)")
    vmms = bench_vmms(args.vmm)
    for vmm in vmms:  # an unknown VMM or one no machine profile can host: one line, before any run
        machine_for(vmm)
    profiles = list(dict.fromkeys(args.profile)) or list(DEFAULT_PROFILES)
    print(
        f"popek: benchmark suites {', '.join(suites)} under {', '.join(vmms)}, scale {args.scale}, "
        f"priced under {', '.join(profiles)}",
        flush=True,
    )
    run = run_benchmarks(
        suites, vmms, Path(args.output), scale=args.scale, profiles=profiles, progress=lambda t: print(t, flush=True)
    )
    print(f"popek: {len(run.records)} record(s) in {run.json}; report written to {run.markdown} and {run.html}")
    for headline, detail in run.problems:
        print(f"popek: {headline}", file=sys.stderr)
        if detail:
            print(detail, file=sys.stderr)
    return 1 if run.problems else 0


def _cmd_mutants(argv: Sequence[str]) -> int:
    """``popek mutants ARGS``: ``python -m conformance.mutation ARGS`` (its own options, --help)."""
    from conformance.mutation import main as mutation_main

    if os.getcwd() not in sys.path:  # the catalog (tests.mutants) is found as python -m finds it
        sys.path.insert(0, os.getcwd())
    return mutation_main(list(argv))


def _cmd_grade(args: argparse.Namespace) -> int:
    from conformance.plugin import ENV_VMM
    from reports.demo import find_submissions

    env = [s.strip() for s in os.environ.get(ENV_VMM, "").split(",") if s.strip()]
    specs = list(args.vmm)
    for directory in args.submissions:
        found = find_submissions(Path(directory))
        if not found:
            raise ValueError(f"grade: {directory}: no submissions (a .py file or a package directory each)")
        specs += found
    return _run_suite(
        args,
        specs or env,
        f"grade needs a VMM: --vmm NAME, pkg.module:Class or file.py, --submissions DIR, or ${ENV_VMM}",
        classroom=bool(args.submissions) or len(specs or env) > 1,
    )


def _resolve_all(specs: Sequence[str], tolerant: bool) -> tuple[list[Any], list[tuple[str, str]]]:
    """The VMMs named, resolved (``reports.demo.resolve_vmm``); with ``tolerant`` (a class) a
    submission that does not load is set aside with its error instead of stopping the grading."""
    from conformance.api import VMMError
    from reports.demo import resolve_vmm

    found, unloaded = [], []
    for spec in dict.fromkeys(specs):
        try:
            found.append(resolve_vmm(spec))
        except VMMError as e:
            if not tolerant:
                raise
            unloaded.append((spec, str(e)))
    return found, unloaded


def _workers(args: argparse.Namespace, runs: int) -> int:
    """pytest-xdist workers per run: ``--workers``, else the CPUs ``-j`` gives that the runs
    leave idle (one profile graded on 2 CPUs: 2 workers), when pytest-xdist is installed."""
    import importlib.util

    have_xdist = importlib.util.find_spec("xdist") is not None
    if args.workers is not None:
        if args.workers > 1 and not have_xdist:
            raise ValueError("-n/--workers needs pytest-xdist (pip install 'popek[test]')")
        return args.workers
    spare = args.jobs // max(1, runs)
    return spare if spare > 1 and have_xdist else 0


def _clean(results: Path, classes: set[str]) -> int:
    """Remove the results files (and logs) in ``results`` of the VMM classes ``classes``, so that
    a report of the directory shows no stale run of theirs; other files stay.  The count removed."""
    import json

    removed = 0
    for path in sorted(results.glob("*.json")) if results.is_dir() else []:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("format") == "popek-results" and doc.get("vmm_class") in classes:
            path.unlink()
            path.with_suffix(".log").unlink(missing_ok=True)
            removed += 1
    return removed


def _run_suite(
    args: argparse.Namespace, specs: list[str], none_given: str, bench: bool = False, classroom: bool = False
) -> int:
    import time

    from reports.demo import format_seconds, log_tail, plan_runs, problem, run_demo_bench, run_plan
    from reports.progress import RunConsole
    from reports.report import write_report

    if not specs:
        raise ValueError(none_given)
    began = time.monotonic()
    out = Path(args.output)
    results = Path(args.results) if args.results else out / "results"
    submissions, unloaded = _resolve_all(specs, tolerant=classroom)
    for spec, error in unloaded:
        print(f"popek: {spec}: not graded: {error}", file=sys.stderr)
    plans, notes = plan_runs(submissions, args.profile)
    for note in notes:
        print(f"popek: {note}")
    if not plans:
        raise ValueError("nothing to run: no selected VMM supports a selected profile")
    if args.clean:
        removed = _clean(results, {f"{p.vmm.__module__}:{p.vmm.__qualname__}" for p in plans})
        print(f"popek: removed {removed} earlier results file(s) of these VMMs from {results}")
    jobs = min(args.jobs, len(plans))
    workers = _workers(args, len(plans))
    each = f", {workers} pytest-xdist workers each" if workers > 1 else ""
    print(
        f"popek: {len(plans)} run(s) of the conformance suite (hypothesis profile {args.hypothesis_profile}), "
        f"{jobs} at a time{each}; pytest output and results in {results}",
        flush=True,
    )
    with RunConsole(len(plans)) as console:
        outcomes = run_plan(
            plans,
            results,
            hypothesis_profile=args.hypothesis_profile,
            jobs=args.jobs,
            workers=workers,
            extra=["-k", args.keyword] if args.keyword else [],
            progress=console.finished,
            started=console.started,
        )
    print(f"popek: {len(plans)} run(s) in {format_seconds(time.monotonic() - began)}", flush=True)
    for o in outcomes:
        if not o.wrote_results:
            print(f"popek: {o.plan.title} wrote no results; its log ends:", file=sys.stderr)
            print(log_tail(o), file=sys.stderr)
    written = [o.results for o in outcomes if o.wrote_results]
    if args.junitxml:
        _write_junit(written, Path(args.junitxml))
    if classroom:
        return _class_report(outcomes, out, unloaded)
    if not written:
        return 1
    problems = [p for p in map(problem, outcomes) if p is not None]
    if bench:
        print()
        run = run_demo_bench(out / "bench", lambda t: print(t, flush=True))
        if run is not None:
            from reports.bench_report import load_bench, write_merged_report

            problems += run.problems
            print()
            links = [("the benchmark report alone", "bench/bench.html"), ("its records", "bench/bench.json")]
            report = write_merged_report(written, load_bench(run.json), out, problems, links=links)
            return _print_report(report)
    print()
    return _print_report(write_report(written, out, problems))


def _write_junit(written: Sequence[Path], path: Path) -> None:
    """``--junitxml``: every run written, as JUnit XML (``reports.junit.write_junit``)."""
    from reports.grades import load_runs
    from reports.junit import write_junit

    write_junit(load_runs(written), path)
    print(f"popek: JUnit XML of {len(written)} run(s) written to {path}")


def _class_report(outcomes: Sequence[Any], out: Path, unloaded: list[tuple[str, str]]) -> int:
    """The report of a class: the ranking, and a grade sheet per submission."""
    from reports.classroom import write_class_report
    from reports.demo import problem

    graded = {f"{o.plan.vmm.__module__}:{o.plan.vmm.__qualname__}" for o in outcomes if o.wrote_results}
    unloaded = list(unloaded)
    for o in outcomes:  # a submission none of whose runs wrote results is not in the ranking
        cls = f"{o.plan.vmm.__module__}:{o.plan.vmm.__qualname__}"
        if cls not in graded and o.plan.spec not in {u for u, _ in unloaded}:
            unloaded.append((o.plan.spec, f"no run wrote results (pytest exited with status {o.status}; log {o.log})"))
    problems = []
    for o in outcomes:
        found = problem(o)
        if found is not None:
            problems.append((f"{o.plan.vmm.__module__}:{o.plan.vmm.__qualname__}", found))
    written = [o.results for o in outcomes if o.wrote_results]
    if not written:
        print(f"popek: no run wrote results; nothing to rank ({len(unloaded)} submission(s) not graded)")
        return 1
    print()
    return _print_class_report(write_class_report(written, out, problems, unloaded))


def _print_class_report(report: Any) -> int:
    """The ranking on the console, the warnings, where the class report went; the exit status."""
    from reports.classroom import ranking_table

    out = report.markdown.parent
    headers, rows = ranking_table(report.standings)
    print(tabulate(rows, headers=headers, tablefmt="simple"))
    for warning in report.warnings:
        print(f"popek: warning: {warning}", file=sys.stderr)
    for spec, error in report.unloaded:
        print(f"popek: {spec}: not graded: {error}", file=sys.stderr)
    failing = [s for s in report.standings if not s.ok]
    print(
        f"popek: {len(report.standings)} submission(s) ranked, {len(failing)} with unexpected failures, "
        f"{len(report.unloaded)} not graded; class report written to {report.markdown} and {report.html}, "
        f"a grade sheet per submission under {out / 'sheets'}"
    )
    return 0 if report.ok else 1


class _Parser(argparse.ArgumentParser):
    """An argument parser; with ``one_line_errors`` a usage error is one line, ``popek:
    COMMAND: message``, and exit status 2, as every other error of the command is."""

    def __init__(self, *args: Any, one_line_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._one_line_errors = one_line_errors

    def error(self, message: str) -> NoReturn:
        if not self._one_line_errors:
            super().error(message)
        self.exit(EXIT_USAGE, f"popek: {self.prog.removeprefix('popek ')}: {message}\n")


def _whole_number(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {what}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text} is outside {low}..{high} {what}")
    return value


def _budget(text: str) -> int:
    """A run's budget: 1..MAX_BUDGET ticks."""
    return _whole_number(text, "ticks", 1, MAX_BUDGET)


def _memory_mib(text: str) -> int:
    """RAM in MiB: whole MiB from 1 up to the machine's largest memory."""
    from cffi_core.machine import MAX_MEMORY, MiB

    return _whole_number(text, "MiB", 1, MAX_MEMORY // MiB)


def _whole_n(text: str) -> int:
    """A workload's size or a benchmark's iteration count: 0..2^32."""
    return _whole_number(text, "iterations", 0, 1 << 32)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _whole_workers(text: str) -> int:
    """``-n``: pytest-xdist workers per run, 0..256."""
    return _whole_number(text, "workers", 0, 256)


def _scale(text: str) -> int:
    """``popek bench --scale``: a whole number >= 1 (the iterations' multiplier)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is less than 1 (1 is the smallest scale)")
    return value


def _suite_name(name: str) -> str:
    """A benchmark suite's name (``benchmarks.suites.all_suites``)."""
    from benchmarks.suites import all_suites
    from cffi_core.profiles import did_you_mean

    known = list(all_suites())
    if name not in known:
        raise argparse.ArgumentTypeError(
            f"unknown suite {name!r}{did_you_mean(name, known)} (available: {', '.join(known) or 'none yet'})"
        )
    return name


def _cost_profile(name: str) -> str:
    """A cost profile: a name in benchmarks/cost_profiles or a ``.toml`` file."""
    from benchmarks.cost_model import CostModelError, load_profile

    try:
        load_profile(name)
    except CostModelError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name


def _profile_name(name: str) -> str:
    """A profile name as ``Machine`` takes it: a named profile, perhaps with ``+FEATURE``s."""
    from cffi_core.profiles import ProfileError, get_profile

    try:
        get_profile(name)
    except ProfileError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name


_HYPOTHESIS_PROFILES = (*_POPEK_HYPOTHESIS_PROFILES, "default")  # and hypothesis's own


def _hypothesis_profile(name: str) -> str:
    """One of popek's hypothesis profiles (conformance/hypothesis_profiles.py), checked before any
    run starts."""
    from cffi_core.profiles import did_you_mean

    if name not in _HYPOTHESIS_PROFILES:
        raise argparse.ArgumentTypeError(
            f"no hypothesis profile {name!r}{did_you_mean(name, _HYPOTHESIS_PROFILES)} "
            f"(popek's: {', '.join(_HYPOTHESIS_PROFILES)})"
        )
    return name


def _profiles_help() -> str:
    from cffi_core.profiles import available_profiles

    return f"{', '.join(available_profiles())}, or one of them plus features (vtx-2009+iommu)"


def _add_suite_options(p: argparse.ArgumentParser, vmm_help: str) -> None:
    from reports.demo import DEFAULT_HYPOTHESIS_PROFILE, default_jobs

    p.add_argument("--vmm", action="append", default=[], metavar="NAME", help=vmm_help)
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        type=_profile_name,
        help=f"a machine profile: {_profiles_help()} (repeatable; default: each VMM's profiles, those with "
        "hardware assists only for a VMM that uses them, and with the features it uses when present)",
    )
    p.add_argument("-o", "--output", default="popek-report", help="report directory (default popek-report)")
    p.add_argument("--results", help="results and log directory (default OUTPUT/results)")
    p.add_argument("-j", "--jobs", type=_positive, default=default_jobs(), help="runs at once (default: one per CPU)")
    p.add_argument("-k", dest="keyword", metavar="EXPR", help="only the conformance tests matching EXPR (pytest -k)")
    p.add_argument(
        "-n",
        "--workers",
        type=_whole_workers,
        default=None,
        metavar="N",
        help="pytest-xdist workers within each run (default: the CPUs of -j the runs leave idle, so that one "
        "profile graded with -j 2 runs two tests at a time; 0: none)",
    )
    p.add_argument("--junitxml", metavar="PATH", help="also write every run's results as JUnit XML to PATH")
    p.add_argument(
        "--clean",
        action="store_true",
        help="first remove the results files of these VMMs from the results directory (runs of earlier "
        "grades that this one does not repeat), so that popek report of the directory shows no stale run",
    )
    p.add_argument(
        "--hypothesis-profile",
        default=DEFAULT_HYPOTHESIS_PROFILE,
        type=_hypothesis_profile,
        help=f"hypothesis settings profile: {', '.join(_HYPOTHESIS_PROFILES)} "
        f"(default {DEFAULT_HYPOTHESIS_PROFILE}: derandomized)",
    )


def _version() -> str:
    """``popek 0.1.0 (C core ABI 8, instruction table 0123abcd...)``: what a bug report needs."""
    from importlib import metadata

    from cffi_core import _binding

    try:
        version = metadata.version("popek")
    except metadata.PackageNotFoundError:
        version = "(not installed)"
    return (
        f"popek {version} (C core ABI {_binding.ABI_VERSION}, instruction table {_binding.ffi.string(_binding.lib.p64_isa_hash()).decode()}"
        f"; Python {sys.version.split()[0]})"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    from cffi_core.machine import MAX_MEMORY, MiB
    from cffi_core.platform import DEFAULT_BUDGET
    from cffi_core.profiles import DEFAULT_PROFILE

    parser = argparse.ArgumentParser(prog="popek", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("asm", help="assemble a .s file into an ELF64 image", one_line_errors=True)
    p.add_argument("source")
    p.add_argument("-o", "--output", help="output file (default: the source with .elf)")
    p.set_defaults(func=_cmd_asm)

    p = sub.add_parser("disasm", help="disassemble an ELF64 image (or a .s file)", one_line_errors=True)
    p.add_argument("image")
    p.set_defaults(func=_cmd_disasm)

    p = sub.add_parser(
        "run",
        help="run a program, p64os with a workload, or nanobench natively (or under a VMM, --vmm)",
        one_line_errors=True,
    )
    p.add_argument("program", nargs="?", help="a .s source or an ELF64 image")
    guest = p.add_mutually_exclusive_group()
    guest.add_argument(
        "--os",
        metavar="WORKLOAD",
        help="boot p64os and run WORKLOAD (forkwait, compute, compile, mmu, diskio, ktest, fstest)",
    )
    guest.add_argument(
        "--nanobench",
        metavar="NAME",
        help="boot nanobench and run benchmark NAME (syscall, in, cr8wr, callret, pgfault, divzero, ptemod, empty)",
    )
    p.add_argument(
        "--n", type=_whole_n, help="the workload's size or the benchmark's iterations (default: the workload's own)"
    )
    p.add_argument(
        "--vmm", metavar="NAME", help="run under this VMM (an entry-point name or pkg.module:Class) instead of natively"
    )
    p.add_argument("--profile", default=DEFAULT_PROFILE, type=_profile_name, help=_profiles_help())
    p.add_argument(
        "--budget",
        type=_budget,
        default=None,
        help=f"ticks before the run is stopped (1..2^64-1, default {DEFAULT_BUDGET}, or the guest software's own)",
    )
    p.add_argument("--memory", type=_memory_mib, default=None, help=f"RAM in MiB (1..{MAX_MEMORY // MiB}, default 16)")
    p.add_argument("--disk", help=f"disk image file (a multiple of 512 bytes, at most {MAX_DISK_BYTES >> 20} MiB)")
    p.add_argument("--disk2", help="the second disk's image file (ports 0x170-0x174, IRQ 15)")
    p.add_argument("--input", help="the console's input (text)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("report", help="write the grade sheet (Markdown and HTML) of conformance results")
    p.add_argument(
        "results",
        nargs="*",
        metavar="RESULTS",
        help="results JSON files (--popek-results), directories of them, or JUnit XML files (--junitxml); "
        "a bench.json of popek bench among them (or in a directory given) adds the benchmark report",
    )
    p.add_argument(
        "--bench", action="append", default=[], metavar="FILE", help="a bench.json of popek bench (repeatable)"
    )
    p.add_argument(
        "--cost-profile",
        action="append",
        default=[],
        type=_cost_profile,
        metavar="P",
        help="price the benchmark records under this cost profile (repeatable; default: those of the bench run)",
    )
    p.add_argument(
        "--ranking",
        action="store_true",
        help="a class's report: the VMMs ranked in OUTPUT/report.md and .html, and a grade sheet per VMM class "
        "in OUTPUT/sheets/ (as popek grade writes for several VMMs; the final job of a CI matrix)",
    )
    p.add_argument("-o", "--output", default="popek-report", help="report directory (default popek-report)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "demo",
        help="run every reference VMM through the conformance suite, and a small benchmark run, and write the report",
    )
    _add_suite_options(p, "a VMM to run instead of every reference VMM (repeatable)")
    p.add_argument(
        "--bench",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="include the small benchmark run (nanobench and forkwait, scale 1, priced on p4-2006; default: "
        "only when no --vmm, --profile or -k narrows the demo)",
    )
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "bench",
        help="run the benchmark suites and write bench.json and the benchmark report",
        one_line_errors=True,
        description="Run the benchmark suites (docs/benchmarks.md) under VMMs, write DIR/bench.json (every "
        "record, counts only) and the report DIR/bench.md and DIR/bench.html (and plots with popek[plots]), "
        "the records priced under each cost profile given, beside Adams & Agesen 2006.",
    )
    p.add_argument(
        "--vmm",
        action="append",
        default=[],
        metavar="NAME",
        help="a VMM to benchmark: an entry-point name or pkg.module:Class (repeatable). Default: native and "
        "every reference VMM of a technique the paper discusses. When given, native, binary-translation and "
        "hardware (the paper's columns) are benchmarked too, so your VMM is shown against the classics",
    )
    p.add_argument(
        "--profile",
        action="append",
        default=[],
        type=_cost_profile,
        metavar="P",
        help="a cost profile to price the records under: a name (p4-2006, core2-2008, nehalem-2009, "
        "sandybridge-2011) or a .toml file (repeatable; default p4-2006; with several, the report adds the "
        "processor-generation sweep)",
    )
    p.add_argument(
        "--suite",
        action="append",
        default=[],
        type=_suite_name,
        metavar="S",
        help="a suite to run: nanobench, forkwait, macro, mmu, io (repeatable; default: every installed suite)",
    )
    p.add_argument("--scale", type=_scale, default=1, metavar="K", help="multiply the iterations by K >= 1 (default 1)")
    p.add_argument("-o", "--output", default="popek-bench", help="output directory (default popek-bench)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "grade",
        help="run VMMs through the conformance suite on their profiles and write the report (a ranking and a "
        "grade sheet each, for several)",
        description="Run VMMs through the conformance suite, one pytest process per VMM and profile, and write "
        "the grade sheet. With one VMM: OUTPUT/report.md and .html. With several (--vmm repeated, or "
        "--submissions DIR, a class): OUTPUT/report.md and .html rank them, and OUTPUT/sheets/<module>-<Class>/ "
        "holds each one's grade sheet; submissions are told apart by module:Class, never by their VMM's name. "
        "Runs are printed as they start and end; exit status 1 when a VMM fails unexpectedly or does not load.",
    )
    _add_suite_options(
        p,
        "the VMM: an entry-point name, pkg.module:Class (found installed or in the current directory), or a "
        "path, file.py[:Class] or a package directory (repeatable; default $POPEK_VMM)",
    )
    p.add_argument(
        "--submissions",
        action="append",
        default=[],
        metavar="DIR",
        help="grade every submission in DIR: each .py file and each package directory holding one VMM class "
        "(repeatable); a submission that does not load is listed, not fatal",
    )
    p.set_defaults(func=_cmd_grade)

    p = sub.add_parser(
        "mutants",
        help="grade the suite itself by the one-bug VMM variants it kills (docs/mutants.md; run in a checkout)",
        add_help=False,
    )
    p.set_defaults(func=_cmd_mutants)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``popek`` console script."""
    from cffi_core.asm import AssemblyError
    from cffi_core.devices import DeviceError
    from cffi_core.image import ImageError
    from cffi_core.platform import MachineError
    from cffi_core.profiles import ProfileError
    from conformance.api import VMMError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["mutants"]:  # every other word is the mutation runner's own option
        return _cmd_mutants(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (``popek run x.s | head``): not an error of the user's input.
        # Point stdout at devnull so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except AssemblyError as e:  # every error of the file, with its column and a caret
        print(e.render(prefix="popek: "), file=sys.stderr)
        return EXIT_USAGE
    except (ImageError, ProfileError, DeviceError, MachineError, VMMError, OSError, ValueError) as e:
        print(f"popek: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C: one line, and the shell's status for a SIGINT
        print("popek: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
