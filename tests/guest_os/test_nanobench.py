"""Tests of the nanobenchmark kernel: its output on every profile, its loop markers, and the VM exits it costs.

The output a run must print comes from ``expected_output`` (a model of each loop) and, below,
from a second model that simulates the loop step by step; a run's output is never the
reference.  The VM-exit tests measure per iteration as (count at N2 - count at N1) / (N2 - N1),
so that boot and report cancel out, and assert what the design of each reference VMM implies
(Adams & Agesen 2006: shadow paging must see guest page faults and trace PTE writes; nested
paging and the TPR shadow remove those exits; an `in` from a device port always exits).
"""

from __future__ import annotations

from typing import Any

import pytest

from cffi_core.asm import assemble, assemble_file
from cffi_core.platform import Platform
from cffi_core.profiles import available_profiles
from conformance.api import HostedRun, VMConfig, load_vmm, run_alone
from conformance.guest_os.nanobench import (
    BOOT_BUDGET,
    EXIT_OK,
    EXIT_PANIC,
    EXIT_USAGE,
    NANOBENCH_MEMORY,
    NANOBENCH_SOURCE,
    NANOBENCHMARKS,
    POST_BEGIN,
    POST_END,
    check_value,
    command_line,
    expected_output,
    nanobench_config,
    nanobench_image,
)

POST_CODE = 0x80  # docs/devices.md: the POST port
EXIT_IO_INSTRUCTION = "vm_exit_30"  # docs/vmx.md V.4
EXIT_EXCEPTION = "vm_exit_0"
EXIT_INVLPG = "vm_exit_14"
N_SMALL = 13
N1, N2 = 10, 110  # the two counts whose difference gives per-iteration figures


# ---- models -------------------------------------------------------------------------------------


def _simulated_check(name: str, n: int) -> int:
    """The check value by stepping through the loop of nanobench/bench.s, one iteration at a
    time: an independent statement of what ``check_value`` computes in closed form."""
    pte = 0x93000 | 1 | 2 | 1 << 5 | 1 << 6  # BENCH_FRAME | P | W | A | D (bench.s)
    acc, cr8, faults = 0, 0, 0
    for i in range(n):
        if name == "syscall":
            acc += i + 1  # null(i) = i + 1, summed in ring 3
        elif name == "in":
            acc += POST_BEGIN  # the last code written before the loop
        elif name == "cr8wr":
            cr8 = i & 15
            acc += cr8
        elif name == "pgfault":
            faults += 1  # h_pf counts the fault and stores the count in the frame
            acc += faults  # the retried load reads it
        elif name == "ptemod":
            acc += pte
        else:
            acc += 1
    if name == "cr8wr":
        acc += cr8  # read back after the loop
    return acc % (1 << 64)


@pytest.mark.parametrize("name", NANOBENCHMARKS)
def test_check_value_matches_the_loop_model(name: str) -> None:
    for n in (*range(40), 1000, 12345):
        assert check_value(name, n) == _simulated_check(name, n), (name, n)


def test_names_and_command_lines() -> None:
    assert NANOBENCHMARKS == ("syscall", "in", "cr8wr", "callret", "pgfault", "divzero", "ptemod", "empty")
    assert command_line("pgfault", 1000) == b"pgfault 1000\n"
    assert expected_output("syscall", 3) == b"nanobench syscall n=3 check=6\n"
    with pytest.raises(ValueError, match="unknown nanobenchmark"):
        nanobench_config("nop", 1)
    with pytest.raises(ValueError, match="must be an int"):
        nanobench_config("in", -1)
    with pytest.raises(ValueError, match="must be an int"):
        nanobench_config("in", 10**9)
    config = nanobench_config("in", 1000)
    assert config.memory == NANOBENCH_MEMORY and config.console_input == b"in 1000\n"
    assert config.budget > BOOT_BUDGET + 1000 * 25  # room for pgfault's ~25 ticks an iteration


# ---- the image ------------------------------------------------------------------------------------


def test_build_is_reproducible() -> None:
    first, second = assemble_file(NANOBENCH_SOURCE), assemble_file(NANOBENCH_SOURCE)
    assert first.to_elf() == second.to_elf()
    assert nanobench_image() is nanobench_image()  # cached
    assert nanobench_image().to_elf() == first.to_elf()


def test_memory_map() -> None:
    """The image ends below the page tables, the ring 3 code has pages of its own, and the fixed
    regions of nanobench.s fit in NANOBENCH_MEMORY."""
    image = nanobench_image()
    sym = image.symbols
    assert image.start == 0x1000 and image.end <= sym["PML4"]
    assert sym["user_text"] % 4096 == 0 and sym["user_text_end"] % 4096 == 0
    assert sym["user_text"] <= sym["user_syscall"] < sym["user_text_end"]
    assert sym["NB_RAM"] == NANOBENCH_MEMORY
    assert sym["BENCH_FRAME"] + 4096 <= NANOBENCH_MEMORY
    assert (sym["POST_BEGIN"], sym["POST_END"]) == (POST_BEGIN, POST_END)


# ---- native runs ----------------------------------------------------------------------------------


def _native(
    profile: str,
    config: VMConfig,
    trace: list[tuple[str, int, int]] | None = None,
    patch: tuple[int, str] | None = None,
) -> Any:
    platform = Platform(profile, config.memory, console_input=config.console_input)
    platform.load(nanobench_image())
    if patch is not None:  # (address, instruction): one instruction of the kernel replaced
        address, instruction = patch
        platform.machine.write(address, assemble(instruction + "\n").segments[0].data)
    if trace is not None:  # record every port access the guest makes, in order
        read, write = platform.bus.read, platform.bus.write

        def traced_read(port: int) -> int:
            value = read(port)
            trace.append(("in", port, value))
            return value

        def traced_write(port: int, value: int) -> None:
            trace.append(("out", port, value))
            write(port, value)

        platform.bus.read, platform.bus.write = traced_read, traced_write
    return platform.run(config.budget)


@pytest.mark.parametrize("profile", available_profiles())
@pytest.mark.parametrize("name", NANOBENCHMARKS)
def test_native_output(name: str, profile: str) -> None:
    for n in (0, N_SMALL):
        result = _native(profile, nanobench_config(name, n))
        assert (result.stop, result.exit_code) == ("exit", EXIT_OK), result.console
        assert result.console == expected_output(name, n)


@pytest.mark.parametrize("name", NANOBENCHMARKS)
def test_post_codes_bracket_the_loop(name: str) -> None:
    """POST_BEGIN and POST_END are written once each, and between them the guest touches no port
    but the benchmark's own: N reads of POST_CODE for `in`, nothing for the others."""
    n = 7
    trace: list[tuple[str, int, int]] = []
    result = _native("x86-2005", nanobench_config(name, n), trace)
    assert result.console == expected_output(name, n)
    posts = [i for i, (kind, port, _) in enumerate(trace) if kind == "out" and port == POST_CODE]
    assert [trace[i][2] for i in posts] == [POST_BEGIN, POST_END]
    inside = trace[posts[0] + 1 : posts[1]]
    assert inside == ([("in", POST_CODE, POST_BEGIN)] * n if name == "in" else [])


def test_large_count_natively() -> None:
    result = _native("x86-64-2005", nanobench_config("pgfault", 20_000))
    assert result.console == expected_output("pgfault", 20_000)


BAD_LINES = {
    b"nop 10\n": b"nanobench: unknown benchmark 'nop'",
    b"In 10\n": b"nanobench: unknown benchmark 'In'",
    b" in 10\n": b"nanobench: unknown benchmark ''",
    b"in\n": b"nanobench: bad command line",
    b"in 10": b"nanobench: bad command line",  # no newline
    b"": b"nanobench: bad command line",
    b"in \n": b"nanobench: bad count ''",
    b"in 1x\n": b"nanobench: bad count '1x'",
    b"in -1\n": b"nanobench: bad count '-1'",
    b"in 10 \n": b"nanobench: bad count '10 '",
    b"in 1000000000\n": b"nanobench: bad count '1000000000'",
    b"syscall " + b"9" * 80 + b"\n": b"nanobench: bad command line",  # longer than LINE_MAX
}


@pytest.mark.parametrize("line", BAD_LINES, ids=repr)
def test_bad_command_line(line: bytes) -> None:
    result = _native("x86-2005", VMConfig(memory=NANOBENCH_MEMORY, console_input=line, budget=BOOT_BUDGET))
    assert (result.stop, result.exit_code) == ("exit", EXIT_USAGE)
    assert result.console.startswith(BAD_LINES[line]) and result.console.endswith(b"\n")
    assert result.console.count(b"\n") == 1


def test_leading_zeros_are_decimal() -> None:
    result = _native("x86-2005", VMConfig(memory=NANOBENCH_MEMORY, console_input=b"syscall 0012\n", budget=BOOT_BUDGET))
    assert result.console == expected_output("syscall", 12)


@pytest.mark.parametrize(
    ("where", "instruction", "vector"),
    [("de_site", "ud", 6), ("be_loop", "div r2, r2, r0", 0), ("bi_loop", "ld r2, [r0 + 8]", 14)],
)
def test_unexpected_exception_panics(where: str, instruction: str, vector: int) -> None:
    """An exception the kernel did not provoke (a #UD; a #DE outside bench_divzero; a #PF on
    page 0, which is not mapped) is reported with its vector and pc, exit code 3."""
    name = {"de_site": "divzero", "be_loop": "empty", "bi_loop": "in"}[where]
    pc = nanobench_image().symbols[where]
    result = _native("x86-2005", nanobench_config(name, 3), patch=(pc, instruction))
    assert (result.stop, result.exit_code) == ("exit", EXIT_PANIC)
    assert result.console == f"nanobench: unexpected exception {vector} at pc {pc:#018x}\n".encode()


# ---- under the reference VMMs ---------------------------------------------------------------------

# One profile each VMM supports: trap-and-emulate on the classically virtualizable machine (on
# the x86-like ones its deviations are the point of the suite), the hardware VMMs on theirs.
VMM_PROFILES = {
    "emulate": "x86-2005",
    "trap-and-emulate": "classic-1974",
    "hardware": "vtx-2006",
    "hardware-ept": "vtx-2009",
}


def _hosted(vmm: str, name: str, n: int) -> HostedRun:
    return run_alone(load_vmm(vmm), nanobench_image(), nanobench_config(name, n), profile=VMM_PROFILES[vmm])


# (The parameter is not called "vmm": the conformance plugin would take it for the suite's own
# VMM selection.)
@pytest.mark.parametrize("vmm_name", VMM_PROFILES)
@pytest.mark.parametrize("name", NANOBENCHMARKS)
def test_equivalence(vmm_name: str, name: str) -> None:
    """Popek & Goldberg's equivalence: the observation under the VMM is the native one."""
    hosted = _hosted(vmm_name, name, N_SMALL).observation
    native = _native(VMM_PROFILES[vmm_name], nanobench_config(name, N_SMALL))
    assert (hosted.console, hosted.exit_code, hosted.stop) == (native.console, native.exit_code, native.stop)
    assert hosted.console == expected_output(name, N_SMALL)


def _per_iteration(vmm: str, name: str) -> dict[str, float]:
    """VM exits per iteration, in total and by reason, from runs of N1 and N2 iterations.

    Console I/O is an I/O exit under both hardware VMMs: one `out` per byte of the report, and
    two `in`s (CONSOLE_STATUS, CONSOLE_DATA) per byte of the command line.  N2's command line
    and report are longer than N1's (more digits), so those exits are taken out of the I/O
    exits, leaving the loop's own."""
    runs = {n: _hosted(vmm, name, n) for n in (N1, N2)}
    for n, run in runs.items():
        assert run.observation.console == expected_output(name, n)
    extra_io = len(expected_output(name, N2)) - len(expected_output(name, N1))
    extra_io += 2 * (len(command_line(name, N2)) - len(command_line(name, N1)))
    counters = {n: run.host.counters for n, run in runs.items()}
    keys = {k for c in counters.values() for k in c if k.startswith("vm_exit")}
    per = {}
    for key in keys:
        delta = counters[N2].get(key, 0) - counters[N1].get(key, 0)
        if key in ("vm_exits", EXIT_IO_INSTRUCTION):
            delta -= extra_io
        per[key] = delta / (N2 - N1)
    return per


@pytest.fixture(scope="module")
def exits() -> dict[tuple[str, str], dict[str, float]]:
    """Per-iteration VM exits of every benchmark under both hardware VMMs; printed as a table."""
    table = {(vmm, name): _per_iteration(vmm, name) for vmm in ("hardware", "hardware-ept") for name in NANOBENCHMARKS}
    print(f"\nVM exits per iteration (N = {N1} and {N2}):")
    print(f"{'':13}" + "".join(f"{name:>9}" for name in NANOBENCHMARKS))
    for vmm in ("hardware", "hardware-ept"):
        print(f"{vmm:<13}" + "".join(f"{table[vmm, name]['vm_exits']:>9.2f}" for name in NANOBENCHMARKS))
    return table


def test_exits_are_whole_per_iteration(exits: dict[tuple[str, str], dict[str, float]]) -> None:
    """The loop is the same every iteration, so the measure is an integer: the subtraction of
    the report is exact and nothing else differs between the two runs."""
    for key, per in exits.items():
        for reason, value in per.items():
            assert value == int(value), (key, reason, value)


def test_in_exits_under_both(exits: dict[tuple[str, str], dict[str, float]]) -> None:
    """An `in` from an emulated device port is an I/O exit under every VMM (Adams & Agesen 2006:
    "in" costs a full exit even with VT-x)."""
    for vmm in ("hardware", "hardware-ept"):
        assert exits[vmm, "in"][EXIT_IO_INSTRUCTION] >= 1


def test_no_exit_for_pure_cpu_work(exits: dict[tuple[str, str], dict[str, float]]) -> None:
    """Guest mode runs system calls (gate, ring change, iret), calls and returns, and guest
    faults that the VMM does not intercept without a VM exit: syscall and divzero under both,
    callret and the empty loop too."""
    for vmm in ("hardware", "hardware-ept"):
        for name in ("syscall", "callret", "divzero", "empty"):
            assert exits[vmm, name]["vm_exits"] == 0, (vmm, name)


def test_tpr_shadow_removes_cr8_exits(exits: dict[tuple[str, str], dict[str, float]]) -> None:
    """With tpr_shadow (vtx-2009) a CR8 write with no interrupt pending stays in guest mode
    (docs/vmx.md V.3); the first-generation VMM intercepts it."""
    assert exits["hardware-ept", "cr8wr"]["vm_exits"] == 0
    assert exits["hardware", "cr8wr"]["vm_exits"] >= 1


def test_shadow_paging_sees_faults_and_pte_writes(exits: dict[tuple[str, str], dict[str, float]]) -> None:
    """Shadow paging (hardware) must see the guest's page fault and its PTE edits and
    invalidations; nested paging (hardware-ept) leaves the guest's tables to the guest."""
    assert exits["hardware", "pgfault"][EXIT_EXCEPTION] >= 1  # the guest's #PF reaches the VMM
    assert exits["hardware", "pgfault"]["vm_exits"] >= 2  # ... and so does the unmapping
    assert exits["hardware", "ptemod"]["vm_exits"] >= 1
    assert exits["hardware-ept", "pgfault"]["vm_exits"] == 0
    assert exits["hardware-ept", "ptemod"]["vm_exits"] == 0
