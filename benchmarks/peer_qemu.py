"""Peer benchmark: the same six-instruction loop in QEMU TCG and in the popek core, side by side.

The loop is add, xor, store, load, decrement, branch, with 4-level paging on (4 KiB pages): in x86
long mode as a boot sector for ``qemu-system-x86_64``, and in P64 for the core through the Machine
API.  Each system runs the loop at two lengths, interleaved over several rounds; the guest MIPS of
a system is 6 * (difference of iterations) / (difference of median CPU times), so that QEMU's BIOS
and boot, and the core's page decoding and run entry, cancel out.  Without ``qemu-system-x86_64``
and ``nasm`` it says what to install and exits 0.  Not a test: ``python -m benchmarks.peer_qemu``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.workloads import PEER_LOOP_BODY, build
from cffi_core.machine import ExitReason

LOOP_INSTRUCTIONS = 6
QEMU_ITERATIONS = (10_000_000, 400_000_000)
POPEK_ITERATIONS = (1_000_000, 40_000_000)

# Long mode straight from real mode (CR0.PE and CR0.PG together), identity-mapping the first
# 2 MiB with 4 KiB pages through a PML4, a PDPT, a PD and a PT at 0x1000-0x4fff.  The guest
# leaves through QEMU's isa-debug-exit device (exit status 1 when it writes 0).
X86_BOOT_SECTOR = """
bits 16
org 0x7c00
start:  cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7c00
        mov di, 0x1000
        mov cx, 0x2000
        rep stosw
        mov dword [0x1000], 0x2003
        mov dword [0x2000], 0x3003
        mov dword [0x3000], 0x4003
        mov di, 0x4000
        mov eax, 3
        mov cx, 512
.pte:   mov [di], eax
        add eax, 0x1000
        add di, 8
        loop .pte
        mov eax, cr4
        or eax, 1 << 5
        mov cr4, eax
        mov eax, 0x1000
        mov cr3, eax
        mov ecx, 0xc0000080
        rdmsr
        or eax, 1 << 8
        wrmsr
        mov eax, cr0
        or eax, 0x80000001
        mov cr0, eax
        lgdt [gdt_desc]
        jmp 0x08:long_mode

align 8
gdt:    dq 0
        dq 0x00209a0000000000
        dq 0x0000920000000000
gdt_desc:
        dw gdt_desc - gdt - 1
        dd gdt

bits 64
long_mode:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov rbx, 0x9e3779b9
        mov rdi, 0x100000
        mov rsi, ITERATIONS
        xor eax, eax
        xor edx, edx
.loop:  add rax, rbx
        xor rdx, rax
        mov [rdi], rdx
        mov rcx, [rdi]
        dec rsi
        jnz .loop
        xor eax, eax
        out 0xf4, al
        hlt
times 510 - ($ - $$) db 0
        dw 0xaa55
"""

P64_LOOP = (
    """
.org 0x1000
_start: li   r2, 0x9e3779b9
        li   r6, 0x100000
        li   r5, {iterations}
"""
    + PEER_LOOP_BODY
    + "        hlt\n"
)

FLOPPY_BYTES = 1_474_560


def _boot_image(directory: Path, iterations: int) -> Path:
    """A 1.44 MB floppy image whose boot sector runs the x86 loop ``iterations`` times."""
    source = directory / f"loop{iterations}.asm"
    binary = directory / f"loop{iterations}.bin"
    source.write_text(X86_BOOT_SECTOR.replace("ITERATIONS", str(iterations)))
    subprocess.run(["nasm", "-f", "bin", "-o", str(binary), str(source)], check=True)
    image = directory / f"loop{iterations}.img"
    image.write_bytes(binary.read_bytes().ljust(FLOPPY_BYTES, b"\0"))
    return image


def _qemu_seconds(image: Path) -> float:
    """CPU time (user + system) of one QEMU TCG run of the image, boot included."""
    command = [
        "qemu-system-x86_64", "-accel", "tcg", "-nographic", "-display", "none", "-m", "32",
        "-drive", f"file={image},format=raw,if=floppy", "-boot", "a",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-no-reboot", "-monitor", "none", "-serial", "none",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 1:  # isa-debug-exit: (0 << 1) | 1
        raise RuntimeError(f"QEMU did not finish the loop (exit status {process.returncode}): {stderr.strip()}")
    return usage.ru_utime + usage.ru_stime


def _popek_runner(iterations: int) -> Callable[[], float]:
    """A function that runs the P64 loop once from the same snapshot and returns its CPU time."""
    machine = build(P64_LOOP.format(iterations=iterations), paging=True)
    snap = machine.snapshot()
    budget = LOOP_INSTRUCTIONS * iterations + 1000  # the loop, with room for the setup and hlt

    def run() -> float:
        machine.restore(snap)
        start = time.process_time()
        ex = machine.run(budget)
        seconds = time.process_time() - start
        if ex.reason is not ExitReason.HLT:
            raise RuntimeError(f"the P64 loop ended with {ex.reason}, not hlt")
        return seconds

    return run


def _mips(iterations: tuple[int, int], seconds: tuple[list[float], list[float]]) -> float:
    delta = statistics.median(seconds[1]) - statistics.median(seconds[0])
    return LOOP_INSTRUCTIONS * (iterations[1] - iterations[0]) / delta / 1e6


def main(argv: list[str] | None = None) -> int:
    """Time both systems interleaved and print their guest MIPS and the ratio; 0 unless a run failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median of each)")
    parser.add_argument("--qemu-iterations", type=int, nargs=2, default=QEMU_ITERATIONS, metavar=("SHORT", "LONG"))
    parser.add_argument("--popek-iterations", type=int, nargs=2, default=POPEK_ITERATIONS, metavar=("SHORT", "LONG"))
    args = parser.parse_args(argv)
    missing = [tool for tool in ("qemu-system-x86_64", "nasm") if shutil.which(tool) is None]
    if missing:
        print(
            f"peer_qemu: {' and '.join(missing)} not found; install QEMU and NASM to compare with QEMU TCG "
            "(Debian/Ubuntu: apt-get install qemu-system-x86 nasm). Nothing measured."
        )
        return 0
    qemu_n, popek_n = tuple(args.qemu_iterations), tuple(args.popek_iterations)
    qemu_s: tuple[list[float], list[float]] = ([], [])
    popek_s: tuple[list[float], list[float]] = ([], [])
    with tempfile.TemporaryDirectory(prefix="popek-peer-") as tmp:
        images = [_boot_image(Path(tmp), n) for n in qemu_n]
        runners = [_popek_runner(n) for n in popek_n]
        for round_ in range(args.rounds):
            for k in (0, 1):
                qemu_s[k].append(_qemu_seconds(images[k]))
                popek_s[k].append(runners[k]())
            print(
                f"round {round_ + 1}/{args.rounds}: qemu {qemu_s[1][-1]:.2f} s, popek {popek_s[1][-1]:.2f} s",
                file=sys.stderr,
            )
    qemu, popek = _mips(qemu_n, qemu_s), _mips(popek_n, popek_s)
    print(f"loop: add, xor, store, load, decrement, branch; 4-level paging; median of {args.rounds} rounds")
    print(f"QEMU TCG    {qemu:8.0f} guest MIPS  ({LOOP_INSTRUCTIONS * qemu_n[1]:,} instructions in the long run)")
    print(f"popek core  {popek:8.0f} guest MIPS  ({LOOP_INSTRUCTIONS * popek_n[1]:,} instructions in the long run)")
    print(f"ratio popek / QEMU: {popek / qemu:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
