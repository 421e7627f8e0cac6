"""Fuzzing guest mode: random VMCS contents, random guest code and random host actions between runs."""

# Run under ASan + UBSan by .ci/sanitize.sh.  Each example is a vtx machine whose RAM is random
# bytes with, laid over them, random guest code, an IDT of random gates, guest page tables and
# nested tables (docs/vmx.md V.6) built with random permissions and then corrupted at random, and
# a VMCS whose every field is drawn (mostly valid-looking, now and then arbitrary).  Then a list
# of host actions: vmrun with small budgets (re-entering after every exit, stepping over exiting
# instructions as a VMM would), writes of random VMCS fields (read-only and unknown ones too),
# invept, invvpid, iommu attach/detach and random DMA, snapshot/restore, interrupts, host memory
# and register writes, resets.  Asserted: nothing crashes; a refusal is a VMXError or StateError
# whose message names the field (V.8); vmrun restores the host state (V.1) and spends at most
# its budget; a snapshot/restore repeats a run exactly; and the whole sequence is deterministic:
# on a fresh machine the same inputs give the same outcomes, VMCS fields, registers, memory and
# counters.  An example is drawn from a seed (hypothesis draws the seed, the profile and the
# number of actions), so that every example is large and reproducible from its printed arguments.
# The long fuzz run (tests/cffi_core/fuzz_long.py) plays the same examples with the host calls of
# HOST_OPS added (host-mode runs of the same code, CPU writes, the clock, TLB flushes, walks,
# VMCS and memory reads) and longer runs, counting what they execute in a Tally.

from __future__ import annotations

import random
import re
from dataclasses import dataclass

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from cffi_core._binding import CoreError, RangeError, StateError, VMXError
from cffi_core.exits import ExitReason
from cffi_core.isa.encoding import EncodingError, encode
from cffi_core.isa.table import CONTROL_REGISTERS, INSTRUCTIONS
from cffi_core.machine import Machine, TLBConfig
from cffi_core.pagetables import EPT_W, EPT_X, PTE_NX, PTE_U, PTE_W, PageAllocator, PageTables, ept_pointer
from cffi_core.profiles import get_profile
from cffi_core.vmx import READ_ONLY_FIELDS, ProcControl, Vmcs, VmcsField, VmExitReason
from tests.cffi_core.random_machines import SKIP_HANDLERS
from tests.cffi_core.vmx.vmx_rig import CODE as CODE_RIG
from tests.cffi_core.vmx.vmx_rig import CR0_PE, CR0_PG, DATA, Guest, I
from tests.cffi_core.vmx.vmx_rig import GUEST_TABLES as GUEST_TABLES_RIG

MEMORY = 128 * 1024
CODE, IDT = 0x1000, 0x8000
STACKS = (0x4000, 0x8000)
GUEST_TABLES = (0x10000, 0x18000)
NESTED_TABLES = (0x18000, 0x20000)
U64 = (1 << 64) - 1
PROFILES = ("vtx-2006", "vtx-2009", "vtx-2009+iommu", "vtx-2006+ept+iommu", "vtx-2006+tpr_shadow+vpid")
TLB = TLBConfig(8, 2, 4, 2)
ERROR_CODE_VECTORS = (8, 13, 14, 17)  # architecture.md §6.1
# The instructions guest mode treats apart (V.2, V.3), drawn more often than the others.
SYSTEM = tuple(i for i in INSTRUCTIONS if i.mnemonic in {
    "mtcr", "mfcr", "hlt", "invlpg", "rdtsc", "rdmsr", "wrmsr", "in", "out", "lidt", "sidt", "smsw", "vmcall",
    "hcall", "ldgs", "sdgs", "jgs", "int", "iret", "sti", "cli", "popf", "pushf"})  # fmt: skip
NEEDS_FEATURE = {
    ProcControl.USE_TPR_SHADOW: "tpr_shadow",
    ProcControl.ENABLE_EPT: "ept",
    ProcControl.ENABLE_VPID: "vpid",
}
CPU_FIELD_NAMES = ("cpl", "flags", "cr0", "cr3", "cr4", "cr8", "intr_vector", "intr_acked", "halted", "int_shadow",
                   "shutdown", "pending_db", "vm_tag")  # fmt: skip
# A refusal names a VMCS field (V.8) or an unknown field's number, a CPU field (§10), the
# argument of a host call (V.10) or the feature the profile lacks.
NAMED = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join([*VmcsField.__members__, *CPU_FIELD_NAMES, "root", "device", "vmx",
                                       "ept", "vpid", "iommu", r"field \d+"]) + r")(?![A-Za-z0-9_])"
)  # fmt: skip
OPS = (("vmrun", 40), ("write_field", 10), ("next_pc", 3), ("invept", 4), ("invvpid", 4), ("attach", 5),
       ("detach", 2), ("dma", 8), ("snapshot_restore", 5), ("intr", 8), ("write_mem", 4), ("regs", 4),
       ("reset", 1), ("copy", 2))  # fmt: skip
# The long run's host calls besides (docs/architecture.md §10): the host's own code, its state;
# writes of the fields that switch the guest's translation (V.6, V.7) and DMA that rewrites
# the tables (V.10), drawn often; snapshot/restore drawn again, since it sees stale state.
HOST_OPS = (("run", 10), ("host_state", 6), ("advance", 2), ("tlb_flush", 2), ("read_field", 3), ("walk", 3),
            ("read_mem", 2), ("code_written", 2), ("mode_field", 8), ("dma_tables", 4),
            ("attach_ept", 2), ("snapshot_restore", 30))  # fmt: skip
# Host CPU fields the host writes, drawn as the guest-state field of the same register.
HOST_FIELDS = ("pc", "flags", "cpl", "cr0", "cr3", "cr4", "cr8", "idtr", "seglimit")
MODE_FIELDS = (VmcsField.GUEST_CR0, VmcsField.GUEST_CR3, VmcsField.GUEST_CR4, VmcsField.GUEST_CPL,
               VmcsField.GUEST_SEGLIMIT, VmcsField.PROC_CONTROLS, VmcsField.EPT_POINTER, VmcsField.VPID)  # fmt: skip


# ---- drawing an example from a seed ---------------------------------------------------------


def _word(r: random.Random) -> int:
    """An instruction word: mostly a valid encoding of a random row of the table (§3)."""
    if r.randrange(10) == 0:
        return r.getrandbits(32)
    insn = r.choice(SYSTEM if r.randrange(3) == 0 else INSTRUCTIONS)
    regs = {role: r.choice((1, 2, 3, 4, r.randrange(16))) for role, _ in insn.format.slots if role != "crn"}
    if any(role == "crn" for role, _ in insn.format.slots):
        regs["crn"] = r.choice(CONTROL_REGISTERS)
    if insn.format.imm is None:
        return encode(insn, **regs)
    for imm in (4 * r.randrange(-8, 9), r.randrange(-(1 << 15), 1 << 15), r.randrange(64), 0):
        try:
            return encode(insn, **regs, imm=imm)
        except EncodingError:
            continue
    raise AssertionError("imm 0 encodes every format")


def _event_info(r: random.Random) -> int:
    """ENTRY_INTR_INFO (V.9): a well-formed event, or a malformed one now and then."""
    kind = r.choice((0, 3, 4))
    vector = r.randrange(32, 256) if kind == 0 else r.randrange(32) if kind == 3 else r.randrange(256)
    info = 1 << 31 | kind << 8 | vector | (1 << 11 if kind == 3 and vector in ERROR_CODE_VECTORS else 0)
    if r.randrange(4) == 0:
        info ^= 1 << r.choice((8, 9, 10, 11, 12, 30, 40, 1, 5))
    return info


def _field_value(r: random.Random, field: VmcsField, profile: str, wild: int) -> int:
    """A valid-looking value of a field (V.2, V.8), arbitrary one time in ``wild``."""
    k = r.randrange(wild)
    if k == 0:
        return r.getrandbits(64)
    if k == 1:
        return r.randrange(65)
    ram_page = r.randrange(MEMORY // 4096) << 12
    name = field.name
    if name == "GUEST_PC":
        return CODE + 4 * r.randrange(64)
    if name == "GUEST_FLAGS":
        return r.choice((0, 1 << 9, 3 << 12, 1 << 9 | 3 << 12, 1 << 8, 1 << 8 | 1 << 9))
    if name == "GUEST_CPL":
        return r.randrange(4)
    if name == "GUEST_CR0":
        return r.choice((1, 1 | 1 << 15, 1 | 1 << 4 | 1 << 15, 1 | 1 << 3))
    if name == "GUEST_CR3":
        return r.choice((GUEST_TABLES[0], ram_page))
    if name == "GUEST_CR4":
        return r.choice((0, 1, 2, 2 | 1 << 7, 1 | 1 << 2))
    if name in ("GUEST_CR8", "VIRTUAL_TPR", "TPR_THRESHOLD"):
        return r.randrange(16)
    if name == "GUEST_IDTR":
        return r.choice((IDT, IDT, ram_page, r.getrandbits(64)))
    if name.startswith("GUEST_RSP"):
        return r.choice((r.randrange(STACKS[0], STACKS[1], 8), r.randrange(MEMORY)))
    if name == "GUEST_SEGLIMIT":
        return r.choice((U64, r.randrange(MEMORY)))
    if name in ("GUEST_INTERRUPTIBILITY", "PIN_CONTROLS"):
        return r.randrange(2)
    if name == "GUEST_ACTIVITY":
        return r.choice((0, 0, 0, 1))
    if name == "GUEST_PENDING_DB":
        return r.choice((0, 0, 1))
    if name == "PROC_CONTROLS":
        value = 0
        features = get_profile(profile).features
        for c in ProcControl:
            if r.randrange(4) == 0 and (c not in NEEDS_FEATURE or NEEDS_FEATURE[c] in features or r.randrange(8) == 0):
                value |= c.value
        return value | (1 << r.randrange(64) if r.randrange(20) == 0 else 0)
    if name == "EXCEPTION_BITMAP":
        return r.choice((0, 0, 1 << 14, r.getrandbits(32), 0xFFFF_FFFF))
    if name in ("PF_ERROR_CODE_MASK", "PF_ERROR_CODE_MATCH"):
        return r.randrange(32)
    if name == "CR0_GUEST_HOST_MASK":
        return r.choice((0, 0, 1 << 3, 1 << 15, 0xFFFF, r.getrandbits(16)))
    if name == "CR4_GUEST_HOST_MASK":
        return r.choice((0, 0, 3, 1 << 7, r.getrandbits(8)))
    if name in ("CR0_READ_SHADOW", "CR4_READ_SHADOW"):
        return r.getrandbits(16)
    if name == "IO_BITMAP":
        return r.randrange(MEMORY // 4096 - 1) << 12
    if name == "MSR_BITMAP":
        return ram_page
    if name == "EPT_POINTER":
        return r.choice((NESTED_TABLES[0], ram_page)) | r.randrange(3)
    if name == "VPID":
        return r.randrange(1, 0x10000)
    if name == "ENTRY_INTR_INFO":
        return _event_info(r) if r.randrange(4) == 0 else 0
    return r.getrandbits(r.choice((8, 16, 64)))  # CR2, TSC_OFFSET, ENTRY_ERROR_CODE, exit fields


def _op(r: random.Random, profile: str, ops: tuple[tuple[str, int], ...], long_run: int) -> tuple:
    name = r.choices([n for n, _ in ops], [w for _, w in ops])[0]
    anywhere = r.choice((r.randrange(MEMORY), r.randrange(MEMORY - 64, MEMORY + 64), r.getrandbits(64)))
    if name in ("vmrun", "run"):
        return (name, r.choice((0, 1, 2, 3, r.randrange(300), r.randrange(long_run))))
    if name == "write_field":
        field = r.randrange(len(VmcsField) + 3)
        value = _field_value(r, VmcsField(field), profile, 8) if field < len(VmcsField) else r.getrandbits(64)
        return (name, field, value)
    if name == "invvpid":
        return (name, r.randrange(1, 0x10000))
    if name == "attach":
        return (name, r.randrange(18), r.choice((-1, -1, r.randrange(MEMORY // 4096) << 12 | r.randrange(4),
                                                 r.getrandbits(64))))  # fmt: skip
    if name == "detach":
        return (name, r.randrange(18))
    if name == "dma":
        return (name, r.randrange(18), anywhere, r.choice((0, 1, 8, r.randrange(0x2100))), r.randrange(2))
    if name == "snapshot_restore":
        return (name, r.randrange(200))
    if name == "intr":
        return (name, r.randrange(-1, 256))
    if name == "write_mem":
        addr = r.randrange(MEMORY)
        return (name, addr, r.randbytes(min(r.randrange(1, 17), MEMORY - addr)))
    if name == "regs":
        return (name, r.randrange(16), r.choice((r.getrandbits(64), r.randrange(MEMORY))))
    if name == "host_state":
        field = r.choice(HOST_FIELDS)
        return (name, field, _field_value(r, VmcsField[f"GUEST_{field.upper()}"], profile, 64))
    if name == "advance":
        return (name, r.choice((0, 1, r.randrange(10**6), r.getrandbits(64))))
    if name == "read_field":
        return (name, r.randrange(len(VmcsField) + 3))
    if name == "walk":
        return (name, r.choice((anywhere, CODE + 4 * r.randrange(64))), r.choice(("read", "write", "fetch")),
                r.randrange(4), r.randrange(2))  # fmt: skip
    if name == "read_mem":
        return (name, anywhere, r.randrange(65))
    if name == "code_written":
        return (name, anywhere, r.choice((1, 8, r.randrange(0x3000))))
    if name == "mode_field":
        field = r.choice(MODE_FIELDS)
        return ("write_field", int(field), _field_value(r, field, profile, 16))
    if name == "attach_ept":  # a device of the guest's domain (V.10: passthrough)
        return ("attach", r.randrange(4), -1)
    if name == "dma_tables":  # a DMA over the tables, of entries that look like entries
        at = r.choice((NESTED_TABLES[0] + 4096 * r.randrange(4), r.randrange(GUEST_TABLES[0], NESTED_TABLES[1], 4096)))
        at -= r.choice((0, 0, 4096))
        at += r.choice((0, 8 * r.randrange(512)))
        entries = [r.choice((r.randrange(MEMORY // 4096) << 12 | r.choice((1, 3, 5, 7, 0x87)),
                             MEMORY + (r.randrange(16) << 12) | 7, r.getrandbits(64), 0))
                   for _ in range(r.choice((1, 2, 512, 520, 1024)))]  # fmt: skip
        return (
            name,
            r.choice((r.randrange(4), r.randrange(17))),
            at,
            b"".join(e.to_bytes(8, "little") for e in entries),
        )
    return (name,)


@dataclass
class Example:
    profile: str
    memory: bytes
    fields: dict[VmcsField, int]
    regs: list[int]
    ops: list[tuple]


def draw_example(profile: str, seed: int, n_ops: int, ops: tuple[tuple[str, int], ...] = OPS,
                 long_run: int = 2000, tables_mapped: bool = False) -> Example:  # fmt: skip
    """The example of ``seed``: with the defaults, the hypothesis test's; the long fuzz run adds
    HOST_OPS to ``ops``, draws runs of up to ``long_run`` ticks and, with ``tables_mapped``, has
    the nested tables map the tables themselves (the guest and a device attached to the EPT
    pointer's domain then write their own translations)."""
    r = random.Random(seed)
    mem = bytearray(r.randbytes(MEMORY))

    def write(addr: int, value: int) -> None:
        mem[addr : addr + 8] = value.to_bytes(8, "little")

    def zero(addr: int) -> None:
        if r.randrange(4):  # else the table keeps the random bytes as entries
            mem[addr : addr + 4096] = bytes(4096)

    for i in range(64):
        mem[CODE + 4 * i : CODE + 4 * i + 4] = _word(r).to_bytes(4, "little")
    for seg in SKIP_HANDLERS.segments:  # handlers that step over the instruction and return
        mem[seg.address : seg.address + len(seg.data)] = seg.data
    gates = [(CODE + 4 * r.randrange(64), r.randrange(256)) if r.randrange(2) else None for _ in range(8)]
    for v in range(256):
        skip = SKIP_HANDLERS.symbols["skip_error" if v in ERROR_CODE_VECTORS else "skip"]
        handler, attr = gates[v % 8] or (skip, r.choice((0x31, 0x33)))  # present, DPL 3, ring 0 (§6.2)
        write(IDT + 16 * v, handler)
        write(IDT + 16 * v + 8, attr)
    # guest page tables (§7) and nested tables (V.6) with random permissions
    guest = PageTables(write, PageAllocator(*GUEST_TABLES, zero), levels=r.randrange(2, 5))
    guest.map(0, 0, GUEST_TABLES[0], flags=r.choice((PTE_W | PTE_U, PTE_U, PTE_W, 0, PTE_W | PTE_U | PTE_NX)))
    guest.map(CODE, CODE, 4096, flags=PTE_W | PTE_U)
    levels = r.randrange(2, 5)
    nested = PageTables(write, PageAllocator(*NESTED_TABLES, zero), levels=levels)
    flags = r.choice((EPT_W | EPT_X, EPT_W | EPT_X, EPT_X, EPT_W, 0))
    if r.randrange(4) == 0:
        nested.map(0, 0, 1 << 21, flags=flags, page=1 << 21)  # a large page beyond RAM
    else:
        nested.map(0, 0, NESTED_TABLES[1] if tables_mapped else GUEST_TABLES[1], flags=flags)
    for _ in range(r.randrange(8)):  # corrupt entries anywhere, tables included
        table = r.choice((GUEST_TABLES[0], NESTED_TABLES[0], r.randrange(MEMORY // 4096) << 12))
        write(table + 8 * r.randrange(512), r.choice((r.getrandbits(64), r.randrange(MEMORY) | r.randrange(8))))
    fields = {f: _field_value(r, f, profile, 256) for f in VmcsField if f not in READ_ONLY_FIELDS}
    fields[VmcsField.EPT_POINTER] = ept_pointer(NESTED_TABLES[0], levels) if r.randrange(8) else fields[
        VmcsField.EPT_POINTER]  # fmt: skip
    regs = [r.choice((r.randrange(MEMORY), r.getrandbits(64), r.randrange(65), CODE, IDT)) for _ in range(16)]
    regs[15] = r.choice((r.randrange(STACKS[0], STACKS[1], 8), regs[15]))  # sp mostly on a stack
    return Example(profile, bytes(mem), fields, regs, [_op(r, profile, ops, long_run) for _ in range(n_ops)])


# ---- playing it ---------------------------------------------------------------------------


@dataclass
class Tally:
    """What plays executed, from the core's counters (the long fuzz run's figures)."""

    instructions: int = 0  # retired, host mode and guest mode (architecture.md §13)
    guest_instructions: int = 0  # retired in guest mode (docs/vmx.md V.11)
    vm_exits: int = 0
    host_calls: int = 0  # host actions played


_NO_TALLY = Tally()


def _event(text: str) -> None:
    if currently_in_test_context():  # the long fuzz run plays examples outside hypothesis
        event(text)


def _named(e: Exception) -> str:
    message = str(e)
    assert NAMED.search(message), f"{type(e).__name__} names no field: {message}"
    return f"{type(e).__name__}: {message}"


def _host_state(m: Machine) -> dict[str, object]:
    s = m.cpu.state()
    return {k: x for k, x in s.items() if k not in ("tsc_offset", "intr_vector", "intr_acked")}


def _count(m: Machine, tally: Tally, before: tuple[int, int, int]) -> None:
    c = m.counters
    tally.instructions += c["instructions"] - before[0]
    tally.guest_instructions += sum(c[f"insn_guest_cpl{cpl}"] for cpl in range(4)) - before[1]
    tally.vm_exits += c["vm_exits"] - before[2]


def _figures(m: Machine) -> tuple[int, int, int]:
    c = m.counters
    return c["instructions"], sum(c[f"insn_guest_cpl{cpl}"] for cpl in range(4)), c["vm_exits"]


def _vmrun(m: Machine, v: Vmcs, budget: int, tally: Tally = _NO_TALLY) -> tuple:
    """One vmrun: the host state comes back (V.1), at most ``budget`` ticks pass."""
    host, ticks, before = _host_state(m), m.counters["ticks"], _figures(m)
    try:
        ex = m.vmrun(v, budget)
    except (VMXError, StateError) as e:
        _event(f"vmrun refused: {type(e).__name__}")
        return ("refused", _named(e))
    finally:
        assert _host_state(m) == host, "the host state was not restored"
    assert m.counters["ticks"] - ticks <= budget
    _count(m, tally, before)
    _event(f"vmrun: {ex.reason.name} {VmExitReason(ex.number).name if ex.reason is ExitReason.VM else ''}")
    if ex.reason is ExitReason.IO_IN:
        v.regs[ex.reg] = ex.port * 0x9E37_79B9 & U64
    elif ex.reason is ExitReason.VM and ex.number == VmExitReason.TRIPLE_FAULT:
        v[VmcsField.GUEST_ACTIVITY] = 0  # the host gives the guest a new state (V.4, V.8)
        v[VmcsField.GUEST_IDTR] = IDT
        v[VmcsField.GUEST_PC] = CODE
        v.regs[15] = STACKS[1]
    elif ex.reason is ExitReason.VM:  # the host emulates an exiting instruction and steps over it (V.3)
        v[VmcsField.GUEST_PC] = v[VmcsField.GUEST_PC] + v[VmcsField.EXIT_INSTRUCTION_LENGTH] & U64
    return tuple(ex)


def _run(m: Machine, budget: int, tally: Tally) -> tuple:
    """One host-mode run of the example's code (§10): at most ``budget`` ticks, the clock counts them."""
    ticks, clock, before = m.counters["ticks"], m.clock, _figures(m)
    try:
        ex = m.run(budget)
    except StateError as e:
        return ("refused", _named(e))
    assert m.counters["ticks"] - ticks <= budget and m.clock - clock == m.counters["ticks"] - ticks
    _count(m, tally, before)
    if ex.reason is ExitReason.IO_IN:
        m.cpu.r[ex.reg] = ex.port * 0x9E37_79B9 & U64
    elif ex.reason in (ExitReason.HOST_GATE, ExitReason.HCALL):  # the host handled it, as a VMM would
        m.cpu.pc = m.cpu.pc + 4 & U64 if ex.reason is ExitReason.HOST_GATE else m.cpu.pc
    elif ex.reason is ExitReason.SHUTDOWN:  # the host gives itself a new state
        m.cpu.shutdown, m.cpu.pc, m.cpu.idtr, m.cpu.r[15] = 0, CODE, IDT, STACKS[1]
    return tuple(ex)


def _whole(m: Machine, v: Vmcs) -> tuple:
    counters = dict(m.counters)
    return (counters, [v[f] for f in VmcsField], list(v.regs), m.cpu.state(), m.read(0, MEMORY))


def _host_op(m: Machine, v: Vmcs, op: str, args: list, tally: Tally) -> object:
    """One of HOST_OPS; what it returned, for the log."""
    if op == "run":
        return _run(m, args[0], tally)
    if op == "host_state":
        setattr(m.cpu, args[0], args[1])
        return None
    if op == "advance":
        try:
            m.advance_clock(args[0])
        except (RangeError, ValueError) as e:  # past 2^64 - 1 (§9)
            assert m.clock + args[0] > U64, e
            return str(e)
        return m.clock
    if op == "tlb_flush":
        m.tlb_flush()
        return None
    if op == "read_field":
        return v.read(args[0])
    if op == "walk":
        return m.walk(args[0], args[1], args[2], bool(args[3]))
    if op == "read_mem":
        return m.read(args[0], args[1])
    if op == "dma_tables":
        done = m.dma_write(*args)
        return done, m.iommu_faults() if "iommu" in m.profile.features else None
    m.code_written(args[0], args[1])
    return None


def play(x: Example, tally: Tally = _NO_TALLY) -> tuple:
    m = Machine(x.profile, memory=MEMORY, tlb=TLB)
    m.write(0, x.memory)
    m.cpu.pc, m.cpu.idtr, m.cpu.r[15] = CODE, IDT, STACKS[1]  # the host runs the same code (HOST_OPS)
    v, spare = m.vmcs(), m.vmcs()
    for i, value in enumerate(x.regs):
        v.regs[i] = value
    for field, value in x.fields.items():
        v[field] = value
    log: list[object] = []
    for op, *args in x.ops:
        tally.host_calls += 1
        try:
            if op == "vmrun":
                log.append(_vmrun(m, v, args[0], tally))
            elif op == "write_field":
                field, value = args
                v.write(field, value)
                log.append(("wrote", field))
                assert field < len(VmcsField) and field not in READ_ONLY_FIELDS
            elif op == "next_pc":  # the host emulated the instruction at GUEST_PC (V.3)
                v[VmcsField.GUEST_PC] = v[VmcsField.GUEST_PC] + 4 & U64
            elif op == "invept":
                m.invept()
            elif op == "invvpid":
                m.invvpid(args[0])
            elif op == "attach":
                device, root = args
                m.iommu_attach(device, v[VmcsField.EPT_POINTER] if root < 0 else root)
            elif op == "detach":
                m.iommu_detach(args[0])
            elif op == "dma":
                device, addr, size, write = args
                if write:
                    log.append(m.dma_write(device, addr, bytes(range(256)) * (size // 256) + bytes(size % 256)))
                else:
                    got = m.dma_read(device, addr, size)
                    log.append(None if got is None else got[:16])
                if "iommu" in m.profile.features:
                    log.append(m.iommu_faults())
            elif op == "snapshot_restore":  # a run repeats exactly from a snapshot
                snap = m.snapshot()
                spare.copy_from(v)
                first = (_vmrun(m, v, args[0], tally), *_whole(m, v))
                m.restore(snap)
                v.copy_from(spare)
                second = (_vmrun(m, v, args[0], tally), *_whole(m, v))
                assert first == second, "a snapshot/restore did not repeat the run"
            elif op == "intr":
                m.cpu.intr_vector = args[0]
            elif op == "write_mem":
                m.write(args[0], args[1])
            elif op == "regs":
                v.regs[args[0]] = args[1]
            elif op == "reset":
                m.reset()
            elif op == "copy":  # a VMM restores the VM it saved
                v.copy_from(spare)
            else:
                log.append(_host_op(m, v, op, args, tally))
        except (VMXError, StateError) as e:
            log.append(_named(e))
        except RangeError as e:  # an unremapped DMA, a read or a code write outside RAM
            assert op in ("dma", "dma_tables", "read_mem", "code_written"), e
            log.append(str(e))
        except ValueError as e:  # a Python-side argument check
            assert not isinstance(e, CoreError) and str(e), e
            log.append(str(e))
    return (log, *_whole(m, v))


# Ten times the profile's example count: 500 with dev, 1000 with ci (the sanitizer run's profile).
@settings(max_examples=10 * settings.default.max_examples)
@given(st.sampled_from(PROFILES), st.integers(0, 2**64 - 1), st.integers(1, 60))
# A flat guest run left identity lookups that an entry with guest paging on used (see the
# directed tests of the guest row below): the run before a restore differed from the run after.
@example("vtx-2009", 1142267530944285669, 43)
def test_random_vmcs_and_guest_code_never_break_the_core(profile, seed, n_ops):
    x = draw_example(profile, seed, n_ops)
    first = play(x)
    assert play(x) == first, "the same inputs gave another result on a fresh machine"


# The long fuzz run's examples: the host calls of HOST_OPS too, on profiles with seglimit and
# classic besides.
LONG_PROFILES = (*PROFILES, "vtx-2009+seglimit+iommu", "vtx-2006+classic")


@settings(max_examples=2 * settings.default.max_examples)
@given(st.sampled_from(LONG_PROFILES), st.integers(0, 2**64 - 1), st.integers(1, 60))
def test_host_calls_between_guest_runs_never_break_the_core(profile, seed, n_ops):
    x = draw_example(profile, seed, n_ops, ops=OPS + HOST_OPS, tables_mapped=True)
    first = play(x)
    assert play(x) == first, "the same inputs gave another result on a fresh machine"


@pytest.mark.parametrize("vpid", [0, 1])
def test_code_written_after_a_snapshot_is_what_the_guest_runs(vpid):
    # Found by the fuzz above: a snapshot drops the decoded-instruction cache (architecture.md
    # §13) and host writes keep decoded code coherent (§10, §15), so the guest runs the new code
    # whether or not its TLB entries survive the entry (vpid, docs/vmx.md V.7).
    g = Guest("vtx-2009", ept=True, vpid=vpid)
    start = g.pc
    g.code(I("addi", rd=1, rs1=1, imm=1), I("vmcall", imm=1))
    assert g.run(100).number == VmExitReason.VMCALL and g.v.regs[1] == 1
    g.set(GUEST_PC=start)
    g.m.snapshot()
    g.code(I("addi", rd=1, rs1=1, imm=100), I("vmcall", imm=1))
    assert g.run(100).number == VmExitReason.VMCALL
    assert g.v.regs[1] == 101


# ---- the guest row of fast lookups outlives a VMCS (architecture.md §15, docs/vmx.md V.7) ----
# Found by the fuzz above ("a snapshot/restore did not repeat the run"): with a VPID nothing is
# flushed at entry, and an access made without translation (guest paging and ept off) left an
# identity lookup that a later entry of the same tag used after translation was switched on, and
# lookups made under one segment limit served an entry under another.  A restore empties the
# lookups, so the run after it differed from the run before.


def _flat_then(g: Guest) -> None:
    """A first entry without translation loads DATA into r1, so that DATA's lookup is made."""
    g.v.regs[2] = DATA
    g.code(I("ld", rd=1, rs1=2, imm=0), I("vmcall", imm=1))
    assert g.run(100).number == VmExitReason.VMCALL


def test_guest_paging_the_host_turns_on_is_used_by_the_next_entry_of_the_tag():
    g = Guest("vtx-2009", ept=False, vpid=1)
    g.w64(DATA, 0x1111)
    g.w64(DATA + 0x1000, 0x2222)
    _flat_then(g)
    assert g.v.regs[1] == 0x1111
    tables = PageTables(g.w64, PageAllocator(GUEST_TABLES_RIG, GUEST_TABLES_RIG + 0x40000), levels=4)
    tables.map(0, 0, DATA, flags=PTE_W | PTE_U)
    tables.map(DATA, DATA + 0x1000, 4096, flags=PTE_W | PTE_U)  # DATA now reads the next page
    g.set(GUEST_CR3=tables.root, GUEST_CR4=2, GUEST_CR0=CR0_PE | CR0_PG, GUEST_PC=CODE_RIG)
    assert g.run(100).number == VmExitReason.VMCALL
    assert g.v.regs[1] == 0x2222


def test_ept_the_host_turns_on_is_used_by_the_next_entry_of_the_tag():
    # Without the fix the second entry read host-physical DATA: outside the guest's memory.
    g = Guest("vtx-2009", ept=True, vpid=1)
    g.m.write_u64(DATA, 0x1111)  # host-physical DATA
    g.w64(DATA, 0x2222)  # guest-physical DATA, at GUEST_BASE + DATA
    code = I("ld", rd=1, rs1=2, imm=0), I("vmcall", imm=1)
    g.m.write(CODE_RIG, b"".join(w.to_bytes(4, "little") for w in code))  # for the flat entry
    ept_on = g.get("PROC_CONTROLS")
    g.set(PROC_CONTROLS=ept_on & ~ProcControl.ENABLE_EPT)
    _flat_then(g)
    assert g.v.regs[1] == 0x1111
    g.set(PROC_CONTROLS=ept_on, GUEST_PC=CODE_RIG)
    assert g.run(100).number == VmExitReason.VMCALL
    assert g.v.regs[1] == 0x2222


def test_a_vmcs_sharing_a_vpid_gets_its_own_segment_limit():
    g = Guest("vtx-2009+seglimit", ept=False, vpid=1)
    g.set(GUEST_CPL=3, EXCEPTION_BITMAP=1 << 13)
    other = g.m.vmcs()
    other.copy_from(g.v)  # the same VPID
    other[VmcsField.GUEST_SEGLIMIT] = DATA - 1  # DATA is beyond its limit (§5.3 step 2)
    other.regs[2] = DATA
    assert g.m.vmrun(other, 0).reason is ExitReason.BUDGET  # entered once, under its limit
    _flat_then(g)  # no limit: DATA's lookup is made
    ex = g.m.vmrun(other, 100)
    assert ex.number == VmExitReason.EXCEPTION and other[VmcsField.EXIT_INTR_INFO] & 0xFF == 13
