"""The spec is driven by the instruction table: every row has a body in its group's module,
documented, and the decoder is the table's."""

from __future__ import annotations

import inspect

import pytest

from cffi_core.isa.encoding import encode
from cffi_core.isa.table import INSTRUCTIONS
from cffi_core.spec import EXECUTORS, decode_word
from cffi_core.spec.execute import GROUPS


@pytest.mark.parametrize("insn", INSTRUCTIONS, ids=lambda i: i.mnemonic)
def test_every_table_row_has_an_execute_function_in_its_group_module(insn):
    body = getattr(GROUPS[insn.group], f"execute_{insn.mnemonic}")
    assert EXECUTORS[insn.mnemonic] is body
    assert inspect.getdoc(body), f"execute_{insn.mnemonic} needs a docstring"


def test_group_modules_define_no_body_the_table_lacks():
    bodies = {
        name.removeprefix("execute_")
        for module in GROUPS.values()
        for name, _ in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("execute_")
    }
    assert bodies == {i.mnemonic for i in INSTRUCTIONS}


def test_invalid_words_decode_to_nothing():
    assert decode_word(0) is None
    assert decode_word(encode("add", rd=1, rs1=2, rs2=3) | 1) is None  # an unused bit set


def test_decoding_is_memoised_per_word():
    word = encode("addi", rd=1, rs1=2, imm=-3)
    first = decode_word(word)
    assert first is not None and first is decode_word(word)
    d, _body, needs_check = first
    assert (d.insn.mnemonic, d.rd, d.rs1, d.imm) == ("addi", 1, 2, -3)
    assert not needs_check
