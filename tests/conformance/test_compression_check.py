"""The address-space compression test's helpers: which ranges the adversary probes, the pattern's expected report, parsing a run's report, and what excuses a foreign read."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest

from cffi_core import spec
from conformance.api import VMMError, observe
from conformance.checks import RESERVED_RANGE_LIMIT, ExpectedDeviation, expecting_deviation
from conformance.test_compression import (
    COMPRESSION_CONFIG,
    EXTRA_FRAMES,
    PAGE,
    PASSES,
    PATTERNS,
    TOP_FRAMES,
    TOP_VA,
    Finding,
    ProbeRange,
    compression_image,
    expected_report,
    findings,
    parse_report,
    pattern,
    probe_ranges,
)
from conformance.test_compression import (  # renamed: under its test_ name pytest would collect it here too
    test_guest_kernel_cannot_read_the_vmm_pages_in_its_address_space as compression_test,
)
from reference_vmm.native import NativeVMM
from reference_vmm.shadow import ShadowPager
from reference_vmm.trap_emulate import TrapEmulateVMM
from reference_vmm.trap_emulate.monitor import TrapEmulateVM
from reference_vmm.trap_emulate.rings import RESERVED_VA
from tests.mutants.compression import WITNESS, SegmentLimitForgotten

TOP = ProbeRange(TOP_VA, 256, TOP_FRAMES)
MiB = 1 << 20


# ---- probe_ranges --------------------------------------------------------------------------------


def test_the_top_mib_is_probed_whatever_the_vmm_declares():
    assert TOP_VA == 0xFFFF_FFFF_FFF0_0000 and TOP.pages * PAGE == RESERVED_RANGE_LIMIT
    assert probe_ranges(None) == (TOP,)
    assert probe_ranges(TrapEmulateVMM.reserved_range) == (TOP,)  # its IDT page: inside the top MiB
    assert probe_ranges((TOP_VA + 0x5000, 1 << 64)) == (TOP,)


@pytest.mark.parametrize(
    ("declared", "extra"),
    [
        # Elsewhere, widened to whole pages.
        ((0x4000_0000, 0x4000_3000), ProbeRange(0x4000_0000, 3, EXTRA_FRAMES)),
        ((0x5000_0010, 0x5000_0020), ProbeRange(0x5000_0000, 1, EXTRA_FRAMES)),
        # Overlapping the top MiB: the part below it.
        ((TOP_VA - 2 * PAGE, 1 << 64), ProbeRange(TOP_VA - 2 * PAGE, 2, EXTRA_FRAMES)),
        # Over 1 MiB (never trusted, never all probed): the 256 pages nearest the top.
        ((0, 1 << 64), ProbeRange(TOP_VA - MiB, 256, EXTRA_FRAMES)),
        ((0x1_0000_0000, 0x1_0000_0000 + 3 * MiB), ProbeRange(0x1_0000_0000 + 2 * MiB, 256, EXTRA_FRAMES)),
        # Not below 4 MiB, where the guest identity-maps its own RAM.
        ((0x3F_F000, 0x40_1000), ProbeRange(0x40_0000, 1, EXTRA_FRAMES)),
        # Only the canonical part (4 levels: below 2^47, or from 2^64 - 2^47).
        (((1 << 47) - PAGE, (1 << 47) + PAGE), ProbeRange((1 << 47) - PAGE, 1, EXTRA_FRAMES)),
    ],
)
def test_a_declared_range_elsewhere_is_probed_too(declared, extra):
    assert probe_ranges(declared) == (TOP, extra)


@pytest.mark.parametrize("declared", [(0x1000, 0x3000), (1 << 47, 1 << 48), (0x3F_F000, 0x40_0000)])
def test_what_the_guest_cannot_map_for_itself_is_not_probed(declared):
    assert probe_ranges(declared) == (TOP,)


@pytest.mark.parametrize("declared", [(5, 5), (0x2000, 0x1000), (-1, 0x1000), (0, (1 << 64) + 1)])
def test_a_declaration_that_is_no_range_is_refused(declared):
    with pytest.raises(ValueError, match="is not a range"):
        probe_ranges(declared)


# ---- the guest and the formula ---------------------------------------------------------------------


def test_the_guest_uses_the_constants_of_the_formula():
    symbols = compression_image((TOP,)).symbols
    assert (symbols["PATTERN1"], symbols["PATTERN2"]) == PATTERNS
    assert symbols["TOP_VA"] & (1 << 64) - 1 == TOP_VA
    assert (symbols["TOP_PAGES"], symbols["TOP_FRAMES"], symbols["EXTRA_FRAMES"]) == (256, TOP_FRAMES, EXTRA_FRAMES)
    # Within a page the pattern is the page's value plus the offset: the constants' low 12 bits are clear.
    assert all(k & (PAGE - 1) == 0 for k in PATTERNS)


def test_the_passes_are_reported_in_the_guests_order():
    # compression.s: cpl0 in full, then sampled at CPL 1, 2 and 3 (entered by iret), the write
    # read back at CPL 0 and through the frames.
    assert [p.name for p in PASSES] == ["cpl0", "cpl1", "cpl2", "cpl3", "cpl0 back", "frames"]
    assert [p.full for p in PASSES] == [True, False, False, False, False, False]
    assert [p.pattern for p in PASSES] == [0, 0, 0, 0, 1, 1]
    symbols = compression_image((TOP,)).symbols
    assert all(f"s_cpl{ring}" in symbols for ring in range(4))


def test_the_expected_report_sums_every_quadword_by_the_formula():
    lines = expected_report((TOP,)).split("\n")
    # The full pass by a closed form: per page 512 * (page ^ K) plus the offsets 0, 8, ..., 4088.
    full = sum(512 * (a ^ PATTERNS[0]) + 8 * 511 * 512 // 2 for a in TOP.addresses()) % (1 << 64)
    assert lines[0] == f"cpl0: sum={full:016x}"
    assert lines[-2:] == ["end of probes", ""]
    assert [line.split(":")[0] for line in lines[0:-2:2]] == [p.name for p in PASSES]
    assert all(line == "differ=0000000000000000" for line in lines[1:-2:2])
    # The sampled passes of pattern 1 (CPL 1, 2 and 3) read the same quadwords: the same sum.
    assert lines[2].split("=")[1] == lines[4].split("=")[1] == lines[6].split("=")[1]
    assert [line.split(":")[0] for line in lines[2:8:2]] == ["cpl1", "cpl2", "cpl3"]


def test_the_report_parses_back():
    reports, complete = parse_report(expected_report((TOP,)).encode() + b"r1=0000000000000000\n")
    assert complete and [r.name for r in reports] == [p.name for p in PASSES]
    assert all(r.differ == 0 and r.records == () for r in reports)
    cut, complete = parse_report(b"cpl0: sum=0000000000000001\ndiffer=0000000000000000\ncpl1: sum=00")
    assert not complete and [(r.name, r.sum) for r in cut] == [("cpl0", 1)]
    cut, complete = parse_report(expected_report((TOP,)).split("cpl3")[0].encode() + b"cpl3: sum=00")
    assert not complete and [r.name for r in cut] == ["cpl0", "cpl1", "cpl2"]


def test_a_foreign_read_is_found_and_an_own_one_is_not():
    top, frame = 0xFFFF_FFFF_FFFF_F000, TOP_FRAMES + 255 * PAGE
    console = (
        f"cpl0: sum={0:016x}\ndiffer={2:016x}\n"
        f"  at={top:016x}\n  read={0:016x}\n"  # the VMM's IDT: foreign
        f"  at={top - PAGE:016x}\n  read={pattern(top - PAGE, 0):016x}\n"  # its own value: not a finding
        f"cpl3: sum={0:016x}\ndiffer={1:016x}\n"
        f"  at={top + 0x1F8:016x}\n  read={7:016x}\n"  # the VMM's page read from ring 3
        f"frames: sum={0:016x}\ndiffer={1:016x}\n"
        f"  at={frame:016x}\n  read={pattern(top, 0):016x}\n"  # pattern 1 where it wrote pattern 2
        "end of probes\n"
    ).encode()
    reports, complete = parse_report(console)
    assert complete
    found = findings(reports, (TOP,))
    assert found == [
        Finding(top, PASSES[0], pattern(top, 0), 0),
        Finding(top + 0x1F8, PASSES[3], pattern(top + 0x1F8, 0), 7),
        Finding(frame, PASSES[-1], pattern(top, 1), pattern(top, 0)),
    ]
    assert f"at {top:#018x}" in found[0].line() and "it read 0x0000000000000000" in found[0].line()
    assert "a load at CPL 3" in found[1].line() and "pass 'cpl3'" in found[1].line()


@pytest.mark.parametrize(
    "extra", [ProbeRange(0x4000_0000, 3, EXTRA_FRAMES), ProbeRange(TOP_VA - MiB, 256, EXTRA_FRAMES)]
)
def test_the_guest_probing_a_second_range_reads_its_own_pattern_natively(extra):
    ranges = (TOP, extra)
    native = observe(NativeVMM, compression_image(ranges), COMPRESSION_CONFIG, profile="x86-64-2005")
    assert native.stop == "exit" and native.exit_code == 0
    assert native.console.decode().startswith(expected_report(ranges))
    assert expected_report(ranges) != expected_report((TOP,))


# ---- what the test excuses -------------------------------------------------------------------------


class _ElsewhereTrap(TrapEmulateVMM):
    """Declares a reserved range that is not where its IDT page is."""

    reserved_range: ClassVar[tuple[int, int]] = (0x4000_0000, 0x4000_1000)


def test_trap_and_emulate_reads_its_idt_on_x86_64_and_the_deviation_explains_it():
    with pytest.raises(AssertionError, match="not its own at address 0xfffffffffffff000"):
        compression_test(TrapEmulateVMM, "x86-64-2005")
    with expecting_deviation("trap-and-emulate", "address-space compression") as ledger:
        compression_test(TrapEmulateVMM, "x86-64-2005")
    assert ledger.explained == 1
    assert isinstance(ledger.exception(), ExpectedDeviation)


def test_a_foreign_read_outside_the_declared_range_is_not_excused():
    with (
        expecting_deviation("trap-and-emulate", "address-space compression") as ledger,
        pytest.raises(AssertionError, match="not its own at address 0xfffffffffffff000"),
    ):
        compression_test(_ElsewhereTrap, "x86-64-2005")
    assert ledger.explained == 0


def test_the_segment_limit_mutant_is_killed_and_its_base_passes():
    compression_test(TrapEmulateVMM, "x86-2005")
    with pytest.raises(AssertionError, match=r"not its own at address 0xfffffffffffff000: .* resource control"):
        compression_test(SegmentLimitForgotten, "x86-2005")
    # Its catalog witness (docs/mutants.md §4) shows the bug, and the base passes it.
    assert WITNESS.problem(SegmentLimitForgotten, "x86-2005")
    assert WITNESS.problem(TrapEmulateVMM, "x86-2005") is None


@pytest.mark.parametrize("profile", ["x86-64-2005"])
def test_binary_translation_reads_and_writes_its_data_without_a_segment_limit_and_the_deviation_explains_it(
    profile,
):
    from reference_vmm.binary_translation import BinaryTranslationVMM

    with pytest.raises(AssertionError, match="not its own at address"):
        compression_test(BinaryTranslationVMM, profile)
    ranges = probe_ranges(BinaryTranslationVMM.reserved_range)
    run = observe(BinaryTranslationVMM, compression_image(ranges), COMPRESSION_CONFIG, profile=profile)
    found = findings(parse_report(run.console)[0], ranges)
    assert any(f.during.frames for f in found)  # its writes reached the VMM's data, not its frames
    with expecting_deviation("binary-translation", "address-space compression") as ledger:
        compression_test(BinaryTranslationVMM, profile)
    assert ledger.explained == 1


def test_a_foreign_read_at_cpl3_is_never_excused(monkeypatch):
    # bt-gs-user-accessible (tests/mutants/catalog.py) maps the VMM's data (GS) user-accessible:
    # guest ring 3 reads it.  Every foreign read lies in the declared range on a profile without a
    # segment limit, as the base's do (excused above), yet no deviation gives ring 3 the VMM's
    # pages: the CPL 3 ones are refused, and they alone.
    from conformance import test_compression
    from tests.mutants.binary_translation import GsUserAccessible

    with (
        expecting_deviation("binary-translation", "address-space compression") as ledger,
        pytest.raises(AssertionError, match=r"of them at CPL 3, which no deviation excuses") as failure,
    ):
        compression_test(GsUserAccessible, "x86-64-2005")
    assert ledger.explained == 0
    # The first read at CPL 3 is of the VMM's data, in its declared range.
    first = int(re.search(r"the first at (0x[0-9a-f]+) \(a load at CPL 3", str(failure.value))[1], 16)
    lo, hi = GsUserAccessible.reserved_range
    assert lo <= first < hi
    # Without the CPL 3 rule the deviation would hide the mutant.
    monkeypatch.setattr(test_compression, "_USER_PASSES", frozenset())
    with expecting_deviation("binary-translation", "address-space compression") as ledger:
        compression_test(GsUserAccessible, "x86-64-2005")
    assert ledger.explained == 1


@pytest.mark.parametrize("profile", ["x86-2005", "classic-1974"])
def test_binary_translation_keeps_its_data_and_tc_from_the_guest_kernel_with_a_segment_limit_or_ring_compression(
    profile,
):
    # classic-1974: the guest kernel runs directly at ring 3 there, untranslated.
    from reference_vmm.binary_translation import BinaryTranslationVMM

    compression_test(BinaryTranslationVMM, profile)


class _WritableIdtPager(ShadowPager):
    def _map_reserved(self, root: int, va: int, frame: int) -> None:
        self._install(root, va, frame | spec.PTE_P | spec.PTE_W | spec.PTE_NX)  # the guest may write it


class _WritableIdtVM(TrapEmulateVM):
    def make_pager(self) -> ShadowPager:
        return _WritableIdtPager(self.monitor.host, self.memory, self.pool, reserved={RESERVED_VA: self.monitor.idt})


class _WritableIdtTrap(TrapEmulateVMM):
    """Maps its IDT page writable for the guest kernel: the guest's writes land in the VMM's page."""

    vm_class = _WritableIdtVM


def test_a_write_reaching_the_vmm_is_excused_only_for_the_deviation_that_declares_it():
    # trap-and-emulate's deviation is reads of its read-only IDT page: writes that reach it are
    # a bug the deviation does not explain (whatever the run then does).
    with (
        expecting_deviation("trap-and-emulate", "address-space compression") as ledger,
        pytest.raises((AssertionError, VMMError)),
    ):
        compression_test(_WritableIdtTrap, "x86-64-2005")
    assert ledger.explained == 0
