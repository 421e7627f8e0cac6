"""The forkwait, macro, mmu and io benchmark suites at tiny sizes: their records, builds, left-out VMMs and exact walk counts."""

from __future__ import annotations

import json

import pytest

from benchmarks.measure import NATIVE, Record
from benchmarks.suites import PAPER_MACHINE, SuiteOptions, all_suites
from benchmarks.suites import forkwait as forkwait_suite
from benchmarks.suites import io as io_suite
from benchmarks.suites import macro as macro_suite
from benchmarks.suites import mmu as mmu_suite
from benchmarks.suites.forkwait import P64osRun, p64os_records
from conformance.guest_os import os_image

SUITE_NAMES = ("forkwait", "macro", "mmu", "io")


def _options(*vmms: str, lines: list[str] | None = None) -> SuiteOptions:
    sink = lines if lines is not None else []
    return SuiteOptions(vmms=vmms, progress=sink.append)


def _check_counts(record: Record) -> None:
    """Counts only: every delta a non-negative int, the record back from its JSON unchanged."""
    assert record.delta, record
    for name, count in record.delta.items():
        assert type(count) is int and count >= 0, (record.benchmark, record.vmm, name, count)
    assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record


def test_every_suite_is_registered_with_a_description():
    suites = all_suites()
    for name in SUITE_NAMES:
        assert suites[name].name == name
        assert suites[name].description


def test_forkwait_records_one_benchmark_per_vmm_in_order(monkeypatch):
    monkeypatch.setattr(forkwait_suite, "DEFAULT_N", 1)
    lines: list[str] = []
    records = forkwait_suite.run_forkwait(_options(NATIVE, "hardware-ept", "paravirt", lines=lines))
    assert [(r.suite, r.benchmark, r.vmm, r.n) for r in records] == [
        ("forkwait", "forkwait", v, 1) for v in (NATIVE, "hardware-ept", "paravirt")
    ]
    assert [r.machine for r in records] == [PAPER_MACHINE, "vtx-2009", PAPER_MACHINE]
    assert lines == [f"forkwait forkwait: {r.vmm} on {r.machine}" for r in records]
    for r in records:
        _check_counts(r)
        assert r.delta["ticks"] > 0
    # one fork is the same guest work natively and under nested paging: the same instructions
    native, ept, _ = records
    assert ept.delta["ticks"] == native.delta["ticks"]
    assert ept.delta["vm_entries"] > 0 and "vm_entries" not in native.delta


def test_scale_multiplies_the_iterations(monkeypatch):
    monkeypatch.setattr(forkwait_suite, "DEFAULT_N", 1)
    (record,) = forkwait_suite.run_forkwait(SuiteOptions(vmms=(NATIVE,), scale=3))
    assert record.n == 3


def test_a_paravirtual_vmm_gets_the_paravirtual_build(monkeypatch):
    seen: dict[str, object] = {}

    def fake_measure(suite, benchmark, vmm, machine, n, make, *, check=None):
        seen[vmm] = make(n)[0]
        return Record(suite, benchmark, vmm, machine, n, {"ticks": 1}, 0.0, 0)

    monkeypatch.setattr(forkwait_suite, "measure", fake_measure)
    records = forkwait_suite.run_forkwait(_options(NATIVE, "hardware", "paravirt"))
    assert seen[NATIVE] is os_image(paravirt=False) and seen["hardware"] is os_image(paravirt=False)
    assert seen["paravirt"] is os_image(paravirt=True) and os_image(paravirt=True) is not os_image(paravirt=False)
    assert any("paravirtual build" in note for note in records[2].notes)
    assert not any("paravirtual build" in note for note in records[0].notes)


def test_a_vmm_its_machine_cannot_host_is_left_out_with_a_note():
    # hardware-ept requires ept; placed on vtx-2006 the driver refuses it (VMMUnsupported)
    lines: list[str] = []
    run = P64osRun("forkwait", "forkwait", 1, machine=lambda vmm: "vtx-2006")
    records = p64os_records("forkwait", [run], [NATIVE, "hardware-ept"], _options(lines=lines))
    assert [r.vmm for r in records] == [NATIVE]
    (note,) = [n for n in records[0].notes if n.startswith("left out: hardware-ept on vtx-2006")]
    assert "ept" in note
    assert any(line.startswith("forkwait forkwait: left out: hardware-ept") for line in lines)


def test_a_wrong_output_makes_no_record(monkeypatch):
    from benchmarks.measure import BenchmarkError

    monkeypatch.setattr(forkwait_suite, "p64os_check", lambda workload: _refuse)
    with pytest.raises(BenchmarkError, match="not what"):
        p64os_records("forkwait", [P64osRun("forkwait", "forkwait", 1)], [NATIVE], _options())


def _refuse(size: int, console: bytes) -> None:
    from benchmarks.measure import BenchmarkError

    raise BenchmarkError("not what a correct machine prints")


def test_macro_records_its_three_workloads(monkeypatch):
    monkeypatch.setattr(macro_suite, "DEFAULT_N", {"compute": 8, "compile": 2, "mmu": 64})
    records = macro_suite.run_macro(_options(NATIVE, "paravirt"))
    assert [(r.benchmark, r.vmm, r.n) for r in records] == [
        (w, v, n) for w, n in (("compute", 8), ("compile", 2), ("mmu", 64)) for v in (NATIVE, "paravirt")
    ]
    for r in records:
        _check_counts(r)


@pytest.mark.parametrize(("g", "n", "page"), [(4, 4, "4k"), (2, 3, "4k"), (3, 0, "4k"), (4, 4, "2m"), (2, 2, "2m")])
def test_uncached_2d_walks_make_exactly_nm_plus_n_plus_m_references(g, n, page):
    small = mmu_suite.walk_counters(g, n, page, False, 1)
    big = mmu_suite.walk_counters(g, n, page, False, 2)
    walks, refs = ("walks_2d", "walk_refs_2d") if n else ("walks", "walk_refs")
    loads = mmu_suite.PAGES
    assert big[walks] - small[walks] == loads
    assert big[refs] - small[refs] == loads * mmu_suite.exact_walk_refs(g, n, page)


def test_exact_walk_refs_is_bhargavas_formula():
    assert mmu_suite.exact_walk_refs(4, 4) == 24  # Bhargava et al. 2008
    assert mmu_suite.exact_walk_refs(4, 0) == 4
    assert mmu_suite.exact_walk_refs(4, 4, "2m") == 15


def test_walk_records_cover_every_configuration_and_the_caches_save_references(monkeypatch):
    monkeypatch.setattr(mmu_suite, "WALK_PASSES", 1)
    records = {r.benchmark: r for r in mmu_suite._walk_records(_options())}
    g, n, page = len(mmu_suite.GUEST_LEVELS), len(mmu_suite.NESTED_LEVELS), len(mmu_suite.PAGE_SIZES)
    assert len(records) == g * page + g * (n - 1) * page * 2
    for r in records.values():
        assert r.vmm == mmu_suite.CORE and r.n == mmu_suite.PAGES
        _check_counts(r)
    plain, cached = records["walk-g4-n4-4k"], records["walk-g4-n4-4k-pwc"]
    assert plain.per_iteration("walk_refs_2d") == 24
    assert cached.machine.endswith("+pwc") and cached.delta["pwc_hits"] > 0
    assert cached.per_iteration("walk_refs_2d") < plain.per_iteration("walk_refs_2d")


def test_shadow_paging_exits_on_page_table_updates_and_nested_paging_does_not(monkeypatch):
    monkeypatch.setattr(mmu_suite, "GUEST_PASSES", {"tlb-miss-heavy": 1, "pt-update-heavy": 1})
    lines: list[str] = []
    records = mmu_suite._guest_records(_options(NATIVE, "hardware", "hardware-ept", "paravirt", lines=lines))
    by = {(r.benchmark, r.vmm): r for r in records}
    assert set(by) == {
        (b, v) for b in ("tlb-miss-heavy", "pt-update-heavy") for v in (NATIVE, "hardware", "hardware-ept")
    } | {("tlb-miss-heavy-nopwc", "hardware-ept"), ("pt-update-heavy-nopwc", "hardware-ept")}
    for r in records:
        _check_counts(r)
    # a pass of 64 updates: each traced by the shadow-paging VMM, none by nested paging
    assert by[("pt-update-heavy", "hardware")].delta["vm_exits"] >= mmu_suite.UPDATES
    assert by[("pt-update-heavy", "hardware-ept")].delta.get("vm_exits", 0) == 0
    # a pass of TLB misses: walked by the hardware, two-dimensionally under nested paging
    ept, nopwc = by[("tlb-miss-heavy", "hardware-ept")], by[("tlb-miss-heavy-nopwc", "hardware-ept")]
    assert ept.delta["walks_2d"] == nopwc.delta["walks_2d"] >= mmu_suite.PAGES
    assert nopwc.delta["walk_refs_2d"] > ept.delta["walk_refs_2d"]
    assert any("left out: paravirt" in note for note in by[("tlb-miss-heavy", NATIVE)].notes)
    assert any("left out: paravirt" in line for line in lines)


def test_without_vpid_vm_transitions_flush_the_tlb(monkeypatch):
    monkeypatch.setattr(mmu_suite, "VPID_N", {"forkwait": 1})
    records = mmu_suite._vpid_records(_options("hardware-ept"))
    assert [(r.benchmark, r.vmm) for r in records] == [
        ("forkwait-vpid", "hardware-ept"),
        ("forkwait-novpid", mmu_suite.NO_VPID),
    ]
    on, off = records
    assert on.delta.get("vm_transition_flushes", 0) == 0 < off.delta["vm_transition_flushes"]
    assert mmu_suite._vpid_records(_options(NATIVE)) == []


def test_io_passes_the_second_disk_through_where_an_iommu_is(monkeypatch):
    monkeypatch.setattr(io_suite, "DISK2_N", 2)
    records = io_suite._disk2_records(_options(NATIVE, "hardware-ept", "paravirt"))
    by = {(r.benchmark, r.vmm): r for r in records}
    assert set(by) == {
        ("disk2-sectors", NATIVE),
        ("disk2-sectors", "hardware-ept"),
        ("disk2-sectors-iommu", "hardware-ept"),
    }
    for r in records:
        _check_counts(r)
    emulated, passed = by[("disk2-sectors", "hardware-ept")], by[("disk2-sectors-iommu", "hardware-ept")]
    assert passed.machine == "vtx-2009+iommu"
    assert passed.delta["iommu_translations"] == io_suite.DISK2_SECTORS_PER_ITERATION * 2
    assert "iommu_translations" not in emulated.delta
    assert passed.delta["vm_exits"] < emulated.delta["vm_exits"]  # its ports reach the device
    assert any("left out: paravirt" in note for note in by[("disk2-sectors", NATIVE)].notes)


def test_io_diskio_runs_the_paravirtual_ring(monkeypatch):
    monkeypatch.setattr(io_suite, "DISKIO_N", 1)
    monkeypatch.setattr(io_suite, "DISK2_N", 1)
    records = io_suite.run_io(_options("paravirt"))
    assert [(r.benchmark, r.vmm) for r in records] == [("diskio", "paravirt")]
    (r,) = records
    _check_counts(r)
    assert any(k.startswith("vmm.hypercall") for k in r.delta), sorted(r.delta)
