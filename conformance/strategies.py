"""Hypothesis strategies for generated guest programs (docs/vmm-api.md §10): prelude, shrinkable body, signature.

A generated guest is ``lib/prelude.s`` and ``lib/generated.s`` (the IDT with logging handlers
that resume, stacks, register seeds; optionally 4-level paging with two address spaces, and a
drop to ring 1, 2 or 3), then a *body* of instruction blocks drawn from the instruction table
(``cffi_core.isa.table``), then the signature epilogue of ``lib/signature.s`` (registers, CRs
and CR8 read at CPL 0, the exception log, a checksum of the data page, the clock).  The prelude
is fixed text: only its options are drawn (the CPL, paging, the FLAGS the body starts with —
TF included, so that bodies run single-stepped — and the console's input).  The body is a list
of blocks, each one instruction or a short self-contained idiom (``pushf; pop r1``, an ``iret``
frame, a bounded loop, a timer armed then ``sti; hlt``), so hypothesis shrinks a failure by
deleting whole blocks and then by simplifying the one left: toward the first block kinds (plain
ALU) and small operands.

Body blocks include the x86 obstacles of docs/architecture.md §4.3 (``smsw sidt rdcs pushf
popf iret``), the IOPL-sensitive and privileged instructions (with invalid operands too), at
the guest CPL the prelude chose; ``vmcall`` (#UD on a bare machine); clock reads (``rdtsc``,
``TIMER_NOW``) and TSC writes; the one-shot timer with ``hlt``, the TPR and the interrupt
shadow; loads and stores at the end of RAM (#MC); CR3 switches between two live address
spaces and remaps of pages a body already used (through system calls, so that ring 3 can ask).
Programs are well defined by construction: no branch leaves its block, every changed paging
entry is invalidated before use (§8.1, §14), no ``hlt`` can sleep forever, no ``hcall`` (a bare
machine has no host software to answer it) nor ``ldgs``/``sdgs``/``jgs`` (the host segment, §5.4: for
host software too), no disk.  Time is counted in retired instructions (§9), so reading the
clock is well defined: any two correct runs agree, on the time too.

``adversary_programs()`` draws the hostile guests of the safety tests: random words, wild
physical addresses, page tables pointing anywhere, DMA anywhere, IDT overwrites, ``cli; jmp .``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

from hypothesis import strategies as st

from cffi_core.isa.table import BY_MNEMONIC, CONTROL_REGISTERS, SENSITIVE_UNPRIVILEGED, Insn
from conformance.api import VMConfig
from conformance.guests import GUEST_DIR

__all__ = [
    "ADVERSARY_BUDGET",
    "ADVERSARY_DISK",
    "GENERATED_BUDGET",
    "GENERATED_MEMORY",
    "Block",
    "GuestProgram",
    "ParavirtProgram",
    "adversary_programs",
    "body_blocks",
    "guest_programs",
    "hypercall_adversaries",
    "paravirt_adversary",
]

GENERATED_MEMORY = 1 << 20  # the directed guests' memory map (lib/prelude.s) fits in 1 MiB
GENERATED_BUDGET = 60_000  # ticks: the signature takes about 4,000, a body single-stepped at most ~25,000
ADVERSARY_BUDGET = 12_000  # ticks an adversary may burn beside its victim
ADVERSARY_DISK = bytes(range(256)) * 8  # four sectors, so that DMA commands reach the device
MAX_BODY_BLOCKS = 24

# Memory map constants of lib/prelude.s (the .equ there are the source of truth for the guest).
_DATA = 0x50000
_IDT = 0x20000
_PT = 0x13000
_PAGED_VA = 0x200000
_PT_B = 0x17000  # lib/paging.s paging_spaces: address space B
_PML4, _PML4_B = 0x10000, 0x14000
_PD, _PD_B = 0x12000, 0x16000
_RAM_END = GENERATED_MEMORY
_FLAGS_TF, _FLAGS_IF, _FLAGS_IOPL = 1 << 8, 1 << 9, 3 << 12
_MSR_TSC = 0x10
_VEC_REMAP, _VEC_SPACE = 0x42, 0x43  # lib/generated.s system calls
_TIMER_COUNT, _TIMER_CTRL, _TIMER_NOW, _PIC_MASK = 0x40, 0x41, 0x42, 0x21

_BODY_REGS = tuple(f"r{i}" for i in range(1, 9))  # r1-r8: printed by the signature
_SRC_REGS = ("r0", *_BODY_REGS)
# Ports a body may touch: the console (output is observed; input read), the PIC's mask and
# IRR, an unclaimed port, the clock.  The timer is armed by its own block (one-shot, short:
# _timer); the disk never (the content of a buffer in flight is undefined, §14).
_PORTS_IN = (0x3F9, 0x21, 0x22, 0x99, 0x3F8, _TIMER_NOW)
_PORTS_OUT = (0x3F8, 0x99, 0x21)
# Console input a guest may be given (VMConfig.console_input, docs/devices.md §5).
CONSOLE_INPUTS = (b"", b"popek\n", bytes(range(256)))


# ---- programs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One shrinkable unit of a body: assembly lines; ``{L}`` in them is a label local to it."""

    lines: tuple[str, ...]

    def render(self, label: str) -> list[str]:
        return [line.replace("{L}", label) for line in self.lines]

    def __repr__(self) -> str:
        return repr("; ".join(line.strip() for line in self.lines))


@dataclass(frozen=True)
class GuestProgram:
    """A generated guest: prelude options, the body, and the VMConfig it runs with."""

    cpl: int  # the CPL the body runs at: 0 (the guest kernel) or 1-3 (an outer ring via iret)
    paging: bool  # 4-level paging on (lib/paging.s paging_on, paging_spaces) before the body
    flags: int  # FLAGS the body starts with (0 or TF): popf at CPL 0, else the iret to its ring
    body: tuple[Block, ...]
    budget: int = GENERATED_BUDGET
    disk: bytes | None = None
    name: str = field(default="generated", compare=False)
    console_input: bytes = b""
    # The ring the prelude's iret really enters (None: ``cpl``).  Only the ring-aliasing
    # explanation of trap-and-emulate's deviation sets it (conformance.checks): to 0, the
    # program is what that VMM believes it runs.
    entry_ring: int | None = None

    def __repr__(self) -> str:
        extra = f", console_input={self.console_input!r}" if self.console_input else ""
        return (
            f"GuestProgram(cpl={self.cpl}, paging={self.paging}, flags={self.flags:#x}{extra}, "
            f"body={list(self.body)!r})"
        )

    @property
    def config(self) -> VMConfig:
        return VMConfig(memory=GENERATED_MEMORY, disk=self.disk, budget=self.budget, console_input=self.console_input)

    def body_source(self) -> list[str]:
        """The body's lines, labels made unique."""
        lines: list[str] = []
        for i, block in enumerate(self.body):
            lines += block.render(f".Lb{i}")
        return lines

    @cached_property
    def source(self) -> str:
        """The whole program as assembly text (includes resolved against conformance/guests)."""
        head = [
            f"; generated guest: body at CPL {self.cpl}, paging {'on' if self.paging else 'off'}, "
            f"FLAGS {self.flags:#x}",
            '.include "lib/prelude.s"',
            '.include "lib/generated.s"',
        ]
        if self.paging:
            head.append('.include "lib/paging.s"')
        main = ["main:", "        call    gen_setup"]
        if self.paging:
            main += ["        call    paging_on", "        call    paging_spaces"]
        if self.cpl:
            ring = self.cpl if self.entry_ring is None else self.entry_ring
            main.append(f"        enter_ring {self.flags:#x}, {ring}, back")
        else:
            # The end returns through h_back like a ring-3 body does, so that the signature's
            # FLAGS line shows the FLAGS the body left (read from the frame, not with pushf).
            main += ["        la      r13, back", "        la      r14, resume", "        sd      r13, [r14]"]
            if self.flags:  # TF set by popf traps after the body's first instruction (§6.4)
                main += [f"        li      r13, {self.flags:#x}", "        push    r13", "        popf"]
        body = self._body_lines(self.body_source())
        tail = ["body_end:", "        int     VEC_BACK", "back:   jmp     gen_end", '.include "lib/signature.s"']
        return "\n".join([*head, *main, *body, *tail]) + "\n"

    @cached_property
    def image(self):  # -> GuestImage (cffi_core.image), assembled on first use
        from cffi_core.asm import assemble

        return assemble(self.source, filename=str(GUEST_DIR / f"{self.name}.s"))

    def block_starts(self) -> list[int]:
        """The address of each body block's first word, then ``body_end``'s: the same program
        assembled with a label before each block (labels move nothing)."""
        from cffi_core.asm import assemble

        lines: list[str] = []
        for i, block in enumerate(self.body):
            lines += [f"blk_{i}:", *block.render(f".Lb{i}")]
        plain, marked = self._body_lines(self.body_source()), self._body_lines(lines)
        source = self.source.replace("\n".join(plain), "\n".join(marked), 1)
        image = assemble(source, filename=str(GUEST_DIR / f"{self.name}.s"))
        return [image.symbols[f"blk_{i}"] for i in range(len(self.body))] + [image.symbols["body_end"]]

    @staticmethod
    def _body_lines(lines: list[str]) -> list[str]:
        return ["body:", *(f"        {line.strip()}" if not line.endswith(":") else line for line in lines)]

    def body_words(self) -> list[tuple[int, int]]:
        """(address, word) of every instruction word of the body, from the assembled image."""
        image = self.image
        start, end = image.symbols["body"], image.symbols["body_end"]
        data = b"".join(seg.data for seg in image.segments if seg.address <= start < seg.address + len(seg.data))
        base = next(seg.address for seg in image.segments if seg.address <= start < seg.address + len(seg.data))
        return [(a, int.from_bytes(data[a - base : a - base + 4], "little")) for a in range(start, end, 4)]

    def body_mnemonics(self) -> list[str]:
        """The mnemonic of each body word (``.word`` for an invalid encoding)."""
        from cffi_core.isa.encoding import decode

        out = []
        for _, word in self.body_words():
            d = decode(word)
            out.append(d.insn.mnemonic if d is not None else ".word")
        return out

    def listing(self) -> str:
        """What a failure report shows: the options, the body as written, and the body's
        words disassembled (the prelude and epilogue are the fixed files named)."""
        from cffi_core.asm import disassemble_word

        lines = [
            f"generated guest: body at CPL {self.cpl}, paging {'on' if self.paging else 'off'}, "
            f"FLAGS {self.flags:#x}, budget {self.budget} ticks"
            f"{', with a disk' if self.disk is not None else ''}"
            f"{f', console input {self.console_input!r}' if self.console_input else ''}",
            "prelude: conformance/guests/lib/prelude.s + lib/generated.s"
            + (" + lib/paging.s (paging_on, paging_spaces)" if self.paging else "")
            + (f"; enter_ring {self.cpl}" if self.cpl else "; popf" if self.flags else ""),
            "body (source):",
            *(f"    {line.strip()}" for line in self.body_source()),
            "body (disassembled):",
            *(f"    {a:#07x}: {w:08x}  {disassemble_word(w, a)}" for a, w in self.body_words()),
            "epilogue: int VEC_BACK; lib/generated.s gen_end (data checksum); lib/signature.s finish",
        ]
        return "\n".join(lines)

    def sensitive_unprivileged(self) -> list[str]:
        """The body's instructions that are sensitive but unprivileged (the table's class)."""
        return [m for m in self.body_mnemonics() if m in SENSITIVE_UNPRIVILEGED]


# ---- operands ---------------------------------------------------------------------------------

_rd = st.sampled_from(_BODY_REGS)
_rs = st.sampled_from(_SRC_REGS)
_imm = {
    "s16": st.one_of(st.integers(-8, 8), st.integers(-(1 << 15), (1 << 15) - 1)),
    "u16": st.one_of(st.integers(0, 16), st.integers(0, 0xFFFF)),
    "sh6": st.integers(0, 63),
    "s20": st.integers(-(1 << 19), (1 << 19) - 1),
}
# Data offsets from r12 (= DATA): mostly inside the page and aligned, sometimes misaligned
# (#AC) or just outside it.
_data_offset = st.one_of(st.integers(0, 63).map(lambda q: 8 * q), st.integers(-16, 4096 + 16))
_flags_value = st.sampled_from(
    [
        0,
        _FLAGS_IF,
        _FLAGS_IOPL,
        _FLAGS_IF | _FLAGS_IOPL,
        _FLAGS_TF,
        1 << 12,
        _FLAGS_TF | _FLAGS_IF,
        _FLAGS_TF | _FLAGS_IOPL,
    ]
)


def _rows(*mnemonics: str) -> list[Insn]:
    return [BY_MNEMONIC[m] for m in mnemonics]


def _one(line: str) -> Block:
    return Block((line,))


@st.composite
def _table_row(draw: st.DrawFn, rows: list[Insn]) -> Block:
    """One instruction of a table row, operands drawn for its format (registers r1-r8 written)."""
    insn = draw(st.sampled_from(rows))
    fmt = insn.format
    ops: list[str] = []
    for template in (t.strip() for t in fmt.syntax.split(",") if t.strip()):
        if template == "rd":
            ops.append(draw(_rd))
        elif template in ("rs1", "rs2"):
            ops.append(draw(_rs))
        elif template in ("imm", "shamt"):
            ops.append(str(draw(_imm[fmt.imm])))
        elif template.startswith("["):
            ops.append(f"[r12 + {draw(_data_offset)}]")
        else:
            raise AssertionError(f"{insn.mnemonic}: operand {template} has no strategy here")
    return _one(f"{insn.mnemonic} {', '.join(ops)}".strip())


_ALU_RI = _rows("addi", "andi", "ori", "xori", "shli", "shri", "sari", "slti", "sltiu", "lui")
_ALU_RR = _rows("add", "sub", "and", "or", "xor", "shl", "shr", "sar", "mul", "slt", "sltu")
_DIV = _rows("div", "divu", "rem", "remu")
_MEM = _rows("ld", "lw", "lwu", "lh", "lhu", "lb", "lbu", "sd", "sw", "sh", "sb")
_SENSITIVE_RD = _rows("smsw", "sidt", "rdcs")


@st.composite
def _wild_access(draw: st.DrawFn) -> Block:
    """A load or store through a body register: anywhere the register points."""
    insn = draw(st.sampled_from(_rows("ld", "lbu", "sd", "sb")))
    reg = draw(_rd)
    off = draw(st.integers(-8, 8).map(lambda q: 8 * q))
    return _one(f"{insn.mnemonic} {draw(_rd)}, [{reg} + {off}]")


@st.composite
def _popf(draw: st.DrawFn) -> Block:
    return Block((f"li r9, {draw(_flags_value):#x}", "push r9", "popf"))


@st.composite
def _iret(draw: st.DrawFn, cpl: int) -> Block:
    """An ``iret`` to the next line at the same CPL with drawn FLAGS (§6.4's POPF rules)."""
    return Block(
        (
            "mov r9, sp",
            f"li r10, {draw(_flags_value):#x}",
            "push r9",
            "push r10",
            f"li r10, {cpl}",
            "push r10",
            "la r10, {L}",
            "push r10",
            "iret",
            "{L}:",
        )
    )


@st.composite
def _port(draw: st.DrawFn) -> Block:
    if draw(st.booleans()):
        return _one(f"out {draw(st.sampled_from(_PORTS_OUT)):#x}, {draw(_rs)}")
    return _one(f"in {draw(_rd)}, {draw(st.sampled_from(_PORTS_IN)):#x}")


_invlpg_anywhere = st.one_of(
    st.sampled_from([2**64 - 4096, 2**64 - 8, 0x7FFF_FFFF_FFFF_FFFF, 0x7FFF_FFFF_F000, 0xFFFF_8000_0000_0000, 1 << 47]),
    st.integers(0, 2**64 - 1),
)


@st.composite
def _invlpg(draw: st.DrawFn) -> Block:
    """``invlpg`` of any address: it never faults on its address (§3), so a VMM must not let
    one drop what it keeps in the guest's address space (the top page, a non-canonical
    address's alias of it)."""
    return Block((f"li r9, {draw(_invlpg_anywhere):#x}", "invlpg [r9]"))


@st.composite
def _control(draw: st.DrawFn) -> Block:
    """Privileged state: CRs, MSRs, IDTR, invlpg (a #GP at CPL 3).  Values written keep the
    machine usable (CR0 bits of §2, the CR3 the prelude set, RSP0 unchanged) so that the body
    goes on; the safety adversaries write anything."""
    kind = draw(st.sampled_from(["mfcr", "mtcr0", "mtcr4", "mtcr8", "rdmsr", "wrmsr", "lidt", "invlpg"]))
    if kind == "mfcr":
        return _one(f"mfcr {draw(_rd)}, cr{draw(st.sampled_from(CONTROL_REGISTERS))}")
    if kind == "mtcr0":  # PE always; TS, WP; PG only when it already is (else the pc moves)
        return Block(("mfcr r9, cr0", f"ori r9, r9, {draw(st.sampled_from([0, 8, 16, 24])):#x}", "mtcr cr0, r9"))
    if kind == "mtcr4":  # levels stay 4; TSD and PGE toggled
        return Block((f"li r9, {2 | draw(st.sampled_from([0, 4, 0x80, 0x84])):#x}", "mtcr cr4, r9"))
    if kind == "mtcr8":
        return Block((f"li r9, {draw(st.integers(0, 15))}", "mtcr cr8, r9"))
    if kind == "rdmsr":
        return Block((f"li r9, {draw(st.sampled_from([0x100, 0x101, 0x102, 0x300])):#x}", f"rdmsr {draw(_rd)}, r9"))
    if kind == "wrmsr":  # RSP1/RSP2 only: RSP0 is the stack of every handler
        return Block((f"li r9, {draw(st.sampled_from([0x101, 0x102])):#x}", f"wrmsr r9, {draw(_rs)}"))
    if kind == "lidt":
        return Block((f"li r9, {_IDT:#x}", "lidt r9"))
    return _one(f"invlpg [r12 + {draw(st.integers(0, 7)) * 4096}]")


@st.composite
def _int(draw: st.DrawFn) -> Block:
    # Vectors without an error code in their handler: the gates of lib/generated.s, and others
    # that have no gate (#GP(8v + 2), logged).  Never VEC_BACK (0x80): it ends the body; nor
    # the system calls, whose arguments only their own blocks set up.
    vec = draw(
        st.one_of(
            st.sampled_from([0x40, 0x41, 3, 0x50]),
            st.integers(32, 255).filter(lambda v: v not in (0x80, _VEC_REMAP, _VEC_SPACE)),
        )
    )
    return _one(f"int {vec:#x}")


@st.composite
def _branch(draw: st.DrawFn) -> Block:
    """A forward branch over one ALU instruction, inside the block."""
    br = draw(st.sampled_from(["beq", "bne", "blt", "bge", "bltu", "bgeu"]))
    inner = draw(_table_row(_ALU_RR))
    return Block((f"{br} {draw(_rs)}, {draw(_rs)}, {{L}}", *inner.lines, "{L}:"))


@st.composite
def _loop(draw: st.DrawFn) -> Block:
    """A bounded loop: one or two ALU instructions run 1-8 times."""
    inner = draw(st.lists(_table_row(_ALU_RR + _ALU_RI), min_size=1, max_size=2))
    n = draw(st.integers(1, 8))
    return Block((f"li r11, {n}", "{L}:", *(ln for b in inner for ln in b.lines), "addi r11, r11, -1", "bnez r11, {L}"))


@st.composite
def _pte_edit(draw: st.DrawFn) -> Block:
    """Map PAGED_VA + 4 KiB * i to a data frame with drawn permissions, invlpg, then touch it
    (lib/paging.s leaves that range to the guest: #PF when not present, logged)."""
    i = draw(st.integers(0, 7))
    frame = _DATA + 4096 * draw(st.integers(0, 3))
    flags = draw(st.sampled_from([7, 5, 3, 1, 0]))  # P|W|U, P|U, P|W, P, not present
    access = draw(st.sampled_from(["ld", "sd"]))
    va = _PAGED_VA + 4096 * i
    return Block(
        (
            f"li r9, {frame | flags:#x}",
            f"li r10, {_PT + 8 * i:#x}",
            "sd r9, [r10]",
            f"li r10, {va:#x}",
            "invlpg [r10]",
            f"{access} {draw(_rd)}, [r10 + {8 * draw(st.integers(0, 3))}]",
        )
    )


# ---- blocks of the blind spots: time, invalid operands, vmcall, the end of RAM, interrupts,
# ---- address spaces -------------------------------------------------------------------------


@st.composite
def _clock(draw: st.DrawFn) -> Block:
    """Read the clock (§9: retired instructions, so the same under any correct VMM): the TSC
    (#GP at CPL > 0 with CR4.TSD, or always there on classic) or the timer's TIMER_NOW."""
    if draw(st.booleans()):
        return _one(f"rdtsc {draw(_rd)}")
    return _one(f"in {draw(_rd)}, {_TIMER_NOW:#x}")


@st.composite
def _vmcall(draw: st.DrawFn) -> Block:
    """``vmcall`` is #UD outside guest mode (§3, §4.2): under a VMM it is its exit to handle."""
    return _one(f"vmcall {draw(st.one_of(st.integers(0, 3), st.integers(0, 0xFFFF)))}")


# Invalid operands of the privileged instructions (§2): each write raises #GP(0) natively, so
# that a VMM that emulates them must inject the same fault.
_CR0_BAD = (1 << 1, 1 << 5, 1 << 16, 1 << 63)  # bits beyond PE, TS, WP, PG
_CR4_BAD = (3, 2 | 1 << 3, 2 | 1 << 8, 2 | 1 << 63)  # PL = 3, reserved bits
_CR3_BAD = (_PML4 | 1, _PML4 | 0x800, _PML4 | 1 << 52, _PML4 | 1 << 63)
_CR8_BAD = (16, 0x1F, 1 << 63, -1)
# Unknown MSRs, beyond a 16,384-entry bitmap, and aliases of real ones in bits a VMM might drop.
_MSR_BAD = (0, 0x11, 0x103, 0x3FFF, 0x4000, 0xFFFF_FFFF, 1 << 32 | _MSR_TSC, 1 << 32 | 0x100, 1 << 63 | 0x101)


@st.composite
def _bad_control(draw: st.DrawFn) -> Block:
    """A privileged instruction with an invalid operand (§2): #GP(0) at CPL 0 as anywhere."""
    kind = draw(st.sampled_from(["cr0", "cr0_pe", "cr4", "cr3", "cr8", "rdmsr", "wrmsr"]))
    if kind == "cr0":
        bit = draw(st.sampled_from(_CR0_BAD))
        return Block(("mfcr r9, cr0", f"li r10, {bit:#x}", "or r9, r9, r10", "mtcr cr0, r9"))
    if kind == "cr0_pe":  # PE cleared (PG kept as it is): "writing 0 raises #GP(0)"
        return Block(("mfcr r9, cr0", "andi r9, r9, 0xfffe", "mtcr cr0, r9"))
    if kind == "cr4":
        return Block((f"li r9, {draw(st.sampled_from(_CR4_BAD)):#x}", "mtcr cr4, r9"))
    if kind == "cr3":
        return Block((f"li r9, {draw(st.sampled_from(_CR3_BAD)):#x}", "mtcr cr3, r9"))
    if kind == "cr8":
        return Block((f"li r9, {draw(st.sampled_from(_CR8_BAD))}", "mtcr cr8, r9"))
    # MSR_SEGLIMIT (0x200) exists with the seglimit feature only: read, never written here.
    index = draw(st.sampled_from(_MSR_BAD + ((0x200,) if kind == "rdmsr" else ())))
    if kind == "rdmsr":
        return Block((f"li r9, {index:#x}", f"rdmsr {draw(_rd)}, r9"))
    return Block((f"li r9, {index:#x}", f"wrmsr r9, {draw(_rs)}"))


@st.composite
def _tsc_write(draw: st.DrawFn) -> Block:
    """``wrmsr MSR_TSC`` (§2: the TSC reads the value written, plus the ticks since), then
    ``rdtsc`` — after an exit to the host (port I/O) when drawn, which a VMM's TSC offset
    must survive."""
    value = draw(st.sampled_from([0, 1, 1 << 40, -1, 1 << 63, -5]))
    lines = [f"li r9, {_MSR_TSC:#x}", f"li r10, {value:#x}" if value >= 0 else f"li r10, {value}", "wrmsr r9, r10"]
    if draw(st.booleans()):
        lines.append("out 0x99, r0")
    lines.append(f"rdtsc {draw(_rd)}")
    return Block(tuple(lines))


@st.composite
def _shadowed(draw: st.DrawFn) -> str:
    """An instruction that exits to a VMM or traps, for the boundary right after ``sti``."""
    return draw(
        st.sampled_from(
            [
                "out 0x99, r0",
                f"in {draw(_rd)}, 0x3f9",
                f"mfcr {draw(_rd)}, cr8",
                "mtcr cr8, r0",
                f"rdtsc {draw(_rd)}",
                "int 0x40",
                "vmcall 0",
                "ud",
                f"rdmsr {draw(_rd)}, r12",
                "invlpg [r12]",
                "cli",
                "sd r0, [r12 + 4]",
                # A first touch of a data page: a hidden page fault under shadow paging, an
                # exit the guest must not see, with the interrupt still held by the shadow.
                f"ld {draw(_rd)}, [r12 + {4096 * draw(st.integers(1, 3))}]",
                f"sd {draw(_rd)}, [r12 + {4096 * draw(st.integers(1, 3)) + 8}]",
            ]
        )
    )


@st.composite
def _sti_then(draw: st.DrawFn) -> Block:
    """``cli; sti; X``: X, which exits or traps, runs in sti's interrupt shadow (§6.5)."""
    return Block(("cli", "sti", draw(_shadowed())))


@st.composite
def _timer(draw: st.DrawFn) -> Block:
    """Arm the timer one-shot and short (devices.md §4), unmasked, with IF clear; then either
    ``sti; hlt`` (the TPR lowered first, so the interrupt wakes it: never an endless halt),
    ``sti; X`` with X in the shadow, or the TPR raised over the pending interrupt, read back,
    and lowered (§6.5).  A spin first lets the interrupt be pending while IF = 0.  At CPL > 0
    the privileged steps raise #GP and the rest goes on (at IOPL 3 the timer is armed)."""
    mode = draw(st.sampled_from(["hlt", "shadow", "tpr"]))
    count = draw(st.integers(1, 64))
    lines = [
        "cli",
        f"li r9, {count}",
        f"out {_TIMER_COUNT:#x}, r9",
        "li r9, 1",
        f"out {_TIMER_CTRL:#x}, r9",
        "li r9, 0xfffe",
        f"out {_PIC_MASK:#x}, r9",
    ]
    spin = draw(st.integers(0, 48))
    spin_lines = [f"li r11, {spin}", "{L}:", "addi r11, r11, -1", "bnez r11, {L}"] if spin else []
    if mode == "hlt":
        return Block((*lines, *spin_lines, "mtcr cr8, r0", "sti", "hlt"))
    if mode == "shadow":
        return Block((*lines, *spin_lines, "sti", draw(_shadowed())))
    tpr = draw(st.integers(2, 15))  # vector 32 is class 2: held back while CR8 >= 2
    return Block(
        (*lines, f"li r9, {tpr}", "mtcr cr8, r9", "sti", *spin_lines, f"mfcr {draw(_rd)}, cr8", "mtcr cr8, r0")
    )


@st.composite
def _beyond_ram(draw: st.DrawFn) -> Block:
    """A load or store by the CPU at or beyond the end of RAM (§5.1: #MC), or just inside it."""
    addr = draw(
        st.sampled_from([_RAM_END - 8, _RAM_END - 1, _RAM_END, _RAM_END + 8, _RAM_END + 4096, 1 << 32, _RAM_END - 4096])
    )
    insn = draw(st.sampled_from(["ld", "lbu", "sd", "sb"]))
    return Block((f"li r9, {addr:#x}", f"{insn} {draw(_rd)}, [r9]"))


_page_index = st.integers(0, 7)


@st.composite
def _paged_access(draw: st.DrawFn) -> Block:
    """Use a page of PAGED_VA (its mark at offset 8 tells which frame the space maps there)."""
    va = _PAGED_VA + 4096 * draw(_page_index)
    insn = draw(st.sampled_from(["ld", "sd", "lbu"]))
    return Block((f"li r9, {va:#x}", f"{insn} {draw(_rd)}, [r9 + {8 * draw(st.integers(0, 2))}]"))


# Frames a remap may give a page: data frames, the last page of RAM, frames beyond RAM (#MC on
# use: §5.1), and an entry with a reserved bit (#PF with RSVD: §7.2).
_REMAP_FRAMES = (
    *(0x50000 + 4096 * k for k in range(8)),
    _RAM_END - 4096,
    _RAM_END,
    _RAM_END + 4096,
    1 << 32,
    1 << 52 | 0x50000,
)


@st.composite
def _remap(draw: st.DrawFn) -> Block:
    """Through the VEC_REMAP system call (lib/generated.s), at any CPL: give a page of either
    address space a drawn frame and permissions, or point PD[2] of either space (VA 0x400000)
    at a page table beyond RAM (the walk's read is #MC) or at PT_B; the handler invalidates
    the page, then the block uses it."""
    if draw(st.integers(0, 3)) == 0:
        table = draw(st.sampled_from([_PD, _PD_B]))
        frame = draw(st.sampled_from([_RAM_END, _RAM_END + 4096, 1 << 32, _PT_B]))
        entry, slot, va = frame | 7, table + 16, 0x400000
    else:
        table = draw(st.sampled_from([0x13000, _PT_B]))
        i = draw(_page_index)
        flags = draw(st.sampled_from([7, 5, 3, 1, 0, 0x67]))  # P|W|U, P|U, P|W, P, absent, + A|D
        entry, slot, va = draw(st.sampled_from(_REMAP_FRAMES)) | flags, table + 8 * i, _PAGED_VA + 4096 * i
    insn = draw(st.sampled_from(["ld", "sd", "lbu"]))
    return Block(
        (
            f"li r9, {slot:#x}",
            f"li r10, {entry:#x}",
            f"li r11, {va:#x}",
            f"int {_VEC_REMAP:#x}",
            f"{insn} {draw(_rd)}, [r11 + {8 * draw(st.integers(0, 2))}]",
        )
    )


@st.composite
def _space_switch(draw: st.DrawFn, cpl: int) -> Block:
    """Load CR3 with either address space (by ``mtcr`` at CPL 0, else the VEC_SPACE system
    call), then use a page the two map differently."""
    root = draw(st.sampled_from([_PML4_B, _PML4]))
    load = ["mtcr cr3, r9"] if cpl == 0 and draw(st.booleans()) else [f"int {_VEC_SPACE:#x}"]
    va = _PAGED_VA + 4096 * draw(_page_index)
    return Block((f"li r9, {root:#x}", *load, f"li r10, {va:#x}", f"ld {draw(_rd)}, [r10 + 8]"))


def body_blocks(cpl: int, paging: bool) -> st.SearchStrategy[Block]:
    """One body block for a body at ``cpl``; simplest kinds first (what shrinking goes to)."""
    kinds: list[st.SearchStrategy[Block]] = [
        _table_row(_ALU_RI),
        _table_row(_ALU_RR),
        _table_row(_SENSITIVE_RD),
        _rd.map(lambda r: Block(("pushf", f"pop {r}"))),
        _popf(),
        _iret(cpl),
        _table_row(_MEM),
        _table_row(_DIV),
        _rd.map(lambda r: Block((f"push {r}",))) | _rd.map(lambda r: Block((f"pop {r}",))),
        st.sampled_from([_one("cli"), _one("sti")]),
        _port(),
        _control(),
        _int(),
        _branch(),
        _loop(),
        _wild_access(),
    ]
    # The blind spots of earlier versions, after the kinds above so that shrinking prefers those.
    kinds += [_clock(), _vmcall(), _bad_control(), _tsc_write(), _sti_then(), _timer(), _beyond_ram(), _invlpg()]
    if paging:
        kinds += [_paged_access(), _space_switch(cpl), _remap()]
    if paging and cpl == 0:
        # Only the guest kernel: at CPL > 0 the invlpg raises #GP and the edited entry would be
        # used without invalidation, which the manual leaves undefined (§8.1).  Other CPLs
        # change their pages through the VEC_REMAP system call (_remap).
        kinds.append(_pte_edit())
    return st.one_of(kinds)


@st.composite
def guest_programs(
    draw: st.DrawFn,
    cpl: int | Sequence[int] | None = None,
    paging: bool | None = None,
    max_blocks: int = MAX_BODY_BLOCKS,
) -> GuestProgram:
    """A generated guest for the equivalence tests.  ``cpl`` fixes the body's CPL (or the CPLs
    to draw it from; default 0 or 3), ``paging`` the paging option."""
    cpls = (0, 3) if cpl is None else (cpl,) if isinstance(cpl, int) else tuple(cpl)
    c = draw(st.sampled_from(cpls))
    p = draw(st.booleans()) if paging is None else paging
    # TF may be set from the start at every CPL (iret and popf write it at any CPL, §6.4), so
    # that whole bodies run single-stepped.  IF and IOPL start clear: the prelude's iret is the
    # guest kernel's, and an iret that changed IF or IOPL would itself be the obstacle (§4.3,
    # silent privilege failure) — in the fixed prelude, where shrinking cannot show it; bodies
    # change FLAGS themselves (popf and iret blocks).
    flags = draw(st.sampled_from([0, _FLAGS_TF]))
    console_input = draw(st.sampled_from(CONSOLE_INPUTS))
    body = draw(st.lists(body_blocks(c, p), min_size=0, max_size=max_blocks))
    return GuestProgram(cpl=c, paging=p, flags=flags, body=tuple(body), console_input=console_input)


# ---- adversaries (safety) ---------------------------------------------------------------------

_HOST_ONLY = {BY_MNEMONIC[m].opcode for m in ("hcall", "vmcall", "ldgs", "sdgs", "jgs")}
_wild_address = st.one_of(
    st.integers(0, (1 << 20) - 8),  # anywhere in its RAM (the IDT, page tables, its own code)
    st.integers(0, (1 << 36) - 8),  # anywhere at all: beyond RAM is #MC on a bare machine
)


def _random_word() -> st.SearchStrategy[Block]:
    from cffi_core.isa.strategies import any_words  # the table's own word strategy

    # hcall and vmcall are for host software (a bare machine cannot answer them, §10); so are
    # ldgs, sdgs and jgs, the host segment's (docs/architecture.md §5.4): guests do not use them.
    return any_words().filter(lambda w: (w >> 24) not in _HOST_ONLY).map(lambda w: _one(f".word {w:#010x}"))


@st.composite
def _wild_store(draw: st.DrawFn) -> Block:
    return Block(
        (f"li r9, {draw(_wild_address) & ~7:#x}", f"li r10, {draw(st.integers(0, 2**64 - 1)):#x}", "sd r10, [r9]")
    )


@st.composite
def _page_tables_anywhere(draw: st.DrawFn) -> Block:
    """CR3 or a PTE pointing anywhere (frames beyond RAM, reserved bits, the IDT's page)."""
    if draw(st.booleans()):
        return Block((f"li r9, {draw(st.integers(0, (1 << 40) - 1)) & ~0xFFF:#x}", "mtcr cr3, r9"))
    entry = draw(st.integers(0, 2**64 - 1))
    return Block(
        (
            f"li r9, {entry:#x}",
            f"li r10, {_PT + 8 * draw(st.integers(0, 511)):#x}",
            "sd r9, [r10]",
            f"li r10, {_PAGED_VA + 4096 * draw(st.integers(0, 511)):#x}",
            "invlpg [r10]",
            "ld r1, [r10]",
        )
    )


@st.composite
def _dma_anywhere(draw: st.DrawFn) -> Block:
    """A disk command whose buffer is anywhere (devices.md: DMA beyond RAM ends in error)."""
    addr = draw(_wild_address)
    return Block(
        (
            f"li r9, {draw(st.integers(0, 3))}",
            "out 0x1f0, r9",
            f"li r9, {draw(st.integers(1, 4))}",
            "out 0x1f1, r9",
            f"li r9, {addr:#x}",
            "out 0x1f2, r9",
            f"li r9, {draw(st.sampled_from([1, 2]))}",
            "out 0x1f3, r9",
        )
    )


@st.composite
def _idt_overwrite(draw: st.DrawFn) -> Block:
    """Rewrite a gate (never as a host gate: GATE_TYPE 2 belongs to VMMs, §6.2) or the IDTR."""
    if draw(st.booleans()):
        return Block((f"li r9, {draw(st.integers(0, 2**64 - 1)):#x}", "lidt r9"))
    vec = draw(st.integers(0, 255))
    handler = draw(st.integers(0, 2**64 - 1))
    attrs = draw(st.integers(0, 255)) & ~0b110 | (draw(st.sampled_from([0, 1, 3])) << 1)
    return Block(
        (
            f"li r9, {_IDT + 16 * vec:#x}",
            f"li r10, {handler:#x}",
            "sd r10, [r9]",
            f"li r10, {attrs:#x}",
            "sd r10, [r9 + 8]",
        )
    )


@st.composite
def _interrupt_storm(draw: st.DrawFn) -> Block:
    """The adversary's own timer, periodic and fast, unmasked (its interrupts are its own)."""
    return Block(
        (
            f"li r9, {draw(st.integers(1, 50))}",
            "out 0x40, r9",
            "li r9, 3",
            "out 0x41, r9",
            "out 0x21, r0",
            "sti",
        )
    )


def adversary_blocks(cpl: int, paging: bool) -> st.SearchStrategy[Block]:
    """Hostile blocks for the safety tests, then everything a generated body may do."""
    return st.one_of(
        st.just(Block(("cli", "{L}:", "jmp {L}"))),  # cli; jmp . : never gives the CPU back
        _random_word(),
        _wild_store(),
        _page_tables_anywhere(),
        _dma_anywhere(),
        _idt_overwrite(),
        _interrupt_storm(),
        _wild_access(),
        body_blocks(cpl, paging),
    )


@st.composite
def adversary_programs(draw: st.DrawFn, max_blocks: int = 12) -> GuestProgram:
    """A hostile guest (mostly at CPL 0, its own kernel) with a disk to aim DMA with."""
    cpl = draw(st.sampled_from([0, 0, 3]))
    paging = draw(st.booleans())
    body = draw(st.lists(adversary_blocks(cpl, paging), min_size=1, max_size=max_blocks))
    return GuestProgram(
        cpl=cpl,
        paging=paging,
        flags=draw(st.sampled_from([0, _FLAGS_IOPL | _FLAGS_IF])) if cpl == 3 else 0,
        body=tuple(body),
        budget=ADVERSARY_BUDGET,
        disk=ADVERSARY_DISK,
        name="adversary",
    )


# ---- paravirtual adversaries (docs/paravirt-abi.md) ------------------------------------------------
# A paravirtual VMM runs guests ported to its ABI (guest_abi "paravirt"): an adversary of it is a
# paravirtual kernel, on the directed guests' paravirtual library (conformance/guests/paravirt/
# lib/directed.s: a trap table whose handlers log and skip the faults a guest provokes).  Two
# kinds: the generated native adversaries' bodies run in its kernel (random code is a fine
# adversary for any VMM; their privileged instructions now raise #GP through the trap table,
# §8), and random hypercall sequences aimed at the frames that matter (``hypercall_adversaries``).

PARAVIRT_GUEST_DIR = GUEST_DIR / "paravirt"
_PV_STUB = 32  # docs/paravirt-abi.md §2.1: stub n at hypercall_page + 32 n
_VMM_IDT_VA = 0xFFFF_FFFF_FFFF_F000  # the reference VMM's IDT in its top-level slot 511
_PV_VIRT_LIMIT = 1 << 47


@dataclass(frozen=True)
class ParavirtProgram:
    """A generated paravirtual guest: its assembly source (includes resolved against
    conformance/guests/paravirt) and the VMConfig it runs with."""

    source: str
    config: VMConfig
    name: str = "paravirt-adversary"

    @cached_property
    def image(self):  # -> GuestImage, assembled on first use
        from cffi_core.asm import assemble

        return assemble(self.source, filename=str(PARAVIRT_GUEST_DIR / f"{self.name}.s"))

    def listing(self) -> str:
        """What a failure report shows: the whole source (the library is the files it includes)."""
        return self.source


# The skip handlers a generated body needs beyond lib/directed.s's (which log and skip #DE, #UD
# and #GP and end the run on anything else): #DB and #BP resume at the pushed next pc, #PF,
# #AC and #MC are logged and skipped, as lib/generated.s does natively.
_PV_BODY_HANDLERS = """
pv_resume_noerr:                       ; a trap: the frame's pc is already the next one
        call    log_event
        pop     r13
        push    r7
        pv_iret
log_stub h_db_resume, 1, pv_resume_noerr
log_stub h_bp_resume, 3, pv_resume_noerr
log_stub h_pf_skip, 14, skip_err
log_stub h_ac_skip, 17, skip_err
log_stub h_mc_skip, 18, skip_noerr
"""

_PV_BODY_SETUP = [
    "        la      r13, body_end          ; int 0x80 (VEC_BACK) from the body ends it",
    "        la      r14, resume",
    "        sd      r13, [r14]",
    "        gate    1, h_db_resume, INTERRUPT_GATE",
    "        gate    3, h_bp_resume, TRAP_GATE | GATE_DPL3",
    "        gate    14, h_pf_skip, INTERRUPT_GATE",
    "        gate    17, h_ac_skip, INTERRUPT_GATE",
    "        gate    18, h_mc_skip, INTERRUPT_GATE",
]


def paravirt_adversary(program: GuestProgram) -> ParavirtProgram:
    """The generated adversary ``program``'s body run in a paravirtual kernel (at virtual CPL
    0, whatever ``program.cpl``: the kernel is the most a paravirtual guest has), after the
    library's start and, with ``program.paging``, its own pinned tables (lib/end.s paging_on);
    the register seeds of lib/generated.s; then the paravirtual signature."""
    main = ["main:", *_PV_BODY_SETUP]
    if program.paging:
        main.append("        call    paging_on")
    main += [
        "        li      r1, 0",
        "        li      r2, 1",
        "        li      r3, -1",
        "        li      r4, 1 << 63",
        "        li      r5, DATA",
        "        li      r6, 0x7fffffffffffffff",
        "        li      r7, 3",
        "        li      r8, 0x123456789abcdef0",
        "        li      r12, DATA",
    ]
    body = GuestProgram._body_lines(program.body_source())
    source = "\n".join(
        [
            f"; a generated adversary's body in a paravirtual kernel (paging {'on' if program.paging else 'off'})",
            '.include "lib/directed.s"',
            *main,
            *body,
            "body_end:",
            "        jmp     finish",
            _PV_BODY_HANDLERS,
            '.include "lib/end.s"',
        ]
    )
    return ParavirtProgram(source + "\n", program.config)


# Machine addresses a hypercall adversary aims at, computed at run time from start info (the
# registers its setup loads: r11 = mem_base, r12 = mem_size, r13 = the VMM's L3 frame named by
# its top-level slot 511, r14 = its bootstrap L4): its own tables and their VMM slots, the
# frames of the VM after it (the victim when it runs first) and before it, the VMM's own table,
# its own pages, and anywhere.
_PV_SETUP = [
    "        la      r10, start_info",
    "        ld      r10, [r10]",
    "        ld      r11, [r10 + START_MEM_BASE]",
    "        ld      r12, [r10 + START_MEM_SIZE]",
    "        ld      r14, [r10 + START_PT_BASE]",
    "        ld      r13, [r14 + 8 * 511]",
    "        li      r9, PTE_FRAME",
    "        and     r13, r13, r9",
    "        add     r14, r14, r11",
]
_ENTRY_FLAGS = st.one_of(
    st.sampled_from([0, 1, 3, 7, 1 | 1 << 7, 3 | 1 << 7, 1 | 1 << 52, 3 | 1 << 63]),
    st.integers(0, 0xFFF),
)


@st.composite
def _machine_address(draw: st.DrawFn, reg: str) -> list[str]:
    """Lines that load ``reg`` with a machine address worth attacking (r9 is scratch)."""
    kind = draw(st.sampled_from(["table", "table", "victim", "victim", "before", "vmm", "own", "anywhere"]))
    if kind == "table":  # an entry of its own bootstrap tables (L4, L3, L2, L1), the VMM's slots too
        slot = draw(st.one_of(st.sampled_from([0, 1, 255, 256, 300, 511]), st.integers(0, 511)))
        offset = 4096 * draw(st.integers(0, 3)) + 8 * slot
        return [f"li r9, {offset:#x}", f"add {reg}, r14, r9"]
    if kind == "victim":  # the VM after it: its tables, trap table, data, anywhere in its 1 MiB
        offset = draw(
            st.one_of(
                st.sampled_from([0, 0x10000, 0x11000, 0x12000, 0x13000, 0x18000, 0x20000, 0x50000, 0x51000]),
                st.integers(0, (1 << 20) - 8).map(lambda a: a & ~7),
            )
        )
        return [f"li r9, {offset:#x}", f"add {reg}, r11, r12", f"add {reg}, {reg}, r9"]
    if kind == "before":
        return [f"li r9, {4096 * draw(st.integers(1, 256)):#x}", f"sub {reg}, r11, r9"]
    if kind == "vmm":  # the VMM's L3 and the pages around it (its IDT's tables, other VMs')
        return [f"li r9, {4096 * draw(st.integers(-4, 4)):#x}", f"add {reg}, r13, r9"]
    if kind == "own":
        offset = draw(
            st.one_of(
                st.sampled_from([0, 0x1000, 0x50000, 0xF8000, 0xF9000, 0xFA000, 0xFB000]), st.integers(0, (1 << 20) - 8)
            )
        )
        return [f"li r9, {offset & ~7:#x}", f"add {reg}, r11, r9"]
    return [f"li {reg}, {draw(st.integers(0, 2**64 - 1)):#x}"]


_virtual_address = st.one_of(
    st.sampled_from([0, 0x1000, 0x50000, 0xF8000, 0xFFFF8, _VMM_IDT_VA, _PV_VIRT_LIMIT - 8, _PV_VIRT_LIMIT]),
    st.integers(0, (1 << 20) + 4096),
    st.integers(0, 2**64 - 1),
)


def _call(n: int) -> str:
    return f"        call    hypercall_page + {_PV_STUB * n}"


@st.composite
def _mmu_batch(draw: st.DrawFn) -> list[str]:
    """An mmu_update batch of 1-6 requests: entries, pins, unpins, invalidations (and the
    commands 4-7) on the addresses above, values naming them with random attribute bits."""
    n = draw(st.integers(1, 6))
    lines = []
    for i in range(n):
        cmd = draw(st.sampled_from([0, 0, 0, 2, 2, 3, 1, 5]))
        lines += [*draw(_machine_address("r3")), f"ori r3, r3, {cmd}"]
        if cmd == 2:
            lines.append(f"li r4, {draw(st.integers(0, 5))}")
        elif cmd in (1, 3):
            lines.append(f"li r4, {draw(st.sampled_from([0, 0, 0, 1]))}")
        else:
            lines += [*draw(_machine_address("r4")), f"li r9, {draw(_ENTRY_FLAGS):#x}", "or r4, r4, r9"]
        lines += [f"li r9, REQUESTS + {16 * i}", "sd r3, [r9]", "sd r4, [r9 + 8]"]
    count = draw(st.one_of(st.just(n), st.sampled_from([0, 2049, 2**64 - 1])))
    return [*lines, "li r1, REQUESTS", f"li r2, {count:#x}", _call(4)]


@st.composite
def _trap_table(draw: st.DrawFn) -> list[str]:
    """set_trap_table of a table with one drawn gate (a handler anywhere, any attribute bits),
    or of a wild pointer."""
    if draw(st.booleans()):
        return [f"li r1, {draw(_virtual_address):#x}", _call(1)]
    vector = draw(st.one_of(st.sampled_from([0x30, 0x80, 0x82, 14]), st.integers(0, 255)))
    handler = draw(st.one_of(st.sampled_from([0x1000, _VMM_IDT_VA, _PV_VIRT_LIMIT]), st.integers(0, 2**64 - 1)))
    attrs = draw(st.one_of(st.sampled_from([1, 3, 0x31, 0x133, 0x141, 5]), st.integers(0, 0x3FF)))
    table = 0x62000  # an ordinary page of its memory, cleared first: one gate
    return [
        f"li r3, {table:#x}",
        "li r4, 0",
        "{L}_clear:",
        "sd r0, [r3]",
        "addi r3, r3, 8",
        "addi r4, r4, 1",
        "li r9, 512",
        "bltu r4, r9, {L}_clear",
        f"li r3, {table + 16 * vector:#x}",
        f"li r4, {handler:#x}",
        "sd r4, [r3]",
        f"li r4, {attrs:#x}",
        "sd r4, [r3 + 8]",
        f"li r1, {table:#x}",
        _call(1),
    ]


@st.composite
def _block_requests(draw: st.DrawFn) -> list[str]:
    """1-3 block requests (any op, count and sector; a buffer among the addresses above), then
    the send that makes the VMM serve them."""
    lines = ["ld r5, [r10 + START_BLOCK_RING]"]
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.one_of(st.sampled_from([1, 1, 2]), st.integers(0, 5)))
        count = draw(st.one_of(st.sampled_from([1, 1, 8, 128]), st.integers(0, 200)))
        sector = draw(st.one_of(st.integers(0, 5), st.integers(0, 2**64 - 1)))
        lines += [
            *draw(_machine_address("r4")),
            "ld r9, [r5]",  # BLK_REQ_PROD
            "andi r3, r9, 31",
            "shli r3, r3, 5",
            "add r3, r3, r5",
            "sd r9, [r3 + 0x40]",
            f"li r6, {op}",
            "sw r6, [r3 + 0x48]",
            f"li r6, {count}",
            "sw r6, [r3 + 0x4c]",
            f"li r6, {sector:#x}",
            "sd r6, [r3 + 0x50]",
            "sd r4, [r3 + 0x58]",
            "addi r9, r9, 1",
            "sd r9, [r5]",
        ]
    return [*lines, "li r1, 2", _call(9)]


@st.composite
def _hypercall_step(draw: st.DrawFn) -> Block:
    """One hypercall with drawn arguments, or a batch aimed at the interesting frames."""
    kind = draw(
        st.sampled_from(
            ["mmu", "mmu", "mmu", "cr3", "traps", "block", "block", "console", "timer", "event", "other", "invlpg"]
        )
    )
    if kind == "mmu":
        lines = draw(_mmu_batch())
    elif kind == "cr3":
        lines = [*draw(_machine_address("r1")), *draw(_machine_address("r2"))]
        if draw(st.booleans()):
            lines.append("li r2, 0")
        lines.append(_call(5))
    elif kind == "traps":
        lines = draw(_trap_table())
    elif kind == "block":
        lines = draw(_block_requests())
    elif kind == "console":
        length = draw(st.one_of(st.integers(0, 64), st.integers(0, 5000)))
        lines = [f"li r1, {draw(_virtual_address):#x}", f"li r2, {length}", _call(11)]
    elif kind == "timer":
        lines = [f"li r1, {draw(st.one_of(st.integers(0, 20_000), st.integers(0, 2**64 - 1))):#x}", _call(8)]
    elif kind == "event":
        lines = [f"li r1, {draw(st.integers(0, 9))}", _call(draw(st.sampled_from([9, 10])))]
    elif kind == "invlpg":
        lines = [f"li r1, {draw(_virtual_address):#x}", _call(6)]
    else:  # no such hypercall, yield, a bad sched_op, stack_switch: any arguments
        n = draw(st.one_of(st.sampled_from([0, 2, 7, 7]), st.integers(12, 127)))
        args = [f"li r{i}, {draw(st.integers(0, 2**64 - 1)):#x}" for i in range(1, 7)]
        if n == 7:
            args[0] = f"li r1, {draw(st.sampled_from([0, 3, 4, 2**64 - 1]))}"  # never block or shut down
        lines = [*args, _call(n)]
    return Block(tuple(line.strip() for line in lines))


@st.composite
def hypercall_adversaries(draw: st.DrawFn, max_calls: int = 12) -> ParavirtProgram:
    """A paravirtual kernel that makes 1-``max_calls`` hypercalls with drawn numbers and
    arguments — mmu_update batches of entries, pins and unpins on its own tables, the next
    VM's frames and the VMM's, set_cr3, trap tables, block requests with wild buffers,
    console_write of wild buffers, events, timers, numbers without a hypercall — and then its
    signature.  Run first beside the victim, the next VM's frames are the victim's."""
    steps = draw(st.lists(_hypercall_step(), min_size=1, max_size=max_calls))
    lines = []
    for i, step in enumerate(steps):
        lines += step.render(f".Lh{i}")
    source = "\n".join(
        [
            "; a generated paravirtual adversary: drawn hypercalls (conformance/strategies.py)",
            '.include "lib/directed.s"',
            "main:",
            *_PV_SETUP,
            *(f"        {line}" if not line.endswith(":") else line for line in lines),
            "        jmp     finish",
            '.include "lib/end.s"',
        ]
    )
    return ParavirtProgram(
        source + "\n", VMConfig(memory=GENERATED_MEMORY, disk=ADVERSARY_DISK, budget=ADVERSARY_BUDGET)
    )
