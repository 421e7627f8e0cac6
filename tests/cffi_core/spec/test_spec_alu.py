"""ALU instructions (manual §3 and the instruction reference): wrap-around, shifts by the
low 6 bits, signed and unsigned compares, division and #DE, lui's sign, r0."""

from __future__ import annotations

import pytest
from spec_rig import CODE, Rig

from cffi_core.isa.encoding import encode
from cffi_core.spec import DE, EXIT_BUDGET

U64 = 2**64 - 1
MIN64 = 1 << 63


def alu(mnemonic: str, a: int, b: int | None = None, imm: int = 0) -> int:
    """r3 = mnemonic(r1 = a, r2 = b or imm): one instruction on a fresh machine."""
    rig = Rig()
    rig.state.r[1], rig.state.r[2] = a, (b or 0)
    kw = dict(rd=3, rs1=1, rs2=2) if b is not None else dict(rd=3, rs1=1, imm=imm)
    if mnemonic == "lui":
        kw = dict(rd=3, imm=imm)
    rig.code(encode(mnemonic, **kw))
    assert rig.run(1).reason == EXIT_BUDGET
    assert rig.state.pc == CODE + 4
    return rig.state.r[3]


@pytest.mark.parametrize(
    "mnemonic, a, b, result",
    [
        ("add", U64, 2, 1),
        ("sub", 0, 1, U64),
        ("and", 0xF0F0, 0xFF00, 0xF000),
        ("or", 0xF0F0, 0xFF00, 0xFFF0),
        ("xor", 0xF0F0, 0xFF00, 0x0FF0),
        ("shl", 1, 63, MIN64),
        ("shl", 1, 64 + 4, 16),  # the count's low 6 bits
        ("shr", MIN64, 63, 1),
        ("shr", MIN64, 64, MIN64),
        ("sar", MIN64, 63, U64),
        ("sar", 0x40, 0x106, 1),
        ("mul", 1 << 32, 1 << 32, 0),  # the low 64 bits
        ("mul", U64, U64, 1),
        ("slt", U64, 0, 1),  # -1 < 0 signed
        ("sltu", U64, 0, 0),
        ("div", U64 - 6, 2, U64 - 2),  # -7 / 2 = -3, toward zero
        ("div", 7, U64 - 1, U64 - 2),  # 7 / -2 = -3
        ("rem", U64 - 6, 2, U64),  # -7 % 2 = -1, sign of rs1
        ("rem", 7, U64 - 1, 1),  # 7 % -2 = 1
        ("divu", U64, 2, U64 >> 1),
        ("remu", U64, 10, U64 % 10),
        ("div", MIN64, 1, MIN64),
    ],
)
def test_register_register(mnemonic, a, b, result):
    assert alu(mnemonic, a, b) == result


@pytest.mark.parametrize(
    "mnemonic, a, imm, result",
    [
        ("addi", 5, -6, U64),
        ("andi", U64, 0xFFFF, 0xFFFF),  # zero-extended immediate
        ("ori", 0, 0x8000, 0x8000),
        ("xori", U64, 0xFFFF, U64 ^ 0xFFFF),
        ("shli", 3, 62, MIN64 | (1 << 62)),
        ("shri", MIN64, 4, MIN64 >> 4),
        ("sari", MIN64, 4, (U64 << 59) & U64),
        ("slti", U64, 0, 1),
        ("slti", 0, -1, 0),
        ("sltiu", 5, -1, 1),  # sext(-1) is 2^64 - 1 unsigned
        ("sltiu", U64, -1, 0),
    ],
)
def test_register_immediate(mnemonic, a, imm, result):
    assert alu(mnemonic, a, imm=imm) == result


@pytest.mark.parametrize(
    "imm, result",
    [
        (0x12345, 0x12345000),
        (-1, 0xFFFF_FFFF_FFFF_F000),  # imm20 = 0xfffff
        (-(1 << 19), 0xFFFF_FFFF_8000_0000),  # bit 31 set: copied into 63:32
        ((1 << 19) - 1, 0x7FFF_F000),
    ],
)
def test_lui_sign_extends_from_bit_31(imm, result):
    assert alu("lui", 0, imm=imm) == result


@pytest.mark.parametrize(
    "mnemonic, a, b",
    [("div", 1, 0), ("divu", 1, 0), ("rem", 1, 0), ("remu", 1, 0), ("div", MIN64, U64), ("rem", MIN64, U64)],
)
def test_division_faults_leave_the_destination_unchanged(rig, mnemonic, a, b):
    rig.state.r[1], rig.state.r[2], rig.state.r[3] = a, b, 0xDEAD
    rig.code(encode(mnemonic, rd=3, rs1=1, rs2=2))
    assert rig.event() == (DE, None)
    assert rig.state.r[3] == 0xDEAD
    assert rig.state.pc == CODE  # a fault pushes the instruction


def test_unsigned_division_of_min_by_minus_one_is_fine():
    assert alu("divu", MIN64, U64) == 0
    assert alu("remu", MIN64, U64) == MIN64


def test_r0_reads_zero_and_ignores_writes(rig):
    rig.code(encode("addi", rd=0, rs1=0, imm=5), encode("addi", rd=1, rs1=0, imm=7))
    rig.run(2)
    assert rig.state.r[0] == 0
    assert rig.state.r[1] == 7


def test_add_wraps_pc_and_values_at_2_to_the_64(rig):
    rig.state.r[1] = U64
    rig.code(encode("addi", rd=1, rs1=1, imm=1))
    rig.run(1)
    assert rig.state.r[1] == 0
