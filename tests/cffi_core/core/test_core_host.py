"""The host interface of the core (§9, §10, §15): exact budgets, exits, self-modifying code
and host writes of code, snapshots, determinism, reset, and refusal of invalid
configurations, impossible CPU state and a stale build."""

from __future__ import annotations

import pytest
from core_rig import (
    BUDGET,
    CODE,
    DATA,
    HANDLER,
    HCALL,
    IF,
    IO_IN,
    IO_OUT,
    MEMORY,
    SEGLIMIT,
    UD,
    USER_STACK,
    Core,
    I,
)  # fmt: skip

from cffi_core import _binding
from cffi_core._binding import ConfigError, RangeError, SnapshotError, StateError, check, ffi, lib


def spin(c: Core) -> None:
    c.code(I("addi", rd=1, rs1=1, imm=1), I("sti"), I("cli"), I("jmp", imm=-12))


@pytest.mark.parametrize("budget", [0, 1, 2, 3, 7, 1000, 12345])
def test_run_executes_exactly_budget_ticks(budget):
    c = Core()
    c.paging(4)
    spin(c)
    assert c.run(budget) == BUDGET
    assert c.counters()["ticks"] == budget == c.counters()["instructions"]
    assert c.r(1) == (budget + 3) // 4


def test_budgets_add_up_across_runs():
    a, b = Core(), Core()
    for c in (a, b):
        spin(c)
    a.run(1001)
    for n in (1, 500, 0, 250, 250):
        b.run(n)
    assert (a.cpu.pc, a.r(1), a.counters()["ticks"]) == (b.cpu.pc, b.r(1), b.counters()["ticks"])


def test_in_exits_and_the_host_fills_the_register():
    c = Core()
    c.code(I("in", rd=4, rs1=1, imm=0xFFFF), I("add", rd=5, rs1=4, rs2=4), I("hlt"))
    c.set_r(r1=0x10001)
    assert c.run() == IO_IN
    assert (c.exit.port, c.exit.reg, c.cpu.pc) == (0x10000 & 0xFFFF, 4, CODE + 4)
    c.cpu.r[c.exit.reg] = 21
    c.run()
    assert c.r(5) == 42
    assert c.counters()["port_reads"] == 1


def test_out_and_hcall_exits():
    c = Core()
    c.code(I("out", rs2=2, rs1=0, imm=0x3F8), I("hcall", imm=0xBEEF), I("hlt"))
    c.set_r(r2=0x41)
    assert c.run() == IO_OUT
    assert (c.exit.port, c.exit.value) == (0x3F8, 0x41)
    assert c.run() == HCALL
    assert (c.exit.number, c.exit.port, c.cpu.pc) == (0xBEEF, 0, CODE + 8)
    assert (c.counters()["port_writes"], c.counters()["hcalls"]) == (1, 1)


def test_rdtsc_reads_the_ticks_before_its_own_plus_the_offset():
    c = Core()
    c.code(I("addi", rd=1, imm=1), I("rdtsc", rd=2), I("ori", rd=3, imm=0x10), I("wrmsr", rs1=3, rs2=0),
           I("rdtsc", rd=4), I("hlt"))  # fmt: skip
    c.run()
    assert (c.r(2), c.r(4)) == (1, 1)  # wrmsr TSC=0 at clock 3; rdtsc at clock 4


# ---- §15: self-modifying code and host writes ----


@pytest.mark.parametrize("paging", [False, True])
def test_store_into_the_current_page_is_seen_by_the_next_instruction(paging):
    c = Core()
    if paging:
        c.paging(4)
    c.set_r(r1=CODE + 8, r2=I("addi", rd=5, imm=42))
    c.code(I("sw", rs2=2, rs1=1), I("addi", rd=6, imm=1), I("ud"), I("hlt"))
    c.run()
    assert (c.r(5), c.r(6)) == (42, 1)
    assert c.counters()["code_invalidations"] == 1


def test_store_into_the_next_instruction_itself():
    c = Core()
    c.set_r(r1=CODE + 4, r2=I("addi", rd=5, imm=7))
    c.code(I("sw", rs2=2, rs1=1), I("ud"), I("hlt"))
    c.run()
    assert c.r(5) == 7 and c.cpu.pc == CODE + 12


def test_store_into_a_decoded_page_elsewhere_changes_what_runs_there():
    c = Core()
    c.gate(0x40, HANDLER)
    c.code(I("addi", rd=5, rs1=5, imm=1), I("iret"), at=HANDLER)
    c.set_r(r1=HANDLER, r2=I("addi", rd=5, rs1=5, imm=100))
    c.code(I("int", imm=0x40), I("sw", rs2=2, rs1=1), I("int", imm=0x40), I("hlt"))
    c.run()
    assert c.r(5) == 101


def test_code_pages_never_take_the_store_fast_path():
    c = Core()
    c.set_r(r1=CODE + 0x800, r2=100)
    c.code(I("sd", rs2=2, rs1=1), I("addi", rd=2, rs1=2, imm=-1), I("bne", rs1=2, rs2=0, imm=-8), I("hlt"))
    c.run()
    assert c.counters()["code_invalidations"] == 100


def test_write_phys_keeps_decoded_code_coherent():
    c = Core()
    c.code(I("addi", rd=1, imm=1), I("hlt"))
    c.run()
    c.code(I("addi", rd=1, imm=2))
    c.cpu.pc, c.cpu.halted = CODE, 0
    c.run()
    assert c.r(1) == 2


def test_code_written_after_a_write_through_the_memory_view():
    c = Core()
    c.code(I("addi", rd=1, imm=1), I("hlt"))
    c.run()
    view = ffi.buffer(lib.p64_memory(c.m), MEMORY)
    view[CODE : CODE + 4] = I("addi", rd=1, imm=3).to_bytes(4, "little")
    check(lib.p64_code_written(c.m, CODE, 4), c.m)
    c.cpu.pc, c.cpu.halted = CODE, 0
    c.run()
    assert c.r(1) == 3
    assert c.counters()["code_invalidations"] == 1


def test_physical_ranges_outside_ram_are_refused():
    c = Core()
    with pytest.raises(RangeError, match="outside RAM"):
        c.write(MEMORY - 4, b"12345678")
    with pytest.raises(RangeError):
        c.read(2**64 - 8, 16)
    with pytest.raises(RangeError):
        check(lib.p64_code_written(c.m, MEMORY, 1), c.m)
    c.write(MEMORY, b"")  # an empty range at the end is fine


# ---- snapshots, determinism, reset ----


def busy_program(c: Core) -> None:
    """Paging, stores, calls and an interrupt handler: something for the counters to count."""
    c.paging(4)
    c.gate(0x40, HANDLER)
    c.code(I("addi", rd=7, rs1=7, imm=1), I("iret"), at=HANDLER)
    c.cpu.flags = IF
    c.set_r(r1=DATA, r2=0x2000)
    c.code(I("sd", rs2=2, rs1=1), I("addi", rd=1, rs1=1, imm=0x48), I("call", imm=0x20), I("int", imm=0x40),
           I("addi", rd=2, rs1=2, imm=-1), I("bne", rs1=2, rs2=0, imm=-20), I("hlt"))  # fmt: skip
    c.code(I("ld", rd=3, rs1=1, imm=-0x48), I("ret"), at=CODE + 0x28)


def state_of(c: Core) -> tuple:
    cpu = c.cpu
    return (tuple(c.r(i) for i in range(16)), cpu.pc, cpu.flags, cpu.cpl, cpu.cr2, cpu.intr_acked, c.counters(),
            lib.p64_clock(c.m), c.read(0, MEMORY))  # fmt: skip


def test_snapshot_and_restore_repeat_runs_exactly():
    c = Core()
    busy_program(c)
    c.run(5000)
    size = lib.p64_snapshot_size(c.m)
    snap = ffi.new("uint8_t[]", size)
    check(lib.p64_snapshot(c.m, snap, size), c.m)
    c.cpu.intr_vector = 0x40
    c.run(3000)
    first = state_of(c)
    check(lib.p64_restore(c.m, snap, size), c.m)
    c.cpu.intr_vector = 0x40
    c.run(3000)
    assert state_of(c) == first


def test_restore_into_a_fresh_machine_of_the_same_shape():
    a = Core()
    busy_program(a)
    a.run(4321)
    size = lib.p64_snapshot_size(a.m)
    snap = ffi.new("uint8_t[]", size)
    check(lib.p64_snapshot(a.m, snap, size), a.m)
    b = Core()
    check(lib.p64_restore(b.m, snap, size), b.m)
    a.run(2000)
    b.run(2000)
    assert state_of(a) == state_of(b)


def test_snapshot_errors():
    a, b = Core(), Core(SEGLIMIT)  # same size, another shape
    size = lib.p64_snapshot_size(a.m)
    snap = ffi.new("uint8_t[]", size)
    with pytest.raises(SnapshotError, match="bytes"):
        check(lib.p64_snapshot(a.m, snap, size - 1), a.m)
    check(lib.p64_snapshot(a.m, snap, size), a.m)
    with pytest.raises(SnapshotError, match="bytes"):
        check(lib.p64_restore(a.m, snap, size - 8), a.m)
    with pytest.raises(SnapshotError, match="shape"):
        check(lib.p64_restore(b.m, snap, size), b.m)
    snap[0] ^= 1  # the magic
    with pytest.raises(SnapshotError, match="shape"):
        check(lib.p64_restore(a.m, snap, size), a.m)


def test_corrupt_snapshots_never_crash_the_core():
    import random

    a = Core()
    busy_program(a)
    a.run(3000)
    size = lib.p64_snapshot_size(a.m)
    good = ffi.new("uint8_t[]", size)
    check(lib.p64_snapshot(a.m, good, size), a.m)
    rng = random.Random(7)
    for _ in range(200):
        snap = bytearray(ffi.buffer(good, size))
        for _ in range(8):
            snap[rng.randrange(64, size - MEMORY)] = rng.randrange(256)
        rc = lib.p64_restore(a.m, bytes(snap), size)
        assert rc in (lib.P64_OK, lib.P64_ERR_SNAPSHOT)
        if rc == lib.P64_OK:
            assert lib.p64_run(a.m, 200) in (lib.P64_OK, lib.P64_ERR_STATE)


def test_two_machines_count_the_same():
    a, b = Core(), Core()
    for c in (a, b):
        busy_program(c)
        c.run(2000)
        c.cpu.intr_vector = 0x40
        c.run(5000)
    assert state_of(a) == state_of(b)


def test_reset_restores_reset_values_and_keeps_memory():
    c = Core()
    busy_program(c)
    c.run(1000)
    check(lib.p64_reset(c.m), c.m)
    cpu = c.cpu
    assert (cpu.pc, cpu.cr0, cpu.cr4, cpu.seglimit, cpu.intr_vector, cpu.intr_acked, cpu.cpl) == (
        0,
        1,
        2,
        2**64 - 1,
        -1,
        -1,
        0,
    )
    assert c.counters()["ticks"] == 0 and lib.p64_clock(c.m) == 0
    assert c.read(CODE, 4) == I("sd", rs2=2, rs1=1).to_bytes(4, "little")


# ---- refusals ----


def make(mem=MEMORY, features=0, dtlb=(64, 4), itlb=(32, 4)):
    return Core(features, mem, dtlb, itlb)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"mem": 4096 * 15}, "mem_size"), ({"mem": MEMORY + 1}, "mem_size"), ({"mem": (4 << 30) + 4096}, "mem_size"),
    ({"features": 8}, "features"), ({"features": 1 << 20}, "features"), ({"dtlb": (48, 4)}, "dtlb_entries"),
    ({"dtlb": (2, 2)}, "dtlb_entries"), ({"dtlb": (8192, 4)}, "dtlb_entries"), ({"dtlb": (64, 3)}, "dtlb_ways"),
    ({"itlb": (4, 8)}, "itlb_ways"), ({"itlb": (32, 0)}, "itlb_ways"),
])  # fmt: skip
def test_invalid_configs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"config.{field}"):
        make(**kwargs)


def test_create_with_valid_extremes():
    make(mem=64 * 1024, dtlb=(4, 1), itlb=(4096, 4096))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("cpl", 7, "cpu.cpl = 7: must be 0..3"), ("flags", 1, "cpu.flags = 0x1"), ("cr0", 0, "CR0.PE"),
    ("cr0", 1 | 1 << 5, "reserved CR0"), ("cr3", 0x1001, "cpu.cr3"), ("cr4", 3, "CR4.PL = 3"),
    ("cr4", 1 << 5, "reserved CR4"), ("cr8", 16, "cpu.cr8"), ("intr_vector", 256, "cpu.intr_vector = 256"),
    ("intr_vector", -2, "intr_vector"), ("intr_acked", 300, "intr_acked"), ("halted", 2, "halted"),
    ("int_shadow", 5, "int_shadow"), ("shutdown", 3, "shutdown"), ("pending_db", 9, "pending_db"),
])  # fmt: skip
def test_impossible_state_is_refused_naming_the_field(field, value, message):
    c = Core()
    c.code(I("hlt"))
    setattr(c.cpu, field, value)
    with pytest.raises(StateError, match=message.replace("(", r"\(")):
        c.run()
    assert c.counters()["ticks"] == 0


def test_host_writes_of_cr3_and_seglimit_take_effect_at_the_next_run():
    c = Core(SEGLIMIT)
    c.cpu.cpl = 3
    c.cpu.r[15] = USER_STACK
    c.set_r(r1=DATA)
    c.code(I("ld", rd=2, rs1=1), I("hlt"))
    c.run()  # hlt at CPL 3: #GP, reported at the host gate
    c.cpu.seglimit = DATA - 0x1000
    c.cpu.pc = CODE
    c.run()
    assert c.event() == (13, 0, CODE)


def test_stale_build_is_refused_with_rebuild_instructions(monkeypatch):
    with pytest.raises(ImportError, match=r"pip install -e \."):
        _binding.check_build(expected_hash="0" * 16)
    with pytest.raises(ImportError, match=r"setup\.py build_ext --inplace"):
        _binding.check_build(expected_abi=_binding.ABI_VERSION + 1)
    monkeypatch.setattr(_binding, "table_hash", lambda: "f" * 16)
    with pytest.raises(ImportError, match="instruction table"):
        _binding.check_build()
    _binding.check_build(expected_hash=ffi.string(lib.p64_isa_hash()).decode())


def test_errors_map_to_exception_classes():
    assert issubclass(StateError, ValueError) and issubclass(ConfigError, _binding.CoreError)
    check(lib.P64_OK, None)
    with pytest.raises(MemoryError):
        check(lib.P64_ERR_NOMEM, None)


def test_ud_constant_is_the_invalid_opcode_vector():
    assert UD == 6
