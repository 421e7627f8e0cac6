"""The core against the executable spec with *large* budgets: random programs run in blocks of
many ticks (the core's fast paths, its TLB and its decoded-code cache at work), then state,
memory, exits and the architectural counters must be equal.  Registers often hold code
addresses, so programs also store into their own code.  The host segment GS is drawn too
(manual §5.4), and ``ldgs``/``sdgs`` often, so that GS's fast arrays meet the segment-limited
ones on the same pages (below and beyond MSR_SEGLIMIT, in code pages); ``jgs`` less often, most
of its jumps through a table that GS reaches, of targets in the body."""

from __future__ import annotations

import os

from core_rig import CODE, HOST_GATE, IDT, IO_IN, MEMORY, TABLES, U64, Core
from hypothesis import given, settings
from hypothesis import strategies as st

from cffi_core import spec
from cffi_core.isa.encoding import encode
from cffi_core.isa.strategies import any_words, instruction_words
from cffi_core.isa.table import BY_MNEMONIC
from cffi_core.pagetables import PTE_NX, PTE_U, PTE_W, PageAllocator, PageTables
from tests.cffi_core.random_machines import ERROR_CODE_VECTORS, SKIP_HANDLERS

HANDLERS, DATA = 0x2000, 0x10000
FIELDS = ("pc", "flags", "cpl", "cr0", "cr2", "cr3", "cr4", "cr8", "idtr", "seglimit", "cslimit", "gsbase", "gslimit",
          "tsc_offset", "halted", "int_shadow", "intr_vector", "intr_acked", "shutdown", "pending_db")  # fmt: skip
COUNTERS = ("ticks", "halted_ticks", "double_faults", "triple_faults", "host_gate_exits", "hcalls", "port_reads",
            "port_writes")  # fmt: skip

_value = st.one_of(st.integers(0, 64), st.integers(0, U64), st.integers(CODE // 4, (CODE + 0x200) // 4).map(lambda w: 4 * w),
                   st.integers(DATA // 8, 0x20000 // 8).map(lambda q: 8 * q))  # fmt: skip
PAGE_FLAGS = [PTE_W | PTE_U, PTE_U, PTE_W, PTE_W | PTE_U | PTE_NX, None]
# ldgs/sdgs with small aligned displacements, so that offsets that are register values (data and
# code addresses) land on quadwords; or any ldgs/sdgs word.
_gs_near = st.builds(
    lambda mn, a, b, k: encode(mn, **{"rd" if mn == "ldgs" else "rs2": a}, rs1=b, imm=8 * k),
    st.sampled_from(["ldgs", "sdgs"]), st.integers(0, 15), st.integers(1, 15), st.integers(-2, 2),
)  # fmt: skip
GS_WORDS = st.one_of(_gs_near, instruction_words((BY_MNEMONIC["ldgs"], BY_MNEMONIC["sdgs"])))
# jgs reads its target through GS (§5.4): a table of targets lies at 0 and at DATA, where GS at
# base 0 or DATA reads it at small offsets (jgs [r0 + 8k]); the targets are words of the body,
# sometimes bad ones, which fault at their fetch.  Other jgs words jump wherever the quadword at
# a register's value leads, or are any jgs word.
JGS_TABLES, N_TARGETS = (0, DATA), 16
_jgs_table = st.integers(0, N_TARGETS - 1).map(lambda k: encode("jgs", rs1=0, imm=8 * k))
_jgs_near = st.builds(lambda b, k: encode("jgs", rs1=b, imm=8 * k), st.integers(1, 15), st.integers(-2, 2))
JGS_WORDS = st.one_of(_jgs_table, _jgs_table, _jgs_near, instruction_words((BY_MNEMONIC["jgs"],)))


def body_targets(words: int) -> st.SearchStrategy[int]:
    """A word of a body of ``words`` words."""
    return st.integers(0, words - 1).map(lambda k: CODE + 4 * k)


def jgs_targets(words: int) -> st.SearchStrategy[int]:
    """A body word seven times in eight, else misaligned, beyond RAM or non-canonical."""
    bad = st.sampled_from([CODE + 2, MEMORY, 1 << 63])
    return st.integers(0, 7).flatmap(lambda k: body_targets(words) if k else bad)


# GS at 0 over everything (offsets are then addresses: data, code, the limit's pages), on DATA,
# misaligned, wrapping, or random; limits that take everything, some pages, one quadword, or
# refuse everything.
_gsbase = st.one_of(st.sampled_from([0, 0, 0, DATA, DATA + 4, U64 - 0xFFF]), st.integers(0, U64))
_gslimit = st.one_of(st.sampled_from([U64, U64, U64, 0x20000, 0x1FFF, 7, 6, 0]), st.integers(0, U64))
_gate = st.builds(lambda p, t, d, r: p | t << 1 | d << 4 | r << 6, st.sampled_from([1, 1, 1, 0]),
                  st.sampled_from([0, 1, 1, 2, 3]), st.integers(0, 3), st.integers(0, 3))  # fmt: skip


_word = st.one_of(instruction_words(), any_words(), GS_WORDS)


@st.composite
def machines(draw):
    body = draw(st.lists(st.integers(0, 9).flatmap(lambda k: _word if k else JGS_WORDS), min_size=4, max_size=64))
    return {
        "features": draw(st.sampled_from([0, 1, 2])),
        "body": body,
        "jgs_targets": draw(st.lists(jgs_targets(len(body)), min_size=N_TARGETS, max_size=N_TARGETS)),
        "handlers": draw(st.lists(instruction_words(), min_size=4, max_size=16)),
        "gates": draw(st.lists(st.tuples(st.integers(0, 15), _gate), min_size=8, max_size=8)),
        "regs": draw(st.lists(_value, min_size=15, max_size=15)),
        "cpl": draw(st.integers(0, 3)),
        "flags": draw(st.sampled_from([0, 1 << 9, 3 << 12, 1 << 9 | 3 << 12, 1 << 9 | 1 << 8])),
        "seglimit": draw(st.sampled_from([U64, 0x18000, 0x2000])),
        "cslimit": draw(st.sampled_from([U64, U64, 0x2000, 0x1000])),
        "gsbase": draw(_gsbase),
        "gslimit": draw(_gslimit),
        "paging": draw(st.sampled_from([0, 2, 3, 4])),
        "pages": draw(st.lists(st.sampled_from(PAGE_FLAGS), min_size=32, max_size=32)),
        "budgets": draw(st.lists(st.integers(0, 400), min_size=1, max_size=6)),
        "vectors": draw(st.lists(st.integers(32, 255), min_size=6, max_size=6)),
    }


def build(d) -> tuple[bytearray, dict]:
    mem = bytearray(MEMORY)
    for base, words in ((CODE, d["body"]), (HANDLERS, d["handlers"])):
        for i, w in enumerate(words):
            mem[base + 4 * i : base + 4 * i + 4] = w.to_bytes(4, "little")
    for v in range(256):
        slot, attr = d["gates"][v % 8]
        mem[IDT + 16 * v : IDT + 16 * v + 16] = (HANDLERS + 4 * slot).to_bytes(8, "little") + attr.to_bytes(8, "little")
    for table in JGS_TABLES:
        for i, t in enumerate(d["jgs_targets"]):
            mem[table + 8 * i : table + 8 * i + 8] = t.to_bytes(8, "little")
    state = {"r": [0, *d["regs"][:14], 0x18000], "rsp": [0x17000, 0x16000, 0x15000], "cpl": d["cpl"], "pc": CODE,
             "flags": d["flags"], "idtr": IDT, "seglimit": d["seglimit"] if d["features"] == 2 else U64,
             "cslimit": d["cslimit"] if d["features"] == 2 else U64, "gsbase": d["gsbase"],
             "gslimit": d["gslimit"]}  # fmt: skip
    if d["paging"]:

        def write(addr: int, value: int) -> None:
            mem[addr : addr + 8] = value.to_bytes(8, "little")

        pt = PageTables(write, PageAllocator(TABLES, MEMORY), levels=d["paging"])
        for page, flags in enumerate(d["pages"]):
            if page in (CODE >> 12, HANDLERS >> 12, IDT >> 12) or page >= 0x10:
                flags = PTE_W | PTE_U
            if flags is not None:
                pt.map(page << 12, page << 12, 4096, flags=flags)
        state |= {"cr3": pt.root, "cr4": d["paging"] - 2, "cr0": 1 | 1 << 15}
    return mem, state


def core_view(c: Core) -> dict:
    out = {f: int(getattr(c.cpu, f)) for f in FIELDS}
    out["r"] = [c.r(i) for i in range(16)]
    out["rsp"] = [int(c.cpu.rsp[i]) for i in range(3)]
    out["counters"] = {k: c.counters()[k] for k in COUNTERS}
    out["insn"] = [int(c.ctr.insn[0][i]) for i in range(4)]
    out["events"] = (c.counters()["exceptions"], c.counters()["interrupts"])
    return out


def spec_view(s: spec.State) -> dict:
    out = {f: int(getattr(s, f)) for f in FIELDS}
    out["r"] = [0, *(int(x) for x in s.r[1:16])]
    out["rsp"] = [int(x) for x in s.rsp]
    out["counters"] = {k: getattr(s.counters, k) for k in COUNTERS}
    out["insn"] = list(s.counters.insn[0])
    out["events"] = (tuple(s.counters.exceptions), tuple(s.counters.interrupts))
    return out


def _pair(features: int, mem: bytearray, init: dict) -> tuple[Core, spec.State, spec.ByteMemory]:
    """The core and the spec on the same memory and initial state (features 0: none, 1:
    classic, 2: seglimit)."""
    core = Core(features, dtlb=(16, 4), itlb=(8, 2))
    core.write(0, bytes(mem))
    state = spec.State.reset(entry=CODE, features={0: set(), 1: {"classic"}, 2: {"seglimit"}}[features])
    smem = spec.ByteMemory(bytearray(mem))
    for k, v in init.items():
        if k in ("r", "rsp"):
            for i, x in enumerate(v):
                getattr(core.cpu, k)[i] = x
                getattr(state, k)[i] = x
        else:
            setattr(core.cpu, k, v)
            setattr(state, k, v)
    return core, state, smem


@settings(max_examples=int(os.environ.get("P64_VS_SPEC_EXAMPLES", 50)))
@given(machines())
def test_core_and_spec_agree_over_long_runs(d):
    mem, init = build(d)
    core, state, smem = _pair(d["features"], mem, init)
    for i, budget in enumerate(d["budgets"] * 2):
        if core.cpu.intr_vector < 0:
            core.cpu.intr_vector = state.intr_vector = d["vectors"][i % 6]
        reason = core.run(budget)
        sx = spec.run(state, smem, budget)
        assert reason == sx.reason, f"run {i}"
        if reason == HOST_GATE:
            assert (core.exit.vector, core.exit.error_code if core.exit.has_error else None, core.exit.address) == (
                sx.vector, sx.error_code if sx.has_error else None, sx.address)  # fmt: skip
        assert core_view(core) == spec_view(state), f"run {i}"
        assert core.read(0, MEMORY) == bytes(smem.data), f"run {i}"
        if reason == IO_IN:
            core.cpu.r[core.exit.reg] = state.r[core.exit.reg] = core.exit.port * 7 if core.exit.reg else 0
        elif reason == HOST_GATE:
            core.cpu.pc = state.pc = (core.cpu.pc + 4) & U64
        if core.cpu.halted:
            core.cpu.flags |= 1 << 9
            state.flags |= 1 << 9


# ---- the host segment: long runs of GS and data accesses over the same pages ----

# Base registers r1..r4 hold data addresses most of the time, so that GS accesses (at GS base 0)
# and loads and stores meet on the same pages; other registers receive what is loaded.
_base = st.integers(1, 4)
_gs_same = st.builds(
    lambda mn, a, b, k: encode(mn, **{"rd" if mn == "ldgs" else "rs2": a}, rs1=b, imm=8 * k),
    st.sampled_from(["ldgs", "sdgs"]), st.integers(5, 12), _base, st.integers(-2, 2),
)  # fmt: skip
_data_op = st.builds(
    lambda mn, a, b, k: encode(mn, **{"rd" if mn[0] == "l" else "rs2": a}, rs1=b, imm=8 * k),
    st.sampled_from(["ld", "sd", "lw", "sb"]), st.integers(5, 12), _base, st.integers(-2, 2),
)  # fmt: skip
_step = st.builds(lambda r, k: encode("addi", rd=r, rs1=r, imm=k), _base, st.sampled_from([8, -8, 0x1000, -0x1000]))
_data_address = st.integers(DATA // 8, 0x20000 // 8).map(lambda q: 8 * q)
# A run: its budget, then what the host writes before it (MSR_SEGLIMIT, MSR_GSBASE, MSR_GSLIMIT).
_run = st.tuples(st.integers(1, 300), st.sampled_from([U64, 0x18000, 0x12000, 0x2000]),
                 st.one_of(st.just(0), _gsbase), _gslimit)  # fmt: skip


_gs_body_word = st.one_of(_gs_same, _data_op, _step, GS_WORDS)


@st.composite
def gs_machines(draw):
    """CPL 0 or 1, where ldgs/sdgs/jgs run, over bodies of GS accesses, loads and stores through
    the same registers, steps of those registers, and jumps through the table of targets, which
    are words of the body (with its closing jmp); every event goes to a handler that skips the
    instruction and returns, so a body runs to its budget; the host moves MSR_SEGLIMIT and the GS
    MSRs between runs (§10)."""
    body = draw(st.lists(st.integers(0, 7).flatmap(lambda k: _gs_body_word if k else _jgs_table), min_size=4,
                         max_size=48))  # fmt: skip
    return {
        "features": draw(st.sampled_from([0, 2, 2])),
        "body": body,
        "jgs_targets": draw(st.lists(body_targets(len(body) + 1), min_size=N_TARGETS, max_size=N_TARGETS)),
        "regs": draw(st.lists(st.one_of(_data_address, _value), min_size=14, max_size=14)),
        "cpl": draw(st.sampled_from([0, 1, 1])),
        "paging": draw(st.sampled_from([0, 2, 4])),
        "pages": draw(st.lists(st.sampled_from(PAGE_FLAGS), min_size=32, max_size=32)),
        "runs": draw(st.lists(_run, min_size=1, max_size=6)),
    }


def build_gs(d) -> tuple[bytearray, dict]:
    body = [*d["body"], encode("jmp", imm=-4 * len(d["body"]))]
    mem, state = build(d | {"body": body, "handlers": [], "gates": [(0, 0x31)] * 8, "cpl": d["cpl"],
                            "flags": 0, "seglimit": U64, "cslimit": U64, "gsbase": 0, "gslimit": 0,
                            "regs": [*d["regs"], 0]})  # fmt: skip
    for seg in SKIP_HANDLERS.segments:
        mem[seg.address : seg.address + len(seg.data)] = seg.data
    for v in range(256):
        handler = SKIP_HANDLERS.symbols["skip_error" if v in ERROR_CODE_VECTORS else "skip"]
        mem[IDT + 16 * v : IDT + 16 * v + 8] = handler.to_bytes(8, "little")
    return mem, state


@settings(max_examples=int(os.environ.get("P64_VS_SPEC_EXAMPLES", 50)))
@given(gs_machines())
def test_core_and_spec_agree_on_gs_and_data_accesses_over_long_runs(d):
    mem, init = build_gs(d)
    core, state, smem = _pair(d["features"], mem, init)
    for i, (budget, seglimit, gsbase, gslimit) in enumerate(d["runs"]):
        if d["features"] == 2:
            core.cpu.seglimit = state.seglimit = seglimit
        core.cpu.gsbase, core.cpu.gslimit = state.gsbase, state.gslimit = gsbase, gslimit
        reason = core.run(budget)
        sx = spec.run(state, smem, budget)
        assert reason == sx.reason, f"run {i}"
        assert core_view(core) == spec_view(state), f"run {i}"
        assert core.read(0, MEMORY) == bytes(smem.data), f"run {i}"


# ---- self-modifying code against the core's fast paths, at every budget ----
# A store in the first half of a fused pair that rewrites the pair's second half (core.h
# P64_PAIRS), a store that retargets a warm backward branch whose target the core keeps in a
# host register (run.c TAKEN, forgotten at every slow access), and a store that turns a later
# word of its own straight run into a jump, which moves the end of the run whose ticks the core
# charged at once (struct dinsn.run): the programs run warm for a few iterations, then rewrite,
# and must run as the spec does whatever budget slices the run (§9, §15).
from cffi_core.asm import assemble  # noqa: E402

# sd at CODE+4 (8-aligned target CODE+8) rewrites its own pair's second word, addi -> xori.
REWRITE_PAIR = """
loop:   addi r3, r3, -1
        sd r2, [r1+0]        ; first of a pair; from the sixth iteration on, r1 = CODE+8
        addi r5, r5, 3       ; second of the pair, becomes xori r5, r5, 3
        addi r4, r4, 1
        bne r3, r8, skip
        addi r1, r10, 0      ; r10 = CODE+8: the next store writes into the pair
skip:   bne r3, r0, loop
        hlt
"""
# sw retargets the backward bltu at `back` (warm after five iterations) to `loop+4`.
RETARGET_BRANCH = """
loop:   addi r4, r4, 1
        addi r5, r5, 7
        addi r3, r3, -1
        bne r3, r8, back
        sw r2, [r1+0]        ; r1 = back: bltu r0, r3, loop+4
back:   bltu r0, r3, loop
        hlt
"""

# sd writes the 8-aligned words at `cut`: addi r6 becomes jmp over (addi r7 stays), two words after
# the store, so that the words between the store and the jump end their run earlier.
REWRITE_RUN_END = """
loop:   addi r3, r3, -1
        addi r9, r9, 1
        sd r2, [r1+0]        ; from the sixth iteration on, r1 = cut
        addi r5, r5, 3
cut:    addi r6, r6, 1       ; becomes jmp over
        addi r7, r7, 1
over:   addi r4, r4, 1
        bne r3, r8, skip
        addi r1, r10, 0      ; r10 = cut: the next store writes into the run
skip:   bne r3, r0, loop
        hlt
"""


def _smc(source: str, replace: str, by: str) -> tuple[bytearray, dict]:
    image = assemble(source, origin=CODE)
    new = assemble(source.replace(replace, by), origin=CODE)
    mem = bytearray(MEMORY)
    (seg,) = image.segments
    mem[CODE : CODE + len(seg.data)] = seg.data
    at = next(a for a in range(0, len(seg.data), 4) if seg.data[a : a + 4] != new.segments[0].data[a : a + 4])
    return mem, {"at": CODE + at, "new": new.segments[0].data, "image": image}


def _run_in_slices(mem: bytearray, regs: list[int], budget: int) -> Core:
    init = {"r": regs, "rsp": [0x17000, 0x16000, 0x15000], "cpl": 0, "pc": CODE, "flags": 0, "idtr": IDT}
    core, state, smem = _pair(0, mem, init)
    for i in range(400 // budget + 2):
        reason = core.run(budget)
        sx = spec.run(state, smem, budget)
        assert reason == sx.reason, f"budget {budget}, run {i}"
        assert core_view(core) == spec_view(state), f"budget {budget}, run {i}"
        assert core.read(CODE, 0x100) == bytes(smem.data[CODE : CODE + 0x100]), f"budget {budget}, run {i}"
        if core.cpu.halted:
            break
    assert core.read(0, MEMORY) == bytes(smem.data), f"budget {budget}"
    assert core.cpu.halted, f"budget {budget}: the program did not finish"
    return core


def test_a_store_into_its_own_fused_pair_runs_the_new_instruction_at_every_budget():
    mem, smc = _smc(REWRITE_PAIR, "addi r5, r5, 3 ", "xori r5, r5, 3 ")
    assert smc["at"] == CODE + 8
    new = smc["new"][8:16]
    regs = [0, DATA, int.from_bytes(new, "little"), 10, 0, 0, 0, 0, 5, 0, CODE + 8, 0, 0, 0, 0, 0x18000]
    for budget in range(1, 60):
        core = _run_in_slices(mem, regs, budget)
        assert core.r(5) == 12, budget  # five adds of 3, then five xors with 3 (stale: 30)


def test_a_store_retargeting_a_warm_loop_branch_is_followed_at_every_budget():
    mem, smc = _smc(RETARGET_BRANCH, "bltu r0, r3, loop\n", "bltu r0, r3, loop+4\n")
    back = smc["image"].symbols["back"]
    assert smc["at"] == back
    word = smc["new"][back - CODE : back - CODE + 4]
    regs = [0, back, int.from_bytes(word, "little"), 12, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0x18000]
    for budget in range(1, 60):
        core = _run_in_slices(mem, regs, budget)
        assert (core.r(4), core.r(5)) == (6, 84), budget  # the last six rounds skip r4 (stale: 12)


def test_a_store_that_ends_its_own_straight_run_earlier_is_charged_as_the_spec_runs_at_every_budget():
    mem, smc = _smc(REWRITE_RUN_END, "cut:    addi r6, r6, 1 ", "cut:    jmp over       ")
    cut = smc["image"].symbols["cut"]
    assert smc["at"] == cut and cut % 8 == 0
    new = smc["new"][cut - CODE : cut - CODE + 8]
    regs = [0, DATA, int.from_bytes(new, "little"), 10, 0, 0, 0, 0, 5, 0, cut, 0, 0, 0, 0, 0x18000]
    for budget in range(1, 60):
        core = _run_in_slices(mem, regs, budget)
        assert (core.r(4), core.r(5), core.r(6), core.r(7)) == (10, 30, 5, 5), budget  # stale: r6 = r7 = 10
