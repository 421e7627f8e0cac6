"""A report as a list of blocks (headings, paragraphs, tables, code, folded code, a table of contents, bar charts), rendered to Markdown and HTML.

The report is built once and rendered twice, so the two files always say the same thing.
Markdown tables go through tabulate (``github``); HTML tables are written here, so that a cell
can carry a tone (a verdict's colour) and every cell is escaped.  Headings get GitHub's anchors
(lower case, punctuation dropped, spaces as hyphens, repeats numbered), in the HTML as ids, so
that the table of contents (``Contents``) links the same sections in both files.  Lines of a
``Code`` block can be marked (the differing lines of an observation diff): highlighted in
HTML, where long lines wrap; in Markdown the text itself carries its markers.  A ``Bars`` chart
is inline SVG in HTML (no matplotlib, no image file) and text bars in Markdown.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from tabulate import tabulate

__all__ = [
    "TONES",
    "Bar",
    "Bars",
    "Block",
    "Cell",
    "Code",
    "Contents",
    "Details",
    "FoldedTable",
    "Heading",
    "Mono",
    "Paragraph",
    "Table",
    "anchors",
    "slug",
    "to_html",
    "to_markdown",
]

TONES = ("pass", "fail", "xfail", "skip", "note")
"""The tones a table cell may carry: the colours of the grade sheet's verdicts."""


@dataclass(frozen=True)
class Mono:
    """Inline code inside a paragraph (a node id, a command)."""

    text: str


Inline = str | Mono


@dataclass(frozen=True)
class Heading:
    """A section heading; its anchor is GitHub's for its text (``slug``)."""

    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    """Running text: strings and inline code."""

    parts: tuple[Inline, ...]

    def __init__(self, *parts: Inline) -> None:
        object.__setattr__(self, "parts", parts)


@dataclass(frozen=True)
class Cell:
    """A table cell with a tone (one of ``TONES``): coloured in HTML, plain text in Markdown."""

    text: str
    tone: str | None = None

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Table:
    """A table; a cell is any value (``str`` of it is shown) or a ``Cell``."""

    headers: Sequence[str]
    rows: Sequence[Sequence[object]]


@dataclass(frozen=True)
class Code:
    """A preformatted block: a command, a failure report; the lines numbered in ``marks``
    (from 0) are highlighted in HTML."""

    text: str
    marks: frozenset[int] = field(default_factory=frozenset)
    sides: bool = False
    """The marked lines are rows of a side-by-side diff (``left | right``): in HTML the
    characters in which the two sides differ are emphasised too."""


@dataclass(frozen=True)
class Details:
    """A preformatted block shown folded under a one-line summary (an expected deviation's
    counterexample, a guest's listing: there to read, not to skim past); ``marks`` as ``Code``."""

    summary: str
    text: str
    marks: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class FoldedTable:
    """A table shown folded under a one-line summary (a coverage matrix: there to consult)."""

    summary: str
    table: Table


@dataclass(frozen=True)
class Contents:
    """The table of contents: every heading after it of levels ``level`` to ``level + depth - 1``."""

    level: int = 2
    depth: int = 2


@dataclass(frozen=True)
class Bar:
    """One bar of a ``Bars`` chart: ``value`` against the threshold ``limit`` (None: none), on a
    scale from 0 to ``scale``; ``ok`` says whether the value meets its threshold."""

    label: str
    value: float
    limit: float | None
    scale: float
    ok: bool
    text: str
    """The figure as the reader should read it (``"998‰ (at least 990‰)"``)."""


@dataclass(frozen=True)
class Bars:
    """A small horizontal bar chart, a threshold drawn across each bar."""

    title: str
    bars: tuple[Bar, ...]


Block = Heading | Paragraph | Table | FoldedTable | Code | Details | Contents | Bars


def slug(text: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(blocks: Sequence[object]) -> dict[int, str]:
    """A unique anchor per heading, by its position in ``blocks``, numbered as GitHub numbers
    repeated ones (``x``, ``x-1``, ...)."""
    seen: dict[str, int] = {}
    found: dict[int, str] = {}
    for i, b in enumerate(blocks):
        if isinstance(b, Heading):
            s = slug(b.text)
            n = seen.get(s, 0)
            seen[s] = n + 1
            found[i] = s if n == 0 else f"{s}-{n}"
    return found


def contents_entries(blocks: Sequence[object], start: int, toc: Contents) -> list[tuple[int, str, str]]:
    """The entries of the table of contents ``toc`` at position ``start``: (depth, text, anchor) of
    every heading after it in its levels."""
    where = anchors(blocks)
    return [
        (b.level - toc.level, b.text, where[i])
        for i, b in enumerate(blocks)
        if i > start and isinstance(b, Heading) and toc.level <= b.level < toc.level + toc.depth
    ]


_BAR_CELLS = 24  # characters of a Markdown bar


def _text_bar(bar: Bar) -> str:
    full = round(_BAR_CELLS * min(max(bar.value / bar.scale, 0.0), 1.0)) if bar.scale > 0 else 0
    cells = ["█"] * full + ["░"] * (_BAR_CELLS - full)
    if bar.limit is not None and bar.scale > 0:
        at = min(round(_BAR_CELLS * bar.limit / bar.scale), _BAR_CELLS - 1)
        cells[at] = "┃"
    return "".join(cells)


# ---- Markdown -------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md_text(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_code_span(text: str) -> str:
    # A code span is delimited by a backtick run longer than any inside it (CommonMark §6.1).
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _md_inline(parts: Sequence[Inline]) -> str:
    return "".join(_md_code_span(p.text) if isinstance(p, Mono) else _md_text(p) for p in parts)


def _md_cell(value: object) -> object:
    # tabulate's github format does not escape the column separator.  Markdown has no colour: a
    # failing cell is bold, so that it stands out of a column of passes.
    if isinstance(value, Cell):
        text = value.text.replace("|", "\\|")
        return f"**{text}**" if value.tone == "fail" else text
    return value.replace("|", "\\|") if isinstance(value, str) else value


def _md_fenced(text: str) -> str:
    fence = "`" * max(3, max((len(m) + 1 for m in re.findall(r"`+", text)), default=0))
    return f"{fence}\n{text.rstrip()}\n{fence}"


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as a GitHub-flavoured Markdown document."""
    out: list[str] = []
    for i, block in enumerate(blocks):
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {_md_text(block.text)}")
        elif isinstance(block, Paragraph):
            out.append(_md_inline(block.parts))
        elif isinstance(block, FoldedTable):
            # GitHub renders a Markdown table inside an HTML details element between blank lines.
            table = to_markdown([block.table]).rstrip("\n")
            out.append(
                f"<details><summary>{html.escape(block.summary, quote=False)}</summary>\n\n{table}\n\n</details>"
            )
        elif isinstance(block, Table):
            rows = [[_md_cell(c) for c in row] for row in block.rows]
            # A Cell's text is shown as written ("1,000.0"), never re-read as a number by tabulate.
            verbatim = sorted({i for row in block.rows for i, c in enumerate(row) if isinstance(c, Cell)})
            out.append(
                tabulate(
                    rows,
                    headers=[_md_cell(h) for h in block.headers],
                    tablefmt="github",
                    disable_numparse=verbatim or False,
                )
            )
        elif isinstance(block, Code):
            out.append(_md_fenced(block.text))
        elif isinstance(block, Details):
            # GitHub renders an HTML details element in Markdown; the blank lines let the fence
            # inside it be Markdown again.
            summary = html.escape(block.summary, quote=False)
            out.append(f"<details><summary>{summary}</summary>\n\n{_md_fenced(block.text)}\n\n</details>")
        elif isinstance(block, Contents):
            items = [
                f"{'  ' * depth}- [{_md_text(text)}](#{anchor})"
                for depth, text, anchor in contents_entries(blocks, i, block)
            ]
            if items:
                out.append("**Contents**\n\n" + "\n".join(items))
        elif isinstance(block, Bars):
            width = max((len(b.label) for b in block.bars), default=0)
            lines = [f"{b.label:<{width}}  {_text_bar(b)}  {b.text}" for b in block.bars]
            out.append(f"{_md_text(block.title)} (┃ marks the threshold):\n\n" + _md_fenced("\n".join(lines)))
        else:  # pragma: no cover - the Block union is closed
            raise TypeError(f"not a report block: {block!r}")
    return "\n\n".join(out) + "\n"


# ---- HTML -----------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.pass { background: #dff3df; }
td.fail { background: #f8d3d3; font-weight: bold; }
td.xfail { background: #fdf0c8; }
td.skip { background: #eeeeee; color: #555; }
td.note { background: #e3ecfa; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.6em; white-space: pre-wrap; overflow-wrap: anywhere; }
pre .mark { background: #ffe08a; }
pre .mark strong { background: #f4a640; }
code { background: #f3f3f3; padding: 0 0.2em; }
nav ul { margin: 0.2em 0; }
svg.bars text { font: 12px system-ui, sans-serif; }
""".strip()


def _html_inline(parts: Sequence[Inline]) -> str:
    return "".join(f"<code>{html.escape(p.text)}</code>" if isinstance(p, Mono) else html.escape(p) for p in parts)


def _html_cell(value: object) -> str:
    if isinstance(value, Cell):
        tone = f' class="{value.tone}"' if value.tone in TONES else ""
        return f"<td{tone}>{html.escape(value.text)}</td>"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f'<td class="num">{html.escape(str(value))}</td>'
    return f"<td>{html.escape('' if value is None else str(value))}</td>"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in table.headers)
    rows = "\n".join(f"<tr>{''.join(_html_cell(c) for c in row)}</tr>" for row in table.rows)
    return f"<table>\n<thead>\n<tr>{head}</tr>\n</thead>\n<tbody>\n{rows}\n</tbody>\n</table>"


def _html_sides(line: str) -> str:
    """A side-by-side row ``... | left | right`` with the characters in which ``right`` differs
    from ``left`` (position by position) in ``<strong>``."""
    head, sep, right = (line + " " if line.endswith(" |") else line).rpartition(" | ")
    if not sep:
        return html.escape(line)
    lead, sep2, left = head.rpartition(" | ")
    if not sep2:
        # No line-number column: the row's marker and indentation lead it.
        peeled = re.match(r"\s*(?:!\s)?\s*", head)
        lead, left = head[: peeled.end()], head[peeled.end() :]
    else:
        lead += sep2

    def emphasise(text: str, other: str) -> str:
        out = []
        for k, ch in enumerate(text):
            differs = k >= len(other.rstrip()) or other[k] != ch
            out.append(f"<strong>{html.escape(ch)}</strong>" if differs and ch != " " else html.escape(ch))
        return "".join(out).replace("</strong><strong>", "")

    return html.escape(lead) + emphasise(left, right) + " | " + emphasise(right, left)


def _html_pre(text: str, marks: frozenset[int], sides: bool = False) -> str:
    lines = text.rstrip().split("\n")
    shown = [
        f'<span class="mark">{_html_sides(line) if sides else html.escape(line)}</span>'
        if i in marks
        else html.escape(line)
        for i, line in enumerate(lines)
    ]
    return "<pre><code>" + "\n".join(shown) + "</code></pre>"


def html_contents(entries: Sequence[tuple[int, str, str]]) -> str:
    """A table of contents as an HTML <nav> of nested lists, from ``contents_entries``."""
    parts = ["<nav>", "<p><strong>Contents</strong></p>", "<ul>"]
    depth, open_item = 0, False
    for d, text, anchor in entries:
        while depth < d:
            parts.append("<ul>")
            depth, open_item = depth + 1, False
        while depth > d:
            parts.append("</li></ul>")
            depth -= 1
        if open_item:
            parts.append("</li>")
        parts.append(f'<li><a href="#{html.escape(anchor)}">{html.escape(text)}</a>')
        open_item = True
    while depth > 0:
        parts.append("</li></ul>")
        depth -= 1
    if open_item:
        parts.append("</li>")
    parts.append("</ul>\n</nav>")
    return "\n".join(parts)


_SVG_LABEL, _SVG_BAR, _SVG_TEXT, _SVG_ROW = 150, 260, 230, 22


def _html_bars(chart: Bars) -> str:
    # Labels at 12px take some 7px a character: the bars start past the longest.
    label = max(_SVG_LABEL, 10 + 7 * max((len(b.label) for b in chart.bars), default=0))
    height = _SVG_ROW * len(chart.bars) + 6
    width = label + _SVG_BAR + _SVG_TEXT
    parts = [
        f'<figure><svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(chart.title)}">'
    ]
    for k, b in enumerate(chart.bars):
        y = 3 + k * _SVG_ROW
        share = min(max(b.value / b.scale, 0.0), 1.0) if b.scale > 0 else 0.0
        colour = "#3a9a3a" if b.ok else "#c83232"
        parts.append(f'<text x="0" y="{y + 14}">{html.escape(b.label)}</text>')
        parts.append(f'<rect x="{label}" y="{y + 2}" width="{_SVG_BAR}" height="16" fill="#eeeeee"/>')
        parts.append(f'<rect x="{label}" y="{y + 2}" width="{share * _SVG_BAR:.1f}" height="16" fill="{colour}"/>')
        if b.limit is not None and b.scale > 0:
            x = label + min(b.limit / b.scale, 1.0) * _SVG_BAR
            parts.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 20}" stroke="#000" stroke-width="2"/>')
        parts.append(f'<text x="{label + _SVG_BAR + 8}" y="{y + 14}">{html.escape(b.text)}</text>')
    parts.append(
        f"</svg><figcaption>{html.escape(chart.title)} (the black line is the threshold)</figcaption></figure>"
    )
    return "".join(parts)


def to_html(blocks: Sequence[Block], title: str) -> str:
    """The blocks as a standalone HTML5 document titled ``title``."""
    where = anchors(blocks)
    body: list[str] = []
    for i, block in enumerate(blocks):
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f'<h{level} id="{html.escape(where[i])}">{html.escape(block.text)}</h{level}>')
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_html_inline(block.parts)}</p>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, FoldedTable):
            body.append(
                f"<details><summary>{html.escape(block.summary, quote=False)}</summary>\n{_html_table(block.table)}\n</details>"
            )
        elif isinstance(block, Code):
            body.append(_html_pre(block.text, block.marks, block.sides))
        elif isinstance(block, Details):
            body.append(
                f"<details><summary>{html.escape(block.summary, quote=False)}</summary>{_html_pre(block.text, block.marks)}</details>"
            )
        elif isinstance(block, Contents):
            entries = contents_entries(blocks, i, block)
            if entries:
                body.append(html_contents(entries))
        elif isinstance(block, Bars):
            body.append(_html_bars(block))
        else:  # pragma: no cover - the Block union is closed
            raise TypeError(f"not a report block: {block!r}")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
