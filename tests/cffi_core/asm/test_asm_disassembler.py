"""Disassembler tests: canonical text, and assemble(disassemble(w)) == w for every 32-bit word."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cffi_core.asm import assemble, disassemble, disassemble_word
from cffi_core.image import GuestImage, Segment
from cffi_core.isa.encoding import decode, encode
from cffi_core.isa.table import INSTRUCTIONS, OP_SHIFT

SETTINGS = settings(derandomize=True, deadline=None, max_examples=1000)
pcs = st.integers(0, (1 << 62) - 1).map(lambda n: 4 * n)
any_words = st.integers(0, 0xFFFFFFFF)


@st.composite
def valid_words(draw):
    """Words that decode: a table opcode with random bits in the fields its format uses."""
    insn = draw(st.sampled_from(INSTRUCTIONS))
    word = (insn.opcode << OP_SHIFT) | (draw(st.integers(0, (1 << OP_SHIFT) - 1)) & insn.format.used)
    if decode(word) is None:  # e.g. a crn field naming a control register that does not exist
        word = insn.opcode << OP_SHIFT
    return word


def reassembled(text: str, pc: int) -> bytes:
    image = assemble(f".org {pc}\n{text}")
    assert [s.address for s in image.segments] == [pc]
    return image.read(pc, 4)


@given(word=st.one_of(valid_words(), any_words), pc=pcs)
@example(word=encode("beq", rs1=1, rs2=2, imm=-(1 << 17)), pc=0)  # target wraps below address 0
@example(word=encode("jmp", imm=(1 << 25) - 4), pc=(1 << 64) - 4)  # and above the top
@SETTINGS
def test_disassembly_with_pc_reassembles_to_the_same_word(word, pc):
    text = disassemble_word(word, pc)
    assert reassembled(text, pc) == word.to_bytes(4, "little"), text


@given(word=valid_words(), pc=pcs)
@SETTINGS
def test_disassembly_without_pc_uses_dot_relative_targets_that_reassemble(word, pc):
    text = disassemble_word(word)
    assert reassembled(text, pc) == word.to_bytes(4, "little"), text


@given(word=any_words)
@settings(derandomize=True, deadline=None, max_examples=300)
def test_invalid_words_print_as_word_directive(word):
    text = disassemble_word(word)
    assert (decode(word) is None) == text.startswith(".word ")
    if decode(word) is None:
        assert text == f".word 0x{word:08x}"


@pytest.mark.parametrize(
    ("word", "pc", "text"),
    [
        (encode("add", rd=1, rs1=2, rs2=3), None, "add r1, r2, r3"),
        (encode("addi", rd=1, rs1=0, imm=-5), None, "addi r1, r0, -5"),
        (encode("ori", rd=1, rs1=1, imm=0xBEEF), None, "ori r1, r1, 0xbeef"),
        (encode("shli", rd=1, rs1=1, imm=16), None, "shli r1, r1, 16"),
        (encode("lui", rd=2, imm=-1), None, "lui r2, -0x1"),
        (encode("ld", rd=1, rs1=15, imm=-16), None, "ld r1, [r15 - 16]"),
        (encode("sb", rs2=3, rs1=4, imm=0), None, "sb r3, [r4]"),
        (encode("beq", rs1=1, rs2=2, imm=-8), None, "beq r1, r2, . - 8"),
        (encode("beq", rs1=1, rs2=2, imm=-8), 0x1000, "beq r1, r2, 0xff8"),
        (encode("jmp", imm=0), None, "jmp . + 0"),
        (encode("call", imm=16), 0x100, "call 0x110"),
        (encode("in", rd=1, rs1=0, imm=0x3F8), None, "in r1, 0x3f8"),
        (encode("out", rs2=5, rs1=2, imm=4), None, "out r2 + 0x4, r5"),
        (encode("mtcr", crn=4, rs1=1), None, "mtcr cr4, r1"),
        (encode("mfcr", rd=1, crn=2), None, "mfcr r1, cr2"),
        (encode("int", imm=0x80), None, "int 0x80"),
        (encode("hlt"), None, "hlt"),
        (encode("wrmsr", rs1=1, rs2=2), None, "wrmsr r1, r2"),
        (0xFF000000, None, ".word 0xff000000"),
        (encode("hlt") | 1, None, ".word 0x42000001"),
    ],
)
def test_canonical_text(word, pc, text):
    assert disassemble_word(word, pc) == text


def test_disassemble_word_rejects_non_32_bit_values():
    with pytest.raises(ValueError):
        disassemble_word(1 << 32)


def test_listing_shows_addresses_words_labels_and_reassembles():
    src = """
        .equ K, 7
        .org 0x1000
_start: li r1, K
loop:   addi r1, r1, -1
        bnez r1, loop
        hlt
msg:    .ascii "hey"
        .org 0x2002
tail:   .half 0xabcd
        .word 0x11223344
"""
    image = assemble(src)
    listing = disassemble(image)
    lines = listing.splitlines()
    assert "_start:" in lines and "loop:" in lines and "msg:" in lines and "tail:" in lines
    assert any(
        line.strip().startswith("bne r1, r0, 0x1004") and "00001008:" in line and "-> loop" in line for line in lines
    )
    assert "; K = 0x7" in lines
    again = assemble(listing)
    assert again.segments == image.segments and again.entry == image.entry
    assert {k: v for k, v in again.symbols.items()} == {k: v for k, v in image.symbols.items() if k != "K"}


def test_listing_of_an_image_with_foreign_symbol_names_still_reassembles():
    image = GuestImage((Segment(0x10, bytes(8)),), 0x10, {"r1": 0x10, "has space": 0x14, "mid": 0x12, "far": 0x100})
    listing = disassemble(image)
    assert "; r1:" in listing and "; has space:" in listing and "; mid = 0x12" in listing
    assert "; far = 0x100 (outside every segment)" in listing
    assert assemble(listing).segments == image.segments
