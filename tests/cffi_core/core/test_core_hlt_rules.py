"""The rules of hlt and the halted state (docs/architecture.md §6.4, §6.5, §9): the C core, the
executable spec and the bare platform's idle logic agree that a halted CPU with an event to
deliver now — a pending single-step #DB, or an interrupt IF, the PIC and the TPR let in — is
woken at once, not left "halted" nor made to wait for a device deadline."""

from __future__ import annotations

import pytest
from core_rig import CODE, DB, HLT, HOST_GATE, IF, TF, Core, I

from cffi_core import spec
from cffi_core.asm import assemble
from cffi_core.isa.encoding import encode
from cffi_core.platform import Platform

# ---- the core and the spec: hlt with TF, and a pending #DB before an interrupt ----------------


def _spec(flags: int, vector: int = -1) -> tuple[spec.State, spec.ByteMemory]:
    """A spec machine like core_rig's Core: code at CODE, every gate a host gate."""
    mem = spec.ByteMemory(1 << 20)
    state = spec.State.reset(entry=CODE, features=frozenset())
    state.idtr, state.flags, state.intr_vector = 0x8000, flags, vector
    state.r[spec.SP] = 0x20000
    for v in range(256):
        mem.write(0x8000 + 16 * v + 8, 8, 1 | spec.GATE_HOST << spec.GATE_TYPE_SHIFT | 3 << spec.GATE_DPL_SHIFT)
    mem.write(CODE, 4, encode("hlt"))
    return state, mem


@pytest.mark.parametrize("flags", [TF, TF | IF], ids=["if0", "if1"])
def test_core_hlt_with_tf_halts_with_the_db_pending_and_the_next_run_delivers_it(flags):
    c = Core()
    c.cpu.flags = flags
    c.code(I("hlt"))
    assert c.run() == HLT
    assert (c.cpu.halted, c.cpu.pending_db, c.cpu.pc) == (1, 1, CODE + 4)
    assert c.run() == HOST_GATE  # step 2 delivers the #DB: no EXIT_HLT, no halted tick
    assert (c.exit.vector, c.cpu.pc, c.cpu.halted, c.cpu.pending_db) == (DB, CODE + 4, 0, 0)
    assert (c.counters()["ticks"], c.counters()["halted_ticks"]) == (1, 0)


@pytest.mark.parametrize("flags", [TF, TF | IF], ids=["if0", "if1"])
def test_spec_hlt_with_tf_halts_with_the_db_pending_and_the_next_run_delivers_it(flags):
    state, mem = _spec(flags)
    assert spec.run(state, mem, 10).reason == spec.EXIT_HLT
    assert (state.halted, state.pending_db, state.pc) == (True, True, CODE + 4)
    e = spec.run(state, mem, 10)
    assert (e.reason, e.vector, state.pc, state.halted, state.pending_db) == (spec.EXIT_HOST_GATE, DB, CODE + 4, False, False)
    assert (state.clock, state.counters.halted_ticks) == (1, 0)


def test_core_a_halted_cpu_takes_its_pending_db_before_a_pending_interrupt():
    c = Core()
    c.cpu.flags = TF | IF
    c.code(I("hlt"))
    assert c.run() == HLT
    c.cpu.intr_vector = 0x40
    assert c.run() == HOST_GATE
    assert (c.exit.vector, c.cpu.intr_vector, c.cpu.intr_acked) == (DB, 0x40, -1)


def test_spec_a_halted_cpu_takes_its_pending_db_before_a_pending_interrupt():
    state, mem = _spec(TF | IF)
    spec.run(state, mem, 10)
    state.intr_vector = 0x40
    e = spec.run(state, mem, 10)
    assert (e.vector, state.intr_vector, state.intr_acked) == (DB, 0x40, -1)


# ---- the platform's idle logic (cffi_core/devices/host.py) ------------------------------------

_SETUP = """
.equ FLAGS_TF, 1 << 8
.equ FLAGS_IF, 1 << 9
_start: li      sp, 0x9000
        li      r1, 0x8000
        lidt    r1
        li      r2, 0x8000 + 16 * 32        ; IRQ 0 -> vector 32: tick
        la      r3, tick
        sd      r3, [r2]
        li      r3, 1                       ; present interrupt gate, ring 0
        sd      r3, [r2 + 8]
        li      r2, 0x8000 + 16 * 1         ; #DB: dbg
        la      r3, dbg
        sd      r3, [r2]
        li      r3, 1
        sd      r3, [r2 + 8]
        li      r1, 0xfffe
        out     0x21, r1                    ; unmask IRQ 0
"""
_HANDLERS = """
dbg:    addi    r4, r4, 1                   ; count #DBs, clear TF in the frame
        ld      r5, [sp + 16]
        xori    r5, r5, FLAGS_TF
        sd      r5, [sp + 16]
        iret
tick:   addi    r4, r4, 16                  ; count ticks, EOI
        li      r1, 0x20
        out     0x20, r1
        iret
"""

# The one-shot timer fires while IF = 0 (its IRQ stays requested), then `sti; hlt`: the
# interrupt is deliverable when hlt halts, with no deadline left to wait for.
STI_HLT_PENDING = _SETUP + """
        li      r1, %(cr8)d
        mtcr    cr8, r1
        li      r1, 5
        out     0x40, r1
        li      r1, 1                       ; enable, one-shot
        out     0x41, r1
        li      r6, 50
spin:   addi    r6, r6, -1
        bne     r6, r0, spin
        sti
        hlt
        out     0x500, r4
""" + _HANDLERS

# hlt with TF = 1: the hlt's own single-step trap is an event to deliver; a timer armed far
# ahead must not delay it.
HLT_TF = _SETUP + """
        li      r1, 10000
        out     0x40, r1
        li      r1, 1
        out     0x41, r1
        li      r1, %(flags)s
        push    r1
        popf
        hlt
        out     0x500, r4
""" + _HANDLERS


def _run(source: str):
    p = Platform("x86-2005")
    p.load(assemble(source))
    return p.run(100_000)


def test_sti_hlt_with_the_interrupt_already_pending_resumes_and_takes_it():
    r = _run(STI_HLT_PENDING % {"cr8": 0})
    assert (r.stop, r.exit_code) == ("exit", 16)
    assert r.counters["halted_ticks"] == 0


def test_sti_hlt_with_the_pending_interrupt_held_back_by_the_tpr_stays_halted():
    r = _run(STI_HLT_PENDING % {"cr8": 2})  # vector 32: class 2, not above CR8
    assert r.stop == "halted"


@pytest.mark.parametrize("flags", ["FLAGS_TF", "FLAGS_TF | FLAGS_IF"], ids=["if0", "if1"])
def test_hlt_with_tf_delivers_its_db_at_once_and_continues_after_the_hlt(flags):
    r = _run(HLT_TF % {"flags": flags})
    assert (r.stop, r.exit_code) == ("exit", 1), "one #DB, the timer not waited for"
    assert r.counters["halted_ticks"] == 0 and r.clock < 10000
