"""Hypothesis strategies for P64 instruction words, derived from the instruction table.

``instruction_words()`` draws a table row, then operands for its format; it shrinks toward
the first rows of the table (ALU instructions) and toward small registers and immediates.
``any_words()`` mixes in arbitrary 32-bit words, so invalid encodings are exercised too.
"""

from __future__ import annotations

from hypothesis import strategies as st

from cffi_core.isa.encoding import encode
from cffi_core.isa.table import CONTROL_REGISTERS, INSTRUCTIONS, Insn

# Registers shrink toward r1..r4 so that random code has data dependencies.
_REGS = st.one_of(st.integers(1, 4), st.integers(0, 15))
_IMM = {
    "s16": st.one_of(st.integers(-16, 16), st.integers(-(1 << 15), (1 << 15) - 1)),
    "u16": st.one_of(st.integers(0, 64), st.integers(0, 0xFFFF)),
    "sh6": st.integers(0, 63),
    "u8": st.integers(0, 255),
    "s20": st.integers(-(1 << 19), (1 << 19) - 1),
    # Branches mostly stay near, so that random programs keep running through their body.
    "s16w": st.one_of(st.integers(-8, 8), st.integers(-(1 << 15), (1 << 15) - 1)).map(lambda w: 4 * w),
    "s24w": st.one_of(st.integers(-8, 8), st.integers(-(1 << 23), (1 << 23) - 1)).map(lambda w: 4 * w),
}


@st.composite
def _word_for(draw: st.DrawFn, insn: Insn) -> int:
    fmt = insn.format
    roles = {role for role, _ in fmt.slots}
    kwargs = {r: draw(_REGS) for r in roles if r != "crn"}
    if "crn" in roles:
        kwargs["crn"] = draw(st.sampled_from(CONTROL_REGISTERS))
    if fmt.imm is not None:
        kwargs["imm"] = draw(_IMM[fmt.imm])
    return encode(insn, **kwargs)


def instruction_words(insns: tuple[Insn, ...] = INSTRUCTIONS) -> st.SearchStrategy[int]:
    """Valid words of the given instructions (default: the whole table)."""
    return st.sampled_from(insns).flatmap(_word_for)


def any_words(insns: tuple[Insn, ...] = INSTRUCTIONS) -> st.SearchStrategy[int]:
    """Mostly valid words, sometimes arbitrary 32-bit words (often invalid encodings)."""
    return st.one_of(instruction_words(insns), st.integers(0, 2**32 - 1))
