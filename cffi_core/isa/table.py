"""The P64 instruction table: the single source of truth for every instruction.

Each row gives the mnemonic, opcode, operand format, privilege class, sensitivity class
and a one-line statement of the semantics.  The C decoder tables
(``cffi_core/csrc/generated/``), the assembler, the disassembler, the executable spec's
dispatch, the hypothesis strategies and the sensitive-instruction tests are all derived
from this module; nothing else lists instructions.  See ``docs/architecture.md`` §3-§5.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

# Field positions of the 32-bit instruction word (docs/architecture.md §3.1).
OP_SHIFT = 24
A_SHIFT = 20
B_SHIFT = 16
C_SHIFT = 12
FIELD_MASK = 0xF
IMM16_MASK = 0xFFFF
IMM20_MASK = 0xFFFFF
IMM24_MASK = 0xFFFFFF


@dataclass(frozen=True)
class Format:
    """An operand layout.

    ``fields`` names, in assembly order, what each operand is and where it lives:
    ``rd``/``rs1``/``rs2`` (registers in field A, B or C as ``slots`` says), ``imm``
    (an immediate whose kind ``imm`` gives), ``mem`` (``[rs1 + imm16]``), ``port``
    (``rs1 + imm16``), ``target`` (pc-relative word offset), ``crn`` (a control register).
    ``used`` is the mask of word bits the format may set; every other bit below the opcode
    must be zero or the word is an invalid encoding (#UD).
    """

    name: str
    syntax: str  # operand template shown in the manual, e.g. "rd, rs1, rs2"
    slots: tuple[tuple[str, str], ...]  # (operand role, field) pairs
    imm: str | None  # None | "s16" | "u16" | "sh6" | "u8" | "s20" | "s24w" | "s16w"
    used: int


_A = FIELD_MASK << A_SHIFT
_B = FIELD_MASK << B_SHIFT
_C = FIELD_MASK << C_SHIFT

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("R", "rd, rs1, rs2", (("rd", "A"), ("rs1", "B"), ("rs2", "C")), None, _A | _B | _C),
        Format("I", "rd, rs1, imm", (("rd", "A"), ("rs1", "B")), "s16", _A | _B | IMM16_MASK),
        Format("IZ", "rd, rs1, imm", (("rd", "A"), ("rs1", "B")), "u16", _A | _B | IMM16_MASK),
        Format("SH", "rd, rs1, shamt", (("rd", "A"), ("rs1", "B")), "sh6", _A | _B | 0x3F),
        Format("U", "rd, imm", (("rd", "A"),), "s20", _A | IMM20_MASK),
        Format("L", "rd, [rs1 + imm]", (("rd", "A"), ("rs1", "B")), "s16", _A | _B | IMM16_MASK),
        Format("S", "rs2, [rs1 + imm]", (("rs2", "A"), ("rs1", "B")), "s16", _A | _B | IMM16_MASK),
        Format("B", "rs1, rs2, target", (("rs1", "A"), ("rs2", "B")), "s16w", _A | _B | IMM16_MASK),
        Format("J", "target", (), "s24w", IMM24_MASK),
        Format("RS", "rs1", (("rs1", "B"),), None, _B),
        Format("RD", "rd", (("rd", "A"),), None, _A),
        Format("RR", "rd, rs1", (("rd", "A"), ("rs1", "B")), None, _A | _B),
        Format("WR", "rs1, rs2", (("rs1", "B"), ("rs2", "C")), None, _B | _C),
        Format("N", "", (), None, 0),
        Format("INT", "imm", (), "u8", 0xFF),
        Format("H", "imm", (), "u16", IMM16_MASK),
        Format("PIN", "rd, port", (("rd", "A"), ("rs1", "B")), "u16", _A | _B | IMM16_MASK),
        Format("POUT", "port, rs2", (("rs2", "A"), ("rs1", "B")), "u16", _A | _B | IMM16_MASK),
        Format("MTCR", "crn, rs1", (("crn", "A"), ("rs1", "B")), None, _A | _B),
        Format("MFCR", "rd, crn", (("rd", "A"), ("crn", "B")), None, _A | _B),
        Format("M", "[rs1 + imm]", (("rs1", "B"),), "s16", _B | IMM16_MASK),
    )
}

# Control registers that exist; mov to/from any other number is an invalid encoding (#UD).
CONTROL_REGISTERS = (0, 2, 3, 4, 8)


class Privilege(StrEnum):
    """When an instruction is refused (docs/architecture.md §4.2)."""

    USER = "user"  # executes at every CPL
    KERNEL = "kernel"  # #GP(0) at CPL > 0
    IOPL = "iopl"  # #GP(0) when CPL > FLAGS.IOPL
    TSD = "tsd"  # #GP(0) when CPL > 0 and CR4.TSD = 1
    HOST = "host"  # #GP(0) when CPL > 1: host callouts and the host segment, for VMM-generated code
    VMX = "vmx"  # #UD outside guest mode (guest mode arrives with the vmx feature)
    NEVER = "never"  # always #UD


class Sensitivity(StrEnum):
    """Popek & Goldberg's classes, for the x86-like profile (Fisher-Ogden §2.3.1)."""

    INNOCUOUS = "innocuous"  # neither reads nor changes privileged state
    PRIVILEGED = "privileged"  # sensitive, and traps when run deprivileged
    SENSITIVE = "sensitive"  # sensitive but does not trap at CPL > 0: the obstacles
    HOST = "host"  # an instruction for host software; guests do not use it


@dataclass(frozen=True)
class Insn:
    """One instruction of the table."""

    mnemonic: str
    opcode: int
    fmt: str
    privilege: Privilege
    sensitivity: Sensitivity
    group: str  # alu, mem, branch, stack, system: groups of the manual and of the spec
    semantics: str  # one line, the manual's statement of what it does

    @property
    def format(self) -> Format:
        return FORMATS[self.fmt]

    @property
    def match(self) -> int:
        return self.opcode << OP_SHIFT


_U, _K, _IO = Privilege.USER, Privilege.KERNEL, Privilege.IOPL
_INN, _PRIV, _SENS = Sensitivity.INNOCUOUS, Sensitivity.PRIVILEGED, Sensitivity.SENSITIVE
_HOST_P, _HOST_S = Privilege.HOST, Sensitivity.HOST  # host class: for VMM-generated code (§4.2)


def _alu(mn: str, op: int, fmt: str, sem: str) -> Insn:
    return Insn(mn, op, fmt, _U, _INN, "alu", sem)


INSTRUCTIONS: tuple[Insn, ...] = (
    # ---- alu: register-register ----
    _alu("add", 0x01, "R", "rd = rs1 + rs2 (mod 2^64)"),
    _alu("sub", 0x02, "R", "rd = rs1 - rs2 (mod 2^64)"),
    _alu("and", 0x03, "R", "rd = rs1 & rs2"),
    _alu("or", 0x04, "R", "rd = rs1 | rs2"),
    _alu("xor", 0x05, "R", "rd = rs1 ^ rs2"),
    _alu("shl", 0x06, "R", "rd = rs1 << (rs2 & 63)"),
    _alu("shr", 0x07, "R", "rd = rs1 >> (rs2 & 63), logical"),
    _alu("sar", 0x08, "R", "rd = rs1 >> (rs2 & 63), arithmetic"),
    _alu("mul", 0x09, "R", "rd = low 64 bits of rs1 * rs2"),
    _alu("div", 0x0A, "R", "rd = rs1 / rs2 signed, toward zero; #DE if rs2 = 0 or -2^63 / -1"),
    _alu("divu", 0x0B, "R", "rd = rs1 / rs2 unsigned; #DE if rs2 = 0"),
    _alu("rem", 0x0C, "R", "rd = rs1 % rs2 signed, sign of rs1; #DE if rs2 = 0 or -2^63 % -1"),
    _alu("remu", 0x0D, "R", "rd = rs1 % rs2 unsigned; #DE if rs2 = 0"),
    _alu("slt", 0x0E, "R", "rd = 1 if rs1 < rs2 signed else 0"),
    _alu("sltu", 0x0F, "R", "rd = 1 if rs1 < rs2 unsigned else 0"),
    # ---- alu: register-immediate ----
    _alu("addi", 0x11, "I", "rd = rs1 + sext(imm16)"),
    _alu("andi", 0x13, "IZ", "rd = rs1 & zext(imm16)"),
    _alu("ori", 0x14, "IZ", "rd = rs1 | zext(imm16)"),
    _alu("xori", 0x15, "IZ", "rd = rs1 ^ zext(imm16)"),
    _alu("shli", 0x16, "SH", "rd = rs1 << shamt"),
    _alu("shri", 0x17, "SH", "rd = rs1 >> shamt, logical"),
    _alu("sari", 0x18, "SH", "rd = rs1 >> shamt, arithmetic"),
    _alu("slti", 0x1E, "I", "rd = 1 if rs1 < sext(imm16) signed else 0"),
    _alu("sltiu", 0x1F, "I", "rd = 1 if rs1 < sext(imm16) unsigned else 0"),
    _alu("lui", 0x20, "U", "rd = sext(imm20 << 12) from bit 31"),
    # ---- mem: loads and stores; natural alignment or #AC ----
    Insn("lb", 0x21, "L", _U, _INN, "mem", "rd = sext(mem8[rs1 + sext(imm16)])"),
    Insn("lbu", 0x22, "L", _U, _INN, "mem", "rd = zext(mem8[rs1 + sext(imm16)])"),
    Insn("lh", 0x23, "L", _U, _INN, "mem", "rd = sext(mem16[rs1 + sext(imm16)])"),
    Insn("lhu", 0x24, "L", _U, _INN, "mem", "rd = zext(mem16[rs1 + sext(imm16)])"),
    Insn("lw", 0x25, "L", _U, _INN, "mem", "rd = sext(mem32[rs1 + sext(imm16)])"),
    Insn("lwu", 0x26, "L", _U, _INN, "mem", "rd = zext(mem32[rs1 + sext(imm16)])"),
    Insn("ld", 0x27, "L", _U, _INN, "mem", "rd = mem64[rs1 + sext(imm16)]"),
    Insn("sb", 0x29, "S", _U, _INN, "mem", "mem8[rs1 + sext(imm16)] = rs2"),
    Insn("sh", 0x2A, "S", _U, _INN, "mem", "mem16[rs1 + sext(imm16)] = rs2"),
    Insn("sw", 0x2B, "S", _U, _INN, "mem", "mem32[rs1 + sext(imm16)] = rs2"),
    Insn("sd", 0x2C, "S", _U, _INN, "mem", "mem64[rs1 + sext(imm16)] = rs2"),
    # ---- branch: compare and branch, jumps, calls ----
    Insn("beq", 0x30, "B", _U, _INN, "branch", "if rs1 == rs2: pc = pc + 4 * sext(imm16)"),
    Insn("bne", 0x31, "B", _U, _INN, "branch", "if rs1 != rs2: pc = pc + 4 * sext(imm16)"),
    Insn("blt", 0x32, "B", _U, _INN, "branch", "if rs1 < rs2 signed: pc = pc + 4 * sext(imm16)"),
    Insn("bge", 0x33, "B", _U, _INN, "branch", "if rs1 >= rs2 signed: pc = pc + 4 * sext(imm16)"),
    Insn("bltu", 0x34, "B", _U, _INN, "branch", "if rs1 < rs2 unsigned: pc = pc + 4 * sext(imm16)"),
    Insn("bgeu", 0x35, "B", _U, _INN, "branch", "if rs1 >= rs2 unsigned: pc = pc + 4 * sext(imm16)"),
    Insn("jmp", 0x38, "J", _U, _INN, "branch", "pc = pc + 4 * sext(imm24)"),
    Insn("call", 0x39, "J", _U, _INN, "branch", "push(pc + 4); pc = pc + 4 * sext(imm24)"),
    Insn("jr", 0x3A, "RS", _U, _INN, "branch", "pc = rs1"),
    Insn("callr", 0x3B, "RS", _U, _INN, "branch", "t = rs1; push(pc + 4); pc = t"),
    Insn("ret", 0x3C, "N", _U, _INN, "branch", "pc = pop()"),
    # ---- stack ----
    Insn("push", 0x3D, "RS", _U, _INN, "stack", "sp = sp - 8; mem64[sp] = rs1 (rs1 read before sp changes)"),
    Insn("pop", 0x3E, "RD", _U, _INN, "stack", "rd = mem64[sp]; sp = sp + 8 (pop sp: sp = the loaded value)"),
    # ---- system ----
    Insn("int", 0x40, "INT", _U, _INN, "system", "software interrupt through IDT vector imm8 (gate DPL checked)"),
    Insn("iret", 0x41, "N", _U, _SENS, "system", "pop pc, cs, flags, sp; IF kept if CPL > IOPL, IOPL kept if CPL > 0"),
    Insn("hlt", 0x42, "N", _K, _PRIV, "system", "stop until an interrupt is delivered"),
    Insn("cli", 0x43, "N", _IO, _PRIV, "system", "FLAGS.IF = 0"),
    Insn("sti", 0x44, "N", _IO, _PRIV, "system", "FLAGS.IF = 1; interrupts held off for one instruction"),
    Insn("pushf", 0x45, "N", _U, _SENS, "system", "push(FLAGS), the real IF and IOPL"),
    Insn("popf", 0x46, "N", _U, _SENS, "system", "FLAGS = pop(); IF kept if CPL > IOPL, IOPL kept if CPL > 0"),
    Insn("in", 0x47, "PIN", _IO, _PRIV, "system", "rd = port[(rs1 + imm16) & 0xffff] (an exit to the host)"),
    Insn("out", 0x48, "POUT", _IO, _PRIV, "system", "port[(rs1 + imm16) & 0xffff] = rs2 (an exit to the host)"),
    Insn("mtcr", 0x49, "MTCR", _K, _PRIV, "system", "CRn = rs1 (mov to control register)"),
    Insn("mfcr", 0x4A, "MFCR", _K, _PRIV, "system", "rd = CRn (mov from control register)"),
    Insn("lidt", 0x4B, "RS", _K, _PRIV, "system", "IDTR = rs1"),
    Insn("sidt", 0x4C, "RD", _U, _SENS, "system", "rd = IDTR"),
    Insn("smsw", 0x4D, "RD", _U, _SENS, "system", "rd = CR0[15:0]"),
    Insn("rdcs", 0x4E, "RD", _U, _SENS, "system", "rd = cs (the CPL in bits 1:0)"),
    Insn("rdtsc", 0x4F, "RD", Privilege.TSD, _PRIV, "system", "rd = TSC (the clock plus MSR_TSC_OFFSET)"),
    Insn("rdmsr", 0x50, "RR", _K, _PRIV, "system", "rd = MSR[rs1]; #GP(0) if no such MSR"),
    Insn("wrmsr", 0x51, "WR", _K, _PRIV, "system", "MSR[rs1] = rs2; #GP(0) if no such MSR or a reserved value"),
    Insn("invlpg", 0x52, "M", _K, _PRIV, "system", "drop the TLB entries for the page of rs1 + sext(imm16)"),
    Insn("vmcall", 0x53, "H", Privilege.VMX, _HOST_S, "system", "hypercall imm16: VM exit in guest mode, else #UD"),
    Insn("hcall", 0x54, "H", _HOST_P, _HOST_S, "system", "callout imm16 to host software; pc advances"),
    Insn("ud", 0x55, "N", Privilege.NEVER, _INN, "system", "raise #UD"),
    # ---- mem: the host segment GS (§5.4), for VMM-generated code at ring 0-1 ----
    Insn("ldgs", 0x56, "L", _HOST_P, _HOST_S, "mem", "rd = mem64[GSBASE + o], o = rs1 + sext(imm16) <= GSLIMIT - 7"),
    Insn("sdgs", 0x57, "S", _HOST_P, _HOST_S, "mem", "mem64[GSBASE + o] = rs2, o = rs1 + sext(imm16) <= GSLIMIT - 7"),
    Insn("jgs", 0x58, "M", _HOST_P, _HOST_S, "mem", "pc = mem64[GSBASE + o], o = rs1 + sext(imm16) <= GSLIMIT - 7"),
)

BY_MNEMONIC: dict[str, Insn] = {i.mnemonic: i for i in INSTRUCTIONS}
BY_OPCODE: dict[int, Insn] = {i.opcode: i for i in INSTRUCTIONS}

# Sensitivity is the table's business: the sets the VMMs and tests use are derived here.
SENSITIVE_UNPRIVILEGED = frozenset(i.mnemonic for i in INSTRUCTIONS if i.sensitivity is Sensitivity.SENSITIVE)
PRIVILEGED = frozenset(i.mnemonic for i in INSTRUCTIONS if i.sensitivity is Sensitivity.PRIVILEGED)

# The system group, whose retired instructions the core counts one by one (docs/architecture.md
# §13): the rare, costly ones a cost model may price apart.  Contiguous opcodes, so the core
# indexes its counters by opcode - the first.
SYSTEM_INSTRUCTIONS: tuple[Insn, ...] = tuple(i for i in INSTRUCTIONS if i.group == "system")
assert [i.opcode for i in SYSTEM_INSTRUCTIONS] == list(
    range(SYSTEM_INSTRUCTIONS[0].opcode, SYSTEM_INSTRUCTIONS[0].opcode + len(SYSTEM_INSTRUCTIONS))
), "the system group's opcodes must be contiguous"


def table_hash() -> str:
    """A hash of every row and format; the compiled core carries it and refuses a mismatch."""
    h = hashlib.sha256()
    for f in FORMATS.values():
        h.update(repr((f.name, f.slots, f.imm, f.used)).encode())
    for i in INSTRUCTIONS:
        h.update(repr((i.mnemonic, i.opcode, i.fmt, i.privilege.value, i.sensitivity.value, i.group)).encode())
    h.update(repr(CONTROL_REGISTERS).encode())
    return h.hexdigest()[:16]
