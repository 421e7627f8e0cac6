"""The guest software of the benchmarks and of the ``os`` conformance category: nanobench and p64os (README.md).

This module builds what a p64os run needs and states what it must show:

- ``os_image()``: the kernel and every user program, assembled from ``os.s`` (one image
  serves every workload: the console line ``name N`` chooses one, README "Boot parameters");
- ``WORKLOADS``: the user programs (Adams & Agesen 2006 §6: forkwait, compute, compile, an
  MMU stress, disk I/O; and the kernel's and the file system's self-tests), each with what it
  stresses, its default size and the disk it needs;
- ``os_disk``, ``os_config``: the disk image and the ``VMConfig`` of one run;
- ``expected_console``, ``expected_files``: the console and the disk's files after the run,
  from the Python models of ``models.py``, computed without the guest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.guest_os import models

if TYPE_CHECKING:
    from cffi_core.image import GuestImage
    from conformance.api import VMConfig

__all__ = [
    "BUDGET_FACTOR",
    "OS_MEMORY",
    "OS_SOURCE",
    "WORKLOADS",
    "Workload",
    "expected_console",
    "expected_exit_code",
    "expected_files",
    "native_ticks",
    "os_config",
    "os_disk",
    "os_image",
]

OS_MEMORY = 16 << 20  # README, memory map: the kernel's tables map exactly this much RAM
PACKAGE_DIR = Path(__file__).resolve().parent
OS_SOURCE = PACKAGE_DIR / "os.s"

# A run's default budget is BUDGET_FACTOR times the native ticks measured for it (plus the
# boot): a VMM under test is charged the guest's own ticks (conformance.api.VMConfig), which
# equal the native ones unless it changes what the guest executes or waits for (timer
# interrupts at other points, an emulated disk's latency), so the factor is headroom, not a
# slowdown.
BUDGET_FACTOR = 4
BOOT_TICKS = 200_000  # the kernel's boot and init's reading of the command line, with room

_Files = tuple[dict[str, bytes], dict[str, int]]


def _no_files(n: int) -> _Files:
    return {}, {}


def _compile_files(n: int) -> _Files:
    objects = {models.object_name(i): b"" for i in range(n)}
    return {**models.compile_sources(n), **objects}, models.compile_capacity(n)


def _diskio_files(n: int) -> _Files:
    return {models.DISKIO_FILE: b""}, {models.DISKIO_FILE: n}


def _fstest_files(n: int) -> _Files:
    # user/fstest.s's disk (its own tests state the output): "fsin" to read, and "fsa", "fsb"
    # with room for n chunks of 300 bytes, full of old bytes so that O_TRUNC shows.
    room = -(-n * 300 // models.SECTOR_SIZE) + 1
    fsin = bytes((7 * i + 3) & 0xFF for i in range(1234))
    blank = room * models.SECTOR_SIZE
    return {"fsin": fsin, "fsa": b"\xee" * blank, "fsb": b"\xdd" * blank}, {"fsa": room, "fsb": room}


@dataclass(frozen=True)
class Workload:
    """One p64os user program: ``<name>_main(r1 = n)`` in ``user/<name>.s``.

    ``files(n)`` gives the disk's files and the capacities (in sectors, ``mkfs.make_fs``) that
    a run of size ``n`` needs; ``model(n)`` the run's expected console output and files, or
    None for a self-test whose own tests check it.  ``ticks(n)`` is an upper estimate of the
    native run's ticks after boot (measured: see ``native_ticks``).
    """

    name: str
    stresses: str
    default_n: int
    ticks: Callable[[int], int]
    files: Callable[[int], _Files] = _no_files
    model: Callable[[int], models.WorkloadResult] | None = None
    max_n: int = 1 << 32
    min_n: int = 1

    def check_n(self, n: int) -> int:
        """``n`` if it is a size this workload takes, else ValueError."""
        if type(n) is not int or not self.min_n <= n <= self.max_n:
            raise ValueError(f"{self.name}: n = {n!r} must be an int from {self.min_n} to {self.max_n}")
        return n


# Object files beside the sources: the directory holds mkfs.MAX_FILES files, and the source
# and object names have three digits.
def _compile_max_n() -> int:
    from conformance.guest_os.mkfs import MAX_FILES

    return min(MAX_FILES // 2, 1000)


# Sizes and tick estimates, measured natively (reference_vmm.native, x86-64-2005): the boot and
# init take 121,000 ticks; forkwait 29,300 ticks an iteration (the paper's 40,000 iterations:
# 1.17e9 ticks, 8.9 s of wall time, so the default is half of that); compute 2.27e8 ticks at
# n = 2^19 (1.4 s; its heap, 16n + 16m^2 bytes = 8.7 MiB, is most of the 12 MiB of free
# frames); compile 93,000 ticks a job; mmu 3.74e8 ticks at n = 2^20 (3.5 s; a fork round
# about 750,000); diskio 13,800 ticks a sector operation (1.9 s at n = 4096).  ``ticks`` is
# each workload's measured cost rounded up by a quarter or more.
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "forkwait",
            "process creation: fork (an address space copied copy-on-write), exit, wait; "
            "page-table writes and CR3 switches",
            default_n=20_000,
            ticks=lambda n: 36_000 * n + 50_000,
            model=models.forkwait_model,
        ),
        Workload(
            "compute",
            "near-native integer code (sort, hash, matrix multiply): few privileged operations",
            default_n=524_288,
            ticks=lambda n: 560 * n + 50_000,
            model=models.compute_model,
        ),
        Workload(
            "compile",
            "many short processes: fork, file reads and writes through the disk driver, exit",
            default_n=min(500, _compile_max_n()),
            ticks=lambda n: 120_000 * n + 50_000,
            files=_compile_files,
            model=models.compile_model,
            max_n=_compile_max_n(),
        ),
        Workload(
            "mmu",
            "the MMU: TLB misses over 2 MiB, mprotect page-table updates, copy-on-write fork",
            default_n=1 << 20,
            ticks=lambda n: 250 * n + 1_000_000 * models.mmu_fork_rounds(n) + 200_000,
            model=models.mmu_model,
        ),
        Workload(
            "diskio",
            "disk I/O: port programming, DMA and completion interrupts, sequential and random",
            default_n=4096,
            ticks=lambda n: 17_000 * n + 50_000,
            files=_diskio_files,
            model=models.diskio_model,
            max_n=(1 << 28) // models.SECTOR_SIZE - 1024,
        ),
        Workload(
            "ktest",
            "the kernel's self-test: system calls, faults, scheduling",
            default_n=1,
            ticks=lambda n: 10_000_000 * n,
        ),
        Workload(
            "fstest",
            "the file system's self-test: open, read, write, lseek, close",
            default_n=1,
            ticks=lambda n: 10_000_000 * n,
            files=_fstest_files,
        ),
    )
}


def _workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(f"no workload {name!r}; the workloads are {', '.join(WORKLOADS)}") from None


ARCH_INCLUDE = '.include "include/arch.s"'
ARCH_PV_INCLUDE = '.include "include/arch_pv.s"'


@functools.cache
def os_image(paravirt: bool = False) -> GuestImage:
    """p64os: the kernel and every user program, assembled from ``os.s`` (cached).

    ``paravirt=True`` builds the paravirtual kernel from the same source (README, "The
    paravirtual build"): ``os.s`` with ``include/arch_pv.s`` in place of ``include/arch.s``,
    for a VMM whose guest ABI is docs/paravirt-abi.md's."""
    from cffi_core.asm import assemble, assemble_file

    if not paravirt:
        return assemble_file(OS_SOURCE)
    text = OS_SOURCE.read_text()
    if text.count(ARCH_INCLUDE) != 1:
        raise RuntimeError(f"os.s must include the arch layer once: {ARCH_INCLUDE}")
    return assemble(text.replace(ARCH_INCLUDE, ARCH_PV_INCLUDE), filename=str(OS_SOURCE))


def os_disk(name: str, n: int | None = None) -> bytes:
    """The disk image a run of workload ``name`` at size ``n`` needs (``mkfs.make_fs``); a
    workload without files gets an empty file system."""
    from conformance.guest_os.mkfs import make_fs

    w = _workload(name)
    files, capacity = w.files(w.check_n(w.default_n if n is None else n))
    return make_fs(files, capacity=capacity)


def native_ticks(name: str, n: int | None = None) -> int:
    """An upper estimate of a native run's ticks, boot included."""
    w = _workload(name)
    return BOOT_TICKS + w.ticks(w.check_n(w.default_n if n is None else n))


def os_config(name: str, n: int | None = None, *, budget: int | None = None) -> VMConfig:
    """The VMConfig of one run: OS_MEMORY of RAM, the workload's disk, the console line
    ``"<name> <n>\\n"`` and a budget of ``BUDGET_FACTOR`` times the native estimate unless
    ``budget`` is given."""
    from conformance.api import VMConfig

    w = _workload(name)
    n = w.check_n(w.default_n if n is None else n)
    return VMConfig(
        memory=OS_MEMORY,
        disk=os_disk(name, n),
        console_input=f"{name} {n}\n".encode(),
        budget=BUDGET_FACTOR * native_ticks(name, n) if budget is None else budget,
    )


def _result(name: str, n: int) -> models.WorkloadResult | None:
    w = _workload(name)
    n = w.check_n(n)
    return None if w.model is None else w.model(n)


def expected_console(name: str, n: int) -> bytes | None:
    """Everything the run prints on the console, from the workload's model (None for a
    self-test, whose own tests check it)."""
    result = _result(name, n)
    return None if result is None else result.console


def expected_exit_code(name: str, n: int) -> int | None:
    """The run's exit code: the workload's status, which init returns and the kernel reports."""
    result = _result(name, n)
    return None if result is None else result.status


def expected_files(name: str, n: int) -> dict[str, bytes] | None:
    """Every file on the disk after the run (``mkfs.read_fs``): the files the workload was
    given, as its model leaves them (None for a self-test)."""
    w = _workload(name)
    result = _result(name, n)
    if result is None:
        return None
    files = dict(w.files(n)[0])
    files.update(result.files or {})
    return files
