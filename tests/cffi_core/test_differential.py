"""The C core against the executable spec, tick by tick, on random programs.

Each example draws a machine (profile, CPL, FLAGS, paging with 2/3/4 levels and random page
permissions, an IDT of random gates, random registers, interrupts to inject) and a body of
random instruction words, then runs the core and the spec in lockstep with a budget of one
tick: after every tick the exits and the whole architectural state must be equal, and at the
end memory and the counters the spec models.  Page tables live outside every mapping, so no
program can change a cached translation (the one undefined behaviour, manual §8.1).
"""

from __future__ import annotations

from hypothesis import event, given, settings

from cffi_core import spec
from cffi_core.machine import ExitReason, Machine, TLBConfig
from cffi_core.profiles import PROFILES
from tests.cffi_core.random_machines import CODE, MEMORY, STEPS, U64, initial_memory, initial_state, load_cpu, scenarios

STATE_FIELDS = (
    "pc", "flags", "cpl", "cr0", "cr2", "cr3", "cr4", "cr8", "idtr", "seglimit", "gsbase", "gslimit",
    "tsc_offset", "halted", "int_shadow", "intr_vector", "intr_acked", "shutdown", "pending_db",
)  # fmt: skip
SPEC_COUNTERS = (
    "ticks", "halted_ticks", "double_faults", "triple_faults", "host_gate_exits", "hcalls", "port_reads",
    "port_writes",
)  # fmt: skip


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
    mem, cr3 = initial_memory(s)
    init = initial_state(s, cr3)

    core = Machine(s.profile, memory=MEMORY, tlb=TLBConfig(16, 4, 8, 2))
    core.write(0, bytes(mem))
    load_cpu(core.cpu, init)

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
    n = counters["instructions"]
    event(f"instructions retired: {'0' if not n else '1-9' if n < 10 else '10+'}")
    for v in counters.exceptions:
        event(f"vector {v} delivered")
