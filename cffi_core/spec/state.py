"""The architectural state of a P64 CPU (docs/architecture.md §2), its reset values, the
constants the manual names, and the counters the spec models (§13).

``State`` carries the same fields, under the same names, as the C core's ``struct p64_cpu``
(``cffi_core/csrc/p64.h``), plus ``clock`` (ticks, §9), ``features`` (§12) and ``counters``.
It is not the TLB's state: the spec has no TLB (see ``cffi_core/spec/__init__.py``).
"""

from __future__ import annotations

import copy as _copy
from dataclasses import dataclass, field, fields

from cffi_core.isa.table import CONTROL_REGISTERS

MASK64 = (1 << 64) - 1
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
SP = 15  # r15 is the stack pointer (§1)

# ---- FLAGS (§2) ----
FLAGS_TF = 1 << 8  # single-step trap after each instruction (§6.4)
FLAGS_IF = 1 << 9  # external interrupts enabled (§6.5)
FLAGS_IOPL_SHIFT = 12
FLAGS_IOPL = 3 << FLAGS_IOPL_SHIFT  # highest CPL allowed cli/sti/in/out
FLAGS_MASK = FLAGS_TF | FLAGS_IF | FLAGS_IOPL  # every other bit reads 0 and ignores writes

# ---- control registers (§2) ----
CR0_PE = 1 << 0  # protection enabled; always 1
CR0_TS = 1 << 3  # task switched; a software flag
CR0_WP = 1 << 4  # read-only pages are read-only at CPL 0-2 too
CR0_PG = 1 << 15  # paging enabled
CR0_MASK = CR0_PE | CR0_TS | CR0_WP | CR0_PG
CR3_FRAME = ((1 << 52) - 1) & ~(PAGE_SIZE - 1)  # bits 51:12: the top-level table
CR4_PL = 3 << 0  # paging levels minus 2 (3 is reserved)
CR4_TSD = 1 << 2  # rdtsc at CPL > 0 raises #GP(0)
CR4_PGE = 1 << 7  # global pages
CR4_MASK = CR4_PL | CR4_TSD | CR4_PGE
CR8_MAX = 15  # the TPR holds 0-15

# ---- MSRs (§2) ----
MSR_TSC = 0x10  # TSC; a write sets tsc_offset
MSR_RSP0 = 0x100  # stack for events entering ring 0 from an outer ring
MSR_RSP1 = 0x101
MSR_RSP2 = 0x102
MSR_SEGLIMIT = 0x200  # the segment limit of data accesses (feature seglimit, §5.3)
MSR_CSLIMIT = 0x201  # the code segment limit: bounds fetch (feature seglimit, §5.3)
MSR_GSBASE = 0x202  # the host segment GS: its base (every profile; ldgs/sdgs/jgs, §5.4)
MSR_GSLIMIT = 0x203  # the host segment GS: the offset of its last byte, byte-granular (§5.4)

# ---- page-table entries (§7.2) ----
PTE_P = 1 << 0  # present
PTE_W = 1 << 1  # writable
PTE_U = 1 << 2  # user accessible
PTE_A = 1 << 5  # accessed
PTE_D = 1 << 6  # dirty (leaf)
PTE_PS = 1 << 7  # page size: 2 MiB at level 2, 1 GiB at level 3
PTE_G = 1 << 8  # global (leaf)
PTE_NX = 1 << 63  # no execute
PTE_FRAME = CR3_FRAME  # bits 51:12
PTE_RESERVED = ((1 << 63) - 1) & ~((1 << 52) - 1)  # bits 62:52

# ---- #PF error code (§7.5) ----
PF_P = 1 << 0  # protection violation (or RSVD); 0: not present
PF_W = 1 << 1  # the access was a write
PF_U = 1 << 2  # the access was made at CPL 3
PF_RSVD = 1 << 3  # a reserved bit was set
PF_I = 1 << 4  # the access was an instruction fetch

# ---- IDT gates (§6.2) ----
GATE_SIZE = 16
GATE_P = 1 << 0  # present
GATE_TYPE_SHIFT = 1  # bits 2:1
GATE_DPL_SHIFT = 4  # bits 5:4
GATE_RING_SHIFT = 6  # bits 7:6
GATE_INTERRUPT = 0  # clears FLAGS.IF
GATE_TRAP = 1  # keeps FLAGS.IF
GATE_HOST = 2  # exits to the host
GATE_RESERVED = 3  # raises #GP like a not-present gate

# ---- vectors (§6.1) ----
DE = 0  # divide error
DB = 1  # debug (single step)
BP = 3  # breakpoint: int 3
UD = 6  # invalid opcode
DF = 8  # double fault
GP = 13  # general protection
PF = 14  # page fault
AC = 17  # alignment check
MC = 18  # machine check
VECTORS_WITH_ERROR_CODE = frozenset({DF, GP, PF, AC})

FEATURES = frozenset({"classic", "seglimit", "vmx", "ept", "vpid", "tpr_shadow", "iommu", "pwc"})


class StateError(ValueError):
    """Host-written state that no program could produce (§10): ``run`` refuses it."""


@dataclass
class Counters:
    """The counters of §13 that the spec models (``struct p64_counters`` without the TLB and
    the decoded-instruction cache).  With no TLB every paged access walks, so ``walks``,
    ``walk_refs`` and ``ad_updates`` count the spec's walks, not the core's."""

    ticks: int = 0
    halted_ticks: int = 0
    insn: list[list[int]] = field(default_factory=lambda: [[0] * 4 for _ in range(2)])  # [mode][cpl]
    exceptions: list[int] = field(default_factory=lambda: [0] * 256)  # and software interrupts
    interrupts: list[int] = field(default_factory=lambda: [0] * 256)  # external, by vector
    double_faults: int = 0
    triple_faults: int = 0
    host_gate_exits: int = 0
    hcalls: int = 0
    vmcalls: int = 0
    port_reads: int = 0
    port_writes: int = 0
    walks: int = 0
    walk_refs: int = 0  # page-table entries read
    ad_updates: int = 0  # entries written back to set A and/or D

    def as_dict(self) -> dict[str, object]:
        """Every counter by name, arrays as (copied) lists."""
        return {f.name: _copy.deepcopy(getattr(self, f.name)) for f in fields(self)}


@dataclass
class State:
    """One CPU: the fields of ``struct p64_cpu`` plus clock, features and counters.

    Equality compares the architectural state (counters are left out).  ``r[0]`` is kept 0:
    instructions never write it (§1).
    """

    r: list[int] = field(default_factory=lambda: [0] * 16)
    pc: int = 0
    flags: int = 0
    cpl: int = 0
    cr0: int = CR0_PE
    cr2: int = 0
    cr3: int = 0
    cr4: int = 2  # CR4_PL = 2: 4-level paging
    cr8: int = 0
    idtr: int = 0
    rsp: list[int] = field(default_factory=lambda: [0] * 3)  # MSR_RSP0..2
    seglimit: int = MASK64  # MSR_SEGLIMIT; reset all ones (§5.3)
    cslimit: int = MASK64  # MSR_CSLIMIT; reset all ones (§5.3)
    gsbase: int = 0  # MSR_GSBASE; reset 0 (§5.4)
    gslimit: int = 0  # MSR_GSLIMIT; reset 0: every ldgs/sdgs/jgs raises #GP(0) (§5.4)
    tsc_offset: int = 0  # TSC = clock + tsc_offset (§9)
    halted: bool = False  # after hlt until an event is delivered
    int_shadow: bool = False  # the next boundary takes no interrupt (after sti)
    intr_vector: int = -1  # pending external vector presented by the host, -1 none
    intr_acked: int = -1  # vector delivered since the host cleared it, -1 none
    shutdown: bool = False  # after a triple fault
    pending_db: bool = False  # a single-step #DB waits for the next boundary
    vm_tag: int = 0  # TLB context tag: carried for the core's sake, no effect here
    clock: int = 0  # ticks since reset, halted ticks included (§9)
    features: frozenset[str] = frozenset()
    counters: Counters = field(default_factory=Counters, compare=False, repr=False)

    @classmethod
    def reset(cls, entry: int = 0, features: frozenset[str] | set[str] = frozenset()) -> State:
        """The reset state of §2 with ``pc = entry``."""
        unknown = set(features) - FEATURES
        if unknown:
            raise ValueError(f"unknown features {sorted(unknown)}; known: {sorted(FEATURES)}")
        return cls(pc=entry & MASK64, features=frozenset(features))

    def copy(self) -> State:
        """A deep copy (registers, MSRs and counters are not shared)."""
        return _copy.deepcopy(self)

    @property
    def iopl(self) -> int:
        return (self.flags & FLAGS_IOPL) >> FLAGS_IOPL_SHIFT

    @property
    def paging_levels(self) -> int:
        return (self.cr4 & CR4_PL) + 2


def counters_of(state: State) -> dict[str, object]:
    """The state's counters as a plain mapping (the spec attaches them to the State)."""
    return state.counters.as_dict()


def check_state(state: State) -> None:
    """Refuse host-written state that would be impossible (§10), naming the field."""
    if len(state.r) != 16 or len(state.rsp) != 3:
        raise StateError("r must hold 16 registers and rsp 3")
    state.r[0] = 0  # r0 reads zero whatever the host wrote (the core clears it on entry too)
    words = (
        state.pc,
        state.idtr,
        state.seglimit,
        state.cslimit,
        state.gsbase,
        state.gslimit,
        state.tsc_offset,
        state.clock,
        state.cr2,
        *state.r,
        *state.rsp,
    )
    if not all(type(v) is int and 0 <= v <= MASK64 for v in words):
        _name_the_bad_word(state)
    _require(0 <= state.cpl <= 3, "cpl", state.cpl, "must be 0..3")
    _require(not state.flags & ~FLAGS_MASK, "flags", state.flags, "reserved bits set")
    for crn in CONTROL_REGISTERS:
        value = getattr(state, f"cr{crn}")
        why = cr_write_error(crn, value) if type(value) is int and 0 <= value <= MASK64 else "not a 64-bit value"
        _require(why is None, f"cr{crn}", value, str(why))
    _require(-1 <= state.intr_vector <= 255, "intr_vector", state.intr_vector, "must be -1..255")
    _require(-1 <= state.intr_acked <= 255, "intr_acked", state.intr_acked, "must be -1..255")


def _name_the_bad_word(state: State) -> None:
    names = ("pc", "idtr", "seglimit", "cslimit", "gsbase", "gslimit", "tsc_offset", "clock", "cr2")
    named = [(name, getattr(state, name)) for name in names]
    named += [(f"r[{i}]", v) for i, v in enumerate(state.r)] + [(f"rsp[{i}]", v) for i, v in enumerate(state.rsp)]
    for name, value in named:
        _require(type(value) is int and 0 <= value <= MASK64, name, value, "must be a 64-bit unsigned integer")


def cr_write_error(crn: int, value: int) -> str | None:
    """§2: why writing ``value`` to CRn raises #GP(0), or None when the write is allowed."""
    if crn == 0:
        if not value & CR0_PE:
            return "CR0.PE is always 1"
        if value & ~CR0_MASK:
            return "reserved CR0 bits"
    elif crn == 3 and value & ~CR3_FRAME:
        return "CR3 bits 11:0 or 63:52"
    elif crn == 4 and (value & ~CR4_MASK or value & CR4_PL == CR4_PL):
        return "CR4.PL = 3 or reserved CR4 bits"
    elif crn == 8 and value > CR8_MAX:
        return "CR8 above 15"
    return None


def _require(ok: object, name: str, value: object, why: str) -> None:
    if not ok:
        shown = f"{value:#x}" if isinstance(value, int) else repr(value)
        raise StateError(f"{name} = {shown}: {why}")
