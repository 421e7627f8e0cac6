"""The executable spec of P64: a pure-Python interpreter of docs/architecture.md, written
to be read.  The C core is tested against it, and VMMs use it as their instruction emulator.

Reading order: ``state`` (registers, constants, counters) → ``memory`` (physical memory) →
``paging`` (§7, the walk) → ``access`` (§5.3, the checks of one access) → ``events`` (§6,
delivery and nested faults) → ``insns_alu``, ``insns_mem``, ``insns_branch``,
``insns_stack``, ``insns_system`` (one ``execute_<mnemonic>`` per row of the instruction
table) → ``execute`` (decode, privilege check, dispatch) → ``machine`` (the boundary,
``step``, ``run``).

Use::

    state = State.reset(entry=0x1000, features=frozenset({"seglimit"}))
    mem = ByteMemory(1 << 20)            # or any PhysicalMemory accessor
    exit_ = run(state, mem, budget=1000)  # an Exit, as struct p64_exit
    counters_of(state)["ticks"]          # counters live on the State

**Emulating one instruction in a VMM.**  Give the virtual CPU a ``State`` and a
``PhysicalMemory`` accessor that maps guest-physical addresses to the VMM's storage, then:

- ``step(state, mem)`` runs one boundary of §6.5 (a pending #DB, an interrupt the VMM set in
  ``state.intr_vector``, ``halted``) and at most one tick, delivering faults through the
  guest's IDT like the hardware would; or
- ``execute_instruction(state, mem)`` runs just the instruction at ``state.pc`` (fetched
  through the guest's page tables, faults delivered to the guest, no tick counted); or
- ``execute(state, mem, decode(word))`` applies one already-decoded instruction to the state
  and raises ``Fault`` instead of delivering it; ``deliver_fault(state, mem, fault, pc)``
  then reflects the fault into the guest.

An exit (port I/O, ``hlt``, ``hcall``, a host gate) comes back as an ``Exit`` for the VMM to
handle, exactly as from ``run``.

**What the spec does not model.**  The TLB (§8): every access walks the page tables, which
§8.1 makes indistinguishable for programs that invalidate after changing an entry; so
``invlpg`` only advances pc and CR writes flush nothing.  Guest mode (feature ``vmx``):
``vmcall`` raises #UD, as the manual says for a machine without guest mode, and ``ldgs``,
``sdgs``, ``jgs`` and the GS MSRs work as outside guest mode (their #UD and #GP(0) there are the core's,
docs/vmx.md V.2).

**Readings of the manual** (the most x86-like where it is open; see each module):

- §6.6 nested faults: an exception raised while delivering ``int n`` is the ``int``
  instruction's own fault (#GP(8v + 2) for a bad gate or DPL, pushed pc = the ``int``); one
  raised while delivering an external interrupt is delivered as a fault at the interrupted
  instruction (#GP(8v + 3): EXT = 1); one raised while delivering an exception (fault, trap,
  abort) becomes #DF, and one raised while delivering #DF shuts down.
- §5.3 step 2 for IDT reads: the entry is read (checks 1, 3-5 as a supervisor read), then
  checked against the limit at the gate's GATE_RING (#GP(0)), before step 2 of §6.3.
- §9: a tick is counted when it ends, so ``rdtsc`` reads the ticks before its own.
- §6.1: ``int n`` never pushes an error code, whatever n; #AC pushes 0.
- §13: ``exceptions[v]``/``interrupts[v]`` count deliveries that reached a handler or a host
  gate; ``double_faults`` counts #DFs raised, ``triple_faults`` shutdowns; ``insn`` counts
  retired instructions (``int n`` included) by the CPL they started at.
"""

from __future__ import annotations

from cffi_core.spec.access import fetch, load, store, translate
from cffi_core.spec.events import Event, deliver, deliver_exception, deliver_fault
from cffi_core.spec.execute import EXECUTORS, check_privilege, decode_word, execute
from cffi_core.spec.faults import (
    EVENT_ABORT,
    EVENT_EXTERNAL,
    EVENT_FAULT,
    EVENT_SOFTWARE,
    EVENT_TRAP,
    EXIT_BUDGET,
    EXIT_HCALL,
    EXIT_HLT,
    EXIT_HOST_GATE,
    EXIT_IO_IN,
    EXIT_IO_OUT,
    EXIT_SHUTDOWN,
    EventKind,
    Exit,
    ExitReason,
    Fault,
)
from cffi_core.spec.machine import advance_clock, execute_instruction, run, step
from cffi_core.spec.memory import ByteMemory, PhysicalMemory, read_bytes, write_bytes
from cffi_core.spec.paging import ACCESS_FETCH, ACCESS_READ, ACCESS_WRITE, WalkResult, walk
from cffi_core.spec.state import (
    AC,
    BP,
    CR0_PE,
    CR0_PG,
    CR0_TS,
    CR0_WP,
    CR4_PGE,
    CR4_PL,
    CR4_TSD,
    DB,
    DE,
    DF,
    FLAGS_IF,
    FLAGS_IOPL,
    FLAGS_TF,
    GATE_DPL_SHIFT,
    GATE_HOST,
    GATE_INTERRUPT,
    GATE_P,
    GATE_RESERVED,
    GATE_RING_SHIFT,
    GATE_TRAP,
    GATE_TYPE_SHIFT,
    GP,
    MC,
    MSR_CSLIMIT,
    MSR_GSBASE,
    MSR_GSLIMIT,
    MSR_RSP0,
    MSR_RSP1,
    MSR_RSP2,
    MSR_SEGLIMIT,
    MSR_TSC,
    PF,
    PF_I,
    PF_P,
    PF_RSVD,
    PF_U,
    PF_W,
    PTE_A,
    PTE_D,
    PTE_G,
    PTE_NX,
    PTE_P,
    PTE_PS,
    PTE_U,
    PTE_W,
    SP,
    UD,
    Counters,
    State,
    StateError,
    check_state,
    counters_of,
)

__all__ = [
    "AC", "ACCESS_FETCH", "ACCESS_READ", "ACCESS_WRITE", "BP", "CR0_PE", "CR0_PG", "CR0_TS", "CR0_WP",
    "CR4_PGE", "CR4_PL", "CR4_TSD", "DB", "DE", "DF", "EVENT_ABORT", "EVENT_EXTERNAL", "EVENT_FAULT",
    "EVENT_SOFTWARE", "EVENT_TRAP", "EXECUTORS", "EXIT_BUDGET", "EXIT_HCALL", "EXIT_HLT", "EXIT_HOST_GATE",
    "EXIT_IO_IN", "EXIT_IO_OUT", "EXIT_SHUTDOWN", "FLAGS_IF", "FLAGS_IOPL", "FLAGS_TF", "GATE_DPL_SHIFT",
    "GATE_HOST", "GATE_INTERRUPT", "GATE_P", "GATE_RESERVED", "GATE_RING_SHIFT", "GATE_TRAP",
    "GATE_TYPE_SHIFT", "GP", "MC", "MSR_CSLIMIT", "MSR_GSBASE", "MSR_GSLIMIT", "MSR_RSP0", "MSR_RSP1", "MSR_RSP2",
    "MSR_SEGLIMIT", "MSR_TSC", "PF", "PF_I", "PF_P", "PF_RSVD", "PF_U", "PF_W", "PTE_A", "PTE_D", "PTE_G", "PTE_NX", "PTE_P", "PTE_PS",
    "PTE_U", "PTE_W", "SP", "UD", "ByteMemory", "Counters", "Event", "EventKind", "Exit", "ExitReason",
    "Fault", "PhysicalMemory", "State", "StateError", "WalkResult", "advance_clock", "check_privilege",
    "check_state", "counters_of", "decode_word", "deliver", "deliver_exception", "deliver_fault", "execute",
    "execute_instruction", "fetch", "load", "read_bytes", "run", "step", "store", "translate", "walk",
    "write_bytes",
]  # fmt: skip
