"""The core's count of retired system-group instructions by mnemonic (docs/architecture.md §13)."""

from __future__ import annotations

from cffi_core.asm import assemble
from cffi_core.exits import ExitReason
from cffi_core.isa.table import SYSTEM_INSTRUCTIONS
from cffi_core.machine import Machine, MiB

# Every system instruction that can retire at CPL 0 on a bare machine, some of them twice, with a
# known count each; the IDT sends int 0x40 to a handler that irets.
_PROGRAM = """
.equ IDT, 0x8000
.equ HANDLER, 0x3000
.equ GATE_P, 1
.equ GATE_INTR, 0 << 1
.equ GATE_DPL3, 3 << 4
.equ GATE_RING0, 0 << 6
_start:
        li      sp, 0x20000
        li      r1, IDT + 16 * 0x40
        li      r2, HANDLER
        sd      r2, [r1]
        li      r2, GATE_P | GATE_INTR | GATE_DPL3 | GATE_RING0
        sd      r2, [r1 + 8]
        li      r1, IDT
        lidt    r1
        cli
        cli
        sti
        pushf
        popf
        mfcr    r2, cr0
        mfcr    r2, cr8
        mtcr    cr8, r0
        rdtsc   r3
        rdcs    r4
        smsw    r5
        sidt    r6
        invlpg  [r0]
        li      r7, 0x10
        rdmsr   r8, r7
        wrmsr   r7, r8
        int     0x40
        out     0x80, r4
        in      r9, 0x80
        hcall   7
        hlt
.org 0x3000
        iret
"""

_EXPECTED = {
    "lidt": 1, "cli": 2, "sti": 1, "pushf": 1, "popf": 1, "mfcr": 2, "mtcr": 1, "rdtsc": 1, "rdcs": 1,
    "smsw": 1, "sidt": 1, "invlpg": 1, "rdmsr": 1, "wrmsr": 1, "int": 1, "iret": 1, "out": 1, "in": 1,
    "hcall": 1, "hlt": 1,
}  # fmt: skip


def _run(source: str, exits: int) -> Machine:
    m = Machine(memory=1 * MiB)
    m.load(assemble(source))
    for _ in range(exits):
        ex = m.run(1_000)
        if ex.reason is ExitReason.IO_IN:
            m.cpu.r[ex.reg] = 0
    return m


def test_each_retired_system_instruction_is_counted_once_by_mnemonic():
    m = _run(_PROGRAM, 4)  # out, in, hcall, hlt
    assert m.cpu.halted
    names = {f"system_{i.mnemonic}": i.mnemonic for i in SYSTEM_INSTRUCTIONS}
    counted = {names[k]: v for k, v in m.counters.items() if k in names}
    assert counted == _EXPECTED
    assert m.counters["port_reads"] == m.counters["system_in"] and m.counters["hcalls"] == m.counters["system_hcall"]


def test_a_system_instruction_that_faults_is_not_counted():
    # mtcr of a reserved CR8 value raises #GP before it retires (no IDT: the machine shuts down).
    m = Machine(memory=1 * MiB)
    m.load(assemble("_start: li r1, 16\nmtcr cr8, r1\n"))
    assert m.run(1_000).reason is ExitReason.SHUTDOWN
    assert m.counters["instructions"] == 1, "only the li retired"
    assert "system_mtcr" not in m.counters and m.counters["cr_writes"] == 0


def test_counts_are_dropped_by_reset():
    m = _run(_PROGRAM, 4)
    assert m.counters["system_cli"] == 2
    m.reset()
    assert not any(k.startswith("system_") for k in m.counters)
