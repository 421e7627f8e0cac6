"""Loads and stores (manual §3, §5): widths and extension, natural alignment (#AC),
RAM bounds (#MC), and the physical-memory accessor protocol."""

from __future__ import annotations

import pytest
from spec_rig import CODE, DATA, MEMORY

from cffi_core.isa.encoding import encode
from cffi_core.spec import AC, EXIT_BUDGET, MC, ByteMemory, PhysicalMemory, State, read_bytes, run, write_bytes

U64 = 2**64 - 1


@pytest.mark.parametrize(
    "mnemonic, result",
    [
        ("lb", (U64 << 8 | 0x81) & U64),
        ("lbu", 0x81),
        ("lh", (U64 << 16 | 0x8281) & U64),
        ("lhu", 0x8281),
        ("lw", (U64 << 32 | 0x84838281) & U64),
        ("lwu", 0x84838281),
        ("ld", 0x8887868584838281),
    ],
)
def test_loads_extend_as_the_table_says(rig, mnemonic, result):
    rig.mem.write(DATA, 8, 0x8887868584838281)
    rig.state.r[1] = DATA + 0x10
    rig.code(encode(mnemonic, rd=2, rs1=1, imm=-0x10))
    assert rig.run(1).reason == EXIT_BUDGET
    assert rig.state.r[2] == result


@pytest.mark.parametrize("mnemonic, size", [("sb", 1), ("sh", 2), ("sw", 4), ("sd", 8)])
def test_stores_write_the_low_bytes_of_rs2(rig, mnemonic, size):
    rig.state.r[1], rig.state.r[2] = DATA, 0x1122334455667788
    rig.code(encode(mnemonic, rs2=2, rs1=1, imm=8))
    rig.run(1)
    assert rig.mem.read(DATA + 8, 8) == 0x1122334455667788 & ((1 << (8 * size)) - 1)
    assert rig.state.pc == CODE + 4


@pytest.mark.parametrize(
    "mnemonic, offset",
    [("lh", 1), ("lw", 2), ("ld", 4), ("lhu", 3), ("lwu", 6), ("sh", 1), ("sw", 2), ("sd", 4)],
)
def test_misaligned_data_access_raises_ac_zero(rig, mnemonic, offset):
    rig.state.r[1] = DATA + offset
    rig.code(encode(mnemonic, rd=2, rs1=1) if mnemonic.startswith("l") else encode(mnemonic, rs2=2, rs1=1))
    assert rig.event() == (AC, 0)
    assert rig.state.pc == CODE
    assert rig.state.r[2] == 0


def test_byte_accesses_are_never_misaligned(rig):
    rig.state.r[1] = DATA + 3
    rig.code(encode("sb", rs2=1, rs1=1), encode("lbu", rd=2, rs1=1))
    assert rig.run(2).reason == EXIT_BUDGET
    assert rig.state.r[2] == (DATA + 3) & 0xFF


def test_fetch_at_a_misaligned_pc_raises_ac(rig):
    rig.state.pc = CODE + 2
    assert rig.event() == (AC, 0)
    assert rig.state.pc == CODE + 2


@pytest.mark.parametrize("address", [MEMORY, MEMORY + 8, 1 << 40, U64 - 7])
def test_an_access_beyond_ram_raises_mc(rig, address):
    rig.state.r[1] = address
    rig.code(encode("ld", rd=2, rs1=1))
    assert rig.event() == (MC, None)


def test_the_last_quadword_of_ram_is_fine(rig):
    rig.state.r[1] = MEMORY - 8
    rig.code(encode("sd", rs2=1, rs1=1), encode("ld", rd=2, rs1=1))
    assert rig.run(2).reason == EXIT_BUDGET
    assert rig.state.r[2] == MEMORY - 8


def test_a_fetch_beyond_ram_raises_mc(rig):
    rig.state.pc = MEMORY
    assert rig.event() == (MC, None)


def test_stored_code_is_what_runs_next(rig):
    # Self-modifying code: the store replaces the ud that follows it.
    rig.state.r[1] = encode("addi", rd=3, rs1=0, imm=9)
    rig.code(encode("sw", rs2=1, rs1=0, imm=CODE + 4), encode("ud"))
    assert rig.run(2).reason == EXIT_BUDGET
    assert rig.state.r[3] == 9


class DictMemory:
    """A sparse accessor, as a VMM might give the spec for guest-physical memory."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.bytes: dict[int, int] = {}
        self.calls: list[tuple[str, int, int]] = []

    def read(self, addr: int, size: int) -> int:
        self.calls.append(("read", addr, size))
        return int.from_bytes(bytes(self.bytes.get(addr + i, 0) for i in range(size)), "little")

    def write(self, addr: int, size: int, value: int) -> None:
        self.calls.append(("write", addr, size))
        for i, b in enumerate(value.to_bytes(size, "little")):
            self.bytes[addr + i] = b


def test_any_accessor_can_back_the_spec():
    mem = DictMemory(64 * 1024)
    assert isinstance(mem, PhysicalMemory)
    write_bytes(mem, 0x100, encode("addi", rd=1, rs1=0, imm=0x200).to_bytes(4, "little"))
    write_bytes(mem, 0x104, encode("sd", rs2=1, rs1=1).to_bytes(4, "little"))
    state = State.reset(entry=0x100)
    run(state, mem, 2)
    assert read_bytes(mem, 0x200, 8) == (0x200).to_bytes(8, "little")


def test_accessors_are_never_called_beyond_ram():
    mem = DictMemory(64 * 1024)
    state = State.reset(entry=64 * 1024)  # the fetch itself is beyond RAM
    run(state, mem, 1)
    assert all(addr + size <= mem.size for _, addr, size in mem.calls)


def test_byte_memory_wraps_a_given_bytearray_without_copying():
    data = bytearray(16)
    mem = ByteMemory(data)
    mem.write(8, 8, 0x0102030405060708)
    assert data[8] == 8 and mem.size == 16
    assert mem.read_bytes(8, 2) == b"\x08\x07"
    with pytest.raises(IndexError):
        mem.read_bytes(10, 8)
