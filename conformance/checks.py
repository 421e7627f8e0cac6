"""Assertion helpers of the conformance suite: equivalence failures that explain themselves, and expected deviations.

An expected deviation (Popek & Goldberg 1974, Theorem 1: a trap-and-emulate VMM on a machine
with sensitive, unprivileged instructions) excuses only the failures it explains.  A failure is
explained when its counterexample owes the difference to those instructions: the program has
some in its own code, and with them taken out the VMM is equivalent on the rest
(``explained_by_sensitive_unprivileged``, ``explained_directed``).  Such a failure is raised as
``ExpectedDeviation``; every other one as a plain ``AssertionError`` (a VMM that raises stays a
``VMMError``).  The plugin turns ``popek_deviation`` into ``xfail(raises=ExpectedDeviation)``,
so that only the explained kind is excused, and hypothesis, which shrinks failures of different
types apart, never shrinks a real bug into the deviation (docs/vmm-api.md §10).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from conformance.api import VMM, Observation, VMConfig, observe, vmm_frame

if TYPE_CHECKING:
    from cffi_core.image import GuestImage
    from conformance.strategies import Block, GuestProgram

__all__ = [
    "COMPARE_HEADLINE",
    "DIFF_MARK",
    "DeviationLedger",
    "ExpectedDeviation",
    "assert_equivalent",
    "blocks_touching",
    "console_diff",
    "deviation_expected",
    "deviation_explained",
    "disk_diff",
    "equivalence_report",
    "event_counts",
    "expecting_deviation",
    "explained_by_deviation",
    "explained_by_sensitive_unprivileged",
    "explained_directed",
    "neutralise_sensitive_unprivileged",
    "sensitive_blocks",
    "tidy_failure",
    "vmm_frame",
]

_PROGRAM_LINES = 200  # a guest's listing beyond this is cut: the diff is the point


class ExpectedDeviation(Exception):
    """A failure that a technique's declared deviation explains (the only kind the plugin's
    ``popek_deviation`` xfail accepts).  Deliberately not an ``AssertionError``: a test that
    raises it for a VMM without that deviation fails, and hypothesis keeps it apart from real
    bugs when it shrinks."""


def equivalence_report(
    expected: Observation,
    actual: Observation,
    *,
    names: tuple[str, str] = ("native", "vmm"),
    program: str | None = None,
) -> list[str]:
    """The lines that explain why two observations differ: the stop and exit code as
    ``Observation.diff`` words them, the console line by line with the two runs side by side
    (``console_diff``), the disks as a hex diff of the differing sectors (``disk_diff``), the
    events per vector when the two runs count them differently (``event_counts``), then the
    guest program when given."""
    lines = ["observations differ (Popek & Goldberg 1974: equivalence):"]
    for line in expected.diff(actual, names):
        field = line.split(":", 1)[0]
        if field == "console":
            lines += [f"  {row}" for row in console_diff(expected.console, actual.console, names)]
        elif field in ("disk", "disk2") and len(getattr(expected, field)) == len(getattr(actual, field)):
            lines += [f"  {row}" for row in disk_diff(field, getattr(expected, field), getattr(actual, field), names)]
        else:
            lines.append(f"  {line}")
    lines += [f"  {row}" for row in event_counts(expected.counters, actual.counters, names)]
    if program is not None:
        text = program.rstrip("\n").splitlines()
        lines.append("guest program:")
        lines += [f"  | {line}" for line in text[:_PROGRAM_LINES]]
        if len(text) > _PROGRAM_LINES:
            lines.append(f"  | ... ({len(text) - _PROGRAM_LINES} more lines)")
    return lines


_COLUMN = 44  # characters of one side of a side-by-side console diff: two fit in 100 columns
_CONTEXT_LINES = 2  # equal console lines shown around a difference
_DIFF_ROWS = 24  # rows of a console diff shown; the rest are counted
_CHUNKS_PER_LINE = 4  # wrapped rows of one long console line shown, around its first difference
DIFF_MARK = "!"
"""What starts a differing row of a side-by-side diff (the report highlights those rows)."""


def _printable(data: bytes) -> str:
    """Console bytes as text: printable ASCII as is, anything else as a ``\\xNN`` escape."""
    return "".join(chr(c) if 0x20 <= c < 0x7F and c != 0x5C else "\\\\" if c == 0x5C else f"\\x{c:02x}" for c in data)


def _chunks(text: str, focus: int) -> list[str]:
    """``text`` cut into ``_COLUMN``-wide pieces, at most ``_CHUNKS_PER_LINE`` of them around
    the piece holding character ``focus`` (the first difference); ``…`` stands for the rest."""
    pieces = [text[i : i + _COLUMN] for i in range(0, len(text), _COLUMN)] or [""]
    if len(pieces) <= _CHUNKS_PER_LINE:
        return pieces
    at = min(focus // _COLUMN, len(pieces) - 1)
    lo = max(0, min(at - 1, len(pieces) - _CHUNKS_PER_LINE))
    shown = pieces[lo : lo + _CHUNKS_PER_LINE]
    if lo:
        shown[0] = "…" + shown[0][1:]
    if lo + _CHUNKS_PER_LINE < len(pieces):
        shown[-1] = shown[-1][:-1] + "…"
    return shown


def _first_column(x: str, y: str) -> int:
    return next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))


def console_diff(x: bytes, y: bytes, names: tuple[str, str] = ("native", "vmm")) -> list[str]:
    """The two consoles line by line, side by side: a headline (which line differs first, at
    which byte, the sizes), then rows ``[!] line | <names[0]> | <names[1]>`` under a header
    row, differing rows marked ``DIFF_MARK`` (a last line says so), a couple of equal lines around each difference; long lines wrap in
    their column, non-printable bytes are escaped (``\\xNN``).  Lines are paired by
    ``difflib`` so that a line one run printed and the other did not shifts nothing."""
    import difflib

    a, b = names
    xs, ys = x.split(b"\n"), y.split(b"\n")
    byte = next((i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q), min(len(x), len(y)))
    line = x[:byte].count(b"\n") + 1
    rows: list[tuple[bool, str, str, str]] = []  # (differs, line number, left, right)

    def pair(n: int | None, left: bytes | None, right: bytes | None) -> None:
        lt, rt = _printable(left) if left is not None else "", _printable(right) if right is not None else ""
        differs = left != right
        focus = _first_column(lt, rt) if differs else 0
        lc = _chunks(lt, focus) if left is not None else ["(no line)"]
        rc = _chunks(rt, focus) if right is not None else ["(no line)"]
        for k in range(max(len(lc), len(rc))):
            number = str(n) if (k == 0 and n is not None) else ""
            rows.append((differs, number, lc[k] if k < len(lc) else "", rc[k] if k < len(rc) else ""))

    matcher = difflib.SequenceMatcher(None, xs, ys, autojunk=False)
    opcodes = matcher.get_opcodes()
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            keep = set(range(i1, min(i2, i1 + _CONTEXT_LINES))) if i1 > 0 else set()
            keep |= set(range(max(i1, i2 - _CONTEXT_LINES), i2)) if i2 < len(xs) else set()
            last = None
            for i in sorted(keep):
                if last is not None and i > last + 1:
                    rows.append((False, "…", "", ""))
                pair(i + 1, xs[i], ys[j1 + i - i1])
                last = i
            if (i2 - i1) > len(keep) and keep and max(keep) < i2 - 1 and i1 > 0:
                rows.append((False, "…", "", ""))
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            left = xs[i1 + k] if i1 + k < i2 else None
            right = ys[j1 + k] if j1 + k < j2 else None
            pair(i1 + k + 1 if left is not None else None, left, right)
    hidden = 0
    if len(rows) > _DIFF_ROWS:
        hidden = sum(1 for r in rows[_DIFF_ROWS:] if r[0])
        rows = rows[:_DIFF_ROWS]
    out = [
        f"console: differs from line {line} (byte {byte}; {a} {len(x)} bytes, {b} {len(y)}):",
        f"  {'':1} {'line':>5} | {a:<{_COLUMN}} | {b}",
    ]
    out += [f"  {DIFF_MARK if d else ' '} {n:>5} | {lt:<{_COLUMN}} | {rt}".rstrip() for d, n, lt, rt in rows]
    if hidden:
        out.append(f"  ... ({hidden} more differing rows)")
    out.append(f"  ({DIFF_MARK} marks the lines that differ)")
    return out


_SECTOR = 512  # bytes of a disk sector (docs/architecture.md §8)
_HEX_ROW = 16  # bytes per row of a hex diff
_DISK_SECTORS = 3  # differing sectors shown; the rest are counted
_SECTOR_ROWS = 4  # differing rows shown per sector


def disk_diff(name: str, x: bytes, y: bytes, names: tuple[str, str] = ("native", "vmm")) -> list[str]:
    """A short hex diff of two disks of one size: per differing sector (the first few), the
    16-byte rows that differ, each as the two runs wrote it, ``DIFF_MARK``ed — never the
    disks themselves (kilobytes that hide the point)."""
    a, b = names
    differing = [i for i, (p, q) in enumerate(zip(x, y, strict=True)) if p != q]
    if not differing:
        return []
    sectors = sorted({i // _SECTOR for i in differing})
    width = max(len(a), len(b))
    out = [
        f"{name}: {len(differing)} bytes differ in {len(sectors)} sector(s) of {_SECTOR} bytes, the first at {differing[0]:#x}:"
    ]
    for s in sectors[:_DISK_SECTORS]:
        rows = sorted({i // _HEX_ROW for i in differing if i // _SECTOR == s})
        out.append(f"  sector {s} ({len(rows)} differing row(s) of {_HEX_ROW} bytes):")
        for r in rows[:_SECTOR_ROWS]:
            lo = r * _HEX_ROW
            out.append(f"  {DIFF_MARK}   {a:<{width}} {lo:#07x}: {x[lo : lo + _HEX_ROW].hex(' ')}")
            out.append(f"  {DIFF_MARK}   {b:<{width}} {lo:#07x}: {y[lo : lo + _HEX_ROW].hex(' ')}")
        if len(rows) > _SECTOR_ROWS:
            out.append(f"    ... ({len(rows) - _SECTOR_ROWS} more differing rows in this sector)")
    if len(sectors) > _DISK_SECTORS:
        out.append(f"  ... ({len(sectors) - _DISK_SECTORS} more differing sectors)")
    return out


def _vector_name(key: str) -> str | None:
    kind, _, number = key.rpartition("_")
    if kind not in ("exception", "interrupt") or not number.isdigit():
        return None
    return f"{kind} {number}"


def event_counts(x: dict[str, int], y: dict[str, int], names: tuple[str, str] = ("native", "vmm")) -> list[str]:
    """The events per vector (``exception_N``, ``interrupt_N`` counters) of two runs, when both
    count them and they differ: a line per vector, native beside VMM.  Nothing when the VMM
    counts none (its counters are its own, docs/vmm-api.md §8)."""
    keys = sorted({k for k in (*x, *y) if _vector_name(k)}, key=lambda k: (k.split("_")[0], int(k.rpartition("_")[2])))
    if not any(k in y for k in keys) or not any(k in x for k in keys):
        return []
    if all(x.get(k, 0) == y.get(k, 0) for k in keys):
        return []
    a, b = names
    out = [f"events per vector ({a} / {b}):"]
    for k in keys:
        p, q = x.get(k, 0), y.get(k, 0)
        out.append(f"  {DIFF_MARK if p != q else ' '} {_vector_name(k):<14} {p:>8} / {q}")
    return out


def assert_equivalent(
    expected: Observation,
    actual: Observation,
    *,
    names: tuple[str, str] = ("native", "vmm"),
    program: str | None = None,
) -> None:
    """Raise AssertionError, with the differences and the program, unless the two runs are
    indistinguishable to the guest (console, exit code, disk, stop; counters ignored)."""
    if not expected.equivalent(actual):
        raise AssertionError("\n".join(equivalence_report(expected, actual, names=names, program=program)))


# ---- what explains a failure ---------------------------------------------------------------


def _sensitive_unprivileged() -> frozenset[str]:
    from cffi_core.isa.table import SENSITIVE_UNPRIVILEGED  # the table's class (docs/architecture.md §4.3)

    return SENSITIVE_UNPRIVILEGED


def _line_mnemonics(line: str) -> list[str]:
    """The mnemonic a source line assembles to, as far as the text says (a ``.word`` decoded)."""
    text = line.split(";", 1)[0].strip()
    if not text or text.endswith(":"):
        return []
    head, _, rest = text.partition(" ")
    if head.lower() == ".word":
        from cffi_core.isa.encoding import decode

        try:
            d = decode(int(rest.strip(), 0) & 0xFFFFFFFF)
        except ValueError:
            return []
        return [d.insn.mnemonic] if d is not None else []
    return [head.lower()]


def sensitive_blocks(body: Sequence[Block]) -> list[int]:
    """The indices of the blocks whose text holds a sensitive, unprivileged instruction."""
    su = _sensitive_unprivileged()
    return [i for i, b in enumerate(body) if any(m in su for line in b.lines for m in _line_mnemonics(line))]


RESERVED_RANGE_LIMIT = 1 << 20
"""The most a VMM may declare as its reserved range (``VMM.reserved_range``): an IDT and the
like, never a share of the guest's address space large enough to excuse its memory bugs."""


def _reserved_range(vmm: type[VMM], profile: str) -> tuple[int, int] | None:
    """The linear range ``[lo, hi)`` the VMM keeps mapped in every guest address space (its
    class attribute ``reserved_range``: address-space compression, Robin & Irvine 2000), when
    the profile has no segment limit to hide it (``seglimit``): only there can the guest's
    kernel rings reach it unseen (a VMM that runs them at real ring 3 keeps it supervisor-only,
    but one that runs them at a supervisor ring, as a binary translator does, cannot)."""
    from cffi_core.profiles import get_profile

    declared = getattr(vmm, "reserved_range", None)
    features = get_profile(profile).features
    if declared is None or "seglimit" in features:
        return None
    lo, hi = declared
    if not 0 <= lo < hi <= 1 << 64 or hi - lo > RESERVED_RANGE_LIMIT:
        raise ValueError(f"VMM {vmm.name!r}: reserved_range {lo:#x}-{hi:#x} is not a range of at most 1 MiB")
    return lo, hi


def blocks_touching(program: GuestProgram, profile: str, lo: int, hi: int) -> set[int]:
    """The indices of the body blocks whose loads or stores, at CPL 0-2, touch linear
    ``[lo, hi)`` in the program's native run — run by the executable spec (``emulate``), every
    access seen as it goes through ``cffi_core.spec.access.translate`` (docs/architecture.md §5.3)."""
    from cffi_core.spec import access
    from cffi_core.spec.paging import ACCESS_FETCH
    from reference_vmm.emulate import EmulateVMM

    pcs: set[int] = set()
    original = access.translate

    def watched(state, mem, va, size, kind, cpl, **options):  # same signature as access.translate
        if kind != ACCESS_FETCH and cpl <= 2 and va < hi and va + size > lo:
            pcs.add(state.pc)
        return original(state, mem, va, size, kind, cpl, **options)

    access.translate = watched
    try:
        # In this process: the spec's traced accesses are this process's to see; the emulator
        # is popek's own executable spec, not a VMM under test.
        observe(EmulateVMM, program.image, program.config, profile=profile, isolate=False)
    finally:
        access.translate = original
    starts = program.block_starts()
    return {i for i in range(len(program.body)) for pc in pcs if starts[i] <= pc < starts[i + 1]}


def explained_by_deviation(
    vmm: type[VMM], profile: str, program: GuestProgram, *, ring_aliasing: bool = False, sensitive: bool = True
) -> bool:
    """True when ``program``'s difference under ``vmm`` is trap-and-emulate's deviation on the
    x86-like machine (Popek & Goldberg 1974, Theorem 1) and nothing else.  The blocks that are
    the deviation's own are deleted — those with sensitive, unprivileged instructions, and, on a
    profile without a segment limit, those whose accesses touch the VMM's declared
    ``reserved_range`` at CPL 0-2 (address-space compression) — and the rest must be
    equivalent under ``vmm``.  With ``ring_aliasing`` a body at CPL 1-2 may instead behave as
    the same body entered at ring 0: the guest kernel's ``iret`` to an outer ring that the VMM
    runs at the kernel's own real ring pops that ring and never traps, so the body keeps the
    kernel's rights (ring aliasing).  With ``sensitive`` false the sensitive, unprivileged
    instructions are not the deviation's (a VMM that sees them all, such as a binary
    translator, has only address-space compression to explain).  A VMM that raises on the rest
    raises here too (``VMMError``: never explained)."""
    from reference_vmm.native import NativeVMM

    drop = set(sensitive_blocks(program.body)) if sensitive else set()
    reserved = _reserved_range(vmm, profile)
    if reserved is not None:
        drop |= blocks_touching(program, profile, *reserved)
    aliased = ring_aliasing and program.cpl in (1, 2)
    if not drop and not aliased:
        return False
    rest = replace(program, body=tuple(b for i, b in enumerate(program.body) if i not in drop))
    if sensitive and rest.sensitive_unprivileged():  # e.g. a macro the text did not show: not provably theirs
        return False
    # Without a dropped block the registers differ, so a later block may touch the reserved
    # range that did not before (``smsw r3; ld r1, [r3]`` loads from r3's initial all ones):
    # such an access is the same deviation's (address-space compression), so it goes too,
    # until none is left.  Each round drops at least one block, so the rounds are bounded.
    while reserved is not None and (touching := blocks_touching(rest, profile, *reserved)):
        rest = replace(rest, body=tuple(b for i, b in enumerate(rest.body) if i not in touching))
    actual = observe(vmm, rest.image, rest.config, profile=profile)
    targets = [rest, replace(rest, entry_ring=0)] if aliased else [rest]
    return any(observe(NativeVMM, t.image, t.config, profile=profile).equivalent(actual) for t in targets)


def explained_by_sensitive_unprivileged(vmm: type[VMM], profile: str, program: GuestProgram) -> bool:
    """``explained_by_deviation`` without ring aliasing: the sensitive, unprivileged
    instructions (and, without ``seglimit``, the reserved range) explain the difference."""
    return explained_by_deviation(vmm, profile, program)


def neutralise_sensitive_unprivileged(image: GuestImage, start: int, end: int) -> tuple[GuestImage, int]:
    """``image`` with every sensitive, unprivileged instruction word in ``[start, end)``
    replaced by ``nop`` (``addi r0, r0, 0``, docs/architecture.md §3), and how many were."""
    from cffi_core.asm import assemble
    from cffi_core.image import Segment
    from cffi_core.isa.encoding import decode

    su = _sensitive_unprivileged()
    nop = assemble("nop\n").segments[0].data[:4]
    count = 0
    segments = []
    for seg in image.segments:
        data = bytearray(seg.data)
        lo, hi = max(start, seg.address), min(end, seg.end)
        for a in range(lo + (-(lo - seg.address) % 4), hi - 3, 4):
            o = a - seg.address
            d = decode(int.from_bytes(data[o : o + 4], "little"))
            if d is not None and d.insn.mnemonic in su:
                data[o : o + 4] = nop
                count += 1
        segments.append(Segment(seg.address, bytes(data)))
    return replace(image, segments=tuple(segments)), count


def explained_directed(
    vmm: type[VMM], profile: str, image: GuestImage, config: VMConfig, *, start: str = "main", end: str = "finish"
) -> bool:
    """True when a directed guest's difference under ``vmm`` is its obstacle's: its own code
    (symbols ``start`` to ``end``: ``main`` to the signature's ``finish``) holds sensitive,
    unprivileged instructions, and with each replaced by ``nop`` the guest is equivalent under
    ``vmm``.  The prelude's handlers and the signature are left as they are."""
    from reference_vmm.native import NativeVMM

    lo, hi = image.symbols.get(start), image.symbols.get(end)
    if lo is None or hi is None:
        return False
    neutral, count = neutralise_sensitive_unprivileged(image, lo, hi)
    if not count:
        return False
    expected = observe(NativeVMM, neutral, config, profile=profile)
    return expected.equivalent(observe(vmm, neutral, config, profile=profile))


# ---- the ledger of one test's explained failures --------------------------------------------


@dataclass
class DeviationLedger:
    """The explained failures of the test being run, while a deviation is expected of its VMM.

    Hypothesis examples whose failure is explained are noted here and let pass, so that the
    search goes on for failures that are not (a real bug found by example 500 is not hidden by
    the deviation found at example 2); the plugin raises ``ExpectedDeviation`` at the end of a
    test that noted any and raised nothing else."""

    technique: str
    reason: str
    explained: int = 0
    smallest: tuple[int, list[str]] | None = None

    def note(self, size: int, report: list[str]) -> None:
        """Note one explained failure; ``size`` ranks counterexamples (smallest kept)."""
        self.explained += 1
        if self.smallest is None or size < self.smallest[0]:
            self.smallest = (size, list(report))

    def exception(self) -> ExpectedDeviation:
        """The ``ExpectedDeviation`` that stands for every failure noted."""
        lines = [
            f"expected deviation of {self.technique}: {self.reason}",
            f"{self.explained} failing example(s), each explained by it; the smallest:",
        ]
        return ExpectedDeviation("\n".join(lines + (self.smallest[1] if self.smallest else [])))


_ledger: DeviationLedger | None = None  # pytest runs one test at a time in a process (xdist: a worker)


@contextmanager
def expecting_deviation(technique: str, reason: str) -> Iterator[DeviationLedger]:
    """While the block runs, explained failures are noted in the ledger yielded instead of raised
    (the plugin wraps the call of a test whose ``popek_deviation`` applies)."""
    global _ledger
    outer, _ledger = _ledger, DeviationLedger(technique, reason)
    try:
        yield _ledger
    finally:
        _ledger = outer


def deviation_expected() -> bool:
    """True while the running test expects a deviation of its VMM: only then is it worth
    running a failing example again to see whether the deviation explains it (for any other
    VMM every failure fails alike)."""
    return _ledger is not None


def deviation_explained(report: list[str], *, size: int = 0) -> None:
    """Account for a failure its technique's deviation explains: noted when the running test
    expects a deviation of its VMM (``expecting_deviation``), else raised as
    ``ExpectedDeviation`` (a failure: that VMM has no such deviation declared here)."""
    if _ledger is not None:
        _ledger.note(size, report)
        return
    raise ExpectedDeviation(
        "\n".join(["a failure of the kind a declared deviation explains, but none is declared for this VMM:", *report])
    )


# ---- what a failure records ------------------------------------------------------------------

COMPARE_HEADLINE = "the two Observations compared with == differ:"
"""The first line the plugin's ``pytest_assertrepr_compare`` gives for ``Observation ==
Observation``; ``tidy_failure`` drops the lines it heads when the assertion has a message of its
own (the test's diff says the same, with the runs named, where pytest's says left and right)."""

_BLOB_CHARS = 160  # a bytes literal longer than this in a failure report is shortened
_BLOB_KEEP = 48  # characters of a shortened literal kept
_BYTES_LITERAL = re.compile(r"""(?<![\w'"])b(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")""")
_HYPOTHESIS_ADVICE = "You can reproduce this example by temporarily adding @reproduce_failure"


def _shorten_blob(match: re.Match[str]) -> str:
    literal = match.group(0)
    if len(literal) <= _BLOB_CHARS:
        return literal
    try:
        size = f"{len(ast.literal_eval(literal))} bytes"
    except (SyntaxError, ValueError):
        size = f"{len(literal)} characters"
    return f"{literal[: _BLOB_KEEP + 2]}…{literal[1]} ({size}, shortened)"


def _drop_duplicate_compare(lines: list[str]) -> list[str]:
    out: list[str] = []
    skip_deeper: int | None = None
    message = False  # an assertion message (an ``E`` line of text) came before
    for line in lines:
        body = line[1:] if line.startswith("E") else None
        if skip_deeper is not None:
            if body is not None and body.strip() and len(body) - len(body.lstrip()) > skip_deeper:
                continue
            skip_deeper = None
        if body is not None and body.strip().startswith(f"assert {COMPARE_HEADLINE}") and message:
            skip_deeper = len(body) - len(body.lstrip())
            continue
        if body is not None and body.strip():
            message = True
        elif body is None:
            message = False
        out.append(line)
    return out


def tidy_failure(text: str) -> str:
    """A failure report as the grade sheet keeps it: without hypothesis's advice to decorate a
    test with ``@reproduce_failure`` (the reader reruns popek's command instead, and cannot edit
    the suite), without pytest's own left/right diff of two observations when the test's message
    already gave the diff (``COMPARE_HEADLINE``), and with every bytes literal of more than a
    few lines (a disk image in a repr) cut to its first bytes and its size."""
    lines = [line for line in text.split("\n") if _HYPOTHESIS_ADVICE not in line]
    lines = _drop_duplicate_compare(lines)
    return _BYTES_LITERAL.sub(_shorten_blob, "\n".join(lines))
