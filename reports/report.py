"""The grade sheet (``popek report``): results files in, ``report.md`` and ``report.html`` out.

The report opens with when it was written and with which versions, a table of contents, and
the cross-VMM summary (which VMM passes which property on which profile, verdicts coloured in
HTML); then the efficiency figures per VMM against their thresholds (``efficiency_blocks``),
then one section per run (VMM × profile), the runs with unexpected failures first: the property
× category counts, the unexpected failures grouped by cause (``reports.failures``: "20
failures, 1 cause", the smallest counterexample of each in full, its observation diff side by
side with the differing rows highlighted, the guest's listing folded, a rerun command per
failure), the expected deviations with the paper's name for them (their counterexamples
folded), the reasons for skips, and the coverage of the generated guests (instruction × CPL ×
paging × TF, and exits next to pending events, ``conformance.coverage``) with the cells no
example reached.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

from conformance import coverage
from conformance.results import OUTCOMES, RunResults, TestResult
from reports import failures
from reports.grades import (
    Grade,
    collect_files,
    first_line,
    grade,
    load_runs,
    rerun_command,
    summary_table,
    vmm_labels,
)
from reports.render import (
    Bar,
    Bars,
    Block,
    Cell,
    Code,
    Contents,
    Details,
    FoldedTable,
    Heading,
    Mono,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)

__all__ = ["TITLE", "Report", "build_blocks", "coverage_blocks", "efficiency_blocks", "verdict_cell", "write_report"]

TITLE = "popek conformance report"
_COUNTER_LIMIT = 12  # counters shown beside a failure; the results file has them all
_EFFICIENCY_TEST = "test_most_guest_instructions_run_directly"


@dataclass(frozen=True)
class Report:
    """What ``write_report`` did: the grades and the files it wrote."""

    grades: list[Grade]
    markdown: Path
    html: Path
    problems: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """True when no run has an unexpected failure and nothing else went wrong."""
        return all(g.ok for g in self.grades) and not self.problems

    def summary(self) -> tuple[list[str], list[list[str]]]:
        """The cross-VMM summary table (headers, rows)."""
        return summary_table(self.grades)


def write_report(
    paths: Iterable[Path], out: Path, problems: Sequence[tuple[str, str]] = (), *, now: datetime | None = None
) -> Report:
    """Grade the results files under ``paths`` (files or directories) and write
    ``out/report.md`` and ``out/report.html``; ``ResultsError`` names a bad input file.

    ``problems`` are (headline, detail) pairs of what went wrong outside the results files (a
    pytest run that failed in a test recorded under another VMM, or crashed): the report shows
    them after the summary, and they make it fail.  ``now`` is the time the report says it was
    written (default: the clock's, in UTC)."""
    grades = [grade(run) for run in load_runs(collect_files(paths))]
    blocks = build_blocks(grades, problems, contents=True, now=now or datetime.now(UTC))
    out.mkdir(parents=True, exist_ok=True)
    markdown, page = out / "report.md", out / "report.html"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks, TITLE), encoding="utf-8")
    return Report(grades, markdown, page, tuple(problems))


def verdict_cell(text: str) -> Cell:
    """A summary cell (``reports.grades.verdict``) with the tone of its verdict."""
    head = text.split(" (", 1)[0]
    tone = {"FAIL": "fail", "pass": "pass", "fails as expected": "xfail", "skipped": "skip", "not run": "skip"}
    return Cell(text, tone.get(head, "skip" if text == "-" else None))


def _versions(grades: Sequence[Grade]) -> str:
    seen = {tuple(sorted(g.run.versions.items())) for g in grades if g.run.versions}
    if not seen:
        return "The results files do not say which versions ran them."
    if len(seen) == 1:
        (env,) = seen
        return "Versions: " + ", ".join(f"{k} {v}" for k, v in env) + "."
    return "The runs were made with different versions: each run's section names its own."


def build_blocks(
    grades: Sequence[Grade],
    problems: Sequence[tuple[str, str]] = (),
    *,
    contents: bool = False,
    now: datetime | None = None,
) -> list[Block]:
    """The whole report as blocks: the opening (date when ``now`` is given, versions), a table of
    contents when ``contents``, the summary, the problems, the efficiency figures, then one
    section per run, those with unexpected failures first."""
    failing = [g for g in grades if not g.ok]
    ordered = failing + [g for g in grades if g.ok]
    labels = vmm_labels(g.run.key for g in grades)
    when = f"Written {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC. " if now is not None else ""
    blocks: list[Block] = [
        Heading(1, TITLE),
        Paragraph(
            f"{len(grades)} run(s) of the conformance suite, graded on Popek & Goldberg's (1974) properties: "
            "equivalence, safety (resource control), efficiency. "
            + (
                f"{len(failing)} run(s) have unexpected failures: their sections come first."
                if failing
                else "No run has an unexpected failure; expected deviations of a technique are xfail."
            )
            + (
                f" {sum(g.run.partial is not None for g in grades)} run(s) were partial (a part of the suite "
                "only, as their sections say): a pass there is no grade of the whole suite."
                if any(g.run.partial is not None for g in grades)
                else ""
            )
            + (f" {len(problems)} run(s) did not end cleanly (below)." if problems else "")
        ),
        Paragraph(when + _versions(grades)),
    ]
    if contents:
        blocks.append(Contents(2, 1))
    headers, rows = summary_table(ordered)
    blocks += [
        Heading(2, "Summary"),
        Paragraph(
            "Per VMM, property and profile: pass; fails as expected (the technique's documented "
            "deviation, xfail); FAIL (an unexpected failure); skipped (the profile lacks what the VMM or "
            "test requires)."
        ),
        Table(
            headers,
            [[verdict_cell(c) if isinstance(c, str) and i >= 2 else c for i, c in enumerate(row)] for row in rows],
        ),
    ]
    blocks += problem_blocks(problems)
    blocks += efficiency_blocks(grades, labels)
    for g in ordered:
        blocks += _run_section(g, labels)
    return blocks


# ---- efficiency ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Thresholds:
    min_direct: float  # per mille
    max_entries: float | None  # per 1,000 guest instructions
    max_overhead: float | None


@cache
def _thresholds(guest: str, profile: str) -> _Thresholds | None:
    """The thresholds ``conformance.test_efficiency`` grades ``guest`` with on ``profile``:
    the fixed ones as they are, a model bound (``eff_ops``'s host entries, ``eff_calls``'s
    overhead) from the native run of the guest, as the test computes it; None for a guest it
    does not know, or when the native run cannot be made here."""
    try:
        from cffi_core.asm import assemble_file
        from cffi_core.profiles import get_profile
        from conformance.api import observe
        from conformance.guests import GUEST_DIR
        from conformance.test_efficiency import GUESTS
        from reference_vmm.native import NativeVMM

        known = {g.name: g for g in GUESTS}
        if guest not in known:
            return None
        g = known[guest]
        features = get_profile(profile).features
        native = observe(NativeVMM, assemble_file(GUEST_DIR / f"{guest}.s"), g.config, profile=profile)
        return _Thresholds(
            1000 * g.min_direct, g.entry_bound(native.counters, features), g.overhead_bound(native.counters, features)
        )
    except Exception:  # a report is written whatever the machine can do; the threshold cells say "-"
        return None


def _meets(value: float, bound: float | None, at_least: bool, digits: int = 1) -> Cell:
    text = f"{value:,.{digits}f}"
    if bound is None:
        return Cell(text)
    ok = value >= bound if at_least else value <= bound
    return Cell(text, "pass" if ok else "fail")


def _bound(bound: float | None, at_least: bool) -> str:
    if bound is None:
        return "-"
    return f"≥ {bound:,.0f}" if at_least else f"≤ {bound:,.1f}"


def efficiency_blocks(grades: Sequence[Grade], labels: dict[str, str] | None = None) -> list[Block]:
    """The efficiency section: per VMM, a row per (profile, guest) of the efficiency test, with
    what the host measured (``conformance.test_efficiency``: the guest instructions its core
    retired directly, in ‰; host entries and the VMM's own deprivileged instructions per 1,000
    guest instructions) beside the thresholds, and two bar charts (run directly, host entries
    against their bound); nothing when no run measured efficiency."""
    labels = labels or vmm_labels(g.run.key for g in grades)
    per_vmm: dict[str, list[tuple[str, TestResult]]] = {}
    for g in grades:
        for t in g.run.tests:
            if _EFFICIENCY_TEST in t.nodeid and "measured_direct_per_mille" in t.counters:
                per_vmm.setdefault(g.run.key.vmm_class, []).append((g.run.key.profile, t))
    if not per_vmm:
        return []
    blocks: list[Block] = [
        Heading(2, "Efficiency"),
        Paragraph(
            "What the host measured of each efficiency guest (docs/vmm-api.md §8): the share of the guest's "
            "instructions its core retired directly (‰, at least the threshold), how often the VMM entered the "
            "host and how many instructions of its own it ran deprivileged, per 1,000 guest instructions (at most "
            "the threshold). A run that is not equivalent to the native one measures nothing and is not listed."
        ),
    ]
    for cls, rows in per_vmm.items():
        table = []
        direct_bars, entry_bars = [], []
        for profile, t in rows:
            c = t.counters
            guest = t.category or "?"
            limits = _thresholds(guest, profile)
            n = max(c.get("guest_instructions", 0), 1)
            direct = float(c["measured_direct_per_mille"])
            entries = 1000 * c["host_entries"] / n if "host_entries" in c else float(c.get("host_entries_per_1000", 0))
            overhead = float(c.get("overhead_per_1000", 0))
            min_direct = limits.min_direct if limits else None
            max_entries = limits.max_entries if limits else None
            max_overhead = limits.max_overhead if limits else None
            table.append(
                [
                    profile,
                    guest,
                    verdict_cell(
                        {"passed": "pass", "failed": "FAIL", "xfailed": "fails as expected"}.get(t.outcome, t.outcome)
                    ),
                    _meets(direct, min_direct, True, 0),
                    _bound(min_direct, True),
                    _meets(entries, max_entries, False),
                    _bound(max_entries, False),
                    _meets(overhead, max_overhead, False, 0),
                    _bound(max_overhead, False),
                ]
            )
            label = f"{profile} {guest}"
            direct_bars.append(
                Bar(
                    label,
                    direct,
                    min_direct,
                    1000.0,
                    min_direct is None or direct >= min_direct,
                    f"{direct:,.0f}‰" + (f" (at least {min_direct:,.0f}‰)" if min_direct is not None else ""),
                )
            )
            if max_entries:
                entry_bars.append(
                    Bar(
                        label,
                        entries,
                        max_entries,
                        max(2 * max_entries, entries),
                        entries <= max_entries,
                        f"{entries:,.1f} per 1,000 (at most {max_entries:,.1f})",
                    )
                )
        blocks += [
            Heading(3, f"Efficiency of {labels.get(cls, cls)}"),
            Table(
                [
                    "profile",
                    "guest",
                    "outcome",
                    "run directly ‰",
                    "threshold",
                    "host entries /1,000",
                    "threshold",
                    "own instructions /1,000",
                    "threshold",
                ],
                table,
            ),
            Bars(f"{labels.get(cls, cls)}: guest instructions run directly (‰)", tuple(direct_bars)),
        ]
        if entry_bars:
            blocks.append(Bars(f"{labels.get(cls, cls)}: host entries per 1,000 guest instructions", tuple(entry_bars)))
    return blocks


# ---- one run -------------------------------------------------------------------------------


def _failure_blocks(run: RunResults, tests: Sequence[TestResult]) -> list[Block]:
    causes = failures.group(tests)
    blocks: list[Block] = [
        Heading(3, f"Unexpected failures: {len(tests)} failure(s), {len(causes)} cause(s)"),
        Paragraph(
            "Failures whose counterexamples open with the same difference are one cause: each cause shows "
            "its smallest counterexample, then lists the other failures with their rerun commands. A rerun "
            "command works from the directory popek ran in (the suite is named by module, --pyargs)."
        ),
    ]
    for n, cause in enumerate(causes, 1):
        shown = cause.shown
        test = shown.test
        headline = cause.headline if len(cause.headline) <= 90 else cause.headline[:89] + "…"
        blocks += [
            Heading(4, f"Cause {n} of {len(causes)} ({len(cause.failures)} failure(s)): {headline}"),
            Paragraph(
                "The smallest counterexample, of ",
                Mono(test.nodeid),
                f" ({test.outcome}; property {test.property or '-'}, category {test.category or '-'}):",
            ),
            Code(shown.diff, failures.marks(shown.diff), sides=True),
        ]
        if shown.listing:
            lines = shown.listing.count("\n") + 1
            marked = failures.listing_marks(shown.listing)
            note = f"; the body's {len(marked)} instruction(s) marked" if marked else ""
            blocks.append(Details(f"guest program ({lines} lines{note})", shown.listing, marked))
        blocks += [Paragraph("Rerun it:"), Code(rerun_command(run, test))]
        counters = [f"{k}={v}" for k, v in test.counters.items() if v]
        if counters:
            more = len(counters) - _COUNTER_LIMIT
            text = ", ".join(counters[:_COUNTER_LIMIT]) + (f", ... ({more} more)" if more > 0 else "")
            blocks.append(Paragraph("Counters: ", Mono(text)))
        others = cause.failures[1:]
        if others:
            listed = "\n".join(f"{f.test.nodeid}\n  {f.headline}\n  {rerun_command(run, f.test)}" for f in others)
            blocks.append(
                Details(f"the {len(others)} other failure(s) of this cause, with their rerun commands", listed)
            )
    return blocks


def _run_section(g: Grade, labels: dict[str, str]) -> list[Block]:
    run = g.run
    key = run.key
    env = ", ".join(f"{k} {v}" for k, v in sorted(run.versions.items()))
    facts: list[str | Mono] = ["Technique: ", key.technique, ". Class ", Mono(key.vmm_class), "."]
    if run.hypothesis_profile:
        facts += [" Hypothesis profile ", Mono(run.hypothesis_profile), "."]
    if env:
        facts += [f" Versions: {env}."]
    partial = getattr(run, "partial", None)
    if partial:
        facts += [f" Partial run: {partial}."]
    if run.source is not None:
        facts += [" Results file ", Mono(str(run.source)), "."]
    title = f"{labels.get(key.vmm_class, key.vmm)} on {key.profile}"
    blocks: list[Block] = [
        Heading(2, title + ("" if g.ok else f" — {len(g.failures)} unexpected failure(s)")),
        Paragraph(*facts),
        Table(
            ["property", "category", *OUTCOMES, "total"],
            [[prop, cat, *(c[o] for o in OUTCOMES), sum(c.values())] for (prop, cat), c in g.counts.items()],
        ),
    ]
    if g.failures:
        blocks += _failure_blocks(run, g.failures)
    if g.deviations:
        blocks += [
            Heading(3, "Expected deviations (xfail)"),
            Table(["test", "reason"], [[t.nodeid, first_line(t.message)] for t in g.deviations]),
        ]
        # The reason is the message's first line; what follows is the failure that was expected.
        for t in g.deviations:
            rest = "\n".join((t.message or "").splitlines()[1:])
            if rest.strip():
                text = failures.wrap(failures.readable(rest))
                blocks.append(Details(f"counterexample: {t.nodeid}", text, failures.marks(text)))
    if g.xpasses:
        blocks += [
            Heading(3, "Unexpected passes (non-strict xpass)"),
            Table(["test", "reason"], [[t.nodeid, first_line(t.message)] for t in g.xpasses]),
        ]
    if g.skips:
        blocks += [
            Heading(3, "Skipped"),
            Table(["reason", "tests"], [[reason, n] for reason, n in g.skips.most_common()]),
        ]
    return blocks + coverage_blocks(run)


def _column(cpl: int, paging: bool, tf: bool) -> str:
    return f"CPL {cpl} {'paged' if paging else 'flat'}{' TF' if tf else ''}"


def coverage_blocks(run: RunResults) -> list[Block]:
    """The coverage section of a run: examples per cell summed over its tests, the cells no
    example reached; nothing when no test of the run recorded coverage."""
    from cffi_core.isa.table import INSTRUCTIONS

    counts: Counter[str] = Counter()
    for test in run.tests:
        counts.update(test.coverage)
    if not counts:
        return []
    columns = coverage.mode_columns()
    rows = []
    uncovered: list[str] = []
    for insn in INSTRUCTIONS:
        cells = [counts.get(coverage.instruction_cell(insn.mnemonic, *col), 0) for col in columns]
        rows.append([insn.mnemonic, *cells])
        missing = [_column(*col) for col, n in zip(columns, cells, strict=True) if not n]
        if len(missing) == len(columns):
            uncovered.append(f"{insn.mnemonic}: never generated")
        elif missing:
            uncovered.append(f"{insn.mnemonic}: {', '.join(missing)}")
    adjacent = [[kind, counts.get(coverage.adjacent_cell(kind), 0)] for kind in coverage.ADJACENT_KINDS]
    uncovered += [f"{kind}: never" for kind, n in adjacent if not n]
    total = len(coverage.all_cells())
    reached = sum(1 for cell in coverage.all_cells() if counts.get(cell))
    tests = sum(1 for t in run.tests if t.coverage)
    return [
        Heading(3, "Coverage of the generated guests"),
        Paragraph(
            f"Examples (shrinking included) of the {tests} test(s) with generated guests that exercised each cell, "
            f"read statically from each guest: {reached} of {total} cells reached. An instruction counts at the "
            "CPL and paging mode of its body and with the TF its preceding instructions left."
        ),
        FoldedTable(
            f"examples per instruction and mode ({len(rows)} instructions × {len(columns)} modes)",
            Table(["instruction", *(_column(*col) for col in columns)], rows),
        ),
        Table(["exit adjacent to an event", "examples"], adjacent),
        Details(f"uncovered cells ({total - reached})", "\n".join(uncovered) if uncovered else "none"),
    ]


def problem_blocks(problems: Sequence[tuple[str, str]]) -> list[Block]:
    """The section on runs that did not end cleanly: each one's headline and the detail (its log's
    tail); nothing when every run ended cleanly."""
    if not problems:
        return []
    blocks: list[Block] = [Heading(2, "Runs that did not end cleanly")]
    for headline, detail in problems:
        blocks.append(Paragraph(headline))
        if detail:
            blocks.append(Code(detail))
    return blocks
