"""Safety (resource control): a guest kernel must not read the VMM's memory mapped into its address space (address-space compression).

A software VMM keeps some of its own pages mapped in every guest address space: the IDT that
sends every guest event to it, a binary translator's translation cache (docs/architecture.md
§4.3, address-space compression; Adams & Agesen 2006 §3).  They sit at the top of the linear
address space (``VMM.reserved_range``), and something must keep the guest kernel, which the
VMM runs at a supervisor ring, from reading them: on ``x86-2005`` the segment limit
(MSR_SEGLIMIT, §5.3); on ``classic-1974`` and ``x86-64-2005`` nothing does, unless the kernel
runs at ring 3 (ring compression).  Reading them is the guest reaching the VMM's own memory:
Popek & Goldberg's (1974) resource control, not only a difference of equivalence.

The adversary (``conformance/guests/compression.s``, memory map in its header) maps frames of
its own, filled with a pattern, over the top 1 MiB of the linear address space — the most a VMM
may declare reserved (``conformance.checks.RESERVED_RANGE_LIMIT``), probed whatever the VMM
declares — and over the part of the declared range that lies elsewhere, if any; then reads
every quadword there at CPL 0, samples every page at CPL 1, 2 and 3 (entered by ``iret``; its
pages are user-accessible, which CPL 0-2 do not check: docs/architecture.md §7.4), writes a
second pattern and reads it back through the same addresses and through its frames.  On a bare
machine it reads its own pattern everywhere.  The expected values come from the pattern's
formula (``pattern``), never from a run: the native run is itself checked against them.

Expected deviations (strict): binary translation where no segment limit protects its
translation cache, and trap-and-emulate where it runs the guest kernel at ring 1 protected by
paging alone (``reference_vmm/trap_emulate/rings.py``, ``RING_1_PAGING``); either is excused
only when every foreign read lies in the VMM's declared ``reserved_range`` and the guest's
writes all reached its own frames — binary translation's writes excepted inside that range,
where it keeps the data its translated code writes.  Both concern the guest *kernel* (CPL 0-2,
run at a supervisor ring): a foreign read at CPL 3 is never excused, since no VMM has a reason
to give ring 3 its pages — both map them supervisor, and paging alone keeps user accesses out
(§7.4), with or without a segment limit.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, replace
from functools import cache
from typing import TYPE_CHECKING

import pytest

from cffi_core.profiles import PROFILES, get_profile
from conformance.api import VMM, Observation, VMConfig, observe
from conformance.checks import RESERVED_RANGE_LIMIT, deviation_expected, deviation_explained, equivalence_report
from conformance.guests import GUEST_DIR

if TYPE_CHECKING:
    from cffi_core.image import GuestImage

__all__ = [
    "COMPRESSION_CONFIG",
    "EXTRA_FRAMES",
    "GUEST",
    "PAGE",
    "PASSES",
    "PATTERNS",
    "SAMPLES",
    "TOP_FRAMES",
    "TOP_VA",
    "Finding",
    "Pass",
    "PassReport",
    "ProbeRange",
    "compression_image",
    "expected_report",
    "findings",
    "parse_report",
    "pattern",
    "probe_ranges",
]

GUEST = GUEST_DIR / "compression.s"
PAGE = 4096
TOP_VA = (1 << 64) - RESERVED_RANGE_LIMIT
"""The top 1 MiB of the linear address space, probed whatever the VMM declares."""
TOP_FRAMES = 0x100000
"""Guest-physical frames behind the top 1 MiB (compression.s: TOP_FRAMES)."""
EXTRA_FRAMES = 0x200000
"""Guest-physical frames behind the declared range's pages elsewhere (compression.s: EXTRA_FRAMES)."""
_MAX_PAGES = RESERVED_RANGE_LIMIT // PAGE
_IDENTITY_END = 4 << 20  # the guest maps [0, 4 MiB) to itself with two 2 MiB pages: not probed
_LOW_END = 1 << 47  # canonical halves with 4 paging levels (docs/architecture.md §5.3)
_HIGH_START = (1 << 64) - (1 << 47)
PATTERNS = (0x9E3779B97F4A7000, 0xC2B2AE3D27D4E000)
"""The quadword at probed linear address ``a`` holds ``a ^ PATTERNS[0]`` (filled through its
frame), then ``a ^ PATTERNS[1]`` where the guest wrote it (compression.s: PATTERN1, PATTERN2)."""
SAMPLES = tuple(0x1F8 + 0x200 * k for k in range(8))
"""The offsets a sampled pass reads and writes in each page: the last quadword of each eighth."""
COMPRESSION_CONFIG = VMConfig(memory=3 << 20, budget=2_000_000)
"""3 MiB of RAM (the frames of two probed ranges above the prelude's 1 MiB); about 685,000 ticks
natively, more where pages differ (each is scanned)."""


@dataclass(frozen=True)
class Pass:
    """One reported pass of the guest: its name on the console, whether it reads every
    quadword or the samples, which pattern it expects, and whether it reads through the frames'
    identity map rather than the probed addresses."""

    name: str
    full: bool
    pattern: int
    frames: bool = False
    what: str = ""


PASSES = (
    Pass("cpl0", True, 0, what="a load at CPL 0"),
    Pass("cpl1", False, 0, what="a load at CPL 1, entered by iret"),
    Pass("cpl2", False, 0, what="a load at CPL 2, entered by iret"),
    Pass("cpl3", False, 0, what="a load at CPL 3, entered by iret"),
    Pass("cpl0 back", False, 1, what="a load at CPL 0 of what the guest wrote there"),
    Pass("frames", False, 1, frames=True, what="a load through the frame's identity map of what the guest wrote"),
)
"""The passes in the order the guest reports them (compression.s's header)."""


@dataclass(frozen=True)
class ProbeRange:
    """Pages the guest maps to frames of its own and probes: ``pages`` 4 KiB pages from linear
    ``va``, backed by guest-physical frames from ``frame``."""

    va: int
    pages: int
    frame: int

    def addresses(self) -> range:
        """The probed linear addresses of the range's pages."""
        return range(self.va, self.va + self.pages * PAGE, PAGE)


def probe_ranges(declared: tuple[int, int] | None) -> tuple[ProbeRange, ...]:
    """What the guest probes for a VMM that declares ``declared`` (its ``reserved_range``, or
    None): the top 1 MiB always, the declaration never trusted; plus the declared range's part
    elsewhere, widened to whole pages, canonical with 4 levels, at or above the guest's identity
    map (4 MiB), below the top 1 MiB, at most 256 pages (the highest, nearest the VMM's top of
    memory; RESERVED_RANGE_LIMIT), and in one canonical half (the upper first)."""
    top = ProbeRange(TOP_VA, _MAX_PAGES, TOP_FRAMES)
    if declared is None:
        return (top,)
    lo, hi = declared
    if not 0 <= lo < hi <= 1 << 64:
        raise ValueError(f"reserved_range {lo:#x}-{hi:#x} is not a range of linear addresses")
    lo, hi = lo & ~(PAGE - 1), -(-hi // PAGE) * PAGE
    for start, end in ((max(lo, _HIGH_START), min(hi, TOP_VA)), (max(lo, _IDENTITY_END), min(hi, _LOW_END))):
        if start < end:
            start = max(start, end - _MAX_PAGES * PAGE)
            return top, ProbeRange(start, (end - start) // PAGE, EXTRA_FRAMES)
    return (top,)


def pattern(address: int, which: int) -> int:
    """The quadword the guest's own memory holds at probed linear ``address`` (pattern 0 as
    filled, 1 as the guest wrote it)."""
    return address ^ PATTERNS[which]


@cache
def _assembled() -> GuestImage:
    from cffi_core.asm import assemble_file

    return assemble_file(GUEST)


@cache
def compression_image(ranges: tuple[ProbeRange, ...]) -> GuestImage:
    """The guest probing ``ranges`` (``probe_ranges``): compression.s with its ``extra_range``
    entry set to the second range, if any."""
    from cffi_core.image import Segment

    image = _assembled()
    if len(ranges) == 1:
        return image
    extra = ranges[1]
    if extra.frame != EXTRA_FRAMES or len(ranges) != 2:
        raise ValueError(f"the guest probes the top 1 MiB and one range at {EXTRA_FRAMES:#x}: {ranges}")
    at = image.symbols["extra_range"]
    segments = []
    for seg in image.segments:
        if seg.address <= at < seg.end:
            data = bytearray(seg.data)
            data[at - seg.address : at - seg.address + 16] = struct.pack("<QQ", extra.va, extra.pages)
            seg = Segment(seg.address, bytes(data))
        segments.append(seg)
    return replace(image, segments=tuple(segments))


def _offsets(p: Pass) -> range | tuple[int, ...]:
    return range(0, PAGE, 8) if p.full else SAMPLES


def expected_report(ranges: tuple[ProbeRange, ...]) -> str:
    """The console text of the passes on a bare machine, from the pattern's formula: each
    pass's sum of every quadword it reads, no page that differs, then ``end of probes``."""
    out = []
    for p in PASSES:
        total = sum(pattern(a + o, p.pattern) for r in ranges for a in r.addresses() for o in _offsets(p))
        out.append(f"{p.name}: sum={total & (1 << 64) - 1:016x}\ndiffer={0:016x}\n")
    return "".join(out) + "end of probes\n"


@dataclass(frozen=True)
class PassReport:
    """One pass as the guest reported it: the sum of what it read, the number of pages that
    differed, and for each the first differing quadword's address and what was read there."""

    name: str
    sum: int
    differ: int
    records: tuple[tuple[int, int], ...]


_HEAD = re.compile(r"(?P<name>[a-z0-9 ]+): sum=(?P<sum>[0-9a-f]{16})")
_LINE = {key: re.compile(rf"{re.escape(key)}=([0-9a-f]{{16}})") for key in ("differ", "  at", "  read")}


def parse_report(console: bytes) -> tuple[tuple[PassReport, ...], bool]:
    """The passes at the start of a console, and whether their report ended with ``end of
    probes`` (a run that stopped early, or printed something else, gives what came before)."""
    lines = console.decode("ascii", "replace").split("\n")
    passes: list[PassReport] = []
    i = 0

    def value(key: str) -> int | None:
        nonlocal i
        m = _LINE[key].fullmatch(lines[i]) if i < len(lines) else None
        if m is None:
            return None
        i += 1
        return int(m.group(1), 16)

    while i < len(lines):
        if lines[i] == "end of probes":
            return tuple(passes), True
        head = _HEAD.fullmatch(lines[i])
        if head is None:
            break
        i += 1
        differ = value("differ")
        if differ is None:
            break
        records = []
        while (at := value("  at")) is not None:
            read = value("  read")
            if read is None:
                break
            records.append((at, read))
        passes.append(PassReport(head["name"], int(head["sum"], 16), differ, tuple(records)))
    return tuple(passes), False


@dataclass(frozen=True)
class Finding:
    """A quadword the guest read that is not what its own memory holds: where (a probed linear
    address, or a frame's guest-physical address in the ``frames`` pass), in which pass, what
    the guest's memory holds there (None: no memory of the guest's is probed there) and what it
    read."""

    address: int
    during: Pass
    expected: int | None
    read: int

    def line(self) -> str:
        """The finding in words, for a failure message."""
        own = "no probed memory of its own" if self.expected is None else f"{self.expected:#018x}"
        return (
            f"at {self.address:#018x} ({self.during.what}, pass {self.during.name!r}): "
            f"its own memory holds {own}, it read {self.read:#018x}"
        )


def _own(address: int, p: Pass, ranges: tuple[ProbeRange, ...]) -> int | None:
    """What the guest's memory holds at ``address`` during pass ``p``, by the formula."""
    for r in ranges:
        base = r.frame if p.frames else r.va
        if base <= address < base + r.pages * PAGE:
            return pattern(r.va + (address - base), p.pattern)
    return None


def findings(reports: tuple[PassReport, ...], ranges: tuple[ProbeRange, ...]) -> list[Finding]:
    """The reads of ``reports`` (a run's ``parse_report``) that differ from the guest's own
    memory by the pattern's formula."""
    by_name = {p.name: p for p in PASSES}
    out = []
    for report in reports:
        p = by_name.get(report.name)
        if p is None:
            continue
        for address, read in report.records:
            own = _own(address, p, ranges)
            if own != read:
                out.append(Finding(address, p, own, read))
    return out


# ---- the expected deviations -----------------------------------------------------------------

# Both software VMMs run the guest kernel at ring 3 on classic-1974 (ring compression), where the
# supervisor-only reserved pages are out of its reach; elsewhere without seglimit at ring 1.
_UNPROTECTED_PROFILES = tuple(
    name for name, profile in PROFILES.items() if not {"seglimit", "classic"} & profile.features
)
_BT_DEVIATION = pytest.mark.popek_deviation(
    "binary-translation",
    "Adams & Agesen (2006) report it of their 64-bit VMM: without segment limits (x86-64) nothing keeps the "
    "guest kernel, run at a supervisor ring, from reading the translation cache and IDT the VMM keeps at the "
    "top of the guest's address space, or from writing the data its translated code writes there "
    "(address-space compression)",
    profiles=_UNPROTECTED_PROFILES,
)
_TE_DEVIATION = pytest.mark.popek_deviation(
    "trap-and-emulate",
    "without a segment limit the guest kernel runs at ring 1 with the VMM's IDT page protected by paging alone "
    "(supervisor, read-only: reference_vmm/trap_emulate/rings.py, RING_1_PAGING), so its reads at CPL 0-2 see "
    "the VMM's IDT (address-space compression, Robin & Irvine 2000)",
    profiles=_UNPROTECTED_PROFILES,
)


def _reserved(vmm: type[VMM], profile: str) -> tuple[int, int] | None:
    """The VMM's declared range, where no segment limit can hide it (the rule of
    ``conformance.checks.explained_by_deviation``): only there may a foreign read be its
    deviation's."""
    declared = getattr(vmm, "reserved_range", None)
    if declared is None or "seglimit" in get_profile(profile).features:
        return None
    return declared


def _exceptions(console: bytes) -> list[str]:
    """The signature's exception log (lib/signature.s): the lines from ``exceptions=`` to the clock."""
    lines = console.decode("ascii", "replace").split("\n")
    start = next((i for i, line in enumerate(lines) if line.startswith("exceptions=")), len(lines))
    end = next((i for i, line in enumerate(lines) if line.startswith("tsc=")), len(lines))
    return lines[start:end]


_USER_PASSES = frozenset({"cpl3"})
"""The passes at CPL 3, whose foreign reads no deviation excuses: the expected deviations are
the guest kernel's (a supervisor ring's) reach into the VMM's pages, and a VMM maps them
supervisor, out of ring 3's reach by paging alone (docs/architecture.md §7.4)."""

_WRITES_REACH_VMM = frozenset({"binary-translation"})
"""The deviations that include the guest kernel's writes: binary translation keeps the data its
translated code writes (spill slots, the virtual IF, ledgers, the hash table of fragments:
``reference_vmm/binary_translation/translator.py``) in pages of the declared range, writable
at the supervisor ring that code and the guest kernel share.  Adams & Agesen (2006) say of
their 64-bit VMM that the guest can reach the VMM's memory, writes included."""


def _linear(f: Finding, ranges: tuple[ProbeRange, ...]) -> int | None:
    """The probed linear address a finding stands for: its own, or in the ``frames`` pass that
    of the page the frame is mapped at."""
    if not f.during.frames:
        return f.address
    for r in ranges:
        if r.frame <= f.address < r.frame + r.pages * PAGE:
            return r.va + (f.address - r.frame)
    return None


def _explained(
    vmm: type[VMM],
    profile: str,
    native: Observation,
    actual: Observation,
    found: list[Finding],
    complete: bool,
    ranges: tuple[ProbeRange, ...],
) -> bool:
    """Is the difference address-space compression alone?  Every foreign read is a load at CPL
    0-2 (none in a ``_USER_PASSES`` pass) through a probed address inside the VMM's declared
    range on a profile without a segment limit; the run ended as natively, with the same
    exception log and exit code = the pages that differed; and every write reached the guest's
    own frames (the ``frames`` pass differs nowhere) — or, for a deviation that includes writes
    (``_WRITES_REACH_VMM``), differs only at frames mapped inside the declared range."""
    reserved = _reserved(vmm, profile)
    if reserved is None or not found or not complete:
        return False
    lo, hi = reserved
    writes = vmm.name in _WRITES_REACH_VMM
    for f in found:
        va = _linear(f, ranges)
        if f.during.name in _USER_PASSES or (f.during.frames and not writes) or va is None or not lo <= va < hi:
            return False
    reports, _ = parse_report(actual.console)
    differing = sum(r.differ for r in reports)
    return (
        actual.stop == "exit"
        and actual.exit_code == differing == len(found)
        and all(r.differ == len(r.records) for r in reports)
        and _exceptions(actual.console) == _exceptions(native.console)
    )


@cache
def _native(ranges: tuple[ProbeRange, ...], profile: str) -> Observation:
    from reference_vmm.native import NativeVMM

    return observe(NativeVMM, compression_image(ranges), COMPRESSION_CONFIG, profile=profile)


@pytest.mark.popek_property("safety", category="compression")
@_TE_DEVIATION
@_BT_DEVIATION
def test_guest_kernel_cannot_read_the_vmm_pages_in_its_address_space(vmm, popek_profile):
    """The adversary reads, at CPL 0, 1, 2 and 3, its own frames mapped over the top 1 MiB (and
    over the VMM's declared range elsewhere), and its writes there reach its own memory."""
    ranges = probe_ranges(getattr(vmm, "reserved_range", None))
    image = compression_image(ranges)
    native = _native(ranges, popek_profile)
    expected = expected_report(ranges)
    own = native.console.decode("ascii", "replace")
    assert native.stop == "exit" and native.exit_code == 0 and own.startswith(expected), (
        f"the adversary does not read its own pattern on a bare machine ({popek_profile}): "
        f"stop {native.stop}, exit code {native.exit_code}, console {own[: len(expected) + 200]!r}, "
        f"expected it to start {expected!r}"
    )
    actual = observe(vmm, image, COMPRESSION_CONFIG, profile=popek_profile)
    if native.equivalent(actual):
        return
    reports, complete = parse_report(actual.console)
    found = findings(reports, ranges)
    lines = []
    if found:
        first = found[0]
        own_text = "no probed memory of its own" if first.expected is None else f"{first.expected:#x}"
        lines += [
            f"the guest read bytes that are not its own at address {first.address:#x}: its own memory there holds "
            f"{own_text}, it read {first.read:#x} under {vmm.name} on {popek_profile} — the VMM's memory reached "
            "from the guest (Popek & Goldberg 1974: resource control)",
            f"{len(found)} foreign reads (the first of each page in each pass):",
        ]
        lines += [f"  {f.line()}" for f in found[:8]]
        if len(found) > 8:
            lines.append(f"  ... and {len(found) - 8} more")
        user = [f for f in found if f.during.name in _USER_PASSES]
        if user:
            lines.append(
                f"{len(user)} of them at CPL 3, which no deviation excuses (a VMM maps its pages supervisor), "
                f"the first {user[0].line()}"
            )
    lines += equivalence_report(native, actual, names=("native", vmm.name))
    if deviation_expected() and _explained(vmm, popek_profile, native, actual, found, complete, ranges):
        deviation_explained(lines)
        return
    raise AssertionError("\n".join(lines))
