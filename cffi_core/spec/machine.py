"""The instruction boundary, ticks and the host's ``run`` (docs/architecture.md §6.5, §9,
§10).

§6.5, the order at a boundary.  Before each tick the machine:
(1) if shut down, exits EXIT_SHUTDOWN; (2) delivers a pending #DB (no tick of its own);
(3) if the previous boundary set an interrupt shadow, clears it and skips step 4;
(4) delivers the pending external interrupt if it is deliverable (a tick); (5) if halted,
exits EXIT_HLT (no tick); (6) executes the instruction at pc (a tick).  ``run`` checks its
budget after step 2; any exit of steps 2, 4 or 6 ends the run at once.

A tick is counted (``clock`` and ``counters.ticks``) when it ends, so ``rdtsc`` and
``rdmsr MSR_TSC`` read the ticks completed before their own.
"""

from __future__ import annotations

from cffi_core.spec.access import fetch
from cffi_core.spec.events import deliver_fault, deliver_interrupt, deliver_single_step, interrupt_deliverable
from cffi_core.spec.execute import check_privilege, decode_word
from cffi_core.spec.faults import EXIT_BUDGET, EXIT_HLT, EXIT_SHUTDOWN, Exit, Fault
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.state import FLAGS_TF, UD, State, check_state

_BUDGET = Exit(EXIT_BUDGET)
_HLT = Exit(EXIT_HLT)
_SHUTDOWN = Exit(EXIT_SHUTDOWN)


def step(state: State, mem: PhysicalMemory) -> Exit | None:
    """§6.5: one boundary and at most one tick; the Exit if the machine exits to the host."""
    check_state(state)
    exit_ = boundary(state, mem)
    if exit_ is not None:
        return exit_
    return tick(state, mem)


def run(state: State, mem: PhysicalMemory, budget: int) -> Exit:
    """§10: run ticks until an exit, or EXIT_BUDGET once ``budget`` ticks have run."""
    if budget < 0:
        raise ValueError(f"budget = {budget}: must be >= 0")
    check_state(state)
    done = 0
    while True:
        exit_ = boundary(state, mem)
        if exit_ is not None:
            return exit_
        if done == budget:
            return _BUDGET
        exit_ = tick(state, mem)
        if exit_ is not None:
            return exit_
        done += 1


def boundary(state: State, mem: PhysicalMemory) -> Exit | None:
    """§6.5 steps 1 and 2: shutdown, then the pending single-step #DB (no tick)."""
    if state.shutdown:
        return _SHUTDOWN
    if state.pending_db:
        return deliver_single_step(state, mem)
    return None


def tick(state: State, mem: PhysicalMemory) -> Exit | None:
    """§6.5 steps 3 to 6: the shadow, an external interrupt (a tick), halted (no tick), or
    the instruction at pc (a tick)."""
    if state.int_shadow:
        state.int_shadow = False
    elif interrupt_deliverable(state):
        return _end_tick(state, deliver_interrupt(state, mem))
    if state.halted:
        return _HLT
    return _end_tick(state, execute_instruction(state, mem))


def _end_tick(state: State, exit_: Exit | None) -> Exit | None:
    """§9: count the tick that just ended; an exit happens at the end of its tick."""
    state.clock += 1
    state.counters.ticks += 1
    return exit_


def execute_instruction(state: State, mem: PhysicalMemory) -> Exit | None:
    """§6.5 step 6 without the tick count: fetch, decode, privilege check and body of the
    instruction at pc.  A fault is delivered with pc = the instruction (§6.1); an
    instruction that retires is counted and, if TF was set when it started, leaves a
    single-step #DB pending (§6.4)."""
    pc, cpl, single_step = state.pc, state.cpl, state.flags & FLAGS_TF
    try:
        entry = decode_word(fetch(state, mem, pc))
        if entry is None:
            raise Fault(UD)  # §3: an invalid encoding
        d, body, needs_check = entry
        if needs_check:
            check_privilege(state, d.insn)
        exit_ = body(state, mem, d)
    except Fault as fault:
        return deliver_fault(state, mem, fault, pc)
    state.counters.insn[0][cpl] += 1  # mode 0: the host (no guest mode yet)
    if single_step and d.insn.mnemonic != "int":
        state.pending_db = True  # int n's delivery clears TF: it raises no single-step trap (§6.4)
    return exit_


def advance_clock(state: State, ticks: int) -> None:
    """§9: let ``ticks`` pass without executing (the host's idle skip while halted),
    counted as halted ticks."""
    if ticks < 0:
        raise ValueError(f"ticks = {ticks}: must be >= 0")
    state.clock += ticks
    state.counters.halted_ticks += ticks
