"""ALU instructions on the core (§3, instructions.md): every register-register and
register-immediate operation, division edge cases (#DE leaves rd unchanged), r0 and lui."""

from __future__ import annotations

import pytest
from core_rig import CODE, DE, HOST_GATE, U64, Core, I

M63 = 1 << 63
NEG1 = U64

# (mnemonic, rs1, rs2, expected rd)
RR_CASES = [
    ("add", 5, 7, 12), ("add", U64, 2, 1), ("sub", 5, 7, (5 - 7) & U64), ("sub", 0, 1, U64),
    ("and", 0xF0F0, 0xFF00, 0xF000), ("or", 0xF0F0, 0x0F0F, 0xFFFF), ("xor", 0xFF, 0x0F, 0xF0),
    ("shl", 1, 63, M63), ("shl", 1, 64 + 3, 8), ("shr", M63, 63, 1), ("shr", M63, 64, M63),
    ("sar", M63, 63, U64), ("sar", M63, 4, 0xF8 << 56), ("sar", 0x40, 70, 1),
    ("mul", 3, 5, 15), ("mul", U64, U64, 1), ("mul", 1 << 32, 1 << 32, 0),
    ("div", 7, 2, 3), ("div", (-7) & U64, 2, (-3) & U64), ("div", 7, (-2) & U64, (-3) & U64),
    ("divu", U64, 2, U64 >> 1), ("divu", 7, 2, 3),
    ("rem", 7, 2, 1), ("rem", (-7) & U64, 2, (-1) & U64), ("rem", 7, (-2) & U64, 1),
    ("remu", U64, 10, U64 % 10),
    ("slt", (-1) & U64, 0, 1), ("slt", 0, (-1) & U64, 0), ("slt", 3, 3, 0),
    ("sltu", (-1) & U64, 0, 0), ("sltu", 0, (-1) & U64, 1),
]  # fmt: skip

# (mnemonic, rs1, imm, expected rd)
RI_CASES = [
    ("addi", 5, -7, (5 - 7) & U64), ("addi", U64, 1, 0), ("andi", U64, 0xFFFF, 0xFFFF),
    ("ori", 0x10000, 0x8001, 0x18001), ("xori", 0xFFFF, 0x8000, 0x7FFF),
    ("shli", 3, 62, M63 | (1 << 62)), ("shri", M63, 62, 2), ("sari", M63, 62, (-2) & U64),
    ("slti", (-5) & U64, -4, 1), ("slti", 5, -4, 0), ("sltiu", 5, -1, 1), ("sltiu", U64, -1, 0),
]  # fmt: skip


def run_one(word: int, **regs: int) -> Core:
    c = Core()
    c.set_r(**regs)
    c.code(word, I("hlt"))
    c.run()
    return c


@pytest.mark.parametrize(("mn", "a", "b", "want"), RR_CASES)
def test_register_register(mn, a, b, want):
    c = run_one(I(mn, rd=3, rs1=1, rs2=2), r1=a, r2=b)
    assert c.r(3) == want
    assert c.cpu.pc == CODE + 8


@pytest.mark.parametrize(("mn", "a", "imm", "want"), RI_CASES)
def test_register_immediate(mn, a, imm, want):
    assert run_one(I(mn, rd=3, rs1=1, imm=imm), r1=a).r(3) == want


@pytest.mark.parametrize(("mn", "a", "b"), [
    ("div", 5, 0), ("rem", 5, 0), ("divu", 5, 0), ("remu", 5, 0), ("div", M63, NEG1), ("rem", M63, NEG1),
])  # fmt: skip
def test_divide_error_leaves_rd_unchanged(mn, a, b):
    c = run_one(I(mn, rd=3, rs1=1, rs2=2), r1=a, r2=b, r3=0x1234)
    assert c.exit.reason == HOST_GATE
    assert c.event() == (DE, None, CODE)
    assert c.r(3) == 0x1234
    assert c.counters()["instructions"] == 0
    assert c.counters()["exceptions"][DE] == 1


def test_unsigned_division_of_minus_2_63_by_minus_1_is_fine():
    assert run_one(I("divu", rd=3, rs1=1, rs2=2), r1=M63, r2=NEG1).r(3) == 0


@pytest.mark.parametrize(
    ("imm20", "want"), [(0x12345, 0x12345000), (-0x80000, 0xFFFF_FFFF_8000_0000), (-1, U64 & ~0xFFF)]
)
def test_lui_sign_extends_bit_31(imm20, want):
    assert run_one(I("lui", rd=1, imm=imm20)).r(1) == want


def test_writes_to_r0_are_ignored():
    c = run_one(I("addi", rd=0, rs1=0, imm=5))
    assert c.r(0) == 0
    c = Core()
    c.code(I("addi", rd=0, rs1=0, imm=5), I("add", rd=1, rs1=0, rs2=0), I("hlt"))
    c.run()
    assert (c.r(0), c.r(1)) == (0, 0)


def test_host_write_to_r0_is_cleared_at_run():
    c = Core()
    c.cpu.r[0] = 99
    c.code(I("add", rd=1, rs1=0, rs2=0), I("hlt"))
    c.run()
    assert c.r(1) == 0


INVALID_WORDS = {
    "all zero": 0,
    "R with immediate bits": 0x01000001,
    "SH with shamt bit 6": 0x16 << 24 | 0x40,
    "RS with rd bits": 0x3A << 24 | 0x100000,
    "N with bits": 0x41 << 24 | 1,
    "unassigned opcode": 0xFF << 24,
    "opcode 0x10": 0x10 << 24,
    "mtcr cr1": 0x49 << 24 | 1 << 20,
    "mfcr cr5": 0x4A << 24 | 5 << 16,
}


@pytest.mark.parametrize("word", INVALID_WORDS.values(), ids=INVALID_WORDS.keys())
def test_invalid_encodings_raise_ud(word):
    c = run_one(word)
    assert c.event() == (6, None, CODE)
    assert c.counters()["ticks"] == 1
