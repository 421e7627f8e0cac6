"""Every bad input is one AssemblyError whose str() is exactly file:line: message."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cffi_core.asm import AssemblyError, assemble, assemble_file

# (source, line of the error, exact message)
CASES = [
    ("nop\nfrob r1, r2", 2, "unknown instruction 'frob'"),
    ("add r1, r2", 1, "add takes 3 operand(s) (rd, rs1, rs2), got 2"),
    ("hlt r1", 1, "hlt takes 0 operand(s), got 1"),
    ("add r1, r2, r16", 1, "register 'r16' does not exist (r0..r15)"),
    ("add r1, r2, 5", 1, "expected a register for rs2, got '5'"),
    ("add r1, cr0, r2", 1, "expected a general register for rs1, got control register 'cr0'"),
    ("mtcr cr5, r1", 1, "control register 'cr5' does not exist (cr0, cr2, cr3, cr4, cr8)"),
    ("mfcr r1, r2", 1, "expected a control register, got 'r2'"),
    ("addi r1, r2, 32768", 1, "addi: immediate 32768 out of range [-32768, 32767]"),
    ("addi r1, r2, -32769", 1, "addi: immediate -32769 out of range [-32768, 32767]"),
    ("ori r1, r2, -1", 1, "ori: immediate -1 out of range [0, 65535]"),
    ("shli r1, r2, 64", 1, "shli: immediate 64 out of range [0, 63]"),
    ("int 256", 1, "int: immediate 256 out of range [0, 255]"),
    ("hcall 0x10000", 1, "hcall: immediate 65536 out of range [0, 65535]"),
    ("lui r1, 524288", 1, "lui: immediate 524288 out of range [-524288, 524287]"),
    ("ld r1, [r2 + 0x8000]", 1, "ld: immediate 32768 out of range [-32768, 32767]"),
    ("ld r1, r2", 1, "expected a memory operand like [reg + offset], got 'r2'"),
    ("ld r1, [r2 * 2]", 1, "expected '+' or '-' after the base register in memory operand '[r2 * 2]'"),
    ("addi r1, r2, [r3]", 1, "addi: expected a value for imm, got memory operand '[r3]'"),
    ("in r1, 0x10000", 1, "in: port 65536 out of range 0..0xffff"),
    ("in r1, r2 + 0x10000", 1, "in: port offset 65536 out of range -0xffff..0xffff"),
    ("nop\nli r1, missing", 2, "undefined symbol 'missing'"),
    ("x: nop\nx: nop", 2, "symbol 'x' already defined at prog.s:1"),
    ("x = 1\n.equ x, 2", 2, "symbol 'x' already defined at prog.s:1"),
    ("r3: nop", 1, "'r3' is a reserved name and cannot be a symbol"),
    ("sp = 4", 1, "'sp' is a reserved name and cannot be a symbol"),
    ("addi r1, r2, r3", 1, "register 'r3' where a value was expected"),
    ("beq r1, r2, 0x102", 1, "beq: target 0x102 is not a multiple of 4 bytes from 0x0"),
    (".org 0x100000\nbeq r1, r2, 0", 2, "beq: target 0x0 is out of range (offset -1048576, range -131072..131068)"),
    ("jmp 0x2000000", 1, "jmp: target 0x2000000 is out of range (offset 33554432, range -33554432..33554428)"),
    (".org 0x10\nnop\n.org 0x12", 3, ".org 0x12 moves back into bytes already emitted (0x10-0x13)"),
    (".org 0x10\nnop\n.org 0xc\n.quad 0", 4, "bytes at 0x10-0x13 overlap bytes already emitted at 0x10-0x13"),
    ('.ascii "a\\q"', 1, "bad escape '\\q'"),
    ('.ascii "abc', 1, "unterminated string"),
    (".byte 'ab'", 1, "unterminated character literal (one character between quotes)"),
    (".byte 256", 1, "value 256 does not fit in 8 bits"),
    (".byte -129", 1, "value -129 does not fit in 8 bits"),
    (".half 0x10000", 1, "value 65536 does not fit in 16 bits"),
    (".word 0x100000000", 1, "value 4294967296 does not fit in 32 bits"),
    (".quad 0x10000000000000000", 1, "number 0x10000000000000000 does not fit in 64 bits"),
    (".word 1 / 0", 1, "division by zero"),
    (".word 5 % (2 - 2)", 1, "division by zero"),
    (".word 1 << 64", 1, "shift count 64 out of range 0..63"),
    (".word (1 + 2", 1, "missing ')'"),
    (".word 1 +", 1, "expression ends too early"),
    (".word 1 2", 1, "unexpected '2' in expression"),
    (".word 0x", 1, "bad number '0x'"),
    (".word 12ab", 1, "bad number '12ab'"),
    (".word 1 @ 2", 1, "unexpected character '@'"),
    (".word 1,", 1, "empty operand"),
    (".word", 1, ".word takes one or more values, got 0 operand(s)"),
    (".align 3", 1, ".align 3: the alignment must be a power of two"),
    (".align 0", 1, ".align 0: the alignment must be a power of two"),
    (".space -1", 1, ".space -1: the size may not be negative"),
    (".space 2, 256", 1, "fill value 256 does not fit in a byte"),
    (".space 0x20000000", 1, "536870912 bytes of fill is more than the limit 268435456"),
    (".ascii 5", 1, ".ascii takes strings in double quotes, got '5'"),
    (".equ 5, 5", 1, ".equ needs a symbol name, got '5'"),
    (".entry 0\n.entry 4", 2, ".entry already given at prog.s:1"),
    (".include 5", 1, '.include takes one string: .include "file"'),
    ("mov r1, 5", 1, "expected a register for rs, got '5'"),
    ("li r1", 1, "li takes 2 operand(s) (rd, imm), got 1"),
    ("bgt r1, r2", 1, "bgt takes 3 operand(s) (rs1, rs2, target), got 2"),
    ("\n\n.endm", 3, "'.endm' without '.macro'"),
    ("nop\n.macro m\nnop", 2, "unterminated '.macro m' (no '.endm')"),
    (".macro add\n.endm", 1, "macro name 'add' is already an instruction or directive"),
    (".macro m a, a\n.endm", 1, "macro parameter 'a' given twice"),
    (".macro m a\n.endm\nm 1, 2", 3, "macro 'm' takes 1 argument(s), got 2"),
    (".macro m\n.macro n\n.endm", 2, "nested '.macro' (macros cannot define macros)"),
    ("x: .macro m", 1, "'.macro' must start its line"),
    ("5: nop", 1, "expected an instruction, directive or label, got '5'"),
    (
        ".org 0xfffffffffffffffc\n.quad 0",
        2,
        "8 byte(s) at 0xfffffffffffffffc run past the end of the 64-bit address space",
    ),
    (".equ A, B\n.equ B, A", 1, "undefined symbol 'B'"),
]


@pytest.mark.parametrize(("source", "line", "message"), CASES, ids=[c[2][:40] for c in CASES])
def test_error_reports_file_line_and_message(source, line, message):
    with pytest.raises(AssemblyError) as info:
        assemble(source, filename="prog.s")
    assert str(info.value) == f"prog.s:{line}: {message}"
    assert (info.value.file, info.value.line, info.value.message) == ("prog.s", line, message)


def test_assembly_error_is_a_value_error_and_default_name_is_string():
    with pytest.raises(ValueError, match=r"^<string>:1: unknown instruction 'bogus'$"):
        assemble("bogus")


def test_error_in_an_included_file_names_that_file_and_line(tmp_path):
    (tmp_path / "main.s").write_text('nop\n.include "inc.s"\n')
    (tmp_path / "inc.s").write_text("nop\n\naddi r1, r2\n")
    with pytest.raises(AssemblyError) as info:
        assemble_file(tmp_path / "main.s")
    assert str(info.value) == f"{tmp_path / 'inc.s'}:3: addi takes 3 operand(s) (rd, rs1, imm), got 2"


def test_missing_include_file_is_reported_at_the_include_line(tmp_path):
    (tmp_path / "main.s").write_text('nop\n.include "nope.s"\n')
    with pytest.raises(AssemblyError, match=r"main\.s:2: cannot include 'nope\.s': No such file or directory$"):
        assemble_file(tmp_path / "main.s")


def test_include_cycle_is_an_error(tmp_path):
    (tmp_path / "a.s").write_text('.include "b.s"\n')
    (tmp_path / "b.s").write_text('nop\n.include "a.s"\n')
    with pytest.raises(AssemblyError) as info:
        assemble_file(tmp_path / "a.s")
    assert str(info.value) == f"{tmp_path / 'b.s'}:2: include cycle: a.s -> b.s -> a.s"


def test_self_include_from_text_with_a_filename_is_a_cycle(tmp_path):
    (tmp_path / "self.s").write_text('.include "self.s"\n')
    with pytest.raises(AssemblyError, match=r"include cycle: self\.s -> self\.s"):
        assemble_file(tmp_path / "self.s")


def test_unreadable_file_is_an_assembly_error(tmp_path):
    with pytest.raises(AssemblyError, match=r"missing\.s:0: cannot read"):
        assemble_file(tmp_path / "missing.s")


def test_error_inside_a_macro_names_the_body_line_and_the_call():
    src = ".macro load r, v\n    nop\n    addi \\r, \\r, \\v\n.endm\n\n    load r1, 99999\n"
    with pytest.raises(AssemblyError) as info:
        assemble(src, filename="m.s")
    assert (
        str(info.value) == "m.s:3: addi: immediate 99999 out of range [-32768, 32767] (in macro 'load' called at m.s:6)"
    )


def test_recursive_macro_is_an_error_not_a_crash():
    with pytest.raises(AssemblyError, match=r"expansion nested too deeply"):
        assemble(".macro m\nm\n.endm\nm")


def test_deeply_nested_expression_is_an_error_not_a_crash():
    with pytest.raises(AssemblyError, match="expression nested too deeply"):
        assemble(".word " + "(" * 500 + "1" + ")" * 500)


def test_labels_that_never_settle_are_an_error():
    # The .space shrinks as X moves forward and grows as it moves back: no fixed point exists.
    with pytest.raises(AssemblyError, match=r"^<string>:2: symbol addresses do not settle"):
        assemble(".space 8 - X\nX: .byte 0")


@given(st.text(alphabet=st.sampled_from(list("abr01x,.:[]()+-*/%<>&|^~'\"\\;= \tn")), max_size=30))
@settings(derandomize=True, deadline=None, max_examples=400)
def test_garbage_input_raises_only_assembly_error(text):
    try:
        assemble(text)
    except AssemblyError as exc:
        assert str(exc).startswith("<string>:")
