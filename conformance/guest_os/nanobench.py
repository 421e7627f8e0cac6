"""nanobench: the image, run configuration and expected output of the nanobenchmark kernel.

The kernel (``nanobench/nanobench.s``) runs one of Adams & Agesen's (2006) seven
nanobenchmarks, or the empty loop, N times and prints ``nanobench <name> n=<N> check=<value>``.
This module builds its image, the ``VMConfig`` of one run (its command line on the console),
and states the output a correct machine produces: the check value comes from a Python model of
what each benchmark's loop computes, not from a run.

One image serves every benchmark, so an equivalence test runs the same bytes natively and
under a VMM.  The kernel writes ``POST_BEGIN`` to the POST port (docs/devices.md) just before
its measured loop and ``POST_END`` just after it, so a harness that watches port exits can find
the loop among them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.api import VMConfig

if TYPE_CHECKING:
    from cffi_core.image import GuestImage

__all__ = [
    "BOOT_BUDGET",
    "EXIT_OK",
    "EXIT_PANIC",
    "EXIT_USAGE",
    "MAX_N",
    "NANOBENCHMARKS",
    "NANOBENCH_MEMORY",
    "NANOBENCH_SOURCE",
    "POST_BEGIN",
    "POST_END",
    "TICKS_PER_ITERATION",
    "check_value",
    "command_line",
    "expected_output",
    "nanobench_config",
    "nanobench_image",
]

NANOBENCH_SOURCE = Path(__file__).resolve().parent / "nanobench" / "nanobench.s"

NANOBENCHMARKS: tuple[str, ...] = ("syscall", "in", "cr8wr", "callret", "pgfault", "divzero", "ptemod", "empty")
"""The benchmark names: Adams & Agesen's (2006, Figure 4) in their order ("call/ret" spelled
``callret``), then ``empty``, the loop alone, for a harness to subtract."""

NANOBENCH_MEMORY = 1 << 20  # NB_RAM in nanobench.s: the kernel's memory map fits in 1 MiB
POST_BEGIN = 0x01  # written to POST_CODE just before the measured loop
POST_END = 0x02  # and just after it
EXIT_OK = 0
EXIT_USAGE = 2  # a bad command line
EXIT_PANIC = 3  # an exception the kernel did not expect
MAX_N = 10**9 - 1  # the command line's count has at most 9 digits

# The budget of a run: boot (zeroing 24 KiB of tables takes most of its ~11,000 ticks), reading
# the command line and printing the report, plus a generous bound per iteration (the costliest,
# pgfault, takes about 25 ticks natively: the loop, the fault's delivery and its handler).
BOOT_BUDGET = 100_000
TICKS_PER_ITERATION = 200

# nanobench.s's constants that the check values depend on (docs/architecture.md §7.2).
_PTE_P, _PTE_W, _PTE_A, _PTE_D = 1, 1 << 1, 1 << 5, 1 << 6
_BENCH_FRAME = 0x93000
_MASK64 = (1 << 64) - 1


@cache
def nanobench_image() -> GuestImage:
    """The kernel's image, assembled once per process from ``NANOBENCH_SOURCE``."""
    from cffi_core.asm import assemble_file  # loads the compiled core: only when an image is built

    return assemble_file(NANOBENCH_SOURCE)


def _check_args(name: str, n: int) -> None:
    if name not in NANOBENCHMARKS:
        raise ValueError(f"unknown nanobenchmark {name!r} (known: {', '.join(NANOBENCHMARKS)})")
    if type(n) is not int or not 0 <= n <= MAX_N:
        raise ValueError(f"n = {n!r}: must be an int from 0 to {MAX_N}")


def command_line(name: str, n: int) -> bytes:
    """The console input that asks the kernel for ``name`` run ``n`` times: ``b"name n\\n"``."""
    _check_args(name, n)
    return f"{name} {n}\n".encode("ascii")


def nanobench_config(name: str, n: int) -> VMConfig:
    """The ``VMConfig`` of one run of benchmark ``name``, ``n`` iterations: the kernel's memory,
    its command line as console input, and a budget of ``BOOT_BUDGET`` plus
    ``TICKS_PER_ITERATION`` per iteration (guest ticks, the same under any correct VMM)."""
    return VMConfig(
        memory=NANOBENCH_MEMORY,
        console_input=command_line(name, n),
        budget=BOOT_BUDGET + TICKS_PER_ITERATION * n,
    )


def check_value(name: str, n: int) -> int:
    """The check value that ``n`` iterations of ``name`` print, from a model of the loop
    (nanobench/bench.s): what each iteration contributes, summed modulo 2^64 (in closed form,
    so that large ``n`` cost nothing)."""
    _check_args(name, n)
    if name == "syscall":  # ring 3 sums null(i) = i + 1 for i = 0 .. n-1
        value = n * (n + 1) // 2
    elif name == "in":  # each read returns the last POST code written: POST_BEGIN
        value = n * POST_BEGIN
    elif name == "cr8wr":  # iteration i writes i mod 16 (0 + ... + 15 = 120); CR8 read back once
        whole, part = divmod(n, 16)
        value = whole * 120 + part * (part - 1) // 2 + ((n - 1) % 16 if n else 0)
    elif name == "pgfault":  # the k-th fault stores k in the frame; the retried load reads it
        value = n * (n + 1) // 2
    elif name == "ptemod":  # the PTE written back each time, A and D preset
        value = n * (_BENCH_FRAME | _PTE_P | _PTE_W | _PTE_A | _PTE_D)
    else:  # callret: calls counted; divzero: #DE handled; empty: iterations counted
        value = n
    return value & _MASK64


def expected_output(name: str, n: int) -> bytes:
    """The console output of a correct run: ``b"nanobench <name> n=<n> check=<value>\\n"``."""
    return f"nanobench {name} n={n} check={check_value(name, n)}\n".encode("ascii")
