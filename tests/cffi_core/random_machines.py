"""Random P64 machines (hypothesis strategy) shared by the tick-by-tick differential tests."""

# A scenario is a profile, a body of random instruction words, an IDT of random gates with skip
# handlers, random registers, the host segment GS (so that ldgs/sdgs/jgs hit, miss and fault)
# with a table of jgs targets, paging with random page permissions and interrupts to inject.
# Every mapping is the identity and the page tables live outside every mapping, so no program
# can change a cached translation (the one undefined behaviour, manual §8.1).

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from cffi_core.asm import assemble
from cffi_core.isa.encoding import encode
from cffi_core.isa.strategies import instruction_words
from cffi_core.isa.table import BY_MNEMONIC
from cffi_core.pagetables import PTE_NX, PTE_U, PTE_W, PageAllocator, PageTables
from cffi_core.profiles import available_profiles, get_profile
from cffi_core.vmx import VmcsField

MEMORY = 256 * 1024
CODE, HANDLERS, IDT, DATA, DATA_END, TABLES = 0x1000, 0x2000, 0x8000, 0x10000, 0x30000, 0x30000
STEPS = 200
ERROR_CODE_VECTORS = (8, 13, 14, 17)
# Handlers that step over the instruction that raised the event and return, so that random
# programs keep running (a random handler slot is drawn too, for variety).
SKIP_HANDLERS = assemble(
    """
    .org 0x2000
    skip:       ld   r13, [sp]
                addi r13, r13, 4
                sd   r13, [sp]
                iret
    skip_error: addi sp, sp, 8
                ld   r13, [sp]
                addi r13, r13, 4
                sd   r13, [sp]
                iret
    """
)
RANDOM_HANDLERS = 0x2100
U64 = 2**64 - 1
_data_addr = st.integers(DATA // 8, DATA_END // 8 - 1).map(lambda q: q * 8)
_reg_value = st.one_of(_data_addr, st.integers(0, 64), st.integers(0, U64), st.sampled_from([CODE, IDT, 0]))
# Gate attributes: present interrupt/trap gates to ring 0 (common), other rings, DPL, host gates,
# not present.  bit 0 P, 2:1 type, 5:4 DPL, 7:6 ring (manual §6.2).
_gate_attr = st.one_of(
    st.sampled_from([0x31, 0x33, 0x01, 0x03]),
    st.sampled_from([0x31, 0x33]),
    st.sampled_from([0x31, 0x33]),
    st.builds(lambda p, t, d, r: p | t << 1 | d << 4 | r << 6, st.integers(0, 1), st.integers(0, 3),
              st.integers(0, 3), st.integers(0, 3)),
)  # fmt: skip
# GS (manual §5.4): a base at 0, in the data area, misaligned or wrapping; a limit that refuses
# everything (the reset 0, and 6), one quadword, the data area, or all of the address space.
_gsbase = st.one_of(st.sampled_from([0, 0, DATA, DATA + 4, U64 - 0xFFF]), st.integers(0, U64))
_gslimit = st.one_of(st.sampled_from([0, 6, 7, 0xFFF, DATA_END - DATA, U64, U64]), st.integers(0, U64))
# jgs jumps to a quadword read through GS (manual §5.4).  What GS reads of the data area is
# mostly 0, and a jump to 0 runs into words that are all #UD, one skip handler after another:
# the rest of the run is spent there.  So a table of targets lies at 0 and again at DATA, where
# GS at base 0 or DATA reads it, and half of the jgs words read it (jgs [r0 + 8k]), the others
# staying as drawn; jgs is drawn no more often than ldgs or sdgs.  The targets are mostly words
# of the body, so that the run goes on through it, sometimes a bad target that faults at its
# fetch (misaligned, beyond RAM, non-canonical with paging) — rarely, since from a bad target
# the skip handlers step to the next bad word.
JGS_TABLES = (0, DATA)
N_TARGETS = 16
_JGS = BY_MNEMONIC["jgs"].opcode
_BAD_TARGETS = (CODE + 2, MEMORY, 1 << 63)
_jgs_through_the_table = st.integers(0, N_TARGETS - 1).map(lambda k: encode("jgs", rs1=0, imm=8 * k))


def _jgs_target(body_words: int) -> st.SearchStrategy[int]:
    """A body word (the closing jmp included) seven times in eight, else a bad target."""
    word = st.integers(0, body_words).map(lambda k: CODE + 4 * k)
    return st.integers(0, 7).flatmap(lambda k: word if k else st.sampled_from(_BAD_TARGETS))


def _table_half_of_jgs(w: int) -> st.SearchStrategy[int]:
    return st.one_of(st.just(w), _jgs_through_the_table) if w >> 24 == _JGS else st.just(w)


# Bodies are mostly valid instructions; one word in ten is arbitrary (often invalid).
_body_word = st.integers(0, 9).flatmap(
    lambda k: st.integers(0, 2**32 - 1) if k == 0 else instruction_words().flatmap(_table_half_of_jgs)
)
_page_flags = st.one_of(
    st.just(PTE_W | PTE_U), st.sampled_from([PTE_W | PTE_U, PTE_U, PTE_W, 0, PTE_W | PTE_U | PTE_NX, None])
)


@dataclass
class Scenario:
    profile: str
    body: list[int]
    handlers: list[int]
    gates: list[tuple[int, int]]
    regs: list[int]
    rsp: list[int]
    cpl: int
    flags: int
    cr8: int
    seglimit: int
    gsbase: int
    gslimit: int
    jgs_targets: list[int]  # quadwords at each of JGS_TABLES
    paging: int  # 0 off, else levels
    pages: list[int | None]  # per 4 KiB page of [0, DATA_END): leaf flags, None = not present
    interrupts: dict[int, int]  # step -> vector


@st.composite
def scenarios(draw: st.DrawFn, profiles: Sequence[str] | None = None) -> Scenario:
    """A random machine on one of ``profiles`` (default: every named profile)."""
    profile = draw(st.sampled_from(list(profiles) if profiles is not None else available_profiles()))
    seglimit = U64
    if "seglimit" in get_profile(profile).features and draw(st.booleans()):
        seglimit = draw(st.integers(0, DATA_END))
    body = draw(st.lists(_body_word, min_size=1, max_size=48))
    return Scenario(
        profile=profile,
        body=body,
        handlers=draw(st.lists(_body_word, min_size=1, max_size=16)),
        # slot -1: the skip handler; 0..15: a random handler word
        gates=draw(st.lists(st.tuples(st.integers(-1, 15), _gate_attr), min_size=8, max_size=8)),
        regs=draw(st.lists(_reg_value, min_size=15, max_size=15)),
        rsp=draw(st.lists(_data_addr, min_size=3, max_size=3)),
        cpl=draw(st.integers(0, 3)),
        flags=draw(st.sampled_from([0, 1 << 9, 3 << 12, 1 << 9 | 3 << 12, 1 << 8, 1 << 9 | 1 << 12])),
        cr8=draw(st.integers(0, 15)),
        seglimit=seglimit,
        gsbase=draw(_gsbase),
        gslimit=draw(_gslimit),
        jgs_targets=draw(st.lists(_jgs_target(len(body)), min_size=N_TARGETS, max_size=N_TARGETS)),
        paging=draw(st.sampled_from([0, 0, 2, 3, 4])),
        pages=draw(st.lists(_page_flags, min_size=DATA_END // 4096, max_size=DATA_END // 4096)),
        interrupts=draw(st.dictionaries(st.integers(0, STEPS), st.integers(32, 255), max_size=3)),
    )


def initial_memory(s: Scenario) -> tuple[bytearray, int]:
    mem = bytearray(MEMORY)
    body = [*s.body, 0x38000000 | ((-len(s.body)) & 0xFFFFFF)]  # ... then jmp back to CODE
    for i, w in enumerate(body):
        mem[CODE + 4 * i : CODE + 4 * i + 4] = w.to_bytes(4, "little")
    for table in JGS_TABLES:
        for i, t in enumerate(s.jgs_targets):
            mem[table + 8 * i : table + 8 * i + 8] = t.to_bytes(8, "little")
    for seg in SKIP_HANDLERS.segments:
        mem[seg.address : seg.address + len(seg.data)] = seg.data
    for i, w in enumerate(s.handlers):
        mem[RANDOM_HANDLERS + 4 * i : RANDOM_HANDLERS + 4 * i + 4] = w.to_bytes(4, "little")
    for v in range(256):
        slot, attr = s.gates[v % 8]
        if slot < 0:
            handler = SKIP_HANDLERS.symbols["skip_error" if v in ERROR_CODE_VECTORS else "skip"]
        else:
            handler = RANDOM_HANDLERS + 4 * slot
        entry = IDT + 16 * v
        mem[entry : entry + 8] = handler.to_bytes(8, "little")
        mem[entry + 8 : entry + 16] = attr.to_bytes(8, "little")
    cr3 = 0
    if s.paging:

        def write(addr: int, value: int) -> None:
            mem[addr : addr + 8] = value.to_bytes(8, "little")

        tables = PageTables(write, PageAllocator(TABLES, MEMORY), levels=s.paging)
        for page, flags in enumerate(s.pages):
            # The code, handler and IDT pages stay mapped so that most examples run a while.
            if page in (CODE >> 12, HANDLERS >> 12, IDT >> 12):
                flags = PTE_W | PTE_U
            if flags is not None:
                tables.map(page << 12, page << 12, 4096, flags=flags)
        cr3 = tables.root
    return mem, cr3


def initial_state(s: Scenario, cr3: int) -> dict[str, object]:
    return {
        "r": [0, *s.regs[:14], DATA + (s.regs[14] % (DATA_END - DATA)) & ~7],  # sp in the data area
        "pc": CODE,
        "flags": s.flags,
        "cpl": s.cpl,
        "cr0": 1 | (1 << 15 if s.paging else 0),
        "cr3": cr3,
        "cr4": (s.paging - 2) if s.paging else 2,
        "cr8": s.cr8,
        "idtr": IDT,
        "rsp": s.rsp,
        "seglimit": s.seglimit,
        "gsbase": s.gsbase,
        "gslimit": s.gslimit,
    }


def load_cpu(cpu: Any, init: dict[str, object]) -> None:
    """Give a core CPU (``Machine.cpu``) the state of ``initial_state``."""
    for k, v in init.items():
        if k in ("r", "rsp"):
            for i, x in enumerate(v):  # type: ignore[arg-type]
                getattr(cpu, k)[i] = x
        else:
            setattr(cpu, k, v)


def load_guest_state(vmcs: Any, init: dict[str, object]) -> None:
    """Write the state of ``initial_state`` into a VMCS's guest-state area (docs/vmx.md V.2)."""
    for i, x in enumerate(init["r"]):  # type: ignore[arg-type]
        vmcs.regs[i] = x
    for name in ("pc", "flags", "cpl", "cr0", "cr3", "cr4", "cr8", "idtr", "seglimit"):
        vmcs[VmcsField[f"GUEST_{name.upper()}"]] = init[name]
    for i, x in enumerate(init["rsp"]):  # type: ignore[arg-type]
        vmcs[VmcsField[f"GUEST_RSP{i}"]] = x
