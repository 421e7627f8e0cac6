"""The grade sheet (``popek report``): results files in, ``report.md`` and ``report.html`` out.

The report opens with the cross-VMM summary (which VMM passes which property on which
profile), then one section per run (VMM × profile): the property × category counts, every
unexpected failure with its counterexample and a one-line rerun command, the expected
deviations with the paper's name for them (their counterexamples folded), the reasons
for skips, and the coverage of the generated guests (instruction × CPL × paging × TF, and
exits next to pending events, ``conformance.coverage``) with the cells no example reached.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from conformance import coverage
from conformance.results import OUTCOMES, RunResults
from reports.grades import (
    Grade,
    collect_files,
    counterexample,
    first_line,
    grade,
    load_runs,
    rerun_command,
    summary_table,
)
from reports.render import Block, Code, Details, Heading, Mono, Paragraph, Table, to_html, to_markdown

__all__ = ["TITLE", "Report", "build_blocks", "coverage_blocks", "write_report"]

TITLE = "popek conformance report"
_COUNTER_LIMIT = 12  # counters shown beside a failure; the results file has them all


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


def write_report(paths: Iterable[Path], out: Path, problems: Sequence[tuple[str, str]] = ()) -> Report:
    """Grade the results files under ``paths`` (files or directories) and write
    ``out/report.md`` and ``out/report.html``; ``ResultsError`` names a bad input file.

    ``problems`` are (headline, detail) pairs of what went wrong outside the results files (a
    pytest run that failed in a test recorded under another VMM, or crashed): the report shows
    them after the summary, and they make it fail."""
    grades = [grade(run) for run in load_runs(collect_files(paths))]
    blocks = build_blocks(grades, problems)
    out.mkdir(parents=True, exist_ok=True)
    markdown, page = out / "report.md", out / "report.html"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks, TITLE), encoding="utf-8")
    return Report(grades, markdown, page, tuple(problems))


def build_blocks(grades: Sequence[Grade], problems: Sequence[tuple[str, str]] = ()) -> list[Block]:
    """The whole report as blocks: the summary, the problems, then one section per run."""
    failing = [g for g in grades if not g.ok]
    blocks: list[Block] = [
        Heading(1, TITLE),
        Paragraph(
            f"{len(grades)} run(s) of the conformance suite, graded on Popek & Goldberg's (1974) properties: "
            "equivalence, safety (resource control), efficiency. "
            + (
                f"{len(failing)} run(s) have unexpected failures."
                if failing
                else "No run has an unexpected failure; expected deviations of a technique are xfail."
            )
            + (
                f" {len(problems)} run(s) did not end cleanly (below)." if problems else ""
            )
        ),
        Heading(2, "Summary"),
        Paragraph(
            "Per VMM and property, per profile: pass; fails as expected (the technique's documented "
            "deviation, xfail); FAIL (an unexpected failure); skipped (the profile lacks what the VMM or "
            "test requires)."
        ),
        Table(*summary_table(grades)),
    ]
    if problems:
        blocks.append(Heading(2, "Runs that did not end cleanly"))
        for headline, detail in problems:
            blocks.append(Paragraph(headline))
            if detail:
                blocks.append(Code(detail))
    for g in grades:
        blocks += _run_section(g)
    return blocks


def _run_section(g: Grade) -> list[Block]:
    run = g.run
    key = run.key
    env = ", ".join(f"{k} {v}" for k, v in sorted(run.versions.items()))
    facts: list[str | Mono] = ["Technique: ", key.technique, ". Class ", Mono(key.vmm_class), "."]
    if run.hypothesis_profile:
        facts += [" Hypothesis profile ", Mono(run.hypothesis_profile), "."]
    if env:
        facts += [f" Versions: {env}."]
    if run.source is not None:
        facts += [" Results file ", Mono(str(run.source)), "."]
    blocks: list[Block] = [
        Heading(2, f"{key.vmm} on {key.profile}" + ("" if g.ok else " — unexpected failures")),
        Paragraph(*facts),
        Table(
            ["property", "category", *OUTCOMES, "total"],
            [[prop, cat, *(c[o] for o in OUTCOMES), sum(c.values())] for (prop, cat), c in g.counts.items()],
        ),
    ]
    if g.failures:
        blocks.append(Heading(3, "Unexpected failures"))
        for test in g.failures:
            blocks += [
                Heading(4, test.nodeid),
                Paragraph(f"Outcome: {test.outcome}. Property: {test.property or '-'}, category {test.category or '-'}."),
                Paragraph("Rerun (from the directory the suite ran in; popek demo runs it beside conformance/):"),
                Code(rerun_command(run, test)),
                Paragraph("Counterexample (the full report is in the results file):"),
                Code(counterexample(test.message)),
            ]
            counters = [f"{k}={v}" for k, v in test.counters.items() if v]
            if counters:
                more = len(counters) - _COUNTER_LIMIT
                shown = ", ".join(counters[:_COUNTER_LIMIT]) + (f", ... ({more} more)" if more > 0 else "")
                blocks.append(Paragraph("Counters: ", Mono(shown)))
    if g.deviations:
        blocks += [
            Heading(3, "Expected deviations (xfail)"),
            Table(["test", "reason"], [[t.nodeid, first_line(t.message)] for t in g.deviations]),
        ]
        # The reason is the message's first line; what follows is the failure that was expected.
        for t in g.deviations:
            rest = "\n".join((t.message or "").splitlines()[1:])
            if rest.strip():
                blocks.append(Details(f"counterexample: {t.nodeid}", counterexample(rest)))
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
        Table(["instruction", *(_column(*col) for col in columns)], rows),
        Table(["exit adjacent to an event", "examples"], adjacent),
        Paragraph(f"Uncovered cells ({total - reached}):"),
        Code("\n".join(uncovered) if uncovered else "none"),
    ]
