"""Operand shapes derived from the instruction table's Format.syntax, shared by assembler, disassembler and builder."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cffi_core.isa.table import FORMATS, Format

# Pseudo-instructions (not in the table: they expand to table instructions) and their operand
# templates.  Branch pseudos that swap operands map to the table branch they become.
PSEUDO_OPERANDS: dict[str, str] = {
    "nop": "",
    "mov": "dst, src",
    "not": "rd, rs",
    "neg": "rd, rs",
    "beqz": "rs, target",
    "bnez": "rs, target",
    "bgt": "rs1, rs2, target",
    "ble": "rs1, rs2, target",
    "bgtu": "rs1, rs2, target",
    "bleu": "rs1, rs2, target",
    "li": "rd, imm",
    "la": "rd, imm",
}
SWAPPED_BRANCHES = {"bgt": "blt", "ble": "bge", "bgtu": "bltu", "bleu": "bgeu"}

DIRECTIVES = (
    ".org", ".align", ".byte", ".half", ".word", ".quad", ".ascii", ".asciz", ".space",
    ".equ", ".include", ".macro", ".endm", ".entry", ".global", ".globl",
)  # fmt: skip


@dataclass(frozen=True)
class OperandSpec:
    """One operand of a format: ``kind`` is reg, cr, imm, target, mem or port; ``role`` the
    register field it fills (rd/rs1/rs2/crn; for mem and port the base register)."""

    kind: str
    role: str | None
    template: str


def _specs(fmt: Format) -> tuple[OperandSpec, ...]:
    templates = [t.strip() for t in fmt.syntax.split(",")] if fmt.syntax.strip() else []
    roles = [role for role, _ in fmt.slots]
    named = set(templates)
    specs: list[OperandSpec] = []
    for t in templates:
        if t in ("rd", "rs1", "rs2"):
            specs.append(OperandSpec("reg", t, t))
        elif t == "crn":
            specs.append(OperandSpec("cr", "crn", t))
        elif t in ("imm", "shamt"):
            specs.append(OperandSpec("imm", None, t))
        elif t == "target":
            specs.append(OperandSpec("target", None, t))
        elif m := re.fullmatch(r"\[(\w+) \+ imm\]", t):
            specs.append(OperandSpec("mem", m.group(1), t))
        elif t == "port":
            # The port's base register is the slot the template does not name on its own.
            base = [r for r in roles if r not in named]
            if len(base) != 1:
                raise ValueError(f"format {fmt.name}: cannot tell the port base register from {fmt.slots}")
            specs.append(OperandSpec("port", base[0], t))
        else:
            raise ValueError(f"format {fmt.name}: operand template {t!r} is not understood")
    covered = {s.role for s in specs if s.role}
    if covered != set(roles):
        raise ValueError(f"format {fmt.name}: syntax {fmt.syntax!r} does not cover the slots {fmt.slots}")
    has_imm = any(s.kind in ("imm", "target", "mem", "port") for s in specs)
    if has_imm != (fmt.imm is not None):
        raise ValueError(f"format {fmt.name}: syntax {fmt.syntax!r} disagrees with immediate kind {fmt.imm!r}")
    return tuple(specs)


FORMAT_OPERANDS: dict[str, tuple[OperandSpec, ...]] = {name: _specs(fmt) for name, fmt in FORMATS.items()}
