"""The benchmark report (``reports.bench_report``) and ``popek bench``: hand-made records priced under a hand-made profile."""

from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from benchmarks import paper
from benchmarks.cost_model import load_profile
from benchmarks.measure import Record
from reports import plots
from reports.bench_report import (
    BenchData,
    Bound,
    bench_blocks,
    bench_document,
    load_bench,
    price_record,
    render_markdown,
    write_bench_report,
)
from reports.cli import bench_vmms, main

# A tiny cost profile: every price a round number, so the expected cycles are worked by hand.
TOY = """
name = "toy"
description = "hand-made prices for the report's tests"
[clock]
ghz = 1.0
source = "test"
[unit_costs.instructions]
cycles = 1
kind = "instruction"
source = "test"
[unit_costs.exception_128]
cycles = 100
kind = "trap"
source = "test"
[unit_costs.host_gate_exits]
cycles = 1000
kind = "vm_transition"
source = "test"
[unit_costs."vmm.guest_instructions_translated"]
cycles = 50
kind = "translation"
source = "test"
[included]
"vmm.*" = "the VMM's word, unless priced by name"
"""


@pytest.fixture
def toy(tmp_path: Path):
    path = tmp_path / "toy.toml"
    path.write_text(TOY)
    return load_profile(path)


def rec(suite: str, benchmark: str, vmm: str, n: int, **delta: int) -> Record:
    return Record(
        suite=suite,
        benchmark=benchmark,
        vmm=vmm,
        machine="vtx-2006",
        n=n,
        delta={k.replace("__", "."): v for k, v in delta.items()},
        wall_s=0.5,
        guest_instructions=delta.get("instructions", 0),
    )


def nano(vmm: str, benchmark: str, n: int = 10, **delta: int) -> Record:
    return rec("nanobench", benchmark, vmm, n, **delta)


def test_a_record_is_priced_per_iteration_host_and_vmm_apart(toy):
    # 10 iterations: 40 instructions (40), 10 syscalls (1000), 10 host-gate exits (10000); the
    # VMM says it translated 4 instructions (200), its word, priced apart.
    r = nano("binary-translation", "syscall", instructions=40, exception_128=10, host_gate_exits=10,
             vmm__guest_instructions_translated=4)  # fmt: skip
    cost = price_record(r, toy)
    assert cost.cycles == pytest.approx((40 + 1000 + 10000 + 200) / 10)
    assert cost.vmm_cycles == pytest.approx(20)
    assert cost.vmm_by_kind == {"translation": pytest.approx(20)}
    assert cost.by_kind["vm_transition"] == pytest.approx(1000)
    assert cost.unpriced == {} and cost.figure.exact
    assert cost.seconds == pytest.approx(cost.cycles / 1e9)


def test_the_host_measurement_of_an_event_wins_over_the_vmms_word(toy):
    # Both count the same host-gate exits: priced once, from the host (the profile prices no
    # vmm.host_gate_exits: the VMM's counter is informational).
    r = nano("binary-translation", "syscall", host_gate_exits=10, vmm__host_gate_exits=30)
    assert price_record(r, toy).cycles == pytest.approx(1000)


def test_an_unpriced_counter_makes_a_lower_bound(toy):
    cost = price_record(nano("native", "in", instructions=10, port_reads=20), toy)
    assert cost.figure == Bound(1.0, "lower")
    assert cost.unpriced == {"port_reads": 2.0}
    assert cost.figure.text() == "≥ 1"


def toy_nanobench() -> list[Record]:
    """Three VMMs and a user's: syscall costs, over the empty loop (2 instructions per iteration),
    native 1 + 100, BT 1 + 100 + 1000, hardware 1 + 100, mine 3 + 100."""
    out = []
    for vmm, extra, exits in (("native", 0, 0), ("binary-translation", 0, 10), ("hardware", 0, 0), ("mine", 20, 0)):
        out.append(nano(vmm, "empty", instructions=20))
        out.append(nano(vmm, "syscall", instructions=30 + extra, exception_128=10, host_gate_exits=exits))
    return out


def table_rows(markdown: str, first: str) -> list[list[str]]:
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("|")]
    return [cells for cells in rows if cells[0] == first]


def table_row(markdown: str, first: str) -> list[str]:
    rows = table_rows(markdown, first)
    assert rows, f"no row {first!r}"
    return rows[0]


def table_header(markdown: str, first: str) -> list[str]:
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no header {first!r}")


def test_the_nanobenchmark_table_subtracts_the_empty_loop_and_compares_with_the_paper(toy):
    md = render_markdown(bench_blocks(BenchData(toy_nanobench()), [toy]))
    headers = table_header(md, "benchmark")
    row = dict(zip(headers, table_row(md, "syscall"), strict=True))
    assert (row["native"], row["binary-translation"], row["hardware"]) == ("101", "1,101", "101")
    # The user's VMM is a column because its records are there: no code names it.
    assert row["mine"] == "103"
    published = paper.NANOBENCH["syscall"]
    assert row["paper native"] == f"{published.native:,.0f}"
    assert row["BT popek/paper"] == f"{1101 / published.bt:.2f}×"
    # The paper's syscall winner is native (242 < 246 < 2308); popek's fewest is native too (tie
    # with hardware at 101: the first column wins, as in the paper's own min).
    assert row["same winner?"] == "yes (native)"
    assert "empty" not in [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| empty")]


def test_same_winner_says_no_when_popeks_order_differs(toy):
    records = toy_nanobench()
    records = [r for r in records if r.vmm != "mine"]
    # in: the paper's winner is BT (216); make popek's hardware the cheapest.
    records += [
        nano("native", "in", instructions=20 + 10, host_gate_exits=10),
        nano("binary-translation", "in", instructions=20 + 10, host_gate_exits=10),
        nano("hardware", "in", instructions=20 + 10),
    ]
    md = render_markdown(bench_blocks(BenchData(records), [toy]))
    row = dict(zip(table_header(md, "benchmark"), table_row(md, "in"), strict=True))
    assert paper.NANOBENCH["in"].winner() == "bt"
    assert row["same winner?"] == "no (VT)"


def test_unpriced_counters_mark_the_figure_and_are_listed_per_iteration(toy):
    records = [r for r in toy_nanobench() if r.vmm == "native"]
    records.append(nano("native", "divzero", instructions=50, exception_0=10))
    md = render_markdown(bench_blocks(BenchData(records), [toy]))
    row = dict(zip(table_header(md, "benchmark"), table_row(md, "divzero"), strict=True))
    assert row["native"] == "≥ 3 [1]"  # 50/10 − 20/10 instructions; the #DE has no price in toy
    assert "\\[1\\] divzero under native: unpriced counters per iteration: exception\\_0 1" in md


def test_a_baseline_with_more_of_an_unpriced_counter_is_not_a_lower_bound(toy):
    records = [
        nano("native", "empty", instructions=20, port_reads=30),
        nano("native", "callret", instructions=40, port_reads=10),
    ]
    md = render_markdown(bench_blocks(BenchData(records), [toy]))
    row = dict(zip(table_header(md, "benchmark"), table_row(md, "callret"), strict=True))
    assert row["native"].startswith("≤ 2")


def test_forkwait_and_the_generation_sweep(toy, tmp_path):
    cheaper = tmp_path / "cheaper.toml"
    cheaper.write_text(TOY.replace('"toy"', '"cheaper"').replace("cycles = 1000", "cycles = 10"))
    records = [
        rec("forkwait", "forkwait", "native", 2, instructions=2000),
        rec("forkwait", "forkwait", "binary-translation", 2, instructions=2000, host_gate_exits=2),
        rec("forkwait", "forkwait", "hardware", 2, instructions=2000, host_gate_exits=20),
    ]
    md = render_markdown(bench_blocks(BenchData(records), [toy, load_profile(cheaper)]))
    # forkwait under toy: native 1000, BT 2000 (2.00×), hardware 11000 (11.00×), beside 6.1× and 17.7×.
    # The sweep table comes first (toy, then cheaper), then forkwait under each profile.
    sweep, fork_toy, fork_cheaper = table_rows(md, "hardware")[:3]
    assert sweep == ["hardware", "11,000", "1,100"]
    assert fork_toy[:2] == ["hardware", "11,000"] and float(fork_toy[2]) == 11.0  # µs at 1 GHz
    assert fork_toy[3] == "11.00×"
    assert fork_cheaper[3] == "1.10×"
    bt = table_rows(md, "binary-translation")[1]
    assert bt[:2] == ["binary-translation", "2,000"] and (float(bt[2]), bt[3]) == (2.0, "2.00×")
    assert bt[-1] == f"{paper.FORKWAIT.bt / paper.FORKWAIT.native:.1f}×"


def test_guest_mips_is_wall_clock_apart(toy):
    records = [nano("native", "empty", instructions=2_000_000), nano("native", "syscall", instructions=3_000_000)]
    md = render_markdown(bench_blocks(BenchData(records), [toy]))
    assert float(table_row(md, "native")[-1]) == 5.0  # 5 M instructions over 1 s of wall clock


class _Balance(HTMLParser):
    VOID = frozenset({"meta", "img", "br", "hr", "link", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: set[str] = set()
        self.links: set[str] = set()
        self.images = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.add(a["href"][1:])
        if tag == "img":
            self.images += 1
            assert a["src"].startswith("data:image/png;base64,")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)


def check_html(text: str) -> _Balance:
    parser = _Balance()
    parser.feed(text)
    parser.close()
    assert not parser.errors and not parser.stack, (parser.errors, parser.stack)
    assert parser.links and parser.links <= parser.ids  # the table of contents points at headings
    return parser


def bench_json(tmp_path: Path, records: list[Record]) -> Path:
    path = tmp_path / "in" / "bench.json"
    path.parent.mkdir()
    doc = bench_document(records, suites=["nanobench"], options={"vmms": [], "scale": 1, "profiles": []}, wall_s=1)
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.skipif(not plots.available(), reason="matplotlib is not installed")
def test_the_report_with_plots_embeds_them_and_links_them(toy, tmp_path):
    data = load_bench(bench_json(tmp_path, toy_nanobench()))
    md, page = write_bench_report(data, tmp_path / "out", [toy])
    png = tmp_path / "out" / "nanobench-toy.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert "](nanobench-toy.png)" in md.read_text()
    assert check_html(page.read_text()).images == 1


def test_the_report_without_matplotlib_has_every_table_and_says_how_to_get_plots(toy, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert not plots.available()
    data = load_bench(bench_json(tmp_path, toy_nanobench()))
    md, page = write_bench_report(data, tmp_path / "out", [toy])
    text = md.read_text()
    assert "pip install popek\\[plots\\]" in text and "![" not in text
    assert "pip install popek[plots]" in page.read_text()
    assert table_row(text, "syscall")[1] == "101"
    assert not list((tmp_path / "out").glob("*.png"))
    assert check_html(page.read_text()).images == 0


def test_a_bench_file_of_another_version_is_refused(tmp_path):
    path = bench_json(tmp_path, [])
    doc = json.loads(path.read_text())
    doc["version"] = 99
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="version 99"):
        load_bench(path)


def test_a_users_vmm_is_benchmarked_against_the_classics():
    assert bench_vmms(["my.pkg:MyVMM"]) == ["native", "binary-translation", "hardware", "my.pkg:MyVMM"]
    assert bench_vmms(["hardware"]) == ["native", "binary-translation", "hardware"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--suite", "no-such-suite"], "argument --suite: unknown suite 'no-such-suite'"),
        (["--profile", "pentium-1993"], "argument --profile: unknown cost profile 'pentium-1993'"),
        (["--scale", "0"], "argument --scale: 0 is less than 1"),
        (["--scale", "two"], "argument --scale: 'two' is not a whole number"),
    ],
)
def test_bench_argument_errors_are_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", *argv, "-o", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("popek: bench: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_report_merges_a_bench_file_with_conformance_results(toy, tmp_path, capsys):
    from tests.reports.test_report_cli import CLEAN, KEY, write_run

    results = tmp_path / "results"
    write_run(results, KEY, CLEAN)
    bench = bench_json(tmp_path, toy_nanobench())
    out = tmp_path / "report"
    toy_path = str(tmp_path / "toy.toml")
    assert main(["report", str(results), "--bench", str(bench), "--cost-profile", toy_path, "-o", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## Summary" in md and "## Benchmarks" in md
    assert table_row(md, "syscall")[1] == "101"
    check_html((out / "report.html").read_text())
    # A bench.json inside the results directory is found without --bench.
    bench.replace(results / "bench.json")
    assert main(["report", str(results), "--cost-profile", toy_path, "-o", str(out)]) == 0
    assert "## Benchmarks" in (out / "report.md").read_text()


def test_report_without_a_bench_file_is_the_grade_sheet_alone(tmp_path):
    from tests.reports.test_report_cli import CLEAN, KEY, write_run

    write_run(tmp_path / "results", KEY, CLEAN)
    assert main(["report", str(tmp_path / "results"), "-o", str(tmp_path / "out")]) == 0
    assert "Benchmarks" not in (tmp_path / "out" / "report.md").read_text()


def test_bench_end_to_end_on_the_nanobenchmarks(tmp_path, capsys):
    from benchmarks.suites import all_suites

    if "nanobench" not in all_suites():
        pytest.skip("the nanobench suite (benchmarks/suites/nanobench.py) is not written yet")
    out = tmp_path / "bench"
    assert main(["bench", "--suite", "nanobench", "--vmm", "native", "-o", str(out)]) == 0
    console = capsys.readouterr().out
    assert "[suite 1/1 nanobench, run 1]" in console
    data = load_bench(out / "bench.json")
    assert {r.vmm for r in data.records} == {"native", "binary-translation", "hardware"}
    assert {r.benchmark for r in data.records} >= {*paper.NANOBENCH, "empty"}
    md = (out / "bench.md").read_text()
    assert "Nanobenchmarks (p4-2006)" in md
    check_html((out / "bench.html").read_text())
