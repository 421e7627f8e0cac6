"""Throughput check of the C core (not a test): guest MIPS on small loops through p64_run with
a large budget.  Run: ``python tests/cffi_core/core/mips_check.py [repeats]``.

ALU loop with paging off; load/store, branchy and call/return loops with 4-level paging on.
Prints the best of ``repeats`` runs per loop and the geomean of the paged loops."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core_rig import CODE, DATA, Core, I

BUDGET = 200_000_000


def alu(c: Core) -> None:
    c.set_r(r2=0x9E3779B9)
    c.code(
        I("add", rd=1, rs1=1, rs2=2), I("xor", rd=3, rs1=3, rs2=1), I("shri", rd=5, rs1=3, imm=7),
        I("sub", rd=6, rs1=6, rs2=5), I("addi", rd=4, rs1=4, imm=1), I("bne", rs1=4, rs2=0, imm=-20),
    )  # fmt: skip


def memloop(c: Core) -> None:
    c.paging(4)
    c.set_r(r2=DATA + 32768)
    c.code(
        I("lui", rd=1, imm=DATA >> 12),                                  # restart
        I("ld", rd=3, rs1=1), I("add", rd=3, rs1=3, rs2=4), I("sd", rs2=3, rs1=1),
        I("addi", rd=4, rs1=4, imm=1), I("addi", rd=1, rs1=1, imm=8),
        I("bltu", rs1=1, rs2=2, imm=-20), I("jmp", imm=-28),
    )  # fmt: skip


def branchy(c: Core) -> None:
    c.paging(4)
    c.set_r(r6=DATA)
    c.code(
        I("andi", rd=3, rs1=1, imm=1), I("beq", rs1=3, rs2=0, imm=12), I("addi", rd=2, rs1=2, imm=3),
        I("jmp", imm=8), I("xori", rd=2, rs1=2, imm=5), I("andi", rd=4, rs1=1, imm=6),
        I("bne", rs1=4, rs2=0, imm=8), I("sd", rs2=2, rs1=6), I("addi", rd=1, rs1=1, imm=1),
        I("bltu", rs1=0, rs2=1, imm=-36),
    )  # fmt: skip


def calls(c: Core) -> None:
    c.paging(4)
    c.cpu.r[15] = DATA + 0x1000
    c.code(
        I("addi", rd=1, rs1=1, imm=1), I("call", imm=0x1000 - 4), I("push", rs1=1), I("pop", rd=2),
        I("jmp", imm=-16),
    )  # fmt: skip
    c.code(I("addi", rd=3, rs1=3, imm=1), I("ret"), at=CODE + 0x1000)


def measure(setup, repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        c = Core()
        setup(c)
        c.run(1000)
        t = time.perf_counter()
        c.run(BUDGET)
        dt = time.perf_counter() - t
        assert c.counters()["ticks"] == BUDGET + 1000
        best = max(best, BUDGET / dt / 1e6)
    return best


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    results = {name: measure(fn, repeats) for name, fn in
               (("alu (paging off)", alu), ("load/store (4-level)", memloop), ("branchy (4-level)", branchy),
                ("call/ret (4-level)", calls))}  # fmt: skip
    for name, mips in results.items():
        print(f"{name:24s} {mips:7.0f} MIPS")
    paged = [v for k, v in results.items() if "4-level" in k]
    print(f"{'geomean (4-level)':24s} {math.exp(sum(map(math.log, paged)) / len(paged)):7.0f} MIPS")


if __name__ == "__main__":
    main()
