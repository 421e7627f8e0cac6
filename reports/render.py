"""A report as a list of blocks (headings, paragraphs, tables, code, folded code), rendered to Markdown and HTML.

The report is built once and rendered twice, so the two files always say the same thing.
Tables go through tabulate (``github`` for Markdown, ``html`` for HTML, which escapes cells);
every other piece of text is escaped here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tabulate import tabulate

__all__ = ["Block", "Code", "Details", "Heading", "Mono", "Paragraph", "Table", "to_html", "to_markdown"]


@dataclass(frozen=True)
class Mono:
    """Inline code inside a paragraph (a node id, a command)."""

    text: str


Inline = str | Mono


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    parts: tuple[Inline, ...]

    def __init__(self, *parts: Inline) -> None:
        object.__setattr__(self, "parts", parts)


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[object]]


@dataclass(frozen=True)
class Code:
    """A preformatted block: a command, a failure report."""

    text: str


@dataclass(frozen=True)
class Details:
    """A preformatted block shown folded under a one-line summary (an expected deviation's
    counterexample: there to read, not to skim past)."""

    summary: str
    text: str


Block = Heading | Paragraph | Table | Code | Details


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
    # tabulate's github format does not escape the column separator.
    return value.replace("|", "\\|") if isinstance(value, str) else value


def _md_fenced(text: str) -> str:
    fence = "`" * max(3, max((len(m) + 1 for m in re.findall(r"`+", text)), default=0))
    return f"{fence}\n{text.rstrip()}\n{fence}"


def to_markdown(blocks: Sequence[Block]) -> str:
    """The blocks as a GitHub-flavoured Markdown document."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {_md_text(block.text)}")
        elif isinstance(block, Paragraph):
            out.append(_md_inline(block.parts))
        elif isinstance(block, Table):
            rows = [[_md_cell(c) for c in row] for row in block.rows]
            out.append(tabulate(rows, headers=[_md_cell(h) for h in block.headers], tablefmt="github"))
        elif isinstance(block, Code):
            out.append(_md_fenced(block.text))
        elif isinstance(block, Details):
            # GitHub renders an HTML details element in Markdown; the blank lines let the fence
            # inside it be Markdown again.
            summary = html.escape(block.summary)
            out.append(f"<details><summary>{summary}</summary>\n\n{_md_fenced(block.text)}\n\n</details>")
        else:  # pragma: no cover - the Block union is closed
            raise TypeError(f"not a report block: {block!r}")
    return "\n\n".join(out) + "\n"


# ---- HTML -----------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
pre { background: #f6f6f6; border: 1px solid #ddd; padding: 0.6em; overflow-x: auto; }
code { background: #f3f3f3; padding: 0 0.2em; }
""".strip()


def _html_inline(parts: Sequence[Inline]) -> str:
    return "".join(f"<code>{html.escape(p.text)}</code>" if isinstance(p, Mono) else html.escape(p) for p in parts)


def to_html(blocks: Sequence[Block], title: str) -> str:
    """The blocks as a standalone HTML5 document titled ``title``."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            level = min(max(block.level, 1), 6)
            body.append(f"<h{level}>{html.escape(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_html_inline(block.parts)}</p>")
        elif isinstance(block, Table):
            body.append(str(tabulate(block.rows, headers=list(block.headers), tablefmt="html")))
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text.rstrip())}</code></pre>")
        elif isinstance(block, Details):
            body.append(
                f"<details><summary>{html.escape(block.summary)}</summary>"
                f"<pre><code>{html.escape(block.text.rstrip())}</code></pre></details>"
            )
        else:  # pragma: no cover - the Block union is closed
            raise TypeError(f"not a report block: {block!r}")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_STYLE}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
