"""Unexpected failures as the grade sheet shows them: read from their reports, tidied, wrapped, and grouped by cause.

A student VMM with one bug fails many tests the same way: twenty failures whose reports open
with the same line are one cause to fix, not twenty.  ``group`` keys each failure by the first
line of its counterexample that says what differs (``cause_key``: the first differing field of
an observation diff, or the exception of a crash), with the numbers in it masked, so that the
same bug seen on twenty guests is one group; the group shows its smallest counterexample in
full and lists the others with their rerun commands.

A counterexample (``parse``) is the assertion's text (``reports.grades.counterexample``), tidied
(``conformance.checks.tidy_failure``: no ``@reproduce_failure`` advice, no duplicate left/right
diff, no blobs of bytes), its long lines wrapped (``wrap``), and split into the diff and the
guest's listing, which the report folds; rows of a side-by-side diff marked ``!``
(``conformance.checks.DIFF_MARK``) are the lines ``marks`` returns for highlighting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from conformance.checks import DIFF_MARK, tidy_failure
from conformance.results import TestResult
from reports.grades import counterexample

__all__ = [
    "SHORT_BODY",
    "WIDTH",
    "Cause",
    "Failure",
    "cause_key",
    "group",
    "listing_marks",
    "marks",
    "parse",
    "readable",
    "side_by_side",
    "wrap",
]

WIDTH = 100
"""Characters of a counterexample line before it wraps: a report read on a laptop, a terminal
or a GitHub page shows the whole of it, the decisive difference included."""

SHORT_BODY = 4
"""A generated guest's body of at most this many instructions is short enough that its
instructions are marked in its listing: one of them makes the difference."""

_CONTINUATION = "↪ "
_GENERIC = re.compile(r"^(?:\w+Error: )?observations differ \(Popek & Goldberg 1974: equivalence\):$")
_FIELD = re.compile(r"^(?:stop|exit code|console|disk2?|events per vector)\b")
_RAISED = re.compile(r"\braised (?P<what>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)$")
_FRAME = re.compile(r"^at \S+:\d+ in ")
_MASK = re.compile(r"0x[0-9a-fA-F]+|\b[0-9a-fA-F]{6,}\b|\d+")
_LISTING_START = ("guest program:",)
_HYPOTHESIS_TAIL = ("Falsifying example", "Falsifying explicit example")


_OLD_CONSOLE = re.compile(
    r"^(?P<lead>.*?)console: differs from byte (?P<byte>\d+) \((?P<a>[^ ]+) (?P<na>\d+) bytes, (?P<b>[^ ]+) (?P<nb>\d+)\): "
    r"(?P=a) (?P<da>…?)(?P<xa>b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\"), "
    r"(?P=b) (?P<db>…?)(?P<xb>b'(?:[^'\\]|\\.)*'|b\"(?:[^\"\\]|\\.)*\")$"
)


def side_by_side(line: str) -> list[str]:
    """A console difference in the one-line form of ``Observation.diff`` (the bytes around the
    first difference as two escaped byte strings, the decisive one often past column 150)
    rewritten as rows, one per console line of the window, the two runs side by side and the
    differing rows marked ``!``; any other line unchanged."""
    import ast

    m = _OLD_CONSOLE.match(line)
    if m is None:
        return [line]
    try:
        x, y = ast.literal_eval(m["xa"]), ast.literal_eval(m["xb"])
    except (SyntaxError, ValueError):
        return [line]
    lead, a, b = m["lead"], m["a"], m["b"]
    indent = lead + "  "
    xs, ys = x.split(b"\n"), y.split(b"\n")
    width = max(len(a), *(len(_show(r)) + 1 for r in xs))
    out = [
        f"{lead}console: differs from byte {m['byte']} ({a} {m['na']} bytes, {b} {m['nb']}):",
        f"{indent}  {a:<{width}} | {b}",
    ]
    for k in range(max(len(xs), len(ys))):
        p = _show(xs[k]) if k < len(xs) else ""
        q = _show(ys[k]) if k < len(ys) else ""
        if k == 0:
            p, q = m["da"] + p, m["db"] + q
        mark = DIFF_MARK if (xs[k] if k < len(xs) else None) != (ys[k] if k < len(ys) else None) else " "
        out.append(f"{indent}{mark} {p:<{width}} | {q}".rstrip())
    out.append(f"{indent}({DIFF_MARK} marks the lines that differ)")
    return out


def _show(data: bytes) -> str:
    return "".join(chr(c) if 0x20 <= c < 0x7F else f"\\x{c:02x}" for c in data)


def wrap(text: str, width: int = WIDTH) -> str:
    """``text`` with every line longer than ``width`` cut into pieces of at most ``width``
    characters, each continuation indented as its line and opened with ``↪``."""
    out: list[str] = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * min(len(line) - len(line.lstrip()), width // 2)
        prefix = indent + _CONTINUATION
        rest = line
        while len(rest) > width:
            # At a space in the second half of the piece when there is one, else mid-word.
            cut = rest.rfind(" ", max(width // 2, len(prefix) + 1), width) + 1 or width
            out.append(rest[:cut].rstrip(" "))
            rest = prefix + rest[cut:]
        out.append(rest)
    return "\n".join(out)


def marks(text: str) -> frozenset[int]:
    """The lines of ``text`` to highlight: differing rows of a side-by-side diff (``!``), the
    first line of each differing field (stop, exit code, console, disk), and where a VMM's own
    code raised (``at file:line``)."""
    found = set()
    for i, line in enumerate(text.split("\n")):
        stripped = line.strip()
        if stripped.startswith(f"{DIFF_MARK} ") or _FIELD.match(stripped) or _FRAME.match(stripped):
            found.add(i)
    return frozenset(found)


def listing_marks(listing: str) -> frozenset[int]:
    """The lines of a generated guest's listing to mark: its disassembled body, when the body
    has at most ``SHORT_BODY`` instructions (a shrunk counterexample: one of them is the
    difference); nothing for a longer body or a directed guest's source."""
    lines = listing.split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "body (disassembled):") + 1
    except StopIteration:
        return frozenset()
    body = []
    for i in range(start, len(lines)):
        if not re.match(r"^\s+0x[0-9a-f]+:", lines[i]):
            break
        body.append(i)
    return frozenset(body) if 0 < len(body) <= SHORT_BODY else frozenset()


def cause_key(text: str) -> tuple[str, str]:
    """(key, headline) of a counterexample: the headline is its first line that says what
    differs — past the generic "observations differ" — and the key is the headline with its
    numbers masked, and, for a differing field, cut before its figures, so that one bug seen
    on many guests has one key."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    # A VMM that raised is one cause whatever test met it (directed, generated, safety): the key
    # is what it raised, the headline names it.
    for line in lines[:6]:
        crash = _RAISED.search(line)
        if crash is not None:
            raised = " ".join(crash["what"].split())
            return "raised " + _MASK.sub("N", raised), f"the VMM raised {raised}"
    k = next(
        (i for i, line in enumerate(lines) if not (_GENERIC.match(line) or line.startswith(DIFF_MARK))), len(lines)
    )
    headline = lines[k] if k < len(lines) else ""
    key = _MASK.sub("N", headline)
    if _FIELD.match(headline):
        key = key.split("(", 1)[0].split(": native", 1)[0].strip()
        # The decisive row of a side-by-side diff says more than its headline's byte counts.
        row = next((line for line in lines[k + 1 : k + 40] if line.startswith(f"{DIFF_MARK} ")), None)
        if row is not None and headline.startswith("console"):
            sides = [" ".join(part.split()) for part in row[2:].split(" | ")][-2:]
            headline = headline.split(" (", 1)[0] + ": " + " ≠ ".join(sides)
    return key, headline


@dataclass(frozen=True)
class Failure:
    """One unexpected failure, read for the report."""

    test: TestResult
    diff: str
    """What differs, tidied and wrapped, with anything after the listing (hypothesis's example)."""
    listing: str
    """The guest's listing (empty when the report has none)."""
    key: str
    headline: str

    @property
    def size(self) -> int:
        """How long the counterexample is: the smallest of a cause is the one shown."""
        return self.diff.count("\n") + self.listing.count("\n")


def readable(message: str | None) -> str:
    """A failure report as the sheet shows it: the counterexample (``E`` lines) tidied, console
    differences side by side (``side_by_side``); not yet wrapped."""
    text = tidy_failure(counterexample(message))
    return "\n".join(row for line in text.split("\n") for row in side_by_side(line))


def parse(test: TestResult) -> Failure:
    """Read one failure's report: its counterexample tidied, wrapped and split."""
    text = readable(test.message)
    diff: list[str] = []
    listing: list[str] = []
    tail: list[str] = []
    where = diff
    for line in text.split("\n"):
        stripped = line.strip()
        if where is diff and stripped.startswith("|") and diff and diff[-1].strip().endswith(":"):
            # A listing ("guest program:", "adversary:"): folded in the report, its title kept
            # unless it is the usual one.
            title = diff.pop().strip()
            if title not in _LISTING_START:
                listing.append(title)
            where = listing
        if where is listing:
            if stripped.startswith("|") or not stripped:
                listing.append(re.sub(r"^\s*\| ?", "", line))
                continue
            if stripped.endswith(":"):
                listing.append(stripped)
                continue
            where = tail
        if stripped.startswith(_HYPOTHESIS_TAIL) and where is diff:
            where = tail
        where.append(line)
    body = "\n".join(diff).strip("\n")
    if tail:
        body += "\n\n" + "\n".join(tail).strip("\n")
    key, headline = cause_key(body)
    return Failure(test, wrap(body), wrap("\n".join(listing).strip("\n")), key, headline)


@dataclass
class Cause:
    """The failures of one run that share a cause, the smallest counterexample first."""

    key: str
    headline: str
    failures: list[Failure] = field(default_factory=list)

    @property
    def shown(self) -> Failure:
        """The failure whose counterexample the report shows in full."""
        return self.failures[0]


def group(tests: Sequence[TestResult]) -> list[Cause]:
    """The failures of ``tests`` grouped by ``cause_key``: the causes with the most failures
    first (then in the order first seen); in each, the smallest counterexample first."""
    causes: dict[str, Cause] = {}
    for test in tests:
        failure = parse(test)
        cause = causes.setdefault(failure.key, Cause(failure.key, failure.headline))
        cause.failures.append(failure)
    for cause in causes.values():
        cause.failures.sort(key=lambda f: (f.size, f.test.nodeid))
        cause.headline = cause.shown.headline
    order = list(causes)
    return sorted(causes.values(), key=lambda c: (-len(c.failures), order.index(c.key)))
