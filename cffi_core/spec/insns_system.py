"""Instruction group ``system`` (docs/architecture.md §2, §3, §4, §6, §10): software
interrupts and ``iret``, FLAGS, port I/O, control registers, the IDT register, the TSC and
MSRs, and the host callouts.

The privilege check of §4.2/§4.4 has already passed when a body runs (``execute`` makes it
first).  Bodies that end in an exit to the host retire first (pc advances) and return the
``Exit``.
"""

from __future__ import annotations

from cffi_core.isa.encoding import Decoded
from cffi_core.spec.access import load
from cffi_core.spec.events import Event, deliver
from cffi_core.spec.faults import EVENT_SOFTWARE, EXIT_HCALL, EXIT_HLT, EXIT_IO_IN, EXIT_IO_OUT, Exit, Fault
from cffi_core.spec.insns_stack import pop_quad, push_quad
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.registers import INSN_SIZE, advance, jump, write_rd
from cffi_core.spec.state import (
    FLAGS_IF,
    FLAGS_IOPL,
    FLAGS_TF,
    GP,
    MASK64,
    MSR_CSLIMIT,
    MSR_GSBASE,
    MSR_GSLIMIT,
    MSR_RSP0,
    MSR_RSP2,
    MSR_SEGLIMIT,
    MSR_TSC,
    SP,
    UD,
    State,
    cr_write_error,
)

PORT_MASK = 0xFFFF
SMSW_MASK = 0xFFFF  # smsw reads CR0[15:0]
CPL_MASK = 3
QUAD = 8


# ---- system: interrupts and FLAGS ----


def flags_after_pop(state: State, popped: int) -> int:
    """§6.4, the POPF rules: TF is written; IF changes only if CPL <= IOPL; IOPL changes only
    at CPL 0 (both judged before the write); a refused change is silently ignored."""
    flags = (state.flags & ~FLAGS_TF) | (popped & FLAGS_TF)
    if state.cpl <= state.iopl:
        flags = (flags & ~FLAGS_IF) | (popped & FLAGS_IF)
    if state.cpl == 0:
        flags = (flags & ~FLAGS_IOPL) | (popped & FLAGS_IOPL)
    return flags


def execute_int(state: State, mem: PhysicalMemory, d: Decoded) -> Exit | None:
    """§6.3: software interrupt through vector imm8, pushed pc = the next instruction.  A
    failed delivery (DPL, bad gate, bad stack) is this instruction's fault."""
    return deliver(state, mem, Event(d.imm, EVENT_SOFTWARE, (state.pc + INSN_SIZE) & MASK64))


def execute_iret(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """§6.4: pop pc, cs, FLAGS, sp as loads at the current CPL; #GP(0) if the popped CPL is
    inner; FLAGS under the POPF rules."""
    sp = state.r[SP]
    pc, cs, flags, new_sp = (load(state, mem, (sp + QUAD * i) & MASK64, QUAD) for i in range(4))
    if cs & CPL_MASK < state.cpl:
        raise Fault(GP, 0)
    state.flags = flags_after_pop(state, flags)
    state.cpl = cs & CPL_MASK
    state.r[SP] = new_sp
    jump(state, pc)


def execute_hlt(state: State, mem: PhysicalMemory, d: Decoded) -> Exit:
    """§6.5: retire, halt until an event is delivered, and exit EXIT_HLT (pc after hlt)."""
    advance(state)
    state.halted = True
    return Exit(EXIT_HLT)


def execute_cli(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """FLAGS.IF = 0."""
    state.flags &= ~FLAGS_IF
    advance(state)


def execute_sti(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """FLAGS.IF = 1; with IF = 0 before, the next boundary is in an interrupt shadow (§6.5)."""
    if not state.flags & FLAGS_IF:
        state.int_shadow = True
    state.flags |= FLAGS_IF
    advance(state)


def execute_pushf(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """push(FLAGS): the real IF and IOPL (§4.3)."""
    push_quad(state, mem, state.flags)
    advance(state)


def execute_popf(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """FLAGS = pop() under the POPF rules (§6.4)."""
    state.flags = flags_after_pop(state, pop_quad(state, mem))
    advance(state)


# ---- system: port I/O and host callouts (exits, §10) ----


def execute_in(state: State, mem: PhysicalMemory, d: Decoded) -> Exit:
    """rd = port[(rs1 + imm16) & 0xffff]: retire, then exit; the host writes rd."""
    port = (state.r[d.rs1] + d.imm) & PORT_MASK
    advance(state)
    state.counters.port_reads += 1
    return Exit(EXIT_IO_IN, port=port, reg=d.rd)


def execute_out(state: State, mem: PhysicalMemory, d: Decoded) -> Exit:
    """port[(rs1 + imm16) & 0xffff] = rs2: retire, then exit with port and value."""
    port = (state.r[d.rs1] + d.imm) & PORT_MASK
    advance(state)
    state.counters.port_writes += 1
    return Exit(EXIT_IO_OUT, port=port, value=state.r[d.rs2])


def execute_hcall(state: State, mem: PhysicalMemory, d: Decoded) -> Exit:
    """§3: retire, then exit to the host with n (CPL <= 1 was checked)."""
    advance(state)
    state.counters.hcalls += 1
    return Exit(EXIT_HCALL, number=d.imm)


def execute_vmcall(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """§3: #UD outside guest mode, and P64 has no guest mode yet (feature vmx)."""
    raise Fault(UD)


def execute_ud(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """§3: raise #UD, always."""
    raise Fault(UD)


# ---- system: control registers, IDTR, TSC, MSRs ----


def execute_mtcr(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """CRn = rs1, or #GP(0) for a value the CR's rules of §2 refuse."""
    value = state.r[d.rs1]
    if cr_write_error(d.crn, value) is not None:
        raise Fault(GP, 0)
    setattr(state, f"cr{d.crn}", value)
    advance(state)


def execute_mfcr(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = CRn."""
    write_rd(state, d.rd, getattr(state, f"cr{d.crn}"))
    advance(state)


def execute_lidt(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """IDTR = rs1 (a linear address, §6.2)."""
    state.idtr = state.r[d.rs1]
    advance(state)


def execute_sidt(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = IDTR, at any CPL on the x86-like P64 (§4.3)."""
    write_rd(state, d.rd, state.idtr)
    advance(state)


def execute_smsw(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = CR0[15:0] (PG, WP, TS, PE), at any CPL on the x86-like P64 (§4.3)."""
    write_rd(state, d.rd, state.cr0 & SMSW_MASK)
    advance(state)


def execute_rdcs(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = cs: the real CPL in bits 1:0 (§4.3)."""
    write_rd(state, d.rd, state.cpl)
    advance(state)


def tsc(state: State) -> int:
    """§9: clock + TSC offset, the clock counting the ticks before the current one."""
    return (state.clock + state.tsc_offset) & MASK64


def execute_rdtsc(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = TSC (CR4.TSD was checked)."""
    write_rd(state, d.rd, tsc(state))
    advance(state)


def read_msr(state: State, index: int) -> int:
    """§2 MSRs: the value of MSR ``index``, or #GP(0) if it does not exist."""
    if index == MSR_TSC:
        return tsc(state)
    if MSR_RSP0 <= index <= MSR_RSP2:
        return state.rsp[index - MSR_RSP0]
    if index == MSR_SEGLIMIT and "seglimit" in state.features:
        return state.seglimit
    if index == MSR_CSLIMIT and "seglimit" in state.features:
        return state.cslimit
    if index == MSR_GSBASE:  # the host segment: on every profile (§5.3)
        return state.gsbase
    if index == MSR_GSLIMIT:
        return state.gslimit
    raise Fault(GP, 0)


def write_msr(state: State, index: int, value: int) -> None:
    """§2 MSRs: write MSR ``index``; a TSC write sets the offset so the TSC reads ``value`` now."""
    if index == MSR_TSC:
        state.tsc_offset = (value - state.clock) & MASK64
    elif MSR_RSP0 <= index <= MSR_RSP2:
        state.rsp[index - MSR_RSP0] = value
    elif index == MSR_SEGLIMIT and "seglimit" in state.features:
        state.seglimit = value
    elif index == MSR_CSLIMIT and "seglimit" in state.features:
        state.cslimit = value
    elif index == MSR_GSBASE:  # any 64-bit value (§2)
        state.gsbase = value
    elif index == MSR_GSLIMIT:
        state.gslimit = value
    else:
        raise Fault(GP, 0)


def execute_rdmsr(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """rd = MSR[rs1]; #GP(0) if no such MSR."""
    write_rd(state, d.rd, read_msr(state, state.r[d.rs1]))
    advance(state)


def execute_wrmsr(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """MSR[rs1] = rs2; #GP(0) if no such MSR."""
    write_msr(state, state.r[d.rs1], state.r[d.rs2])
    advance(state)


def execute_invlpg(state: State, mem: PhysicalMemory, d: Decoded) -> None:
    """§8.1: drop the cached translations of the page of rs1 + sext(imm16).  The spec caches
    none, so only pc moves; the address is not checked (as on x86)."""
    advance(state)
