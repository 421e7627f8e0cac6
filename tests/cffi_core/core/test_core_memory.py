"""Loads and stores on the core (§3, §5): sizes and extension, alignment (#AC), memory beyond
RAM (#MC), and the segment limit of the `seglimit` feature (§5.3 step 2)."""

from __future__ import annotations

import pytest
from core_rig import AC, CODE, DATA, GP, MC, MEMORY, SEGLIMIT, U64, Core, I

LOADS = [("lb", 1, True), ("lbu", 1, False), ("lh", 2, True), ("lhu", 2, False), ("lw", 4, True),
         ("lwu", 4, False), ("ld", 8, False)]  # fmt: skip
STORES = [("sb", 1), ("sh", 2), ("sw", 4), ("sd", 8)]


def run_one(*words: int, cpl: int = 0, features: int = 0, **regs: int) -> Core:
    c = Core(features)
    c.cpu.cpl = cpl
    c.set_r(**regs)
    c.code(*words, I("hlt"))
    c.run()
    return c


@pytest.mark.parametrize(("mn", "size", "signed"), LOADS)
def test_load_extends(mn, size, signed):
    c = Core()
    c.write(DATA + 8, bytes([0x80 | i for i in range(8)]))
    c.code(I(mn, rd=1, rs1=2, imm=8), I("hlt"))
    c.set_r(r2=DATA)
    c.run()
    raw = int.from_bytes(bytes([0x80 | i for i in range(size)]), "little")
    want = raw - (1 << (8 * size)) & U64 if signed else raw
    assert c.r(1) == want


@pytest.mark.parametrize(("mn", "size"), STORES)
def test_store_writes_low_bytes_only(mn, size):
    c = Core()
    c.write(DATA, b"\xee" * 16)
    c.code(I(mn, rs2=1, rs1=2, imm=-8), I("hlt"))
    c.set_r(r1=0x1122334455667788, r2=DATA + 8)
    c.run()
    assert c.read(DATA, 16) == (0x1122334455667788).to_bytes(8, "little")[:size] + b"\xee" * (16 - size)


@pytest.mark.parametrize(("mn", "size"), [(m, s) for m, s, _ in LOADS if s > 1] + [(m, s) for m, s in STORES if s > 1])
@pytest.mark.parametrize("offset", [1, 2, 3, 4, 5, 6, 7])
def test_misaligned_access_raises_ac(mn, size, offset):
    word = I(mn, rd=1, rs1=2) if mn.startswith("l") else I(mn, rs2=1, rs1=2)
    c = run_one(word, r1=0x55, r2=DATA + offset)
    if offset % size == 0:
        assert c.cpu.pc == CODE + 8
        return
    assert c.event() == (AC, 0, CODE)
    assert c.r(1) == 0x55 and c.read(DATA, 16) == bytes(16)


@pytest.mark.parametrize("addr", [MEMORY, MEMORY + 8, 1 << 40, U64 - 7])
def test_access_beyond_ram_raises_mc(addr):
    c = run_one(I("ld", rd=1, rs1=2), r2=addr)
    assert c.event() == (MC, None, CODE)
    c = run_one(I("sd", rs2=1, rs1=2), r2=addr)
    assert c.event() == (MC, None, CODE)


def test_last_quadword_of_ram_is_accessible():
    c = run_one(I("sd", rs2=1, rs1=2), I("ld", rd=3, rs1=2), r1=42, r2=MEMORY - 8)
    assert c.r(3) == 42


def test_fetch_beyond_ram_raises_mc_with_pc_at_target():
    c = run_one(I("jr", rs1=1), r1=MEMORY)
    assert c.event() == (MC, None, MEMORY)


def test_fetch_falls_through_the_end_of_ram():
    c = Core()
    c.cpu.pc = MEMORY - 4
    c.code(I("addi", rd=1, imm=1), at=MEMORY - 4)
    c.run()
    assert c.r(1) == 1
    assert c.event() == (MC, None, MEMORY)


# ---- §5.3 step 2: the segment limit ----

LIMIT = 0x44000  # MSR_SEGLIMIT value; limits have 4 KiB granularity: 0x44fff is the last byte


@pytest.mark.parametrize(("cpl", "addr", "ok"), [
    (1, 0x44FF8, True), (1, 0x45000, False), (3, 0x44FFC, True), (3, 0x45000, False), (0, 0x80000, True),
    (2, U64 - 7, False),
])  # fmt: skip
def test_data_beyond_the_limit_raises_gp_at_cpl_1_to_3(cpl, addr, ok):
    c = Core(SEGLIMIT)
    c.cpu.seglimit = LIMIT
    c.cpu.cpl = cpl
    c.set_r(r2=addr)
    c.code(I("lw", rd=1, rs1=2), I("sw", rs2=1, rs1=2), I("ud"))
    c.run()
    assert c.event() == ((6, None, CODE + 8) if ok else (GP, 0, CODE))


def test_without_the_feature_there_is_no_limit():
    c = run_one(I("ld", rd=1, rs1=2), I("ud"), cpl=3, r2=0x80000)
    assert c.event() == (6, None, CODE + 4)


def test_fetch_beyond_the_code_limit_raises_gp_with_pc_at_target():
    c = Core(SEGLIMIT)
    c.cpu.cslimit = LIMIT
    c.cpu.cpl = 3
    c.set_r(r1=0x45000)
    c.code(I("jr", rs1=1))
    c.run()
    assert c.event() == (GP, 0, 0x45000)


def test_the_data_limit_does_not_bound_fetch():
    # MSR_SEGLIMIT bounds data only; fetch beyond it runs (§5.3 step 2): the code at 0x45000 is
    # reached and its load beyond the data limit faults there.
    c = Core(SEGLIMIT)
    c.cpu.seglimit = LIMIT
    c.cpu.cpl = 3
    c.set_r(r1=0x45000, r2=0x45000)
    c.code(I("jr", rs1=1))
    c.code(I("lw", rd=3, rs1=2), at=0x45000)
    c.run()
    assert c.event() == (GP, 0, 0x45000)


def test_the_code_limit_does_not_bound_data():
    c = Core(SEGLIMIT)
    c.cpu.cslimit = CODE
    c.cpu.cpl = 3
    c.set_r(r2=DATA + 0x10000)
    c.code(I("lw", rd=1, rs1=2), I("ud"))
    c.run()
    assert c.event() == (6, None, CODE + 4)


def test_wrmsr_seglimit_takes_effect_for_the_next_access():
    c = Core(SEGLIMIT)
    c.gate(0x80, CODE + 0x100, dpl=3)  # int 0x80 from ring 3 lowers the limit, then returns
    c.code(I("ori", rd=1, imm=0x200), I("wrmsr", rs1=1, rs2=2), I("iret"), at=CODE + 0x100)
    c.set_r(r2=0x40000, r3=0x44000)
    c.cpu.cpl = 3
    c.cpu.r[15] = 0x30000
    c.code(I("ld", rd=4, rs1=3), I("int", imm=0x80), I("ld", rd=4, rs1=3), I("hlt"))
    c.run()
    assert c.event() == (GP, 0, CODE + 8)
    assert c.cpu.seglimit == 0x40000


def test_wrmsr_cslimit_bounds_the_next_fetch():
    c = Core(SEGLIMIT)
    c.gate(0x80, CODE + 0x100, dpl=3)  # int 0x80 from ring 3 lowers the code limit, then returns
    c.code(I("ori", rd=1, imm=0x201), I("wrmsr", rs1=1, rs2=2), I("rdmsr", rd=4, rs1=1), I("iret"), at=CODE + 0x100)
    c.set_r(r2=CODE, r3=CODE + 0x1000)  # CODE's own page stays within the limit; the next does not
    c.cpu.cpl = 3
    c.cpu.r[15] = 0x30000
    c.code(I("int", imm=0x80), I("jr", rs1=3))
    c.run()
    assert c.event() == (GP, 0, CODE + 0x1000)
    assert c.r(4) == CODE == c.cpu.cslimit


def test_cslimit_msr_needs_the_feature():
    c = run_one(I("ori", rd=1, imm=0x201), I("rdmsr", rd=2, rs1=1))
    assert c.event() == (GP, 0, CODE + 4)
    c = run_one(I("ori", rd=1, imm=0x201), I("rdmsr", rd=2, rs1=1), features=SEGLIMIT)
    assert c.r(2) == U64


def test_seglimit_msr_needs_the_feature():
    c = run_one(I("ori", rd=1, imm=0x200), I("rdmsr", rd=2, rs1=1))
    assert c.event() == (GP, 0, CODE + 4)
    c = run_one(I("ori", rd=1, imm=0x200), I("rdmsr", rd=2, rs1=1), features=SEGLIMIT)
    assert c.r(2) == U64
