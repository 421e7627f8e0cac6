"""The grade sheet as a student reads it: failures grouped by cause, side-by-side diffs, folded listings, efficiency against thresholds, valid HTML."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import html5lib
import pytest

from conformance.api import Observation
from conformance.checks import COMPARE_HEADLINE, console_diff, equivalence_report, event_counts, tidy_failure
from conformance.results import ResultsWriter, RunKey, TestResult
from reports import failures
from reports.render import Bar, Bars, Cell, Code, Contents, Details, Heading, Paragraph, Table, to_html, to_markdown
from reports.report import write_report

pytest_plugins = ["pytester"]

KEY = RunKey("student", "trap-and-emulate", "student_vmm:StudentVMM", "classic-1974")
GOOD = RunKey("native", "the bare machine", "reference_vmm.native:NativeVMM", "classic-1974")
SUITE = "conformance/test_equivalence.py::test_directed_guest_is_equivalent"
NOW = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)


def _valid_html(page: str) -> None:
    parser = html5lib.HTMLParser(strict=True)  # raises on the first parse error
    parser.parse(page)
    assert not parser.errors


def _signature(r3: int) -> bytes:
    """A directed guest's console: its log, then the signature's register dump."""
    return b"".join(f"r{i}={(r3 if i == 3 else i):016x}\n".encode() for i in range(1, 9))


def _listing(name: str) -> str:
    return "\n".join(f"        ; {name} line {k}: out PORT, r3" for k in range(60))


def _seeded_bug_message(guest: str, r3: int) -> str:
    """What pytest records for one directed guest under a VMM with one seeded bug (port output
    truncated to a byte): the assertion's lines marked ``E``, with a 60-line listing."""
    native = Observation(_signature(0x174D6DF7B31BEDF3 + r3), 0, b"", "exit")
    vmm = Observation(_signature((0x174D6DF7B31BEDF3 + r3) & 0xFF), 0, b"", "exit")
    report = equivalence_report(native, vmm, names=("native", "student"), program=_listing(guest))
    body = ["AssertionError: " + report[0], *report[1:]]
    return "    def test(...):\n>       raise AssertionError(...)\n" + "\n".join(f"E   {line}" for line in body) + "\n"


def _write(directory: Path, key: RunKey, tests: list[tuple[str, str, str | None, dict[str, int]]]) -> Path:
    writer = ResultsWriter(directory)
    for test_id, outcome, message, counters in tests:
        category = test_id.split(":", 1)[0] if ":" in test_id else "mechanism"
        nodeid = test_id.split(":", 1)[1] if ":" in test_id else f"{SUITE}[{key.vmm}-{test_id}]"
        prop = "efficiency" if "efficiency" in nodeid else "equivalence"
        record = writer.result(key, nodeid, prop, category)
        record.outcome, record.message, record.counters = outcome, message, dict(counters)
    (path,) = writer.write()
    return path


SEEDED = [
    (f"guest{k:02d}", "failed", _seeded_bug_message(f"guest{k:02d}", k), {"vmm_interventions": k}) for k in range(20)
]
CRASH = (
    "E   conformance.api.VMMError: VMM 'student' (student_vmm:StudentVMM): run raised KeyError: <ExitReason.HLT: 4>\n"
)


def test_twenty_failures_of_one_seeded_bug_are_one_cause_in_a_short_sheet(tmp_path):
    path = _write(tmp_path / "results", KEY, [*SEEDED, ("hlt", "failed", CRASH, {})])
    report = write_report([path], tmp_path / "out", now=NOW)
    md = report.markdown.read_text(encoding="utf-8")
    assert "### Unexpected failures: 21 failure(s), 2 cause(s)" in md
    assert (
        "#### Cause 1 of 2 (20 failure(s)): console: differs from line 3: r3=174d6df7b31bedf3 ≠ r3=00000000000000f3"
        in md
    )
    assert "#### Cause 2 of 2 (1 failure(s)): the VMM raised KeyError: \\<ExitReason.HLT: 4\\>" in md
    # One counterexample shown in full, its listing folded; the 19 others listed with their rerun commands.
    assert md.count("<details><summary>guest program (60 lines)") == 1
    assert "the 19 other failure(s) of this cause, with their rerun commands" in md
    assert all(f"test_directed_guest_is_equivalent[student-guest{k:02d}]" in md for k in range(20))
    # 1,067 lines before grouping (20 failures, each with its 60-line listing); now a fraction.
    assert len(md.splitlines()) < 260


def test_the_decisive_difference_is_within_a_readable_line_side_by_side(tmp_path):
    path = _write(tmp_path / "results", KEY, SEEDED[:1])
    md = write_report([path], tmp_path / "out", now=NOW).markdown.read_text(encoding="utf-8")
    shown = md.split("The smallest counterexample", 1)[1].split("```", 2)[1]
    assert max(len(line) for line in shown.splitlines()) <= failures.WIDTH
    row = next(line for line in shown.splitlines() if line.strip().startswith("!"))
    # the register that differs, both values, no escaped byte strings
    assert "r3=174d6df7b31bedf3" in row and "r3=00000000000000f3" in row and "b'" not in shown


def test_an_old_one_line_console_diff_is_rewritten_side_by_side():
    line = (
        "  console: differs from byte 43 (native 442 bytes, alone 442): native …b'daa3ddd1c60b\\nr3=174d6df7b31bedf3', "
        "alone …b'daa3ddd1c60b\\nr3=0000000000000000'"
    )
    rows = failures.side_by_side(line)
    assert len(line) > 150 and all(len(r) < 100 for r in rows)
    assert any(r.strip().startswith("! r3=174d6df7b31bedf3") and r.endswith("r3=0000000000000000") for r in rows)


def test_console_diff_pairs_lines_and_marks_only_the_differing_ones():
    x = b"a\nb\nc\nd\n"
    y = b"a\nB\nc\nd\n"
    rows = console_diff(x, y, ("native", "vmm"))
    marked = [r for r in rows if r.lstrip().startswith("!")]
    assert len(marked) == 1 and "| b" in marked[0] and marked[0].endswith("| B")
    # a line printed by one run only shifts nothing
    rows = console_diff(b"1\n2\n3\n", b"1\n3\n", ("native", "vmm"))
    assert [r.split("|")[1].strip() for r in rows if r.lstrip().startswith("!")] == ["2"]


def test_disk_differences_are_a_short_hex_diff_of_the_sectors_never_the_bytes():
    disk = bytes(4400)
    changed = bytearray(disk)
    changed[1030] = 0xAB
    lines = equivalence_report(Observation(b"", 0, disk, "exit"), Observation(b"", 0, bytes(changed), "exit"))
    text = "\n".join(lines)
    assert "disk: 1 bytes differ in 1 sector(s)" in text and "sector 2" in text and " ab " in text
    assert len(text) < 600


def test_events_per_vector_native_beside_the_vmm():
    lines = event_counts({"exception_14": 16, "interrupt_32": 4}, {"exception_14": 15, "interrupt_32": 4})
    assert lines[0] == "events per vector (native / vmm):"
    assert any(line.strip().startswith("! exception 14") and line.endswith("16 / 15") for line in lines)
    assert event_counts({"exception_14": 1}, {"guest_insns_direct": 5}) == []  # the VMM counts none


def test_tidy_drops_advice_duplicates_and_blobs():
    blob = repr(bytes(range(256)) * 17)
    text = "\n".join(
        [
            "E   AssertionError: the run differs:",
            "E     console: differs from byte 4",
            f"E   assert {COMPARE_HEADLINE}",
            "E       console: differs from line 1 (byte 4; left 6 bytes, right 6):",
            "E         !     1 | hello | hellp",
            "E   Falsifying example: test(",
            f"E       disk={blob},",
            "E   )",
            "E   You can reproduce this example by temporarily adding @reproduce_failure('6.1', b'AXic') as a decorator",
        ]
    )
    tidy = tidy_failure(text)
    assert "reproduce_failure" not in tidy
    assert COMPARE_HEADLINE not in tidy and "left 6 bytes" not in tidy
    assert "console: differs from byte 4" in tidy and "Falsifying example" in tidy
    assert "(4352 bytes, shortened)" in tidy and len(tidy) < 600


def test_pytests_own_diff_of_observations_is_not_recorded_twice(pytester):
    pytester.makeini("[pytest]\naddopts = -p no:benchmark\n")
    pytester.makepyfile(
        test_twice="""
        from conformance.api import Observation

        def test_twice():
            native = Observation(b"a\\n", 0, bytes(4096), "exit")
            vmm = Observation(b"b\\n", 0, bytes(4095) + b"\\x01", "exit")
            assert vmm == native, "\\n".join(["differs:", *native.diff(vmm, ("native", "vmm"))])
        """
    )
    result = pytester.runpytest("--popek-results", "results")
    result.assert_outcomes(failed=1)
    # pytest shows it (the hook's diff), the recorder keeps the test's own message alone
    result.stdout.fnmatch_lines([f"*{COMPARE_HEADLINE}*"])
    from conformance.results import clip

    # the failure's own section, as the recorder gets it: not the closing summary, which pytest
    # leaves uncut (the whole message again) when $CI is set
    report = "\n".join(result.outlines).split("short test summary info")[0]
    assert COMPARE_HEADLINE in report and COMPARE_HEADLINE not in clip(report)


def test_generated_listing_marks_a_short_body():
    listing = "\n".join(
        [
            "generated guest: body at CPL 0, paging off, FLAGS 0x0, budget 4000 ticks",
            "prelude: conformance/guests/lib/prelude.s + lib/generated.s",
            "body (source):",
            "    smsw r1",
            "body (disassembled):",
            "    0x01000: 5c100000  smsw r1",
            "epilogue: int VEC_BACK; lib/generated.s gen_end (data checksum); lib/signature.s finish",
        ]
    )
    assert failures.listing_marks(listing) == frozenset({5})
    assert failures.listing_marks(_listing("directed")) == frozenset()


def test_wrap_keeps_every_character_and_marks_continuations():
    line = "  " + "x" * 250
    wrapped = failures.wrap(line, 100).splitlines()
    assert all(len(w) <= 100 for w in wrapped) and all(w.lstrip().startswith("↪") for w in wrapped[1:])
    assert "".join(w.strip().removeprefix("↪ ") for w in wrapped) == "x" * 250


def test_the_sheet_has_date_versions_contents_and_failing_runs_first(tmp_path):
    _write(tmp_path / "results", GOOD, [("smsw", "passed", None, {})])
    _write(tmp_path / "results", KEY, SEEDED[:2])
    report = write_report([tmp_path / "results"], tmp_path / "out", now=NOW)
    md = report.markdown.read_text(encoding="utf-8")
    assert "Written 2026-12-03 22:00 UTC. Versions: hypothesis " in md
    contents = md.split("**Contents**", 1)[1].split("## Summary", 1)[0]
    assert (
        "- [student on classic-1974 — 2 unexpected failure(s)](#student-on-classic-1974--2-unexpected-failures)"
        in contents
    )
    assert md.index("## student on classic-1974") < md.index("## native on classic-1974")
    page = report.html.read_text(encoding="utf-8")
    _valid_html(page)
    assert '<h2 id="student-on-classic-1974--2-unexpected-failures">' in page
    assert '<td class="fail">FAIL (2 of 2)</td>' in page and '<td class="pass">pass (1)</td>' in page
    assert '<span class="mark">' in page  # the differing rows of the diff highlighted, and in them
    assert "r3=<strong>174d6df7b31bed</strong>f3" in page  # the characters that differ


def _efficiency(
    guest: str, direct: int, entries: int, outcome: str = "passed"
) -> tuple[str, str, None, dict[str, int]]:
    nodeid = f"conformance/test_efficiency.py::test_most_guest_instructions_run_directly[student-{guest}]"
    counters = {
        "guest_instructions": 10_000,
        "host_entries": entries,
        "host_entries_per_1000": round(entries / 10),
        "measured_direct_per_mille": direct,
        "overhead_per_1000": 0,
    }
    return (f"{guest}:{nodeid}", outcome, None, counters)


def test_efficiency_figures_stand_beside_their_thresholds_with_bars(tmp_path):
    path = _write(tmp_path, KEY, [_efficiency("compute", 1000, 3), _efficiency("system", 700, 900, "failed")])
    report = write_report([path], tmp_path / "out", now=NOW)
    md = report.markdown.read_text(encoding="utf-8")
    section = md.split("### Efficiency of student", 1)[1]
    compute = next(line for line in section.splitlines() if line.startswith("| classic-1974 | compute"))
    assert [c.strip() for c in compute.split("|")[4:8]] == ["1,000", "≥ 990", "0.3", "≤ 5.0"]
    system = next(line for line in section.splitlines() if line.startswith("| classic-1974 | system"))
    assert [c.strip() for c in system.split("|")[4:8]] == [
        "**700**",
        "≥ 800",
        "90.0",
        "≤ 200.0",
    ]  # a failing figure is bold
    assert "┃" in section  # the text bars mark the threshold
    page = report.html.read_text(encoding="utf-8")
    _valid_html(page)
    assert page.count("<svg") == 2 and '<td class="fail">700</td>' in page


def test_every_block_renders_in_both_formats_and_the_html_validates():
    blocks = [
        Heading(1, "t"),
        Contents(2, 2),
        Heading(2, "A & B <x>"),
        Paragraph("text with | and * and <b>"),
        Table(["h", "n"], [[Cell("FAIL (1 of 2)", "fail"), 3], [Cell("pass", "pass"), 1.5]]),
        Code("one\n! two\nthree", frozenset({1})),
        Details("folded <b>", "x\ny", frozenset({0})),
        Bars("chart", (Bar("a", 998, 990, 1000, True, "998‰"), Bar("b", 5, None, 10, False, "5"))),
        Heading(3, "A & B <x>"),
    ]
    page = to_html(blocks, "title <t>")
    _valid_html(page)
    assert '<a href="#a--b-x">' in page and '<a href="#a--b-x-1">' in page  # GitHub's anchors, repeats numbered
    assert '<h3 id="a--b-x-1">' in page
    md = to_markdown(blocks)
    assert "- [A & B \\<x\\>](#a--b-x)" in md and "  - [A & B \\<x\\>](#a--b-x-1)" in md


@pytest.mark.parametrize("size", [1, 5])
def test_a_cause_shows_its_smallest_counterexample(size):
    short = TestResult(
        f"{SUITE}[student-short]", "equivalence", "mechanism", "failed", message=_seeded_bug_message("s", 1)
    )
    long_message = _seeded_bug_message("l", 2).replace(
        "E   guest program:", "E   guest program:\n" + "E     | ;\n" * size
    )
    long = TestResult(f"{SUITE}[student-long]", "equivalence", "mechanism", "failed", message=long_message)
    (cause,) = failures.group([long, short])
    assert cause.shown.test is short and len(cause.failures) == 2


def test_the_failing_frame_of_a_crash_is_the_vmms_own(tmp_path, monkeypatch):
    from conformance.checks import vmm_frame

    (tmp_path / "crashing_vmm.py").write_text(
        "TABLE = {}\n\n\ndef handle(reason):\n    return TABLE[reason]  # the seeded bug\n\n\ndef run():\n    return handle(4)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import crashing_vmm

    with pytest.raises(KeyError) as caught:
        crashing_vmm.run()
    where = vmm_frame(caught.value)
    assert where is not None
    assert where.splitlines()[0] == "at crashing_vmm.py:5 in handle: return TABLE[reason]  # the seeded bug"
    assert where.splitlines()[1] == "  called from crashing_vmm.py:9 in run: return handle(4)"
    from conformance.api import VMMError, load_vmm

    with pytest.raises(VMMError) as ours:
        load_vmm("")  # raised by the grader's own code: no frame of a VMM
    error = ours.value.with_traceback(ours.value.__traceback__.tb_next)  # less this test's frame
    assert vmm_frame(error) is None


SEEDED_SUITE = '''
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conformance.api import Observation
from conformance.checks import assert_equivalent


def _console(r3):
    return b"".join(f"r{i}={(r3 if i == 3 else i):016x}\\n".encode() for i in range(1, 9))


@pytest.mark.popek_property("equivalence", category="mechanism")
@pytest.mark.parametrize("guest", range(20))
def test_guest(guest, vmm):
    """A VMM with one seeded bug (port output truncated to a byte) on twenty guests."""
    value = 0x174D6DF7B31BEDF3 + guest
    listing = "\\n".join(f"        out PORT, r3   ; line {k}" for k in range(60))
    native = Observation(_console(value), 0, bytes(4400), "exit")
    seeded = Observation(_console(value & 0xFF), 0, bytes(4400), "exit")
    assert_equivalent(native, seeded, names=("native", "student"), program=listing)


@pytest.mark.popek_property("equivalence", category="generated")
@settings(print_blob=True, database=None, max_examples=5, suppress_health_check=list(HealthCheck))
@given(disk=st.just(bytes(range(256)) * 17))
def test_generated(vmm, disk):
    assert disk == bytes(len(disk)), "the disk differs"
'''


def test_a_seeded_bug_graded_end_to_end_is_one_cause_without_advice_or_blobs(pytester):
    """From pytest through the plugin's results file to the sheet: twenty failures of one seeded
    bug are one cause, and what hypothesis and pytest add (the @reproduce_failure advice, a disk's
    kilobytes) is not recorded."""
    pytester.makeini("[pytest]\naddopts = -p no:benchmark\n")
    pytester.makepyfile(test_seeded=SEEDED_SUITE)
    result = pytester.runpytest("--popek-vmm", "native", "--popek-results", "results")
    result.assert_outcomes(failed=21)
    shown = result.stdout.str()
    assert "@reproduce_failure" in shown and "\\xff" in shown  # what pytest shows, the results do not keep
    (path,) = (pytester.path / "results").glob("*.json")
    text = path.read_text(encoding="utf-8")
    assert "reproduce_failure" not in text
    assert "shortened" in text and "\\\\xff" not in text  # the 4,352 bytes of the example cut to their first
    report = write_report([path], pytester.path / "out", now=NOW)
    md = report.markdown.read_text(encoding="utf-8")
    assert "### Unexpected failures: 21 failure(s), 2 cause(s)" in md
    assert "#### Cause 1 of 2 (20 failure(s)): console: differs from line 3: r3=" in md
    assert "You can reproduce" not in md
    _valid_html(report.html.read_text(encoding="utf-8"))


def test_a_crash_is_one_cause_whatever_test_met_it_and_its_frame_is_marked():
    frame = "E     at student_vmm.py:22 in _handle: return _KIND[ex.reason]"
    directed = TestResult(f"{SUITE}[student-hlt]", "equivalence", "mechanism", "failed", message=CRASH + frame)
    safety = TestResult(
        "conformance/test_safety.py::test_adversary[student]",
        "safety",
        "adversary",
        "failed",
        message="E   AssertionError: resource control violated under student (Popek & Goldberg 1974):\n"
        "E     the VMM failed (the host survived): VMM 'student' (student_vmm:StudentVMM): run(500) raised "
        "KeyError: <ExitReason.HLT: 4>\n",
    )
    (cause,) = failures.group([directed, safety])
    assert cause.headline == "the VMM raised KeyError: <ExitReason.HLT: 4>"
    shown = cause.shown.diff.splitlines()
    assert shown.index("  at student_vmm.py:22 in _handle: return _KIND[ex.reason]") in failures.marks(cause.shown.diff)


CRASHING_VMM = """
from reference_vmm.native import NativeVMM

HANDLERS = {}


class CrashOnRun(NativeVMM):
    name = "crash-on-run"

    def run(self, budget):
        return HANDLERS[budget]  # the seeded bug
"""


@pytest.mark.parametrize("isolate", [False, True])
def test_a_vmm_crash_names_its_file_and_line_in_or_out_of_process(tmp_path, monkeypatch, isolate):
    from cffi_core.asm import assemble
    from conformance.api import VMMError, observe

    (tmp_path / "crashing_student.py").write_text(CRASHING_VMM)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    import crashing_student

    image = assemble("hlt\n")
    with pytest.raises(VMMError) as caught:
        observe(crashing_student.CrashOnRun, image, isolate=isolate)
    assert "raised KeyError" in str(caught.value)
    where = str(caught.value).splitlines()[1]  # relative to the current folder, or absolute
    assert where.startswith("  at ") and where.endswith(
        "crashing_student.py:11 in run: return HANDLERS[budget]  # the seeded bug"
    )
