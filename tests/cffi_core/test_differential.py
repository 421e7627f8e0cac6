"""The C core against the executable spec, tick by tick, on random programs.

Each example draws a machine (profile, CPL, FLAGS, paging with 2/3/4 levels and random page
permissions, an IDT of random gates, random registers, interrupts to inject) and a body of
random instruction words, then runs the core and the spec in lockstep with a budget of one
tick: after every tick the exits and the whole architectural state must be equal, and at the
end memory and the counters the spec models.  Page tables live outside every mapping, so no
program can change a cached translation (the one undefined behaviour, manual §8.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import event, given, settings
from hypothesis import strategies as st

from cffi_core import spec
from cffi_core.asm import assemble
from cffi_core.isa.strategies import instruction_words
from cffi_core.machine import ExitReason, Machine, TLBConfig
from cffi_core.pagetables import PTE_NX, PTE_U, PTE_W, PageAllocator, PageTables
from cffi_core.profiles import PROFILES, available_profiles

MEMORY = 256 * 1024
CODE, HANDLERS, IDT, DATA, DATA_END, TABLES = 0x1000, 0x2000, 0x8000, 0x10000, 0x30000, 0x30000
STEPS = 200
ERROR_CODE_VECTORS = (8, 13, 14, 17)
# Handlers that step over the instruction that raised the event and return, so that random
# programs keep running (a random handler slot is drawn too, for variety).
SKIP_HANDLERS = assemble(
    """
    .org 0x2000
    skip:       ld   r13, [sp]
                addi r13, r13, 4
                sd   r13, [sp]
                iret
    skip_error: addi sp, sp, 8
                ld   r13, [sp]
                addi r13, r13, 4
                sd   r13, [sp]
                iret
    """
)
RANDOM_HANDLERS = 0x2100
U64 = 2**64 - 1
STATE_FIELDS = (
    "pc", "flags", "cpl", "cr0", "cr2", "cr3", "cr4", "cr8", "idtr", "seglimit", "tsc_offset",
    "halted", "int_shadow", "intr_vector", "intr_acked", "shutdown", "pending_db",
)  # fmt: skip
SPEC_COUNTERS = (
    "ticks", "halted_ticks", "double_faults", "triple_faults", "host_gate_exits", "hcalls", "port_reads",
    "port_writes",
)  # fmt: skip

_data_addr = st.integers(DATA // 8, DATA_END // 8 - 1).map(lambda q: q * 8)
_reg_value = st.one_of(_data_addr, st.integers(0, 64), st.integers(0, U64), st.sampled_from([CODE, IDT, 0]))
# Gate attributes: present interrupt/trap gates to ring 0 (common), other rings, DPL, host gates,
# not present.  bit 0 P, 2:1 type, 5:4 DPL, 7:6 ring (manual §6.2).
_gate_attr = st.one_of(
    st.sampled_from([0x31, 0x33, 0x01, 0x03]),
    st.sampled_from([0x31, 0x33]),
    st.sampled_from([0x31, 0x33]),
    st.builds(lambda p, t, d, r: p | t << 1 | d << 4 | r << 6, st.integers(0, 1), st.integers(0, 3),
              st.integers(0, 3), st.integers(0, 3)),
)  # fmt: skip
# Bodies are mostly valid instructions; one word in ten is arbitrary (often invalid).
_body_word = st.integers(0, 9).flatmap(lambda k: st.integers(0, 2**32 - 1) if k == 0 else instruction_words())
_page_flags = st.one_of(
    st.just(PTE_W | PTE_U), st.sampled_from([PTE_W | PTE_U, PTE_U, PTE_W, 0, PTE_W | PTE_U | PTE_NX, None])
)


@dataclass
class Scenario:
    profile: str
    body: list[int]
    handlers: list[int]
    gates: list[tuple[int, int]]
    regs: list[int]
    rsp: list[int]
    cpl: int
    flags: int
    cr8: int
    seglimit: int
    paging: int  # 0 off, else levels
    pages: list[int | None]  # per 4 KiB page of [0, DATA_END): leaf flags, None = not present
    interrupts: dict[int, int]  # step -> vector


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    profile = draw(st.sampled_from(available_profiles()))
    seglimit = U64
    if "seglimit" in PROFILES[profile].features and draw(st.booleans()):
        seglimit = draw(st.integers(0, DATA_END))
    return Scenario(
        profile=profile,
        body=draw(st.lists(_body_word, min_size=1, max_size=48)),
        handlers=draw(st.lists(_body_word, min_size=1, max_size=16)),
        # slot -1: the skip handler; 0..15: a random handler word
        gates=draw(st.lists(st.tuples(st.integers(-1, 15), _gate_attr), min_size=8, max_size=8)),
        regs=draw(st.lists(_reg_value, min_size=15, max_size=15)),
        rsp=draw(st.lists(_data_addr, min_size=3, max_size=3)),
        cpl=draw(st.integers(0, 3)),
        flags=draw(st.sampled_from([0, 1 << 9, 3 << 12, 1 << 9 | 3 << 12, 1 << 8, 1 << 9 | 1 << 12])),
        cr8=draw(st.integers(0, 15)),
        seglimit=seglimit,
        paging=draw(st.sampled_from([0, 0, 2, 3, 4])),
        pages=draw(st.lists(_page_flags, min_size=DATA_END // 4096, max_size=DATA_END // 4096)),
        interrupts=draw(st.dictionaries(st.integers(0, STEPS), st.integers(32, 255), max_size=3)),
    )


def _initial_memory(s: Scenario) -> tuple[bytearray, int]:
    mem = bytearray(MEMORY)
    body = [*s.body, 0x38000000 | ((-len(s.body)) & 0xFFFFFF)]  # ... then jmp back to CODE
    for i, w in enumerate(body):
        mem[CODE + 4 * i : CODE + 4 * i + 4] = w.to_bytes(4, "little")
    for seg in SKIP_HANDLERS.segments:
        mem[seg.address : seg.address + len(seg.data)] = seg.data
    for i, w in enumerate(s.handlers):
        mem[RANDOM_HANDLERS + 4 * i : RANDOM_HANDLERS + 4 * i + 4] = w.to_bytes(4, "little")
    for v in range(256):
        slot, attr = s.gates[v % 8]
        if slot < 0:
            handler = SKIP_HANDLERS.symbols["skip_error" if v in ERROR_CODE_VECTORS else "skip"]
        else:
            handler = RANDOM_HANDLERS + 4 * slot
        entry = IDT + 16 * v
        mem[entry : entry + 8] = handler.to_bytes(8, "little")
        mem[entry + 8 : entry + 16] = attr.to_bytes(8, "little")
    cr3 = 0
    if s.paging:

        def write(addr: int, value: int) -> None:
            mem[addr : addr + 8] = value.to_bytes(8, "little")

        tables = PageTables(write, PageAllocator(TABLES, MEMORY), levels=s.paging)
        for page, flags in enumerate(s.pages):
            # The code, handler and IDT pages stay mapped so that most examples run a while.
            if page in (CODE >> 12, HANDLERS >> 12, IDT >> 12):
                flags = PTE_W | PTE_U
            if flags is not None:
                tables.map(page << 12, page << 12, 4096, flags=flags)
        cr3 = tables.root
    return mem, cr3


def _state(s: Scenario, cr3: int) -> dict[str, object]:
    return {
        "r": [0, *s.regs[:14], DATA + (s.regs[14] % (DATA_END - DATA)) & ~7],  # sp in the data area
        "pc": CODE,
        "flags": s.flags,
        "cpl": s.cpl,
        "cr0": 1 | (1 << 15 if s.paging else 0),
        "cr3": cr3,
        "cr4": (s.paging - 2) if s.paging else 2,
        "cr8": s.cr8,
        "idtr": IDT,
        "rsp": s.rsp,
        "seglimit": s.seglimit,
    }


def _core_state(m: Machine) -> dict[str, object]:
    st_ = m.cpu.state()
    return {f: st_[f] for f in (*STATE_FIELDS, "r", "rsp")} | {"clock": m.clock}


def _spec_state(s: spec.State) -> dict[str, object]:
    out: dict[str, object] = {f: int(getattr(s, f)) for f in STATE_FIELDS}
    out["r"] = [0, *(int(x) for x in list(s.r)[1:16])]
    out["rsp"] = [int(x) for x in s.rsp]
    out["clock"] = int(s.clock)
    return out


def _exit_tuple(reason: int, ex) -> tuple:
    if reason == ExitReason.BUDGET:
        return (reason,)
    if reason == ExitReason.HOST_GATE:
        err = ex.error_code if getattr(ex, "has_error", ex.error_code is not None) else None
        return (reason, ex.vector, int(ex.kind), err, ex.address)
    if reason in (ExitReason.IO_IN, ExitReason.IO_OUT):
        return (reason, ex.port, ex.value if reason == ExitReason.IO_OUT else 0, ex.reg)
    if reason == ExitReason.HCALL:
        return (reason, ex.number)
    return (reason,)


@settings(max_examples=300)
@given(scenarios())
def test_core_and_spec_agree_tick_by_tick(s):
    mem, cr3 = _initial_memory(s)
    init = _state(s, cr3)

    core = Machine(s.profile, memory=MEMORY, tlb=TLBConfig(16, 4, 8, 2))
    core.write(0, bytes(mem))
    for k, v in init.items():
        if k == "r":
            for i, x in enumerate(v):
                core.cpu.r[i] = x
        elif k == "rsp":
            for i, x in enumerate(v):
                core.cpu.rsp[i] = x
        else:
            setattr(core.cpu, k, v)

    state = spec.State.reset(entry=CODE, features=PROFILES[s.profile].features)
    smem = spec.ByteMemory(bytearray(mem))
    for k, v in init.items():
        if k in ("r", "rsp"):
            getattr(state, k)[:] = v
        else:
            setattr(state, k, v)

    assert _core_state(core) == _spec_state(state)
    for step in range(STEPS):
        vector = s.interrupts.get(step)
        if vector is not None and core.cpu.intr_vector < 0:
            core.cpu.intr_vector = state.intr_vector = vector
        cx = core.run(1)
        sx = spec.run(state, smem, 1)
        where = f"step {step}, pc {core.cpu.pc:#x}"
        assert _exit_tuple(cx.reason, cx) == _exit_tuple(sx.reason, sx), where
        assert _core_state(core) == _spec_state(state), where
        if core.cpu.intr_acked >= 0:
            core.cpu.intr_acked = state.intr_acked = -1
        if cx.reason is ExitReason.IO_IN and cx.reg:
            core.cpu.r[cx.reg] = state.r[cx.reg] = (cx.port * 0x9E3779B97F4A7C15) & U64
        elif cx.reason is ExitReason.HOST_GATE:
            core.cpu.pc = state.pc = (core.cpu.pc + 4) & U64
        elif cx.reason in (ExitReason.SHUTDOWN, ExitReason.HLT):
            break
    event(f"ended by {cx.reason.name}, {'paging' if s.paging else 'flat'}")
    event(f"ticks run: {10 * (core.clock // 10)}" if core.clock < 40 else "ticks run: 40+")
    assert core.read(0, MEMORY) == bytes(smem.data), "memory differs"
    counters = core.counters
    sc = spec.counters_of(state)
    for name in SPEC_COUNTERS:
        assert counters[name] == sc[name], name
    assert counters.exceptions == {v: n for v, n in enumerate(sc["exceptions"]) if n}
    assert counters.interrupts == {v: n for v, n in enumerate(sc["interrupts"]) if n}
    for cpl in range(4):
        assert counters[f"insn_host_cpl{cpl}"] == sc["insn"][0][cpl]
    event(f"instructions retired: {'0' if not counters['instructions'] else '1-9' if counters['instructions'] < 10 else '10+'}")
    for v in counters.exceptions:
        event(f"vector {v} delivered")
