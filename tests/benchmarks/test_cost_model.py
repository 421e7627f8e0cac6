"""The cost model (docs/benchmarks.md): exact sums on hand-made counters, sourced prices, no
benchmark-specific entries, unpriced counters reported, errors naming file and key, docs in step."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import cost_model
from benchmarks.cost_model import (
    CostModelError,
    available_profiles,
    benchmark_specific_keys,
    docs_tables,
    load_profile,
    price,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
PROFILES = ["core2-2008", "nehalem-2009", "p4-2006", "sandybridge-2011"]

GOOD = """\
name = "{name}"
[clock]
ghz = 2.0
source = "test clock"
[unit_costs.vm_entries]
cycles = 10
kind = "vm_transition"
source = "test"
[unit_costs."vm_exit_*"]
cycles = 3
kind = "vm_transition"
source = "test"
[unit_costs.callout_rdtsc]
cycles = 7
kind = "callout"
source = "test"
"""


def write(tmp_path: Path, text: str, name: str = "t") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace("{name}", name))
    return path


def test_the_four_profiles_exist_and_load():
    assert set(PROFILES) <= set(available_profiles())
    for name in PROFILES:
        assert load_profile(name).name == name


SOURCED_P4 = {
    "vm_entries": 2409,
    "vm_exit_*": 1931,
    "vmcs_reads": 178,
    "vmcs_writes": 171,
    "vmm.guest_instructions_translated": 2300,
    "walk_refs*": 11,
    "pwc_hits": 2,
    "ntlb_hits": 2,
    "system_cli": 60,
}


def test_p4_prices_are_the_papers():
    p4 = load_profile("p4-2006")
    assert p4.clock_ghz == 3.8
    sourced = {k: c.cycles for k, c in p4.unit_costs.items() if not c.source.startswith("fitted")}
    assert sourced == SOURCED_P4
    fitted = {k for k, c in p4.unit_costs.items() if c.source.startswith("fitted")}
    assert fitted == set(p4.fitted), "every declared fitted cost is priced by fitted/p4-2006.toml, and only those"
    assert p4.awaiting_fit == {}
    assert {k: c for k, (c, _) in p4.reference.items()} == {
        "rdtsc_trap": 2030,
        "rdtsc_callout": 1254,
        "rdtsc_in_tc": 216,
    }


def test_generation_profiles_override_the_transitions_only():
    p4 = load_profile("p4-2006")
    core2 = load_profile("core2-2008")
    assert core2.clock_ghz == 2.66 and core2.base == "p4-2006"
    own = {"vm_entries": 937, "vm_exit_*": 1186, "vmcs_reads": 52, "vmcs_writes": 44}
    assert {k: core2.unit_costs[k].cycles for k in own} == own
    for key, cost in p4.unit_costs.items():
        if key not in own:
            assert core2.unit_costs[key] == cost, key
    for name, trip in (("nehalem-2009", 1009), ("sandybridge-2011", 784)):
        p = load_profile(name)
        assert p.unit_costs["vm_exit_*"].cycles == trip and p.unit_costs["vm_entries"].cycles == 0
        assert p.unit_costs["instructions"] == p4.unit_costs["instructions"]
        # the VMCS accesses of the latest generation that measured them (Core 2), not the P4's
        assert p.base == "core2-2008"
        assert {k: p.unit_costs[k].cycles for k in ("vmcs_reads", "vmcs_writes")} == {"vmcs_reads": 52, "vmcs_writes": 44}


def test_exact_sum_on_hand_made_counters_p4():
    p4 = load_profile("p4-2006")
    fit = {k: p4.unit_costs[k].cycles for k in ("instructions", "hcalls", "vmm.guest_insns_emulated")}
    counters = {
        "vm_entries": 3,
        "vm_exit_exception": 2,
        "vmcs_reads": 10,
        "vmcs_writes": 4,
        "vmm.guest_instructions_translated": 12,
        "walk_refs": 8,
        "instructions": 100,
        "insn_guest_cpl0": 100,
        "hcalls": 5,
        "vmm.guest_insns_emulated": 5,
        "ticks": 100,
        "vmm.callouts": 5,
    }
    out = price(counters, "p4-2006")
    sourced = 3 * 2409 + 2 * 1931 + 10 * 178 + 4 * 171 + 12 * 2300 + 8 * 11
    fitted = 100 * fit["instructions"] + 5 * fit["hcalls"] + 5 * fit["vmm.guest_insns_emulated"]
    assert out.cycles == pytest.approx(sourced + fitted)
    assert out.by_counter["vmcs_reads"] == 1780
    assert out.by_kind["vm_transition"] == 3 * 2409 + 2 * 1931
    assert out.by_kind["vmcs_access"] == 10 * 178 + 4 * 171
    assert out.by_kind["translation"] == 12 * 2300
    assert out.vmm_reported == pytest.approx(12 * 2300 + 5 * fit["vmm.guest_insns_emulated"])
    assert out.seconds == pytest.approx(out.cycles / 3.8e9)
    assert out.unpriced == {}
    assert out.included == {"ticks": 100, "vmm.callouts": 5}


def test_round_trip_profiles_price_each_exit_once_with_its_entry():
    counters = {"vm_entries": 5, "vm_exit_io_instruction": 3, "vm_exit_cr_access": 2, "vm_exits": 5}
    assert price(counters, "nehalem-2009").cycles == 5 * 1009
    assert price(counters, "sandybridge-2011").cycles == 5 * 784
    assert price(counters, "sandybridge-2011").unpriced == {}


def test_core_exit_numbers_are_priced_as_reason_names():
    # reason 0 is EXCEPTION (docs/vmx.md V.4)
    assert price({"vm_exit_0": 2}, "p4-2006").by_counter == {"vm_exit_exception": 2 * 1931}
    with pytest.raises(CostModelError, match=r"vm_exit_0.*vm_exit_exception"):
        price({"vm_exit_0": 1, "vm_exit_exception": 1}, "p4-2006")


def test_unpriced_counters_are_reported_not_zero(tmp_path):
    p = load_profile(write(tmp_path, GOOD.replace('"vm_exit_*"', "vm_exit_exception")))
    counters = {"vm_entries": 1, "vm_exit_io_instruction": 4, "vm_exit_exception": 1, "vm_exits": 5, "walk_refs": 9}
    out = price(counters, p)
    assert out.cycles == 10 + 3
    assert out.unpriced == {"vm_exit_io_instruction": 4, "walk_refs": 9}
    assert not out.complete
    assert "vm_exits" not in out.unpriced  # its parts are the accounting unit
    out = price({"walk_refs": 0, "instructions": 3, "insn_guest_cpl0": 3}, p)
    assert out.unpriced == {"walk_refs": 0, "instructions": 3, "insn_guest_cpl0": 3}
    assert out.unpriced_nonzero == {"instructions": 3, "insn_guest_cpl0": 3}
    assert out.cycles == 0


def test_included_counters_are_neither_priced_nor_unpriced(tmp_path):
    text = GOOD + '[included]\nticks = "the clock"\n"vmm.*" = "the VMM\'s word"\n'
    p = load_profile(write(tmp_path, text))
    out = price({"ticks": 50, "vmm.callouts": 3, "vm_entries": 2, "itlb_hits": 4}, p)
    assert out.cycles == 20
    assert out.included == {"ticks": 50, "vmm.callouts": 3}
    assert out.unpriced == {"itlb_hits": 4}
    assert p.inclusion("vmm.anything") == "the VMM's word"


def test_vmm_reported_cycles_are_apart(tmp_path):
    text = GOOD + '[unit_costs."vmm.guest_insns_emulated"]\ncycles = 5\nkind = "emulation"\nsource = "t"\n'
    out = price({"vm_entries": 1, "vmm.guest_insns_emulated": 4}, load_profile(write(tmp_path, text)))
    assert out.cycles == 30 and out.vmm_reported == 20


def test_fitted_costs_come_from_the_generated_file(tmp_path):
    text = GOOD + '[fitted.hcalls]\nkind = "callout"\nfitted_on = "in BT"\n'
    path = write(tmp_path, text)
    before = load_profile(path)
    assert before.awaiting_fit == {"hcalls": "in BT"} and "hcalls" not in before.unit_costs
    assert price({"hcalls": 2}, before).unpriced == {"hcalls": 2}
    (tmp_path / "fitted").mkdir()
    fit = tmp_path / "fitted" / "t.toml"
    fit.write_text('[unit_costs.hcalls]\ncycles = 7\nkind = "callout"\nsource = "fitted"\n')
    after = load_profile(path)
    assert after.awaiting_fit == {} and after.unit_costs["hcalls"].cycles == 7
    assert "hcalls" not in load_profile(path, with_fit=False).unit_costs
    fit.write_text('[unit_costs.port_reads]\ncycles = 7\nkind = "io"\nsource = "fitted"\n')
    with pytest.raises(CostModelError, match=r"fitted.*port_reads.*not declared"):
        load_profile(path)
    fit.write_text('[unit_costs.hcalls]\ncycles = 7\nkind = "trap"\nsource = "fitted"\n')
    with pytest.raises(CostModelError, match="declared 'callout'"):
        load_profile(path)


def test_a_base_profile_is_inherited_and_cycles_are_refused(tmp_path):
    write(tmp_path, GOOD, name="base")
    head = GOOD.split("[unit_costs.vm_entries]")[0].replace('name = "{name}"', 'name = "{name}"\nbase = "base"')
    child = head + '[unit_costs.vm_entries]\ncycles = 1\nkind = "vm_transition"\nsource = "c"\n'
    p = load_profile(write(tmp_path, child, name="child"))
    assert p.unit_costs["vm_entries"].cycles == 1 and p.unit_costs["callout_rdtsc"].cycles == 7
    loop = GOOD.replace('name = "{name}"', 'name = "{name}"\nbase = "{name}"')
    with pytest.raises(CostModelError, match="cycle"):
        load_profile(write(tmp_path, loop, name="loop"))


def test_in_tc_ticks_are_not_runs(tmp_path):
    text = GOOD + '[unit_costs.in_tc_rdtsc]\ncycles = 216\nkind = "in_tc"\nsource = "t"\n'
    out = price({"in_tc_rdtsc": 2, "in_tc_rdtsc_ticks": 6, "in_tc_sequences": 2}, load_profile(write(tmp_path, text)))
    assert out.cycles == 2 * 216
    assert out.unpriced == {"in_tc_rdtsc_ticks": 6}


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True, None])
def test_bad_counts_name_the_counter(bad):
    with pytest.raises(CostModelError, match="counter 'vm_entries'"):
        price({"vm_entries": bad}, "p4-2006")


def test_every_unit_cost_has_a_source():
    for name in available_profiles():
        p = load_profile(name)
        assert p.clock_source.strip(), name
        for key, cost in p.unit_costs.items():
            assert cost.source.strip(), f"{name}: {key} has no source"
            assert any(y in cost.source for y in ("2006", "2008", "2012")), f"{name}: {key} cites no paper"


def test_no_profile_has_a_benchmark_specific_entry():
    for name in available_profiles():
        assert benchmark_specific_keys(load_profile(name)) == [], name


def test_the_benchmark_rule_catches_workload_and_fudge_keys(tmp_path):
    extra = '[unit_costs.{key}]\ncycles = 1\nkind = "trap"\nsource = "x"\n'
    for key in ("forkwait_exit", "compile_overhead", "syscall_nanobench", "trap_scale_factor", "ptemod"):
        p = load_profile(write(tmp_path, GOOD + extra.format(key=key), name=key))
        assert benchmark_specific_keys(p) == [key]
    ok = load_profile(write(tmp_path, GOOD + extra.format(key="insn_class_syscall"), name="ok"))
    assert benchmark_specific_keys(ok) == []


def test_the_sourced_and_fitted_sets_are_disjoint():
    for name in available_profiles():
        p = load_profile(name, with_fit=False)
        assert not set(p.unit_costs) & set(p.fitted), name
        assert not set(p.included) & set(p.fitted), name


def test_unknown_profile_is_named():
    with pytest.raises(CostModelError, match=r"unknown cost profile 'pentium-9'.*p4-2006"):
        load_profile("pentium-9")


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda t: t.replace('source = "test"\n', "", 1), "missing key 'source'"),
        (lambda t: t.replace("cycles = 10", "cycles = -10"), "'cycles' must be finite and >= 0"),
        (lambda t: t.replace("cycles = 10", 'cycles = "ten"'), "'cycles' must be"),
        (lambda t: t.replace('kind = "callout"', 'kind = "magic"'), "'kind' is 'magic'"),
        (lambda t: t.replace('source = "test"\n[unit_costs."vm', 'source = " "\n[unit_costs."vm'), "'source' is empty"),
        (lambda t: t + "fudge = 2\n", "unknown key 'fudge'"),
        (lambda t: t.replace("ghz = 2.0", "ghz = 0"), "'ghz' must be positive"),
        (lambda t: t.replace('name = "{name}"', 'name = "other"'), "key 'name' is 'other'"),
        (lambda t: t + '[unit_costs.vm_exits]\ncycles = 1\nkind = "trap"\nsource = "x"\n', "events counted twice"),
        (lambda t: t + "[unit_costs.x]\ncycles = 1\nrate = 2\n", "unknown key 'rate'"),
        (lambda t: t + "[unit_costs", "Expected"),
    ],
)
def test_malformed_profile_errors_name_file_and_key(tmp_path, edit, key):
    path = write(tmp_path, edit(GOOD))
    with pytest.raises(CostModelError) as info:
        load_profile(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message


def test_the_unit_cost_key_is_in_the_message(tmp_path):
    path = write(tmp_path, GOOD.replace("cycles = 7", "cycles = -7"))
    with pytest.raises(CostModelError, match=r"\[unit_costs.callout_rdtsc\]"):
        load_profile(path)


def test_two_matching_patterns_are_ambiguous(tmp_path):
    extra = '[unit_costs."vm_exit_io*"]\ncycles = 1\nkind = "trap"\nsource = "x"\n'
    p = load_profile(write(tmp_path, GOOD + extra))
    assert price({"vm_exit_hlt": 1}, p).cycles == 3
    with pytest.raises(CostModelError, match="matches patterns"):
        price({"vm_exit_io_instruction": 1}, p)


def test_the_docs_tables_match_the_profiles():
    text = DOCS.read_text()
    assert docs_tables() in text, "docs/benchmarks.md is stale: run python -m benchmarks.cost_model docs/benchmarks.md"
    for key, cost in load_profile("p4-2006").unit_costs.items():
        assert f"| `{key}` | {cost.cycles:g}" in text


def test_the_model_never_reads_wall_clock():
    # a results file's wall-clock fields are counters like any other: unpriced, never cycles
    out = price({"vm_entries": 1, "wall_seconds": 7}, "p4-2006")
    assert out.cycles == 2409  # an entry alone
    assert out.unpriced == {"wall_seconds": 7}
    assert "time" not in cost_model.price.__code__.co_names
