"""The paravirtual hypercall ABI of P64 in one place: numbers, error codes, layouts, limits and stubs.

docs/paravirt-abi.md is the specification; this module is its single home in code, which the
paravirtual VMM, the paravirtual guest build (through the generated ``include/pv.s``,
``conformance/guest_os/pv_constants.py``) and the tests read.  The ABI is Xen's in outline
(Barham et al. 2003, "The Virtual Machine Interface" and "Detailed Design"): hypercalls, a
shared info page holding the virtual IF and the pending events, event channels, a virtual IDT,
validated page-table updates in batches, and I/O on shared-memory descriptor rings.  The
numbers are this ABI's own, dense from 0; the specification names each Xen counterpart.

Values only: nothing here runs a guest or a VMM, and nothing imports ``reference_vmm``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import NamedTuple

from cffi_core.devices.disk import DISK_MAX_COUNT
from cffi_core.isa.encoding import encode
from cffi_core.profiles import Profile, get_profile
from cffi_core.spec.state import PAGE_SIZE

# ---- the ABI's identity ------------------------------------------------------------------------

PV_ABI_VERSION = 1  # what the `version` hypercall returns and start info's `version` holds
START_MAGIC_VALUE = int.from_bytes(b"P64PVABI", "little")  # start info's first quadword

# ---- hypercalls --------------------------------------------------------------------------------


class Hypercall(IntEnum):
    """The hypercall numbers (docs/paravirt-abi.md §4): r7 at the transport, on every host."""

    VERSION = 0  # -> PV_ABI_VERSION; the cheapest call: it also delivers pending events
    SET_TRAP_TABLE = 1  # (table) the virtual IDT, copied at the call
    STACK_SWITCH = 2  # (sp) the kernel stack for events from user mode
    IRET = 3  # jumped to with sp at an IRET_FRAME; does not return when accepted
    MMU_UPDATE = 4  # (requests, count) a batch of at most MMU_UPDATE_MAX validated requests
    SET_CR3 = 5  # (base, user_base) machine addresses of pinned top-level tables
    INVLPG = 6  # (va) drop the cached translations of va's page
    SCHED_OP = 7  # (command, argument) yield, block, shutdown
    SET_TIMER = 8  # (deadline) one-shot, in SHARED_TIME's ticks; 0 cancels
    EVTCHN_SEND = 9  # (port) notify the VMM's end of a ring
    EVTCHN_UNMASK = 10  # (port) clear the port's mask; re-raise it if it is pending
    CONSOLE_WRITE = 11  # (buffer, length) synchronous console output


class PvError(IntEnum):
    """Why a hypercall was refused (§10).  A refusal returns r1 = -code: see ``result``."""

    ENOSYS = 1  # no such hypercall, or hcall/vmcall whose immediate differs from r7
    EINVAL = 2  # an argument outside its domain: command, flags, level, alignment, reserved bits
    EFAULT = 3  # a guest virtual buffer the kernel could not read or write there
    E2BIG = 4  # a count above its limit
    ENOTOWNED = 5  # a machine address outside the guest's memory
    ENOTTABLE = 6  # not a pinned page-table page
    ELEVEL = 7  # a pinned table of another level than the one the entry or call needs
    EWRITABLE = 8  # would give the guest a writable mapping of (or DMA into) a page-table page
    EPINNED = 9  # the page is pinned already
    EINUSE = 10  # the table is still referenced, or is a current base
    ERSVD = 11  # a present entry with a reserved bit set, or PS (no large pages)
    EPERM = 12  # the VMM's: L4 slots from PV_VMM_L4_FIRST, vector PV_HYPERCALL_VECTOR, its pages
    EBADPORT = 13  # an event-channel port outside 0..PV_NR_PORTS-1, or one the call cannot use
    ERANGE = 14  # a block request beyond the end of the disk
    ENODEV = 15  # no such device (a block request without a disk)


MASK64 = (1 << 64) - 1


def result(code: PvError) -> int:
    """The r1 of a refusal: -code as a 64-bit register value."""
    return -int(code) & MASK64


def error_of(r1: int) -> PvError | None:
    """The error a hypercall's r1 reports, or None for a success (r1 >= 0 as a signed value)."""
    signed = r1 - (1 << 64) if r1 >> 63 else r1
    return PvError(-signed) if signed < 0 else None


class SchedOp(IntEnum):
    """``sched_op``'s commands (r1), as Xen's SCHEDOP_yield, _block and _shutdown."""

    YIELD = 0
    BLOCK = 1  # clears the event mask, returns when an unmasked port is pending
    SHUTDOWN = 2  # r2 = exit code (its low 32 bits, as RESULT_EXIT); never returns


class MmuCmd(IntEnum):
    """The command of an ``mmu_update`` request, in the low 3 bits of its ``ptr``."""

    UPDATE = 0  # ptr = machine address of an entry of a pinned table, val = the new entry
    INVLPG = 1  # ptr = a virtual address of the page; val = 0
    PIN = 2  # ptr = machine address of a page; val = the level (1..4) it is pinned at
    UNPIN = 3  # ptr = machine address of a pinned table; val = 0


MMU_CMD_MASK = 0x7  # ptr's low bits that hold the command (entries are 8-byte aligned)


class Port(IntEnum):
    """The event-channel ports: fixed, one per event source (no binding)."""

    TIMER = 0  # set_timer's deadline passed; the guest cannot send on it
    CONSOLE = 1  # the console ring: input arrived / output drained
    BLOCK = 2  # the block ring: responses produced


class BlockOp(IntEnum):
    """A block request's operation (its values are the disk's DISK_CMD_READ and _WRITE)."""

    READ = 1  # disk -> memory
    WRITE = 2  # memory -> disk


# ---- transports --------------------------------------------------------------------------------


class Transport(Enum):
    """How a hypercall reaches the VMM on a host (§2): the instruction of the stubs."""

    HCALL = "hcall"  # kernel at ring 1 (seglimit): exits EXIT_HCALL with n
    INT = "int"  # kernel at ring 3: int PV_HYPERCALL_VECTOR, a DPL 3 host gate of the VMM's IDT
    VMCALL = "vmcall"  # kernel in guest mode: a VMCALL VM exit, qualification n


def transport_for(profile: str | Profile) -> Transport:
    """The transport of a host profile: vmcall with ``vmx``, hcall with ``seglimit`` (the kernel
    at ring 1, behind the segment limit), else int (the kernel at ring 3, where hcall is #GP)."""
    features = get_profile(profile).features
    if "vmx" in features:
        return Transport.VMCALL
    if "seglimit" in features:
        return Transport.HCALL
    return Transport.INT


# ---- vectors, gates, address space, limits -----------------------------------------------------

PV_HYPERCALL_VECTOR = 0x82  # Xen's x86-32 `int $0x82`; never present in a trap table (EPERM)
PV_UPCALL_VECTOR = 0x30  # where events are delivered: the first vector after the PIC's 32-47
PV_GATE_FAST = 1 << 8  # trap-table attribute bit: the fast system-call gate (free in §6.2's word)
PV_GATE_ATTRIBUTES = 0xFF | PV_GATE_FAST  # P, type, DPL, ring and FAST: any other bit is EINVAL
PV_REFUSED_INT_ERROR = 8 * PV_HYPERCALL_VECTOR + 2  # #GP of `int 0x82` where it is no hypercall
PV_TRAP_TABLE_SIZE = 256 * 16  # 256 gates of the manual's 16 bytes (architecture.md §6.2)

PV_STUB_SIZE = 32  # bytes per hypercall stub (Xen's hypercall page has 32 too)
PV_HYPERCALL_SLOTS = PAGE_SIZE // PV_STUB_SIZE  # stubs in the page: numbers 0..127

PV_VIRT_LIMIT = 1 << 47  # the guest maps [0, PV_VIRT_LIMIT): the lower canonical half
PV_VMM_L4_FIRST = 256  # top-level slots 256..511 (the upper half) belong to the VMM
PV_PAGING_LEVELS = 4  # a paravirtual guest runs with 4-level paging (CR4.PL = 2)

PV_NR_PORTS = 8  # one byte per port in SHARED_EVTCHN_PENDING / _MASK: one quadword
MMU_UPDATE_MAX = 2048  # requests per mmu_update: Barham et al.'s "2048 updates" per hypercall
PV_CONSOLE_WRITE_MAX = 4096  # bytes per console_write
CONS_IN_SIZE = 1024  # the console ring's input bytes (Xen's console ring: 1 KiB in, 2 KiB out)
CONS_OUT_SIZE = 2048
BLK_RING_SIZE = 32  # request (and response) slots of the block ring
BLK_MAX_SECTORS = DISK_MAX_COUNT  # sectors per request: the disk's limit (devices.md §6)

PV_AREA_FIXED_PAGES = 4  # start info, shared info, console ring, block ring; then the tables

# ---- layouts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A field of a shared structure: byte offset, element size and count (an array when > 1)."""

    name: str
    offset: int
    size: int
    count: int = 1
    doc: str = ""

    @property
    def end(self) -> int:
        """The first byte after the field."""
        return self.offset + self.size * self.count


@dataclass(frozen=True)
class Layout:
    """A structure shared by the guest and the VMM: its fields, its size, its constants' prefix.

    Every field is naturally aligned (its element size divides its offset), as P64 needs of
    every access (architecture.md §5.2), and the VMM writes each scalar with one store at an
    exit, so the guest reads it whole."""

    name: str
    prefix: str
    size: int
    fields: tuple[Field, ...]

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    def offset(self, name: str) -> int:
        """A field's byte offset."""
        return self[name].offset

    def constant(self, f: Field) -> str:
        """The name guest assembly knows the field's offset by: ``SHARED_TIME``."""
        return f"{self.prefix}_{f.name.upper()}"


def _u64(name: str, offset: int, doc: str) -> Field:
    return Field(name, offset, 8, 1, doc)


START_INFO = Layout(
    "start info",
    "START",
    PAGE_SIZE,
    (
        _u64("magic", 0x00, "START_MAGIC_VALUE: the bytes P64PVABI"),
        _u64("version", 0x08, "PV_ABI_VERSION"),
        _u64("mem_base", 0x10, "machine address of pseudo-physical 0: machine = pseudo-physical + mem_base"),
        _u64("mem_size", 0x18, "bytes of guest memory (pseudo-physical [0, mem_size))"),
        _u64("pv_start", 0x20, "first byte of the PV area: the guest's own allocations stay below it"),
        _u64("shared_info", 0x28, "virtual address of the shared info page"),
        _u64("console_ring", 0x30, "virtual address of the console ring page"),
        _u64("block_ring", 0x38, "virtual address of the block ring page"),
        _u64("block_sectors", 0x40, "sectors of the disk; 0: no disk"),
        _u64("hypercall_page", 0x48, "virtual address of the image's hypercall_page, as filled"),
        _u64("pt_base", 0x50, "virtual address of the bootstrap top-level table"),
        _u64("pt_pages", 0x58, "bootstrap table pages, contiguous from pt_base"),
    ),
)

SHARED_INFO = Layout(
    "shared info",
    "SHARED",
    PAGE_SIZE,
    (
        Field("event_mask", 0x00, 1, 1, "virtual IF, inverted: 1 masks every upcall (cli), 0 allows them (sti)"),
        Field("upcall_pending", 0x01, 1, 1, "set by the VMM when an unmasked port becomes pending"),
        _u64("time", 0x08, "the VM's clock in ticks, as of the VMM's last entry into the guest"),
        _u64("cr2", 0x10, "the virtual CR2: the address of the last #PF delivered"),
        Field("evtchn_pending", 0x18, 1, PV_NR_PORTS, "one byte per port: 1 = pending"),
        Field("evtchn_mask", 0x20, 1, PV_NR_PORTS, "one byte per port: 1 = masked (no upcall)"),
    ),
)

CONSOLE_RING = Layout(
    "console ring",
    "CONS",
    PAGE_SIZE,
    (
        _u64("out_prod", 0x00, "guest: bytes written into out so far"),
        _u64("out_cons", 0x08, "VMM: bytes of out consumed so far"),
        _u64("in_prod", 0x10, "VMM: bytes written into in so far"),
        _u64("in_cons", 0x18, "guest: bytes of in consumed so far"),
        Field("in", 0x400, 1, CONS_IN_SIZE, "input bytes: byte i at in[i mod CONS_IN_SIZE]"),
        Field("out", 0x800, 1, CONS_OUT_SIZE, "output bytes: byte i at out[i mod CONS_OUT_SIZE]"),
    ),
)

BLOCK_REQUEST = Layout(
    "block request",
    "BLK_REQ",
    32,
    (
        _u64("id", 0, "the guest's tag, returned in the response"),
        Field("op", 8, 4, 1, "BlockOp: 1 read, 2 write"),
        Field("count", 12, 4, 1, "sectors, 1..BLK_MAX_SECTORS"),
        _u64("sector", 16, "first sector"),
        _u64("buffer", 24, "machine address of 512 * count bytes of guest memory"),
    ),
)

BLOCK_RESPONSE = Layout(
    "block response",
    "BLK_RSP",
    16,
    (
        _u64("id", 0, "the request's id"),
        _u64("status", 8, "0 done, or -PvError (nothing was transferred)"),
    ),
)

BLOCK_RING = Layout(
    "block ring",
    "BLK",
    PAGE_SIZE,
    (
        _u64("req_prod", 0x00, "guest: requests produced so far"),
        _u64("rsp_prod", 0x08, "VMM: responses produced so far"),
        Field("requests", 0x40, BLOCK_REQUEST.size, BLK_RING_SIZE, "request i in slot i mod BLK_RING_SIZE"),
        Field("responses", 0x440, BLOCK_RESPONSE.size, BLK_RING_SIZE, "response i in slot i mod BLK_RING_SIZE"),
    ),
)

MMU_REQUEST = Layout(
    "mmu_update request",
    "MMU_REQ",
    16,
    (
        _u64("ptr", 0, "an address, with the MmuCmd in bits 2:0"),
        _u64("val", 8, "the new entry, or the command's operand"),
    ),
)

IRET_FRAME = Layout(
    "iret frame",
    "IRET",
    40,
    (
        _u64("r7", 0, "restored into r7 (the stub clobbered it with the number)"),
        _u64("pc", 8, "as an event frame (architecture.md §6.3 step 7)"),
        _u64("cs", 16, "the virtual CPL: 0 kernel, 3 user"),
        _u64("flags", 24, "only FLAGS_IF may be set; it becomes the event mask, inverted"),
        _u64("sp", 32, "the stack pointer to return with"),
    ),
)

LAYOUTS: tuple[Layout, ...] = (
    START_INFO,
    SHARED_INFO,
    CONSOLE_RING,
    BLOCK_RING,
    BLOCK_REQUEST,
    BLOCK_RESPONSE,
    MMU_REQUEST,
    IRET_FRAME,
)

# ---- the boot state ----------------------------------------------------------------------------


def boot_table_pages(mem_size: int) -> int:
    """The bootstrap page-table pages that map ``mem_size`` bytes with 4 KiB pages: one L4, one L3
    (the guest's memory is below 512 GiB), an L2 per GiB and an L1 per 2 MiB (§3)."""
    if mem_size <= 0 or mem_size % PAGE_SIZE:
        raise ValueError(f"mem_size = {mem_size!r}: must be a positive multiple of {PAGE_SIZE}")
    return 2 + -(-mem_size // (1 << 30)) + -(-mem_size // (1 << 21))


class PvArea(NamedTuple):
    """Where the VMM puts the pages it shares with the guest: the top of its memory (§3).

    Pseudo-physical addresses, which are also the virtual addresses of the bootstrap mapping."""

    start: int  # pv_start: the first page of the area
    start_info: int
    shared_info: int
    console_ring: int
    block_ring: int
    tables: int  # the bootstrap L4, then the L3, the L2s and the L1s
    table_pages: int


def pv_area(mem_size: int) -> PvArea:
    """The PV area of a guest of ``mem_size`` bytes."""
    n = boot_table_pages(mem_size)
    start = mem_size - (PV_AREA_FIXED_PAGES + n) * PAGE_SIZE
    if start < 0:
        raise ValueError(f"mem_size = {mem_size:#x}: too small for the PV area ({PV_AREA_FIXED_PAGES + n} pages)")
    pages = [start + i * PAGE_SIZE for i in range(PV_AREA_FIXED_PAGES + 1)]
    return PvArea(start, pages[0], pages[1], pages[2], pages[3], pages[4], n)


# ---- the hypercall page ------------------------------------------------------------------------

HYPERCALL_PAGE_SYMBOL = "hypercall_page"  # the image's page the VMM fills (Xen's ELF note, here a symbol)
_R7 = 7
_STUB_WORDS = PV_STUB_SIZE // 4


def hypercall_stub(number: int, transport: Transport) -> tuple[int, ...]:
    """The 8 instruction words of stub ``number``: ``li r7, n``; the transport; ``ret`` (``ud`` for
    iret, which returns only when refused); ``ud`` to the end, so running past a stub faults."""
    if not 0 <= number < PV_HYPERCALL_SLOTS:
        raise ValueError(f"hypercall {number}: the page holds 0..{PV_HYPERCALL_SLOTS - 1}")
    imm = PV_HYPERCALL_VECTOR if transport is Transport.INT else number  # int carries a vector
    gate = encode(transport.value, imm=imm)
    after = encode("ud") if number == Hypercall.IRET else encode("ret")
    words = (encode("addi", rd=_R7, rs1=0, imm=number), gate, after)
    return words + (encode("ud"),) * (_STUB_WORDS - len(words))


def hypercall_page(transport: Transport) -> bytes:
    """The 4 KiB the VMM writes at the image's ``hypercall_page`` for its host's transport."""
    return b"".join(w.to_bytes(4, "little") for n in range(PV_HYPERCALL_SLOTS) for w in hypercall_stub(n, transport))


def stub_address(page: int, number: int) -> int:
    """The address a guest calls for hypercall ``number``: ``hypercall_page + 32 * number``."""
    return page + PV_STUB_SIZE * number
