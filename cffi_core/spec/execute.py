"""Decoding, the privilege check and dispatch (docs/architecture.md §3, §4.2, §4.4).

The instruction table (``cffi_core.isa.table``) is the only list of instructions: each row's
body is ``execute_<mnemonic>`` in the module of its group (``insns_alu``, ``insns_mem``,
``insns_branch``, ``insns_stack``, ``insns_system``), found by name at import.  Decoding goes
through ``cffi_core.isa.encoding.decode``, memoised per word (a word always decodes the same
way, so the cache needs no invalidation; self-modifying code just fetches a new word).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from cffi_core.isa.encoding import Decoded, decode
from cffi_core.isa.table import INSTRUCTIONS, Insn, Privilege, Sensitivity
from cffi_core.spec import insns_alu, insns_branch, insns_mem, insns_stack, insns_system
from cffi_core.spec.faults import Exit, Fault
from cffi_core.spec.memory import PhysicalMemory
from cffi_core.spec.state import CR4_TSD, GP, UD, State

Executor = Callable[[State, PhysicalMemory, Decoded], "Exit | None"]

GROUPS: dict[str, ModuleType] = {
    "alu": insns_alu,
    "mem": insns_mem,
    "branch": insns_branch,
    "stack": insns_stack,
    "system": insns_system,
}


def _find_executors() -> dict[str, Executor]:
    found = {i.mnemonic: getattr(GROUPS.get(i.group), f"execute_{i.mnemonic}", None) for i in INSTRUCTIONS}
    missing = sorted(f"{i.group}.execute_{i.mnemonic}" for i in INSTRUCTIONS if found[i.mnemonic] is None)
    if missing:
        raise ImportError(f"the spec has no body for table rows: {', '.join(missing)}")
    return found


EXECUTORS: dict[str, Executor] = _find_executors()


# ---- §4.2 and §4.4: the privilege check ----


def _always_allowed(insn: Insn) -> bool:
    """Innocuous user-class rows pass the check at every CPL, with or without ``classic``."""
    return insn.privilege is Privilege.USER and insn.sensitivity is Sensitivity.INNOCUOUS


def check_privilege(state: State, insn: Insn) -> None:
    """§4.2: refuse the instruction (#GP(0) or #UD) before it has any effect; §4.4: with
    ``classic``, every sensitive or privileged instruction raises #GP(0) at CPL > 0."""
    p, cpl = insn.privilege, state.cpl
    if p is Privilege.NEVER or p is Privilege.VMX:
        raise Fault(UD)  # ud always; vmcall outside guest mode, which P64 does not have yet
    if cpl == 0:
        return
    if "classic" in state.features and insn.sensitivity in (Sensitivity.SENSITIVE, Sensitivity.PRIVILEGED):
        raise Fault(GP, 0)
    if (
        p is Privilege.KERNEL
        or (p is Privilege.IOPL and cpl > state.iopl)
        or (p is Privilege.TSD and state.cr4 & CR4_TSD)
        or (p is Privilege.HOST and cpl > 1)
    ):
        raise Fault(GP, 0)


# ---- decoding, memoised ----

DecodedEntry = tuple[Decoded, Executor, bool]  # the word, its body, and whether to check privilege
_DECODE_CACHE: dict[int, DecodedEntry | None] = {}
_DECODE_CACHE_LIMIT = 1 << 16


def decode_word(word: int) -> DecodedEntry | None:
    """The decoded word, its body and whether it needs the privilege check; None for an
    invalid encoding (#UD)."""
    try:
        return _DECODE_CACHE[word]
    except KeyError:
        pass
    d = decode(word)
    entry = None if d is None else (d, EXECUTORS[d.insn.mnemonic], not _always_allowed(d.insn))
    if len(_DECODE_CACHE) >= _DECODE_CACHE_LIMIT:
        _DECODE_CACHE.clear()
    _DECODE_CACHE[word] = entry
    return entry


def execute(state: State, mem: PhysicalMemory, d: Decoded) -> Exit | None:
    """One decoded instruction at ``state.pc``: the privilege check, then its body.  Raises
    Fault (state unchanged); no tick, no counters, no single step: that is the boundary's
    work (``cffi_core.spec.machine``).  For a VMM emulating one instruction it decoded."""
    check_privilege(state, d.insn)
    return EXECUTORS[d.insn.mnemonic](state, mem, d)
