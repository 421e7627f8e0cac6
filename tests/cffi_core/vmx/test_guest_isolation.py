"""Two guests interleaved on one machine run exactly as each runs alone (tagged TLB and nested tables isolate them)."""

# docs/vmx.md V.6, V.7: each guest has its own nested tables (its memory relocated in host RAM)
# and its own VPID, or none (then every entry and exit flushes the TLB).  Each example draws two
# random machines (the differential tests' strategy) and runs each alone, one tick per vmrun, on
# a machine of its own; then both on one machine, interleaved in random slices, for the same
# number of ticks each.  Each guest's exits, VMCS state, registers and memory must be those of its
# run alone, and the shared machine's counters the sum of the two.  The host virtualizes time as
# a VMM would: TSC_OFFSET hides the other guest's ticks (V.3), and TSC writes exit (MSR bitmap),
# since a guest writing MSR_TSC moves the machine's TSC.  A guest's run ends before it loads other
# translation structures (changed entries without invalidation are undefined, manual §8.1), at
# a VM exit, a halt or a shutdown.

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import event, given
from hypothesis import strategies as st

from cffi_core.exits import ExitReason
from cffi_core.machine import Machine, TLBConfig
from cffi_core.pagetables import EPT_W, EPT_X, PageAllocator, PageTables, ept_pointer
from cffi_core.vmx import ProcControl, Vmcs, VmcsField
from tests.cffi_core.random_machines import (
    MEMORY,
    STEPS,
    U64,
    Scenario,
    initial_memory,
    initial_state,
    load_guest_state,
    scenarios,
)

G = VmcsField
BASES = (0, MEMORY)  # host-physical address of each guest's guest-physical 0
TABLES = (2 * MEMORY, 2 * MEMORY + 0x8000)  # each guest's nested tables, 32 KiB
MSR_BITMAP = 2 * MEMORY + 0x10000  # V.3: MSR_TSC writes exit, nothing else
RAM = 2 * MEMORY + 0x20000
MSR_TSC = 0x10
TLB = TLBConfig(16, 4, 8, 2)
GUEST_FIELDS = tuple(f for f in VmcsField if f.name.startswith("GUEST_"))


@dataclass
class Pair:
    profile: str
    scenarios: tuple[Scenario, Scenario]
    nested_levels: tuple[int, int]
    vpids: tuple[int, int]  # 0: without ENABLE_VPID
    slices: list[int]


@st.composite
def pairs(draw: st.DrawFn) -> Pair:
    profile = draw(st.sampled_from(["vtx-2009", "vtx-2006+ept"]))
    two = tuple(draw(scenarios(profiles=[profile])) for _ in range(2))
    vpids = (0, 0)
    if profile == "vtx-2009":  # V.7: distinct tags, or flushes at every entry and exit
        vpids = draw(st.sampled_from([(0, 0), (1, 2), (0xFFFF, 1), (7, 0)]))
    return Pair(
        profile, two, (draw(st.integers(2, 4)), draw(st.integers(2, 4))), vpids,
        draw(st.lists(st.one_of(st.integers(1, 4), st.integers(1, 300)), min_size=1, max_size=8)),
    )  # fmt: skip


def _ram(p: Pair) -> tuple[bytes, list[int], list[dict[str, object]]]:
    """Both guests' memories at their bases, their nested tables, the MSR bitmap."""
    ram = bytearray(RAM)

    def write(addr: int, value: int) -> None:
        ram[addr : addr + 8] = value.to_bytes(8, "little")

    eptps, inits = [], []
    for i, s in enumerate(p.scenarios):
        mem, cr3 = initial_memory(s)
        ram[BASES[i] : BASES[i] + MEMORY] = mem
        inits.append(initial_state(s, cr3))
        nested = PageTables(write, PageAllocator(TABLES[i], TABLES[i] + 0x8000), levels=p.nested_levels[i])
        nested.map(0, BASES[i], MEMORY, flags=EPT_W | EPT_X)
        eptps.append(ept_pointer(nested.root, p.nested_levels[i]))
    ram[MSR_BITMAP + 2048 + MSR_TSC // 8] |= 1 << MSR_TSC % 8
    return bytes(ram), eptps, inits


def _vmcs(m: Machine, init: dict[str, object], eptp: int, vpid: int) -> Vmcs:
    v = m.vmcs()
    load_guest_state(v, init)
    controls = ProcControl.USE_MSR_BITMAPS | ProcControl.ENABLE_EPT | ProcControl.USE_TSC_OFFSET
    v[G.MSR_BITMAP], v[G.EPT_POINTER] = MSR_BITMAP, eptp
    if vpid:
        controls |= ProcControl.ENABLE_VPID
        v[G.VPID] = vpid
    v[G.PROC_CONTROLS] = controls
    return v


def _in_value(port: int) -> int:
    return (port * 0x9E3779B97F4A7C15) & U64


def _own_tables(v: Vmcs, s: Scenario, init: dict[str, object]) -> bool:
    """Does the guest's paging use the scenario's own tables, which no program writes (§8.1)?"""
    cr0, cr3, cr4 = v[G.GUEST_CR0], v[G.GUEST_CR3], v[G.GUEST_CR4]
    return not cr0 >> 15 & 1 or (s.paging != 0 and cr3 == init["cr3"] and (cr4 & 3) == s.paging - 2)


def _after_exit(ex, v: Vmcs, exits: list[tuple]) -> bool:
    """Record a non-budget exit and answer an `in`; True when the guest's run is over."""
    if ex.reason is ExitReason.BUDGET:
        return False
    exits.append(tuple(ex))
    if ex.reason is ExitReason.IO_IN and ex.reg:
        v.regs[ex.reg] = _in_value(ex.port)
    return ex.reason not in (ExitReason.IO_IN, ExitReason.IO_OUT)


def _alone(p: Pair, ram: bytes, eptps: list[int], inits: list[dict[str, object]], i: int) -> tuple:
    """Guest i alone, one tick per vmrun: its ticks, exits, state and memory."""
    m = Machine(p.profile, memory=RAM, tlb=TLB)
    m.write(0, ram)
    v = _vmcs(m, inits[i], eptps[i], p.vpids[i])
    exits: list[tuple] = []
    for _ in range(STEPS):
        if not _own_tables(v, p.scenarios[i], inits[i]):
            event("a guest loaded other translation structures")
            break
        if _after_exit(m.vmrun(v, 1), v, exits):
            break
    return m.clock, exits, _state(v), m.read(BASES[i], MEMORY), m.counters


def _state(v: Vmcs) -> tuple:
    return tuple(v[f] for f in GUEST_FIELDS), list(v.regs)


@given(pairs())
def test_two_guests_interleaved_run_as_each_alone(p: Pair):
    ram, eptps, inits = _ram(p)
    alone = [_alone(p, ram, eptps, inits, i) for i in range(2)]
    m = Machine(p.profile, memory=RAM, tlb=TLB)
    m.write(0, ram)
    vs = [_vmcs(m, inits[i], eptps[i], p.vpids[i]) for i in range(2)]
    done, over, exits = [0, 0], [alone[0][0] == 0, alone[1][0] == 0], [[], []]
    turn = 0
    while not all(over):
        for k, budget in enumerate(p.slices):
            i = (turn + k) % 2
            if over[i]:
                continue
            budget = min(budget, alone[i][0] - done[i])
            # V.3: the guest's TSC counts its own ticks only: the host hides the other's
            vs[i][G.TSC_OFFSET] = (done[i] - m.clock) & U64
            clock = m.clock
            ex = m.vmrun(vs[i], budget)
            done[i] += m.clock - clock
            ended = _after_exit(ex, vs[i], exits[i])
            # a run may end in exits that take no tick (a pending #DB's delivery, §6.5 step 2)
            all_done = done[i] >= alone[i][0] and (budget == 0 or len(exits[i]) >= len(alone[i][1]))
            over[i] = ended or all_done
        turn += 1
    event(f"vpids {p.vpids}")
    event(f"ticks: {'<10' if min(done) < 10 else '10+'} for the shorter guest")
    for i in range(2):
        ticks, alone_exits, state, memory, _ = alone[i]
        assert done[i] == ticks, f"guest {i}"
        assert exits[i] == alone_exits, f"guest {i}"
        assert _state(vs[i])[1] == state[1], f"guest {i}: registers"
        fields = dict(zip(GUEST_FIELDS, _state(vs[i])[0], strict=True))
        assert fields == dict(zip(GUEST_FIELDS, state[0], strict=True)), f"guest {i}"
        assert m.read(BASES[i], MEMORY) == memory, f"guest {i}: memory"
    counters = m.counters
    for name in ("insn_guest_cpl0", "insn_guest_cpl1", "insn_guest_cpl2", "insn_guest_cpl3", "double_faults",
                 "triple_faults", "port_reads", "port_writes"):  # fmt: skip
        assert counters[name] == alone[0][4][name] + alone[1][4][name], name
