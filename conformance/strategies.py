"""Hypothesis strategies for generated guest programs (DESIGN §7): prelude, shrinkable body, signature.

A generated guest is ``lib/prelude.s`` and ``lib/generated.s`` (the IDT with logging handlers
that resume, stacks, register seeds; optionally 4-level paging and a drop to ring 3), then a
*body* of instruction blocks drawn from the instruction table (``cffi_core.isa.table``), then
the signature epilogue of ``lib/signature.s`` (registers, CRs read at CPL 0, the exception log,
a checksum of the data page).  The prelude is fixed text: only its options are drawn.  The body
is a list of blocks, each one instruction or a short self-contained idiom (``pushf; pop r1``,
an ``iret`` frame, a bounded loop), so hypothesis shrinks a failure by deleting whole blocks and
then by simplifying the one left: toward the first block kinds (plain ALU) and small operands.

Body blocks include the x86 obstacles of docs/architecture.md §4.3 (``smsw sidt rdcs pushf
popf iret``), the IOPL-sensitive and privileged instructions, at the guest CPL the prelude
chose (0 or 3).  Programs are well defined by construction: no branch leaves its block, no
instruction reads the clock (``rdtsc``, ``TIMER_NOW``) or starts a device, no ``hcall``/``vmcall``
(a bare machine has no host software to answer them), so any two correct runs agree.

``adversary_programs()`` draws the hostile guests of the safety tests: random words, wild
physical addresses, page tables pointing anywhere, DMA anywhere, IDT overwrites, ``cli; jmp .``.
"""

from __future__ import annotations

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
    "adversary_programs",
    "body_blocks",
    "guest_programs",
]

GENERATED_MEMORY = 1 << 20  # the directed guests' memory map (lib/prelude.s) fits in 1 MiB
GENERATED_BUDGET = 40_000  # ticks: the signature takes about 3,500, a body at most a few thousand
ADVERSARY_BUDGET = 12_000  # ticks an adversary may burn beside its victim
ADVERSARY_DISK = bytes(range(256)) * 8  # four sectors, so that DMA commands reach the device
MAX_BODY_BLOCKS = 24

# Memory map constants of lib/prelude.s (the .equ there are the source of truth for the guest).
_DATA = 0x50000
_IDT = 0x20000
_PT = 0x13000
_PAGED_VA = 0x200000
_FLAGS_TF, _FLAGS_IF, _FLAGS_IOPL = 1 << 8, 1 << 9, 3 << 12

_BODY_REGS = tuple(f"r{i}" for i in range(1, 9))  # r1-r8: printed by the signature
_SRC_REGS = ("r0", *_BODY_REGS)
# Ports a body may touch: the console (output is observed), the PIC's mask and IRR, an
# unclaimed port.  Never the timer or the disk: their timing would make runs disagree.
_PORTS_IN = (0x3F9, 0x21, 0x22, 0x99)
_PORTS_OUT = (0x3F8, 0x99, 0x21)


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

    cpl: int  # the CPL the body runs at: 0 (the guest kernel) or 3 (ring 3 via iret)
    paging: bool  # 4-level paging on (lib/paging.s) before the body
    flags: int  # FLAGS the body starts with at CPL 3 (IF, IOPL)
    body: tuple[Block, ...]
    budget: int = GENERATED_BUDGET
    disk: bytes | None = None
    name: str = field(default="generated", compare=False)

    def __repr__(self) -> str:
        return f"GuestProgram(cpl={self.cpl}, paging={self.paging}, flags={self.flags:#x}, body={list(self.body)!r})"

    @property
    def config(self) -> VMConfig:
        return VMConfig(memory=GENERATED_MEMORY, disk=self.disk, budget=self.budget)

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
            f"ring-3 FLAGS {self.flags:#x}",
            '.include "lib/prelude.s"',
            '.include "lib/generated.s"',
        ]
        if self.paging:
            head.append('.include "lib/paging.s"')
        main = ["main:", "        call    gen_setup"]
        if self.paging:
            main.append("        call    paging_on")
        if self.cpl == 3:
            main.append(f"        enter_user {self.flags:#x}, back")
        else:
            # The end returns through h_back like a ring-3 body does, so that the signature's
            # FLAGS line shows the FLAGS the body left (read from the frame, not with pushf).
            main += ["        la      r13, back", "        la      r14, resume", "        sd      r13, [r14]"]
        body = [
            "body:",
            *(f"        {line.strip()}" if not line.endswith(":") else line for line in self.body_source()),
        ]
        tail = ["body_end:", "        int     VEC_BACK", "back:   jmp     gen_end", '.include "lib/signature.s"']
        return "\n".join([*head, *main, *body, *tail]) + "\n"

    @cached_property
    def image(self):  # -> GuestImage (cffi_core.image), assembled on first use
        from cffi_core.asm import assemble

        return assemble(self.source, filename=str(GUEST_DIR / f"{self.name}.s"))

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
            f"ring-3 FLAGS {self.flags:#x}, budget {self.budget} ticks"
            f"{', with a disk' if self.disk is not None else ''}",
            "prelude: conformance/guests/lib/prelude.s + lib/generated.s"
            + (" + lib/paging.s (paging_on)" if self.paging else "")
            + ("; enter_user" if self.cpl == 3 else ""),
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
_flags_value = st.sampled_from([0, _FLAGS_IF, _FLAGS_IOPL, _FLAGS_IF | _FLAGS_IOPL, _FLAGS_TF, 1 << 12])


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
    # that have no gate (#GP(8v + 2), logged).  Never VEC_BACK (0x80): it ends the body.
    vec = draw(st.one_of(st.sampled_from([0x40, 0x41, 3, 0x50]), st.integers(32, 255).filter(lambda v: v != 0x80)))
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
    if paging and cpl == 0:
        # Only the guest kernel: at CPL 3 the invlpg raises #GP and the edited entry would be
        # used without invalidation, which the manual leaves undefined (§8.1).
        kinds.append(_pte_edit())
    return st.one_of(kinds)


@st.composite
def guest_programs(
    draw: st.DrawFn, cpl: int | None = None, paging: bool | None = None, max_blocks: int = MAX_BODY_BLOCKS
) -> GuestProgram:
    """A generated guest for the equivalence tests; ``cpl``/``paging`` fix a prelude option."""
    c = draw(st.sampled_from([0, 3])) if cpl is None else cpl
    p = draw(st.booleans()) if paging is None else paging
    body = draw(st.lists(body_blocks(c, p), min_size=0, max_size=max_blocks))
    # Ring 3 starts with FLAGS 0: the prelude's iret is the guest kernel's, and an iret that
    # changed IF or IOPL would itself be the obstacle (§4.3, silent privilege failure) — in the
    # fixed prelude, where shrinking cannot show it.  Bodies change FLAGS themselves (popf and
    # iret blocks).
    return GuestProgram(cpl=c, paging=p, flags=0, body=tuple(body))


# ---- adversaries (safety) ---------------------------------------------------------------------

_HOST_ONLY = {BY_MNEMONIC["hcall"].opcode, BY_MNEMONIC["vmcall"].opcode}
_wild_address = st.one_of(
    st.integers(0, (1 << 20) - 8),  # anywhere in its RAM (the IDT, page tables, its own code)
    st.integers(0, (1 << 36) - 8),  # anywhere at all: beyond RAM is #MC on a bare machine
)


def _random_word() -> st.SearchStrategy[Block]:
    from cffi_core.isa.strategies import any_words  # the table's own word strategy

    # hcall and vmcall are for host software (a bare machine cannot answer them, §10).
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
