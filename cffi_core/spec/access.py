"""Linear-address accesses (docs/architecture.md §5): the checks every fetch, load, store,
stack access, frame push and IDT read goes through, in the manual's order.

§5.3: (1) alignment → #AC(0); (2) with ``seglimit`` at CPL ≥ 1, the limit → #GP(0) (MSR_CSLIMIT
for a fetch, MSR_SEGLIMIT for the rest);
(3) with paging, canonical form → #GP(0); (4) with paging, translation and permissions →
#PF; (5) the physical address must be in RAM → #MC.  The first check that fails raises.

The host segment GS (``ldgs``/``sdgs``/``jgs``, §5.4): the offset is checked against
MSR_GSLIMIT (byte-granular) first, then the linear address MSR_GSBASE + offset goes through
the same checks without step 2 — GS is a segment of its own, MSR_SEGLIMIT does not bound it.
"""

from __future__ import annotations

from cffi_core.spec.faults import Fault
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.paging import ACCESS_FETCH, ACCESS_READ, ACCESS_WRITE, walk
from cffi_core.spec.state import AC, CR0_PG, GP, MASK64, MC, PF, State

SEGLIMIT_GRANULE = 0xFFF  # limits have 4 KiB granularity (§5.3)
INSN_SIZE = 4
GS_SIZE = 8  # ldgs, sdgs and jgs move 8 bytes


def beyond_limit(state: State, va: int, size: int, cpl: int, access: int = ACCESS_READ) -> bool:
    """§5.3 step 2: with ``seglimit``, at CPL ≥ 1, is the last byte beyond the limit?  A fetch
    is bounded by MSR_CSLIMIT, every other access by MSR_SEGLIMIT."""
    limit = state.cslimit if access == ACCESS_FETCH else state.seglimit
    return cpl > 0 and "seglimit" in state.features and va + size - 1 > (limit | SEGLIMIT_GRANULE)


def translate(
    state: State, mem: PhysicalMemory, va: int, size: int, access: int, cpl: int, *, segmented: bool = True
) -> int:
    """§5.3: check an access of ``size`` bytes at linear ``va`` made at ``cpl``; return the
    physical address or raise the Fault of the first check that fails.  ``segmented=False``
    skips step 2: an access through GS, which its own limit bounded (``gs_linear``)."""
    if va & (size - 1):
        raise Fault(AC, 0)  # step 1: natural alignment (§5.2)
    if segmented and beyond_limit(state, va, size, cpl, access):
        raise Fault(GP, 0)  # step 2: the segment limit (the code limit for a fetch)
    pa = va
    if state.cr0 & CR0_PG:  # steps 3 and 4: canonical form, then the walk (§7)
        w = walk(state, mem, va, access, cpl, set_ad=True, counters=state.counters)
        if w.fault == GP:
            raise Fault(GP, 0)
        if w.fault == PF:
            raise Fault(PF, w.error_code, va)
        if w.fault == MC:
            raise Fault(MC)
        pa = w.physical
    if pa + size > mem.size:
        raise Fault(MC)  # step 5: beyond RAM
    return pa


def load(
    state: State, mem: PhysicalMemory, va: int, size: int, cpl: int | None = None, *, segmented: bool = True
) -> int:
    """Read ``size`` bytes at linear ``va`` (at the current CPL unless ``cpl`` is given)."""
    if cpl is None:
        cpl = state.cpl
    return mem.read(translate(state, mem, va, size, ACCESS_READ, cpl, segmented=segmented), size)


def store(
    state: State,
    mem: PhysicalMemory,
    va: int,
    size: int,
    value: int,
    cpl: int | None = None,
    *,
    segmented: bool = True,
) -> None:
    """Write the low ``size`` bytes of ``value`` at linear ``va``."""
    if cpl is None:
        cpl = state.cpl
    mem.write(translate(state, mem, va, size, ACCESS_WRITE, cpl, segmented=segmented), size, value)


def gs_linear(state: State, offset: int) -> int:
    """§5.4, the host segment: the linear address of the 8 bytes at ``offset`` in GS, or #GP(0)
    unless all of them lie within it — ``offset + 7 <= MSR_GSLIMIT`` with no wraparound and no
    granularity, so that a limit of 0 (the reset value) refuses every access."""
    if offset + GS_SIZE - 1 > state.gslimit:
        raise Fault(GP, 0)
    return (state.gsbase + offset) & MASK64


def fetch(state: State, mem: PhysicalMemory, pc: int) -> int:
    """The instruction word at ``pc``: a 4-byte access of kind fetch at the current CPL."""
    return mem.read(translate(state, mem, pc, INSN_SIZE, ACCESS_FETCH, state.cpl), INSN_SIZE)
