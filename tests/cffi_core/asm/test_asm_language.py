"""Tests of the assembly language: instructions, directives, expressions, labels, pseudo-instructions, include and macro."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cffi_core.asm import assemble, assemble_file, li_sequence
from cffi_core.isa.encoding import decode, encode
from cffi_core.isa.table import BY_MNEMONIC

MASK64 = (1 << 64) - 1
SETTINGS = settings(derandomize=True, deadline=None, max_examples=300)


def words(image, address=None, count=None):
    """The 32-bit words of the image's single segment (or of [address, address + 4 * count))."""
    if address is None:
        (seg,) = image.segments
        data = seg.data
    else:
        data = image.read(address, 4 * count)
    return [int.from_bytes(data[i : i + 4], "little") for i in range(0, len(data), 4)]


def one(text, **kw):
    """Assemble one statement and return its single encoded word."""
    (w,) = words(assemble(text, **kw))
    return w


def run_alu(ws, regs=None):
    """A tiny evaluator of the instructions li/not/neg/mov expand to, with P64 semantics."""
    r = [0] * 16 if regs is None else list(regs)
    for w in ws:
        d = decode(w)
        assert d is not None, f"{w:#010x} does not decode"
        mn = d.insn.mnemonic
        if mn == "addi":
            v = r[d.rs1] + d.imm
        elif mn == "ori":
            v = r[d.rs1] | d.imm
        elif mn == "lui":
            v = ((d.imm << 12) & 0xFFFFFFFF) - ((d.imm << 12) & 0x80000000) * 2  # sext from bit 31
        elif mn == "shli":
            v = r[d.rs1] << d.imm
        elif mn == "sub":
            v = r[d.rs1] - r[d.rs2]
        else:
            raise AssertionError(f"unexpected {mn}")
        if d.rd:
            r[d.rd] = v & MASK64
    return r


# ---- instructions ----


def test_register_instruction_encodes_through_the_table():
    assert one("add r1, r2, r3") == encode("add", rd=1, rs1=2, rs2=3)


def test_mnemonics_and_registers_are_case_insensitive():
    assert one("ADD R1, Zero, SP") == encode("add", rd=1, rs1=0, rs2=15)


def test_every_table_instruction_assembles_from_its_syntax_template():
    # Fill each format's template with plausible operands; proves the parser covers every format.
    fills = {"rd": "r1", "rs1": "r2", "rs2": "r3", "imm": "4", "shamt": "4", "target": ". + 8",
             "port": "r2 + 4", "crn": "cr3", "[rs1 + imm]": "[r2 + 4]"}  # fmt: skip
    for insn in BY_MNEMONIC.values():
        ops = [fills[t.strip()] for t in insn.format.syntax.split(",")] if insn.format.syntax else []
        w = one(f"{insn.mnemonic} {', '.join(ops)}")
        assert decode(w).insn is insn


def test_memory_operand_forms():
    assert one("ld r1, [r2]") == encode("ld", rd=1, rs1=2, imm=0)
    assert one("ld r1, [r2 + 8]") == encode("ld", rd=1, rs1=2, imm=8)
    assert one("ld r1, [r2 - 8]") == encode("ld", rd=1, rs1=2, imm=-8)
    assert one("ld r1, [r2 - 8 + 4]") == encode("ld", rd=1, rs1=2, imm=-4)
    assert one("sd r1, [0x100]") == encode("sd", rs2=1, rs1=0, imm=0x100)
    assert one("invlpg [r3 + 16]") == encode("invlpg", rs1=3, imm=16)


def test_port_operand_forms():
    assert one("in r1, 0x3f8") == encode("in", rd=1, rs1=0, imm=0x3F8)
    assert one("in r1, r2") == encode("in", rd=1, rs1=2, imm=0)
    assert one("in r1, r2 + 5") == encode("in", rd=1, rs1=2, imm=5)
    assert one("out r2 - 1, r1") == encode("out", rs2=1, rs1=2, imm=0xFFFF)
    assert one("out 0xffff, r1") == encode("out", rs2=1, rs1=0, imm=0xFFFF)


def test_control_registers_and_system_instructions():
    assert one("mtcr cr3, r1") == encode("mtcr", crn=3, rs1=1)
    assert one("mfcr r1, cr8") == encode("mfcr", rd=1, crn=8)
    assert one("int 255") == encode("int", imm=255)
    assert one("hcall 0xffff") == encode("hcall", imm=0xFFFF)
    assert one("lui r1, -524288") == encode("lui", rd=1, imm=-524288)


def test_branch_target_is_encoded_relative_to_the_branch():
    img = assemble(".org 0x1000\nloop: nop\n beq r1, r2, loop\n jmp loop\n call fwd\nfwd: ret")
    ws = words(img)
    assert decode(ws[1]).imm == -4
    assert decode(ws[2]).imm == -8
    assert decode(ws[3]).imm == 4


def test_branch_reaches_the_ends_of_its_range():
    assert decode(one(".org 0x100000\nbeq r1, r2, . + 131068")).imm == 131068
    assert decode(one(".org 0x100000\nbeq r1, r2, . - 131072")).imm == -131072
    assert decode(one(".org 0x4000000\njmp . - 0x2000000")).imm == -(1 << 25)


# ---- labels, symbols, expressions ----


def test_labels_forward_and_backward_references():
    img = assemble("a: .word b\n.word a\nb: .word c\nc:")
    assert img.symbols == {"a": 0, "b": 8, "c": 12}
    assert words(img) == [8, 0, 12]


def test_labels_are_case_sensitive_and_may_share_a_line():
    img = assemble("x: X: .byte 1\n.L$1.: y: nop")
    assert img.symbols == {"x": 0, "X": 0, ".L$1.": 1, "y": 1}


def test_label_alone_on_a_line_and_comment_styles():
    img = assemble("start: ; comment\n  // another\n  nop // trailing\n  nop ; trailing")
    assert img.symbols == {"start": 0}
    assert len(words(img)) == 2


def test_comment_markers_inside_strings_and_chars_are_text():
    img = assemble(".ascii \";//\"\n.byte ';'")
    assert img.segments[0].data == b";//;"


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("1 + 2 * 3", 7),
        ("(1 + 2) * 3", 9),
        ("1 << 4 + 1", 32),  # + binds tighter than <<
        ("0xf0 | 0x0f & 0x3c", 0xFC),  # & before |
        ("1 ^ 3 | 4", 6),
        ("7 & 3 ^ 1", 2),
        ("-7 / 2", -3),  # truncates toward zero
        ("-7 % 2", -1),
        ("7 % -2", 1),
        ("~0", -1),
        ("-(-5)", 5),
        ("+5", 5),
        ("0x10 - 0b11 - 0o7", 6),
        ("'a'", 97),
        ("'\\n' + '\\t' + '\\\\' + '\\'' + '\\0'", 10 + 9 + 92 + 39),
        ("1 << 63 >> 63", -1),  # arithmetic shift of a signed 64-bit value
        ("0xffffffffffffffff + 2", 1),  # wraps modulo 2^64
        ("100 - 50 - 25", 25),  # left-associative
        ("64 / 4 / 2", 8),
    ],
)
def test_expressions_follow_c_precedence_with_64_bit_arithmetic(expr, value):
    img = assemble(f".quad {expr}")
    assert int.from_bytes(img.segments[0].data, "little") == value & MASK64


def test_dot_is_the_address_of_the_current_statement():
    img = assemble(".org 0x20\n.word ., .\nhere = .\n.quad here")
    assert words(img)[:2] == [0x20, 0x20]
    assert img.symbols["here"] == 0x28


def test_equ_and_assignment_define_constants_usable_before_definition():
    img = assemble(".word SIZE * 2\n.equ SIZE, COUNT + 1\nCOUNT = 3")
    assert words(img) == [8]
    assert img.symbols["SIZE"] == 4 and img.symbols["COUNT"] == 3
    assert img.constants == {"SIZE", "COUNT"}


def test_negative_constant_is_stored_as_unsigned_64_bit_symbol():
    img = assemble(".equ NEG, -1\nnop")
    assert img.symbols["NEG"] == MASK64


# ---- directives ----


def test_org_sets_the_location_counter_and_makes_segments():
    img = assemble(".org 0x1000\n.byte 1\n.org 0x2000\n.byte 2\n.org 0x1001\n.byte 3")
    assert [(s.address, s.data) for s in img.segments] == [(0x1000, b"\x01\x03"), (0x2000, b"\x02")]


def test_origin_argument_is_the_initial_location():
    img = assemble("x: .byte 1", origin=0x8000)
    assert img.segments[0].address == 0x8000 and img.symbols["x"] == 0x8000


def test_align_pads_with_zero_bytes():
    img = assemble(".byte 1\n.align 8\nx: .byte 2\n.align 1\n.align 4\ny:")
    assert img.segments[0].data == b"\x01" + bytes(7) + b"\x02" + bytes(3)
    assert img.symbols == {"x": 8, "y": 12}


@pytest.mark.parametrize(
    ("directive", "encoded"),
    [
        (".byte 1, 255, -128", b"\x01\xff\x80"),
        (".half 0x1234, -1", b"\x34\x12\xff\xff"),
        (".word 0x12345678, 0xffffffff, -2147483648", b"\x78\x56\x34\x12\xff\xff\xff\xff\x00\x00\x00\x80"),
        (".quad 0x0102030405060708", bytes(range(8, 0, -1))),
        (".quad 0xffffffffffffffff, -9223372036854775808", b"\xff" * 8 + bytes(7) + b"\x80"),
    ],
)
def test_data_directives_are_little_endian(directive, encoded):
    assert assemble(directive).segments[0].data == encoded


def test_ascii_and_asciz_with_escapes():
    img = assemble('.ascii "a\\tb\\n", "\\"q\\"\\\\"\n.asciz "z\\x41\\0"')
    assert img.segments[0].data == b'a\tb\n"q"\\zA\x00\x00'


def test_space_reserves_bytes_with_optional_fill():
    img = assemble(".space 3\n.space 2, 0xaa\n.space 0\n.space 1, -1")
    assert img.segments[0].data == b"\0\0\0\xaa\xaa\xff"


def test_entry_defaults_to_start_then_lowest_address_and_can_be_set():
    assert assemble(".org 0x100\nnop\n_start: nop").entry == 0x104
    assert assemble(".org 0x200\nnop\n.org 0x100\nnop").entry == 0x100
    assert assemble(".org 0x100\n_start: nop\nmain: nop\n.entry main").entry == 0x104
    assert assemble(".entry 0x4000\nnop").entry == 0x4000


def test_global_is_accepted_and_every_label_is_exported():
    img = assemble(".global main, other\nmain: nop\nother: nop\n.globl main")
    assert img.symbols == {"main": 0, "other": 4}


def test_empty_source_gives_an_empty_image():
    img = assemble("; nothing\n\n", origin=0x100)
    assert img.segments == () and img.entry == 0x100


# ---- pseudo-instructions ----


def test_nop_mov_not_neg_expand_to_table_instructions():
    assert one("nop") == encode("addi", rd=0, rs1=0, imm=0)
    assert one("mov r1, r2") == encode("addi", rd=1, rs1=2, imm=0)
    assert one("mov cr3, r4") == encode("mtcr", crn=3, rs1=4)
    assert one("mov r5, cr0") == encode("mfcr", rd=5, crn=0)
    assert one("neg r1, r2") == encode("sub", rd=1, rs1=0, rs2=2)
    assert words(assemble("not r1, r2")) == [encode("sub", rd=1, rs1=0, rs2=2), encode("addi", rd=1, rs1=1, imm=-1)]


@given(st.integers(0, MASK64))
@SETTINGS
def test_not_and_neg_compute_complement_and_negation(x):
    regs = [0] * 16
    regs[2] = x
    assert run_alu(words(assemble("not r1, r2")), regs)[1] == ~x & MASK64
    assert run_alu(words(assemble("neg r1, r2")), regs)[1] == -x & MASK64


def test_branch_pseudos_map_to_table_branches():
    src = "t: beqz r1, t\nbnez r1, t\nbgt r1, r2, t\nble r1, r2, t\nbgtu r1, r2, t\nbleu r1, r2, t"
    ws = words(assemble(src))
    expect = [("beq", 1, 0), ("bne", 1, 0), ("blt", 2, 1), ("bge", 2, 1), ("bltu", 2, 1), ("bgeu", 2, 1)]
    for k, (w, (mn, a, b)) in enumerate(zip(ws, expect, strict=True)):
        assert w == encode(mn, rs1=a, rs2=b, imm=-4 * k)


@pytest.mark.parametrize(
    ("value", "sequence"),
    [
        (0, ["addi"]),
        (-32768, ["addi"]),
        (32767, ["addi"]),
        (0xFFFF, ["ori"]),
        (0x10000, ["lui"]),
        (0x12345678, ["lui", "addi"]),
        (-0x80000000, ["lui"]),
        (0x7FFFFFFF, ["lui", "addi"]),
        (0x7FFFF800, ["lui", "addi"]),
        (0x80000000, ["addi", "shli", "ori", "shli"]),
        (0x123456789ABCDEF0, ["lui", "addi", "shli", "ori", "shli", "ori"]),
        (0x100000000, ["addi", "shli", "shli"]),
        (-(1 << 63), ["lui", "shli", "shli"]),
    ],
)
def test_li_uses_the_documented_shortest_sequence(value, sequence):
    assert [mn for mn, _, _ in li_sequence(value)] == sequence
    ws = words(assemble(f"li r7, {value}"))
    assert [decode(w).insn.mnemonic for w in ws] == sequence
    assert run_alu(ws)[7] == value & MASK64


@given(st.one_of(st.integers(-(1 << 63), MASK64), st.integers(-(1 << 32), 1 << 32), st.integers(-0x20000, 0x20000)))
@SETTINGS
def test_li_loads_every_64_bit_constant(value):
    ws = words(assemble(f"li r3, {value}"))
    assert run_alu(ws)[3] == value & MASK64
    assert 1 <= len(ws) <= 6
    v = value - (1 << 64) if value >= 1 << 63 else value
    if -0x8000 <= v <= 0xFFFF:
        assert len(ws) == 1
    elif -(1 << 31) <= v < 1 << 31:
        assert len(ws) <= 2


def test_la_is_li_of_an_address():
    img = assemble(".org 0x12340\nla r2, data\nli r3, data\ndata: .quad 0")
    ws = words(img)
    assert run_alu(ws[:2])[2] == 0x12350 and run_alu(ws[2:4])[3] == 0x12350


def test_li_of_a_forward_label_grows_until_addresses_settle():
    img = assemble("li r1, target\n.space 0x10000\ntarget: .byte 0")
    ws = words(img, 0, 2)
    assert img.symbols["target"] == 0x10008  # the li took two instructions
    assert run_alu(ws)[1] == 0x10008


def test_li_that_shrinks_after_growing_keeps_its_size_and_pads_with_nop():
    # First layout: L = 4, value 0x10004 needs lui+addi.  Then L = 8, value 0x10000 needs only lui.
    img = assemble("li r1, 0x10008 - L\nL: .byte 0")
    ws = words(img, 0, 2)
    assert img.symbols["L"] == 8
    assert run_alu(ws)[1] == 0x10000
    assert ws[1] == encode("addi", rd=0, rs1=0, imm=0)


# ---- include and macro ----


def test_include_is_relative_to_the_including_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "main.s").write_text('.include "sub/a.s"\nmain: .word VALUE')
    (tmp_path / "sub" / "a.s").write_text('.include "b.s"\n')
    (tmp_path / "sub" / "b.s").write_text("VALUE = 42\nlib: nop\n")
    img = assemble_file(tmp_path / "main.s")
    assert img.symbols["VALUE"] == 42 and img.symbols["lib"] == 0 and img.symbols["main"] == 4


def test_include_from_text_resolves_against_its_filename(tmp_path):
    (tmp_path / "inc.s").write_text(".byte 7\n")
    img = assemble('.include "inc.s"', filename=str(tmp_path / "virtual.s"))
    assert img.segments[0].data == b"\x07"


def test_macro_substitutes_arguments():
    src = """
.macro pushpair a, b
    push \\a
    push \\b
.endm
.MACRO addk rd rs k
    addi \\rd, \\rs, \\k
.endm
    pushpair r1, r2
    addk r3, r3, (1 + 2) * 2
"""
    assert words(assemble(src)) == [encode("push", rs1=1), encode("push", rs1=2), encode("addi", rd=3, rs1=3, imm=6)]


def test_macro_unique_counter_makes_local_labels_and_macros_nest():
    src = """
.macro spin r
wait\\@: bnez \\r, wait\\@
.endm
.macro twice r
    spin \\r
    spin \\r
.endm
    twice r4
"""
    ws = words(assemble(src))
    assert ws == [encode("bne", rs1=4, rs2=0, imm=0)] * 2


def test_macro_with_memory_and_string_arguments():
    src = '.macro put s, m\n.ascii \\s\nld r1, \\m\n.endm\nput "x,y", [r2 + 8]'
    img = assemble(src)
    assert img.segments[0].data[:3] == b"x,y"


# ---- an examples-like program ----

EXAMPLE = r"""
; sum the words of a table and print a message through port 0x3f8
        .equ SERIAL, 0x3f8
        .org 0x1000
        .global _start
_start: la   r1, table
        li   r2, COUNT
        li   r3, 0
loop:   lw   r4, [r1]
        add  r3, r3, r4
        addi r1, r1, 4
        addi r2, r2, -1
        bnez r2, loop
        la   r5, msg
print:  lbu  r6, [r5]
        beqz r6, done
        out  SERIAL, r6
        addi r5, r5, 1
        jmp  print
done:   hlt
        .align 8
table:  .word 1, 2, 3, 4
COUNT = (. - table) / 4
msg:    .asciz "sum done\n"
"""


def test_example_program_assembles():
    img = assemble(EXAMPLE)
    assert img.entry == 0x1000
    table = img.symbols["table"]
    assert table % 8 == 0 and img.symbols["COUNT"] == 4
    assert img.read(table, 16) == b"".join(i.to_bytes(4, "little") for i in (1, 2, 3, 4))
    assert img.read(img.symbols["msg"], 10) == b"sum done\n\0"
    bnez = decode(int.from_bytes(img.read(img.symbols["loop"] + 16, 4), "little"))
    assert bnez.insn.mnemonic == "bne" and bnez.imm == -16
