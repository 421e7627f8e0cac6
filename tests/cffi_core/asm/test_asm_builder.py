"""Builder tests: the Python builder and the equivalent assembly text produce the same image."""

from __future__ import annotations

import keyword

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cffi_core.asm import AssemblyError, Builder, assemble
from cffi_core.asm.syntax import PSEUDO_OPERANDS
from cffi_core.isa.table import INSTRUCTIONS

EQUIVALENT_TEXT = r"""
.org 0x1000
.equ SERIAL, 0x3f8
_start:
    li r1, 0x123456789
    la r2, msg
    mov r3, r1
    mov cr3, r3
    mov r4, cr0
    not r5, r1
    neg r6, r1
loop:
    and r7, r1, r2
    or r7, r7, r3
    addi r1, r1, -1
    ld r8, [r2 + 8]
    sd r8, [sp - 8]
    lw r9, [r2 + 4]
    bgt r1, r0, loop
    beqz r1, done
    in r10, 0x3f8
    out SERIAL, r10
    out r2 + 4, r10
    int 32
    nop
done:
    jmp _start
    .align 8
msg:
    .asciz "hi \"you\"\n"
    .byte 1, -1
    .half 0x1234
    .word 0xdeadbeef
    .quad msg
    .space 4, 0xee
.entry _start
"""


def build_equivalent() -> Builder:
    b = Builder(origin=0x1000, name="built.s")
    b.equ("SERIAL", 0x3F8)
    b.label("_start")
    b.li("r1", 0x123456789).la("r2", "msg").mov("r3", "r1").mov("cr3", "r3").mov("r4", "cr0")
    b.not_("r5", "r1").neg("r6", "r1")
    b.label("loop")
    b.and_("r7", "r1", "r2").or_("r7", "r7", "r3").addi("r1", "r1", -1)
    b.ld("r8", b.mem("r2", 8)).sd("r8", b.mem("sp", -8)).lw("r9", "[r2 + 4]")
    b.bgt("r1", "r0", "loop").beqz("r1", "done")
    b.in_("r10", 0x3F8).out("SERIAL", "r10").out("r2 + 4", "r10").int_(32).nop()
    b.label("done").jmp("_start")
    b.align(8).label("msg").asciz('hi "you"\n').byte(1, -1).half(0x1234).word(0xDEADBEEF).quad("msg").space(4, 0xEE)
    b.entry("_start")
    return b


def test_builder_produces_the_same_image_as_the_equivalent_text():
    built = build_equivalent().assemble()
    assert built == assemble(EQUIVALENT_TEXT)
    assert built.name == "built.s"


def test_builder_text_is_the_program_source():
    b = build_equivalent()
    text = b.text()
    assert text.startswith(".org 0x1000\n")
    assert "    li r1, 0x123456789" in text and "    mov cr3, r3" in text
    assert assemble(text) == b.assemble()


def test_builder_has_a_method_for_every_table_mnemonic_and_pseudo():
    for name in [i.mnemonic for i in INSTRUCTIONS] + list(PSEUDO_OPERANDS):
        attr = name + "_" if keyword.iskeyword(name) else name
        assert callable(getattr(Builder, attr)), name
    assert Builder.int_ and Builder.and_ and Builder.or_ and Builder.in_ and Builder.not_


def test_builder_methods_check_the_operand_count():
    with pytest.raises(TypeError, match="add takes 3 operand"):
        Builder().add("r1", "r2")


def test_builder_rejects_operands_of_unknown_types():
    with pytest.raises(TypeError):
        Builder().addi("r1", "r1", 1.5)


def test_builder_errors_point_into_its_text():
    b = Builder(name="gen.s").nop().addi("r1", "r1", 1 << 20)
    with pytest.raises(AssemblyError) as info:
        b.assemble()
    assert str(info.value) == "gen.s:3: addi: immediate 1048576 out of range [-32768, 32767]"
    assert b.text().splitlines()[2].strip() == "addi r1, r1, 0x100000"


def test_builder_raw_labels_and_fresh_labels():
    b = Builder()
    top = b.new_label("top")
    assert top != b.new_label("top")
    b.label(top).raw("    addi r1, r1, 1 ; raw line").bnez("r1", top)
    image = b.assemble()
    assert image.symbols[top] == 0 and len(b) == 3


@given(st.lists(st.tuples(st.sampled_from(["add", "sub", "xor", "addi", "ori", "li"]),
                          st.integers(0, 15), st.integers(0, 15), st.integers(0, 0x7FFF)), max_size=20))  # fmt: skip
@settings(derandomize=True, deadline=None, max_examples=100)
def test_generated_builder_programs_match_their_text(ops):
    b = Builder(origin=0x4000)
    for mn, a, c, k in ops:
        if mn in ("add", "sub", "xor"):
            getattr(b, mn)(f"r{a}", f"r{c}", f"r{k % 16}")
        elif mn == "li":
            b.li(f"r{a}", k * 0x10001 << 20)
        else:
            getattr(b, mn)(f"r{a}", f"r{c}", k)
    assert b.assemble() == assemble(b.text())
