"""Interrupts and exceptions (docs/architecture.md §6): delivery through the IDT, host
gates, nested faults, the single-step trap and external interrupts.

``deliver`` is §6.3 steps 1-8 and raises a ``Fault`` when a step fails.  Who catches it
depends on the event being delivered (§6.6, read the x86 way):

- ``int n``: the fault is the *instruction's* fault (pushed pc = the ``int``), delivered by
  the instruction boundary like any other instruction fault;
- an external interrupt: the fault is delivered as a fault at the interrupted instruction
  (so a bad gate of an interrupt shows its #GP(8v + 2 + EXT) with EXT = 1);
- an exception (fault, trap or abort): the machine delivers #DF instead, and if that fails
  it shuts down (triple fault).

Every delivery, successful or stopped at a host gate, clears ``halted`` (§6.5).  CR2 is
written whenever a #PF is raised, nested ones included (§6.6).
"""

from __future__ import annotations

from dataclasses import dataclass

from cffi_core.spec.access import load, store
from cffi_core.spec.faults import (
    EVENT_ABORT,
    EVENT_EXTERNAL,
    EVENT_FAULT,
    EVENT_SOFTWARE,
    EVENT_TRAP,
    EXIT_HOST_GATE,
    EXIT_SHUTDOWN,
    EventKind,
    Exit,
    Fault,
)
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.state import (
    DB,
    DF,
    FLAGS_IF,
    FLAGS_TF,
    GATE_DPL_SHIFT,
    GATE_HOST,
    GATE_INTERRUPT,
    GATE_P,
    GATE_RESERVED,
    GATE_RING_SHIFT,
    GATE_SIZE,
    GATE_TYPE_SHIFT,
    GP,
    MASK64,
    PF,
    SP,
    State,
)

STACK_ALIGN = 0xF  # frames start 16-byte aligned, as on x86-64 (§6.3 step 6)
QUAD = 8


@dataclass(frozen=True, slots=True)
class Event:
    """An event to deliver: its vector, class (§6.1), pushed pc, error code (None when the
    event has none) and, for #PF, the faulting linear address."""

    vector: int
    kind: EventKind
    pc: int
    error_code: int | None = None
    address: int = 0


# ---- §6.3: delivery through the IDT ----


def deliver(state: State, mem: PhysicalMemory, event: Event) -> Exit | None:
    """§6.3 steps 1-8: deliver ``event``; an Exit at a host gate, None when the handler is
    entered.  Raises Fault if a step fails (only frame-push memory and A/D bits changed)."""
    v = event.vector
    ext = 0 if event.kind is EVENT_SOFTWARE else 1
    handler, attributes = read_gate(state, mem, v)
    gate_type = (attributes >> GATE_TYPE_SHIFT) & 3
    dpl = (attributes >> GATE_DPL_SHIFT) & 3
    ring = (attributes >> GATE_RING_SHIFT) & 3
    if not attributes & GATE_P or gate_type == GATE_RESERVED:
        raise Fault(GP, 8 * v + 2 + ext)  # step 2
    if event.kind is EVENT_SOFTWARE and state.cpl > dpl:
        raise Fault(GP, 8 * v + 2)  # step 3: int n checks the gate's DPL
    if gate_type == GATE_HOST:
        return exit_to_host(state, event)  # step 4
    if ring > state.cpl:
        raise Fault(GP, 8 * v + 2 + ext)  # step 5: events never go to an outer ring
    sp = push_frame(state, mem, event, ring, new_stack(state, ring))  # steps 6 and 7
    enter_handler(state, event, handler, ring, sp, gate_type)  # step 8
    return None


def read_gate(state: State, mem: PhysicalMemory, vector: int) -> tuple[int, int]:
    """§6.3 step 1: the gate's handler and attributes, read as supervisor
    reads; like x86's IDT accesses they are not checked against the segment limit (§5.3)."""
    entry = (state.idtr + GATE_SIZE * vector) & MASK64
    handler = load(state, mem, entry, QUAD, cpl=0)
    attributes = load(state, mem, (entry + QUAD) & MASK64, QUAD, cpl=0)
    return handler, attributes


def exit_to_host(state: State, event: Event) -> Exit:
    """§6.3 step 4: no frame; CPL, FLAGS and sp unchanged; pc = the event's pushed pc."""
    state.pc = event.pc
    state.halted = False
    state.counters.host_gate_exits += 1
    count_delivery(state, event)
    has_error = event.error_code is not None
    return Exit(
        EXIT_HOST_GATE,
        vector=event.vector,
        kind=event.kind,
        has_error=has_error,
        error_code=event.error_code if has_error else 0,
        address=event.address,
    )


def new_stack(state: State, ring: int) -> int:
    """§6.3 step 6: MSR_RSP[ring] when entering an inner ring, else sp; 16-byte aligned."""
    sp = state.rsp[ring] if ring < state.cpl else state.r[SP]
    return sp & ~STACK_ALIGN


def push_frame(state: State, mem: PhysicalMemory, event: Event, ring: int, sp: int) -> int:
    """§6.3 step 7: push sp, FLAGS, cs, pc and the error code as stores at CPL ``ring``;
    return the new sp."""
    frame = [state.r[SP], state.flags, state.cpl, event.pc]
    if event.error_code is not None:
        frame.append(event.error_code)
    for value in frame:
        sp = (sp - QUAD) & MASK64
        store(state, mem, sp, QUAD, value, cpl=ring)
    return sp


def enter_handler(state: State, event: Event, handler: int, ring: int, sp: int, gate_type: int) -> None:
    """§6.3 step 8: switch to the handler; TF is cleared, and IF too by an interrupt gate."""
    state.r[SP] = sp
    state.cpl = ring
    state.pc = handler
    state.flags &= ~FLAGS_TF
    if gate_type == GATE_INTERRUPT:
        state.flags &= ~FLAGS_IF
    state.halted = False
    count_delivery(state, event)


def count_delivery(state: State, event: Event) -> None:
    """§13: exceptions and software interrupts by vector; external interrupts apart."""
    if event.kind is EVENT_EXTERNAL:
        state.counters.interrupts[event.vector] += 1
    else:
        state.counters.exceptions[event.vector] += 1


# ---- §6.6: faults, and faults while delivering them ----


def deliver_fault(state: State, mem: PhysicalMemory, fault: Fault, pc: int) -> Exit | None:
    """§6.1: deliver a fault raised by the instruction at ``pc`` (the pushed pc)."""
    record_fault(state, fault)
    return deliver_exception(state, mem, Event(fault.vector, EVENT_FAULT, pc, fault.error_code, fault.address))


def deliver_exception(state: State, mem: PhysicalMemory, event: Event) -> Exit | None:
    """§6.6: deliver a fault, trap or abort; a fault during its delivery makes a #DF (error
    code 0, pushed pc of the first event), and a fault while delivering #DF shuts down."""
    try:
        return deliver(state, mem, event)
    except Fault as nested:
        record_fault(state, nested)
    state.counters.double_faults += 1
    try:
        return deliver(state, mem, Event(DF, EVENT_ABORT, event.pc, error_code=0))
    except Fault as nested:
        record_fault(state, nested)
    return shut_down(state)


def record_fault(state: State, fault: Fault) -> None:
    """§7.5: a #PF leaves its linear address in CR2, even when it is nested (§6.6)."""
    if fault.vector == PF:
        state.cr2 = fault.address


def shut_down(state: State) -> Exit:
    """§6.6: triple fault; every later run exits the same way until the host resets."""
    state.shutdown = True
    state.counters.triple_faults += 1
    return Exit(EXIT_SHUTDOWN)


# ---- §6.4 and §6.5: the single-step trap and external interrupts ----


def deliver_single_step(state: State, mem: PhysicalMemory) -> Exit | None:
    """§6.4: the pending #DB, a trap whose pushed pc is the next instruction (pc now)."""
    state.pending_db = False
    return deliver_exception(state, mem, Event(DB, EVENT_TRAP, state.pc))


def interrupt_deliverable(state: State) -> bool:
    """§6.5: the pending vector V is taken when IF = 1 and V >> 4 > CR8 (the interrupt
    shadow is the boundary's business)."""
    v = state.intr_vector
    return v >= 0 and bool(state.flags & FLAGS_IF) and v >> 4 > state.cr8


def deliver_interrupt(state: State, mem: PhysicalMemory) -> Exit | None:
    """§6.5: acknowledge the pending vector to the host, then deliver it at pc; if the
    delivery faults, that fault is delivered at the interrupted instruction."""
    vector = state.intr_vector
    state.intr_vector = -1
    state.intr_acked = vector
    try:
        return deliver(state, mem, Event(vector, EVENT_EXTERNAL, state.pc))
    except Fault as fault:
        return deliver_fault(state, mem, fault, state.pc)
