"""The report of a class (``popek grade`` of several VMMs): a ranking of the submissions, the
submissions that did not load, and one grade sheet per submission.

``OUT/report.md`` and ``OUT/report.html`` hold the ranking (``reports.grades.ranking``: most of
Popek & Goldberg's properties held on every profile first) with, per submission, its verdict per
property over all its runs and the path of its own grade sheet, ``OUT/sheets/<module>-<Class>/``
(``reports.report.write_report``: the sheet a student reads).  Submissions are told apart by
their class (``module:Class``), never by their VMM's ``name``; two that share a name are shown
with their class, and the report warns of it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from reports.grades import Standing, collect_files, grade, load_runs, ranking, shared_names
from reports.render import Block, Cell, Heading, Mono, Paragraph, Table, to_html, to_markdown
from reports.report import Report, problem_blocks, write_report

__all__ = ["TITLE", "ClassReport", "ranking_table", "sheet_directory", "write_class_report"]

TITLE = "popek class report"


@dataclass(frozen=True)
class ClassReport:
    """What ``write_class_report`` did: the ranking, each submission's sheet, the files."""

    standings: list[Standing]
    sheets: dict[str, Report]
    """Per VMM class (``module:Class``), its grade sheet."""
    unloaded: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...]
    markdown: Path
    html: Path
    problems: tuple[tuple[str, str], ...] = ()

    @property
    def ok(self) -> bool:
        """True when every submission loaded and no run failed unexpectedly or crashed."""
        return all(s.ok for s in self.standings) and not self.unloaded and not self.problems


def sheet_directory(out: Path, vmm_class: str) -> Path:
    """Where the grade sheet of the VMM class ``vmm_class`` goes: ``out/sheets/<module>-<Class>``."""
    return out / "sheets" / re.sub(r"[^A-Za-z0-9._-]+", "_", vmm_class.replace(":", "-"))


def write_class_report(
    results: Sequence[Path],
    out: Path,
    problems: Sequence[tuple[str, tuple[str, str]]] = (),
    unloaded: Sequence[tuple[str, str]] = (),
) -> ClassReport:
    """Rank the runs of the results files ``results``, write each submission's grade sheet and
    ``out/report.md`` and ``out/report.html``.  ``problems`` are (VMM class, (headline, detail))
    of runs that did not end cleanly, shown in that submission's sheet; ``unloaded`` are
    (submission, error) of the submissions that could not be graded at all."""
    files = collect_files(results)
    by_class: dict[str, list[Path]] = {}
    for path in files:  # a file may hold several runs (JUnit XML), of several classes
        for run in load_runs([path]):
            if path not in by_class.setdefault(run.key.vmm_class, []):
                by_class[run.key.vmm_class].append(path)
    grades = [grade(run) for run in load_runs(files)]
    standings = ranking(grades)
    sheets = {}
    for cls, paths in by_class.items():
        mine = [p for c, p in problems if c == cls]
        sheets[cls] = write_report(paths, sheet_directory(out, cls), mine)
    shared = shared_names(g.run.key for g in grades)
    warnings = tuple(
        f"VMM name {name!r} is shared by {len(classes)} classes ({', '.join(classes)}): they are ranked apart"
        for name, classes in shared.items()
    )
    others = tuple(p for c, p in problems if c not in by_class)
    blocks = _blocks(standings, sheets, out, unloaded, warnings, others)
    out.mkdir(parents=True, exist_ok=True)
    markdown, page = out / "report.md", out / "report.html"
    markdown.write_text(to_markdown(blocks), encoding="utf-8")
    page.write_text(to_html(blocks, TITLE), encoding="utf-8")
    return ClassReport(standings, sheets, tuple(unloaded), warnings, markdown, page, tuple(p for _, p in problems))


def ranking_table(
    standings: Sequence[Standing], sheets: dict[str, Report] | None = None, out: Path | None = None
) -> tuple[list[str], list[list[object]]]:
    """The ranking as (headers, rows): rank, VMM, its verdict per property over all its runs, the
    runs without an unexpected failure, the unexpected failures, and (with ``sheets``) the sheet."""
    props = list(dict.fromkeys(p for s in standings for p in s.properties))
    headers = ["rank", "VMM", *props, "clean runs", "unexpected"]
    if sheets is not None:
        headers.append("grade sheet")
    rows = []
    for s in standings:
        row: list[object] = [
            s.rank,
            s.label + (" (partial)" if s.partial else ""),
            *(_tone(s.properties.get(p, "-")) for p in props),
            Cell(f"{s.clean_runs}/{s.runs}", "pass" if s.ok else "fail"),
            s.failures,
        ]
        if sheets is not None:
            sheet = sheets.get(s.vmm_class)
            row.append(str(sheet.html.relative_to(out)) if sheet is not None and out is not None else "-")
        rows.append(row)
    return headers, rows


_TONES = {"pass": "pass", "FAIL": "fail", "xfail": "xfail", "skip": "skip"}


def _tone(verdict: str) -> Cell:
    """A ``short_verdict`` with the colour of its first word (``reports.render.TONES``)."""
    return Cell(verdict, _TONES.get(verdict.split(" ", 1)[0], "skip" if verdict == "-" else None))


def _blocks(
    standings: Sequence[Standing],
    sheets: dict[str, Report],
    out: Path,
    unloaded: Sequence[tuple[str, str]],
    warnings: Sequence[str],
    problems: Sequence[tuple[str, str]],
) -> list[Block]:
    clean = sum(1 for s in standings if s.ok)
    partial = sum(1 for s in standings if s.partial)
    text = (
        f"{len(standings) + len(unloaded)} submission(s): {len(standings)} graded, {clean} without an unexpected "
        f"failure on any profile"
        + (f", {len(unloaded)} that did not load" if unloaded else "")
        + ". Ranked by the properties (Popek & Goldberg 1974: equivalence, safety, efficiency) held on every "
        "profile, then the share of runs without an unexpected failure, then the fewest unexpected failures."
    )
    if partial:
        text += f" {partial} submission(s) were graded on part of the suite only (partial)."
    written = f"Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC."
    blocks: list[Block] = [Heading(1, TITLE), Paragraph(text), Paragraph(written)]
    for warning in warnings:
        blocks.append(Paragraph("Warning: ", warning, "."))
    blocks += [
        Heading(2, "Ranking"),
        Paragraph(
            "Per property, over all the runs of a submission: pass N (tests), xfail N (the technique's "
            "documented deviations), FAIL F/N (unexpected failures of N tests). Each submission's own grade "
            "sheet (its failures, counterexamples and rerun commands) is in the last column."
        ),
        Table(*ranking_table(standings, sheets, out)),
    ]
    if unloaded:
        blocks += [
            Heading(2, "Submissions that did not load"),
            Table(["submission", "error"], [[name, error] for name, error in unloaded]),
        ]
    blocks += problem_blocks(problems)
    blocks.append(Heading(2, "Grade sheets"))
    for s in standings:
        sheet = sheets.get(s.vmm_class)
        if sheet is not None:
            where = str(sheet.markdown.relative_to(out))
            blocks.append(Paragraph(f"{s.rank}. {s.label}: ", Mono(s.vmm_class), " — ", Mono(where)))
    return blocks
