"""Guest mode against native runs, tick by tick: same program, same architectural result when no control exits."""

# Issue 3: "a guest-mode run and the native run of the same program give the same architectural
# result when no control causes an exit".  Each example draws a random machine (the strategy the
# core-vs-spec differential test uses), runs it natively with Machine.run on one machine and in
# guest mode with Machine.vmrun on another (the same state in the VMCS, docs/vmx.md V.1, V.2),
# both with a budget of one tick, and compares the architectural state after every tick, then
# memory and the counters; then, when the host did nothing between ticks, the same ticks again in
# runs as long as possible.  Guest memory is [0, MEMORY); above it, host RAM holds the nested
# tables (V.6: identity, or guest memory relocated above host RAM) and all-zero MSR and I/O
# bitmaps (V.3: without MSR bitmaps every MSR access would exit).  Controls that exit only on a
# change are drawn too (CR0/CR4 masks with matching read shadows, the TPR shadow with threshold
# 0, #PF selected with a mask/match that never matches, a TSC offset), and the host may edit the
# guest's page tables between ticks, dropping their translations (a TLB flush natively, invvpid
# in guest mode).  A second test fills the nested tables on demand (below).
#
# What differs by definition is not compared: host gates are a reserved gate type in guest mode
# (V.2), so the scenario's gates are interrupt or trap gates, and a run stops comparing when the
# program writes a host gate into its IDT; `hcall`, `ldgs`, `sdgs` and `jgs` are #UD in guest
# mode (V.2: the host's instructions), so a run stops before one executes; `vmcall` and MSRs
# above 16383 always exit (V.2, V.3) and guest-physical addresses beyond guest memory are EPT
# violations (V.6), so a run stops at the first VM exit.
# A program that loads other translation structures (CR3, CR4.PL, CR0.PG) may use entries it
# changed without invalidation, which is undefined (manual §8.1) and differs with the TLB flushes
# of VM entries (V.7): the comparison stops there too.  hypothesis `event` counts every stop.

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from hypothesis import event, given
from hypothesis import strategies as st

from cffi_core.exits import ExitReason
from cffi_core.isa.encoding import decode
from cffi_core.machine import Exit, Machine, TLBConfig
from cffi_core.pagetables import EPT_W, EPT_X, PageAllocator, PageTables, ept_pointer
from cffi_core.profiles import get_profile
from cffi_core.vmx import ProcControl, Vmcs, VmcsField, VmExitReason
from tests.cffi_core.random_machines import (
    DATA_END,
    MEMORY,
    STEPS,
    TABLES,
    U64,
    Scenario,
    initial_memory,
    initial_state,
    load_cpu,
    load_guest_state,
    scenarios,
)

PROFILES = ("vtx-2009", "vtx-2006+ept", "vtx-2006")
HOST_MEMORY = MEMORY + 0x10000
NESTED_TABLES = (MEMORY, MEMORY + 0x8000)  # V.6: host-only pages, outside guest memory
MSR_BITMAP = MEMORY + 0x8000  # V.3: all zero, so no MSR below 16384 exits
IO_BITMAP = MEMORY + 0xA000  # V.3: 8 KiB, all zero, so no port exits
TLB = TLBConfig(16, 4, 8, 2)
GATE_TYPE = 0b110  # architecture.md §6.2: bits 2:1 of a gate's attributes
HOST_GATE = 2 << 1
# V.3: instructions that exit before they execute ("nothing of it has happened").
INSTRUCTION_EXITS = (VmExitReason.VMCALL, VmExitReason.RDMSR, VmExitReason.WRMSR, VmExitReason.CR_ACCESS)
WAKE_VECTOR = 0xE0  # presented once to a halted CPU (architecture.md §6.5), to both machines
G = VmcsField
STATE_FIELDS = (
    "pc", "flags", "cpl", "cr0", "cr2", "cr3", "cr4", "cr8", "idtr", "seglimit", "tsc_offset",
    "halted", "int_shadow", "intr_vector", "intr_acked", "shutdown", "pending_db",
)  # fmt: skip
# V.2: what only the host has — callouts and the host segment — is #UD in guest mode.
HOST_ONLY = frozenset({"hcall", "ldgs", "sdgs", "jgs"})
SAME_COUNTERS = ("double_faults", "triple_faults", "port_reads", "port_writes", "halted_ticks")


@dataclass
class Setup:
    """A scenario and the guest-mode controls it runs under, none of which exits by itself."""

    scenario: Scenario
    ept: bool
    nested_levels: int
    vpid: int  # 0: without ENABLE_VPID
    tsc_offset: int | None  # V.3: USE_TSC_OFFSET with this offset (native: the same TSC offset)
    cr0_mask: int  # V.3: owned CR0/CR4 bits, read shadows equal to the real registers: an
    cr4_mask: int  # mtcr that would change an owned bit exits, and the run stops there
    tpr_shadow: bool  # V.3: VIRTUAL_TPR holds CR8, TPR_THRESHOLD 0 (never exits)
    io_bitmaps: bool  # V.3: an all-zero I/O bitmap: every port passes through
    pf_never: bool  # V.4: #PF selected with a mask/match that never matches: no #PF exits
    relocated: bool = False  # V.6: with ept, guest-physical 0 at host-physical HOST_MEMORY
    # step -> (page, level, bit): the host flips P, W, U or NX in one entry of the guest's walk
    # of that page, then drops the cached translations: natively a TLB flush, in guest mode
    # invvpid (V.7; without vpid the next entry flushes everything)
    edits: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    @property
    def base(self) -> int:
        """Host-physical address of guest-physical 0."""
        return HOST_MEMORY if self.relocated else 0


def _non_host(attr: int, kind: int) -> int:
    """A host gate made an interrupt (kind 0) or trap (kind 1) gate: V.2 reserves host gates."""
    return attr & ~GATE_TYPE | kind << 1 if attr & GATE_TYPE == HOST_GATE else attr


@st.composite
def setups(draw: st.DrawFn, ept_only: bool = False) -> Setup:
    s = draw(scenarios(profiles=PROFILES[:2] if ept_only else PROFILES))
    kinds = draw(st.lists(st.integers(0, 1), min_size=len(s.gates), max_size=len(s.gates)))
    s = replace(s, gates=[(slot, _non_host(attr, k)) for (slot, attr), k in zip(s.gates, kinds, strict=True)])
    features = get_profile(s.profile).features
    ept = "ept" in features and (ept_only or draw(st.booleans()))
    vpid = draw(st.integers(1, 0xFFFF)) if "vpid" in features and draw(st.booleans()) else 0
    return Setup(
        s, ept, draw(st.integers(2, 4)), vpid,
        tsc_offset=draw(st.one_of(st.none(), st.integers(0, U64))),
        cr0_mask=draw(st.one_of(st.just(0), st.integers(0, 0xFFFF))),
        cr4_mask=draw(st.one_of(st.just(0), st.integers(0, 0xFF))),
        tpr_shadow="tpr_shadow" in features and draw(st.booleans()),
        io_bitmaps=draw(st.booleans()),
        pf_never=draw(st.booleans()),
        relocated=ept and draw(st.booleans()),
        edits=draw(st.dictionaries(st.integers(0, STEPS), st.tuples(
            st.integers(0, DATA_END // 4096 - 1), st.integers(0, 3), st.sampled_from([0, 1, 2, 63])), max_size=4)),
    )  # fmt: skip


def _host_memory(setup: Setup) -> tuple[bytearray, int, int]:
    """RAM of both machines: the scenario's guest memory, then the nested tables mapping it
    (relocated, the guest machine has a copy of guest memory above, where they map it)."""
    mem, cr3 = initial_memory(setup.scenario)
    mem += bytes(HOST_MEMORY - MEMORY)
    eptp = 0
    if setup.ept:

        def write(addr: int, value: int) -> None:
            mem[addr : addr + 8] = value.to_bytes(8, "little")

        nested = PageTables(write, PageAllocator(*NESTED_TABLES), levels=setup.nested_levels)
        nested.map(0, setup.base, MEMORY, flags=EPT_W | EPT_X)  # V.6: read/write/execute
        eptp = ept_pointer(nested.root, setup.nested_levels)
    return mem, cr3, eptp


def _native(setup: Setup, mem: bytes, init: dict[str, object]) -> Machine:
    m = Machine(setup.scenario.profile, memory=HOST_MEMORY, tlb=TLB)
    m.write(0, bytes(mem))
    load_cpu(m.cpu, init)
    m.cpu.tsc_offset = setup.tsc_offset or 0
    return m


def _guest(setup: Setup, mem: bytes, init: dict[str, object], eptp: int) -> tuple[Machine, Vmcs]:
    m = Machine(setup.scenario.profile, memory=setup.base + HOST_MEMORY, tlb=TLB)
    m.write(0, bytes(mem))
    m.write(setup.base, bytes(mem[:MEMORY]))
    v = m.vmcs()
    load_guest_state(v, init)
    # V.2: no exiting control; MSR bitmaps so that MSR accesses do not exit
    controls = ProcControl.USE_MSR_BITMAPS
    v[G.MSR_BITMAP] = MSR_BITMAP
    if setup.ept:
        controls |= ProcControl.ENABLE_EPT
        v[G.EPT_POINTER] = eptp
    if setup.vpid:
        controls |= ProcControl.ENABLE_VPID
        v[G.VPID] = setup.vpid
    if setup.tsc_offset is not None:
        controls |= ProcControl.USE_TSC_OFFSET
        v[G.TSC_OFFSET] = setup.tsc_offset
    v[G.CR0_GUEST_HOST_MASK], v[G.CR0_READ_SHADOW] = setup.cr0_mask, init["cr0"]
    v[G.CR4_GUEST_HOST_MASK], v[G.CR4_READ_SHADOW] = setup.cr4_mask, init["cr4"]
    if setup.tpr_shadow:
        controls |= ProcControl.USE_TPR_SHADOW
        v[G.VIRTUAL_TPR], v[G.TPR_THRESHOLD] = init["cr8"], 0
    if setup.io_bitmaps:
        controls |= ProcControl.USE_IO_BITMAPS
        v[G.IO_BITMAP] = IO_BITMAP
    if setup.pf_never:
        v[G.EXCEPTION_BITMAP], v[G.PF_ERROR_CODE_MASK], v[G.PF_ERROR_CODE_MATCH] = 1 << 14, 0, 1
    v[G.PROC_CONTROLS] = controls
    return m, v


def _native_state(m: Machine) -> dict[str, object]:
    s = m.cpu.state()
    out = {f: s[f] for f in (*STATE_FIELDS, "r", "rsp")} | {"clock": m.clock}
    if out["shutdown"]:  # V.2: one activity state, and shutdown is the one a shut-down CPU has
        out["halted"] = 0
    return out


def _guest_state(m: Machine, v: Vmcs, setup: Setup) -> dict[str, object]:
    """The guest's architectural state: the VMCS (V.2, each read counted), its registers, and
    what guest mode shares with the machine: the interrupt line, the clock and the TSC (V.3:
    the guest's TSC offset is the machine's plus TSC_OFFSET; its CR8 is VIRTUAL_TPR with the
    TPR shadow)."""
    activity = v[G.GUEST_ACTIVITY]
    cr8 = v[G.VIRTUAL_TPR] if setup.tpr_shadow else v[G.GUEST_CR8]
    tsc_offset = m.cpu.tsc_offset + (setup.tsc_offset or 0) & U64
    return {
        "pc": v[G.GUEST_PC], "flags": v[G.GUEST_FLAGS], "cpl": v[G.GUEST_CPL], "cr0": v[G.GUEST_CR0],
        "cr2": v[G.GUEST_CR2], "cr3": v[G.GUEST_CR3], "cr4": v[G.GUEST_CR4], "cr8": cr8,
        "idtr": v[G.GUEST_IDTR], "seglimit": v[G.GUEST_SEGLIMIT], "tsc_offset": tsc_offset,
        "halted": int(activity == 1), "int_shadow": v[G.GUEST_INTERRUPTIBILITY],
        "intr_vector": m.cpu.intr_vector, "intr_acked": m.cpu.intr_acked, "shutdown": int(activity == 2),
        "pending_db": v[G.GUEST_PENDING_DB], "r": list(v.regs),
        "rsp": [v[G.GUEST_RSP0], v[G.GUEST_RSP1], v[G.GUEST_RSP2]], "clock": m.clock,
    }  # fmt: skip


def _host_state(m: Machine) -> dict[str, object]:
    """The machine's own state, which guest mode saves and restores (V.1)."""
    s = m.cpu.state()
    return {k: x for k, x in s.items() if k not in ("tsc_offset", "intr_vector", "intr_acked")}


def _exit_tuple(ex: Exit) -> tuple:
    if ex.reason in (ExitReason.IO_IN, ExitReason.IO_OUT):
        return (ex.reason, ex.port, ex.value if ex.reason is ExitReason.IO_OUT else 0, ex.reg)
    if ex.reason is ExitReason.HOST_GATE:
        return (ex.reason, ex.vector, int(ex.kind), ex.error_code, ex.address)
    if ex.reason is ExitReason.VM:
        return (ex.reason, int(ex.number))
    return (ex.reason,)


def _memory(m: Machine, setup: Setup | None = None) -> tuple[bytes, bytes]:
    """Guest memory and the host-only memory above it (V.6: relocated, guest memory is at
    ``setup.base``)."""
    base = setup.base if setup else 0
    return m.read(base, MEMORY), m.read(MEMORY, HOST_MEMORY - MEMORY)


def _edit_guest_tables(native: Machine, gm: Machine, setup: Setup, page: int, level: int, bit: int) -> None:
    """The host flips a bit of an entry the walk of ``page`` reads (§7.2), in both machines, and
    drops the translations that may cache it (§8.1: then the change is defined)."""
    entries = native.walk(page << 12).entries
    if not entries:
        return
    addr, value = entries[level % len(entries)]
    native.write_u64(addr, value ^ 1 << bit)
    gm.write_u64(setup.base + addr, value ^ 1 << bit)
    native.tlb_flush()
    if setup.vpid:
        gm.invvpid(setup.vpid)  # V.7: every entry of the guest's tag, its walk caches too
    event("the host edited the guest's page tables")


def _in_value(port: int) -> int:
    """What the host answers to an `in` (the same natively and in guest mode)."""
    return (port * 0x9E3779B97F4A7C15) & U64


def _as_native(ex: Exit) -> Exit:
    """A triple fault's VM exit is the native shutdown (V.4)."""
    if ex.reason is ExitReason.VM and ex.number == VmExitReason.TRIPLE_FAULT:
        return Exit(ExitReason.SHUTDOWN)
    return ex


def _run_whole(run: Callable[[int], Exit], clock: Callable[[], int], fill: Callable[[int, int], None],
               ticks: int) -> list[tuple]:  # fmt: skip
    """Run ``ticks`` ticks in as few runs as the exits allow; the exits seen (a triple fault's
    VM exit is the native shutdown, V.4)."""
    exits: list[tuple] = []
    while clock() < ticks:
        ex = _as_native(run(ticks - clock()))
        exits.append(_exit_tuple(ex))
        if ex.reason is ExitReason.IO_IN and ex.reg:
            fill(ex.reg, _in_value(ex.port))
        elif ex.reason in (ExitReason.HLT, ExitReason.SHUTDOWN, ExitReason.VM):
            break
    return exits


def _u64(m: Machine, addr: int) -> int | None:
    return m.read_u64(addr) if addr % 8 == 0 and addr + 8 <= HOST_MEMORY else None


def _is_host_only(m: Machine, pc: int | None) -> bool:
    """Is the word at pc one of `HOST_ONLY`?  Every mapping is the identity, so pc is also
    physical."""
    if pc is None or pc % 4 or pc + 4 > HOST_MEMORY:
        return False
    d = decode(int.from_bytes(m.read(pc, 4), "little"))
    return d is not None and d.insn.mnemonic in HOST_ONLY


def _may_run_host_only(m: Machine) -> bool:
    """Could the next tick execute one of `HOST_ONLY`?  The word at pc; with a single-step trap
    pending, the words at the #DB and #DF handlers too, since that delivery takes no tick (§6.5)."""
    c = m.cpu
    if _is_host_only(m, c.pc):
        return True
    return bool(c.pending_db) and any(_is_host_only(m, _u64(m, (c.idtr + 16 * v) & U64)) for v in (1, 8))


def _has_host_gate(m: Machine) -> bool:
    """Does the IDT hold a present host gate (the program wrote one)?"""
    idtr = m.cpu.idtr
    if idtr % 8 or idtr >= HOST_MEMORY:
        return False
    table = memoryview(m.read(idtr, min(4096, HOST_MEMORY - idtr))).cast("Q")
    return any(attr & (1 | GATE_TYPE) == 1 | HOST_GATE for attr in table[1::2])


def _own_tables(m: Machine, s: Scenario, cr3: int) -> bool:
    """Does paging use the scenario's tables, which no program can write (§8.1)?"""
    c = m.cpu
    return not c.cr0 >> 15 & 1 or (s.paging != 0 and c.cr3 == cr3 and (c.cr4 & 3) == s.paging - 2)


def _beyond_comparison(m: Machine, s: Scenario, cr3: int) -> str:
    """Why the native run can go no further as a comparison, or "" while it can."""
    if _may_run_host_only(m):
        return "host instruction next"
    if _has_host_gate(m):
        return "host gate written"
    if not _own_tables(m, s, cr3):
        return "translation structures changed"
    return ""


def _compare_counters(native: Machine, guest: Machine, *, ticks: bool = True) -> None:
    n, g = native.counters, guest.counters
    for cpl in range(4):
        # V.1, V.11: guest-mode instructions count in insn[guest][cpl]; the host ran none
        assert g[f"insn_guest_cpl{cpl}"] == n[f"insn_host_cpl{cpl}"], f"insn at CPL {cpl}"
        assert g[f"insn_host_cpl{cpl}"] == 0 and n[f"insn_guest_cpl{cpl}"] == 0
    assert g.exceptions == n.exceptions
    assert g.interrupts == n.interrupts
    for name in SAME_COUNTERS:
        assert g[name] == n[name], name
    if ticks:
        assert g["ticks"] == n["ticks"]


@given(setups())
def test_guest_mode_and_native_runs_agree_tick_by_tick(setup: Setup):
    s = setup.scenario
    mem, cr3, eptp = _host_memory(setup)
    init = initial_state(s, cr3)
    native = _native(setup, mem, init)
    gm, v = _guest(setup, mem, init, eptp)
    host = _host_state(gm)
    assert _guest_state(gm, v, setup) == _native_state(native)

    stop, synchronized, woken, presented = "", True, False, False
    for step in range(STEPS):
        vector = s.interrupts.get(step)
        if vector is not None and native.cpu.intr_vector < 0:
            native.cpu.intr_vector = gm.cpu.intr_vector = vector  # V.3: guest mode shares the line
            presented = True
        stop = _beyond_comparison(native, s, cr3)
        if stop:
            break
        if step in setup.edits and native.cpu.cr0 >> 15 & 1:
            _edit_guest_tables(native, gm, setup, *setup.edits[step])
            presented = True  # a host action the whole runs below do not repeat
        before = _native_state(native)
        db_pending = native.cpu.pending_db
        gx = gm.vmrun(v, 1)
        where = f"step {step}, pc {before['pc']:#x}"
        assert _host_state(gm) == host, f"{where}: the host state was not restored (V.1)"
        if gx.reason is ExitReason.VM and gx.number != VmExitReason.TRIPLE_FAULT:
            stop = f"VM exit {VmExitReason(gx.number).name}"
            synchronized = False
            if gx.number in INSTRUCTION_EXITS and not db_pending:
                # V.3: the exiting instruction has had no effect: the guest is where native is,
                # past the boundary before the instruction, which consumed an sti shadow (§6.5
                # step 3); the exit's tick is not compared (V.1 does not say whether it is one)
                expected = {k: x for k, x in before.items() if k != "clock"} | {"int_shadow": 0}
                assert {k: x for k, x in _guest_state(gm, v, setup).items() if k != "clock"} == expected, where
                # ... but its fetch walked the guest tables, setting A bits (§6.1): memory
                # outside the page tables is unchanged
                assert _memory(gm, setup)[0][:TABLES] == _memory(native)[0][:TABLES], where
                assert _memory(gm, setup)[1:] == _memory(native)[1:], where
                _compare_counters(native, gm, ticks=False)
            break
        nx = native.run(1)
        if gx.reason is ExitReason.VM:  # a triple fault: the native machine shuts down (V.4)
            assert nx.reason is ExitReason.SHUTDOWN, where
        else:
            assert _exit_tuple(gx) == _exit_tuple(nx), where
        assert _guest_state(gm, v, setup) == _native_state(native), where
        if native.cpu.intr_acked >= 0:
            native.cpu.intr_acked = gm.cpu.intr_acked = -1
        if nx.reason is ExitReason.IO_IN and nx.reg:
            native.cpu.r[nx.reg] = v.regs[nx.reg] = _in_value(nx.port)  # V.1: an `in` fills vmcs.regs
        elif nx.reason is ExitReason.HLT and not woken:
            woken = presented = True  # V.2: the halted state goes through GUEST_ACTIVITY
            if native.cpu.intr_vector < 0:
                native.cpu.intr_vector = gm.cpu.intr_vector = WAKE_VECTOR
        elif nx.reason in (ExitReason.SHUTDOWN, ExitReason.HLT):
            stop = nx.reason.name
            break
    event(f"stopped: {stop or 'steps done'}")
    ept = ("relocated " if setup.relocated else "identity ") + "ept" if setup.ept else "no ept"
    event(f"{s.profile}, {ept}, {'vpid' if setup.vpid else 'no vpid'}")
    for option in ("tsc_offset", "cr0_mask", "cr4_mask", "tpr_shadow", "io_bitmaps", "pf_never"):
        if getattr(setup, option) not in (None, 0, False):
            event(f"with {option}")
    if woken:
        event("a halted guest was woken")
    event(f"ticks compared: {'0' if not native.clock else '1-9' if native.clock < 10 else '10+'}")
    if synchronized:
        assert _memory(gm, setup) == _memory(native), "memory differs"
        if setup.relocated:  # no guest access reaches host memory outside the nested mapping
            assert gm.read(0, MEMORY) == mem[:MEMORY]
        _compare_counters(native, gm)
    if synchronized and not presented:
        # The same ticks again on fresh machines, in runs as long as the budget allows: guest
        # mode's blocks of many ticks (fast paths, fewer entries) against native ones, and
        # both against the tick-by-tick result.
        event("compared in whole runs too")
        native2 = _native(setup, mem, init)
        gm2, v2 = _guest(setup, mem, init, eptp)
        ticks = native.clock

        def fill_native(reg: int, value: int) -> None:
            native2.cpu.r[reg] = value

        def fill_guest(reg: int, value: int) -> None:
            v2.regs[reg] = value

        native_exits = _run_whole(native2.run, lambda: native2.clock, fill_native, ticks)
        guest_exits = _run_whole(lambda b: gm2.vmrun(v2, b), lambda: gm2.clock, fill_guest, ticks)
        if native2.cpu.pending_db and not native.cpu.pending_db:
            # the tick-by-tick run went on to deliver the pending #DB, which takes no tick (§6.4)
            native_exits.append(_exit_tuple(_as_native(native2.run(0))))
            guest_exits.append(_exit_tuple(_as_native(gm2.vmrun(v2, 0))))
        assert guest_exits == native_exits
        assert _guest_state(gm2, v2, setup) == _native_state(native2) == _native_state(native)
        assert _memory(gm2, setup) == _memory(native2) == _memory(native)
        _compare_counters(native2, gm2)
        _compare_counters(native, gm2)


# ---- nested tables filled on demand (V.5, V.6, V.9) -----------------------------------------
#
# The same comparison with nested tables that map guest memory only partly and with partial
# permissions, and a host that now and then takes a page's W away (then invept: no later write
# may reach the page until the host grants W again after the violation it causes).  At each
# EPT violation the host maps the page read/write/execute, calls invept,
# re-injects the event whose delivery the violation interrupted (IDT_VECTORING_INFO, V.5) and
# enters again.  The exit and the retry must be invisible to the guest: its state after the tick
# that finally completes is native's.  Every retry takes ticks natively absent, so the host hides
# them from the guest's TSC (TSC_OFFSET, V.3) and the comparison subtracts them from the clock.
# An `int n` whose delivery was interrupted is not re-injected: GUEST_PC is still the `int`, which
# runs again.  Not compared: a violation at the instruction an sti shadow protects, with an
# interrupt pending, since the exit does not keep the shadow (reported as an open question).

NESTED_FLAGS = (None, 0, EPT_X, EPT_W, EPT_W | EPT_X)  # absent, R, RX, RW, RWX (V.6)


@dataclass
class Demand:
    setup: Setup
    pages: list[int | None]  # nested flags of each guest page at the start
    revocations: dict[int, int]  # step -> a guest page whose W the host takes away (then invept)


@st.composite
def demands(draw: st.DrawFn) -> Demand:
    setup = draw(setups(ept_only=True))
    setup = replace(setup, tsc_offset=setup.tsc_offset or 0)
    pages = draw(st.lists(st.sampled_from(NESTED_FLAGS), min_size=MEMORY >> 12, max_size=MEMORY >> 12))
    revocations = draw(st.dictionaries(st.integers(0, STEPS), st.integers(0, (MEMORY >> 12) - 1), max_size=6))
    return Demand(setup, pages, revocations)


@given(demands())
def test_nested_tables_filled_on_demand_stay_invisible_to_the_guest(d: Demand):
    setup, s = d.setup, d.setup.scenario
    mem, cr3 = initial_memory(s)
    mem += bytes(HOST_MEMORY - MEMORY)

    def image_write(addr: int, value: int) -> None:
        mem[addr : addr + 8] = value.to_bytes(8, "little")

    sink = {"write": image_write}
    nested = PageTables(lambda a, x: sink["write"](a, x), PageAllocator(*NESTED_TABLES), levels=setup.nested_levels)
    for page, flags in enumerate(d.pages):
        if flags is not None:
            nested.map(page << 12, setup.base + (page << 12), 4096, flags=flags)
    init = initial_state(s, cr3)
    native = _native(setup, mem, init)
    gm, v = _guest(setup, mem, init, ept_pointer(nested.root, setup.nested_levels))
    sink["write"] = gm.write_u64  # from now on the host edits the live nested tables

    def guest_state() -> dict[str, object]:
        state = _guest_state(gm, v, setup)
        state["clock"] -= lost
        return state

    def check_revoked() -> None:
        # V.6: after invept, no write reaches a page whose nested W was taken away
        for page, content in revoked.items():
            assert gm.read(setup.base + page, 4096) == content, f"a write through revoked W at {page:#x}"

    lost, fills, stop, revoked = 0, 0, "", {}
    for step in range(STEPS):
        vector = s.interrupts.get(step)
        if vector is not None and native.cpu.intr_vector < 0:
            native.cpu.intr_vector = gm.cpu.intr_vector = vector
        if step in d.revocations:  # the host write-protects a guest page (R and X stay)
            page = d.revocations[step] << 12
            nested.map(page, setup.base + page, 4096, flags=EPT_X)
            gm.invept()
            revoked[page] = gm.read(setup.base + page, 4096)
            event("the host took a page's W away")
        stop = _beyond_comparison(native, s, cr3)
        if stop:
            break
        shadow, where = native.cpu.int_shadow, f"step {step}, pc {native.cpu.pc:#x}"
        for _ in range(2 * 64):  # each retry fills a page or re-injects
            clock = gm.clock
            gx = gm.vmrun(v, 1)
            check_revoked()
            if gx.reason is not ExitReason.VM or gx.number != VmExitReason.EPT_VIOLATION:
                break
            gpa = v[G.GUEST_PHYSICAL_ADDRESS]
            if gpa >= MEMORY:
                stop = "EPT violation beyond guest memory"
                break
            if shadow and gm.cpu.intr_vector >= 0:
                stop = "EPT violation in an sti shadow, interrupt pending"
                break
            page = gpa & ~0xFFF
            nested.map(page, setup.base + page, 4096, flags=EPT_W | EPT_X)
            gm.invept()
            if revoked.pop(page, None) is not None:
                event("a write to a write-protected page exited")
            fills += 1
            lost += gm.clock - clock
            vect = v[G.IDT_VECTORING_INFO]
            free = gm.clock == clock  # the delivery that failed took no tick: a pending #DB's
            if vect >> 31 & 1 and (vect >> 8 & 7) != 4:  # V.5, V.9: re-inject it
                v[G.ENTRY_INTR_INFO], v[G.ENTRY_ERROR_CODE] = vect, v[G.IDT_VECTORING_ERROR_CODE]
                event(f"re-injected an event of type {vect >> 8 & 7}")
                if free:  # natively that delivery takes no tick: the injection's tick is extra
                    v[G.TSC_OFFSET] = (setup.tsc_offset - lost - 1) & U64
                    clock = gm.clock
                    gx = gm.vmrun(v, 1)
                    check_revoked()
                    lost += gm.clock - clock
                    if gx.reason is not ExitReason.BUDGET:
                        stop = "an exit at a re-injected #DB"
                        break
            v[G.TSC_OFFSET] = (setup.tsc_offset - lost) & U64
        else:
            raise AssertionError(f"{where}: the host's fills do not end the violations")
        if stop:
            break
        if gx.reason is ExitReason.VM and gx.number != VmExitReason.TRIPLE_FAULT:
            stop = f"VM exit {VmExitReason(gx.number).name}"
            break
        nx = native.run(1)
        if gx.reason is ExitReason.VM:
            assert nx.reason is ExitReason.SHUTDOWN, where
        else:
            assert _exit_tuple(gx) == _exit_tuple(nx), where
        assert guest_state() == _native_state(native), where
        if native.cpu.intr_acked >= 0:
            native.cpu.intr_acked = gm.cpu.intr_acked = -1
        if nx.reason is ExitReason.IO_IN and nx.reg:
            native.cpu.r[nx.reg] = v.regs[nx.reg] = _in_value(nx.port)
        elif nx.reason in (ExitReason.SHUTDOWN, ExitReason.HLT):
            stop = nx.reason.name
            break
    event(f"stopped: {stop or 'steps done'}")
    event(f"pages filled: {'0' if not fills else '1-4' if fills < 5 else '5+'}")
    if not stop.startswith(("EPT", "VM", "an exit")):
        assert _memory(gm, setup)[0] == _memory(native)[0], "guest memory differs"
        _compare_counters(native, gm, ticks=False)
