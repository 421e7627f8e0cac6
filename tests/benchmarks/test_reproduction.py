"""The reproduction's claims on p4-2006 (benchmarks/reproduction.py): every relation of Adams & Agesen 2006 holds unless it is a declared deviation, and a declared deviation does not hold."""

from __future__ import annotations

import pytest

from benchmarks import paper
from benchmarks.reproduction import DEVIATIONS, claims


@pytest.fixture(scope="module")
def checked(paper_records):
    return {c.name: c for c in claims(paper_records, "p4-2006")}


def test_every_relation_is_checked(checked):
    # 7 nanobenchmarks x (winner + 3 columns) + forkwait's ordering and two ratios + compute's
    # two columns + compile's ordering and two ratios
    assert len(checked) == 7 * 4 + 3 + 2 + 3
    assert set(DEVIATIONS) <= set(checked), "a deviation names a claim that does not exist"


@pytest.mark.parametrize("name", [f"nanobench {n}: same winner" for n in paper.NANOBENCH])
def test_each_nanobenchmark_has_the_papers_winner(checked, name):
    claim = checked[name]
    assert claim.holds or claim.reason, f"{name}: popek {claim.measured}, paper {claim.published}"


def test_forkwait_orders_native_bt_vt_as_the_paper(checked):
    claim = checked["forkwait: native < BT < VT"]
    assert claim.holds, claim.measured


def test_claims_hold_exactly_where_no_deviation_is_declared(checked):
    wrong = {name: (c.measured, c.published) for name, c in checked.items() if c.holds == (name in DEVIATIONS)}
    assert wrong == {}, "update DEVIATIONS (with the reason measured) or fix the cause; never tune prices"


def test_the_docs_list_the_deviations():
    from pathlib import Path

    from benchmarks.reproduction import docs_section

    docs = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    assert docs_section() in docs.read_text(), "run python -m benchmarks.reproduction docs/benchmarks.md"


def test_the_report_shows_the_claims_with_their_reasons(paper_records):
    from reports.bench_report import BenchData, bench_blocks, render_markdown

    text = render_markdown(bench_blocks(BenchData(list(paper_records), []), ["p4-2006"]))
    assert "Reproduction of Adams & Agesen 2006 (p4-2006)" in text
    for reason in DEVIATIONS.values():
        assert reason[:60] in text
