"""p64os's workloads run natively: console, exit code and disk files equal the Python models, on every profile.

The models (conformance/guest_os/models.py) compute every checksum in Python, from the same
definitions as the assembly but not from its output.  The runs are native (the oracle,
reference_vmm.native) at small sizes; the default sizes are for benchmarks.  Output must not
depend on where the timer preempts a process: the same workloads assembled with other time
slices (TIMER_QUANTUM) print the same bytes.  The user code is also run without the kernel,
its system calls served in Python, so that a mismatch tells whose bug it is.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from cffi_core.asm import assemble_file
from cffi_core.platform import Platform
from cffi_core.profiles import PROFILES
from conformance.api import observe
from conformance.guest_os import (
    OS_MEMORY,
    OS_SOURCE,
    PACKAGE_DIR,
    WORKLOADS,
    expected_console,
    expected_exit_code,
    expected_files,
    models,
    os_config,
    os_disk,
    os_image,
)
from conformance.guest_os.mkfs import read_fs
from reference_vmm.native import NativeVMM

# Small sizes that still reach every path: J = 2 jobs with waits in between, two fork
# rounds of mmu (n >> 12 = 1), a random phase of diskio that both reads and writes.
SMALL_N = {"forkwait": 20, "compute": 300, "compile": 5, "mmu": 4200, "diskio": 24}
MODELED = [name for name, w in WORKLOADS.items() if w.model is not None]

needs_kernel = pytest.mark.skipif(not OS_SOURCE.exists(), reason="os.s (the p64os kernel) is not in the tree yet")


def test_every_modeled_workload_has_a_small_size() -> None:
    assert sorted(MODELED) == sorted(SMALL_N)
    for name in ("ktest", "fstest"):
        assert name in WORKLOADS and WORKLOADS[name].model is None


@needs_kernel
@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("name", MODELED)
def test_workload_native(name: str, profile: str) -> None:
    n = SMALL_N[name]
    obs = observe(NativeVMM, os_image(), os_config(name, n), profile=profile)
    assert obs.stop == "exit", obs.console[-400:]
    assert obs.console == expected_console(name, n)
    assert obs.exit_code == expected_exit_code(name, n) == 0
    assert read_fs(obs.disk) == expected_files(name, n)


@needs_kernel
def test_image_is_reproducible() -> None:
    a, b = assemble_file(OS_SOURCE), assemble_file(OS_SOURCE)
    assert a.entry == b.entry
    assert [(s.address, bytes(s.data)) for s in a.segments] == [(s.address, bytes(s.data)) for s in b.segments]


# ---- preemption -------------------------------------------------------------------------

_QUANTUM = re.compile(r"^(\.equ\s+TIMER_QUANTUM\s*,\s*)([^;\n]+)", re.MULTILINE)


def _image_with_quantum(tmp: Path, quantum: int):
    """os.s assembled from a copy of the sources whose TIMER_QUANTUM is ``quantum``."""
    tree = tmp / f"guest_os_q{quantum}"
    shutil.copytree(PACKAGE_DIR, tree, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    hits = 0
    for path in tree.rglob("*.s"):
        text = path.read_text()
        new, count = _QUANTUM.subn(lambda m: f"{m.group(1)}{quantum}", text)
        if count:
            path.write_text(new)
            hits += count
    assert hits == 1, f"TIMER_QUANTUM is defined {hits} times in the sources"
    return assemble_file(tree / OS_SOURCE.name)


def _run(image, name: str, n: int):
    cfg = os_config(name, n)
    p = Platform("x86-64-2005", OS_MEMORY, disk=cfg.disk, console_input=cfg.console_input)
    p.load(image)
    return p.run(cfg.budget)


@needs_kernel
@pytest.mark.parametrize("name", ["forkwait", "compile", "mmu"])
def test_output_does_not_depend_on_the_time_slice(name: str, tmp_path: Path) -> None:
    n = SMALL_N[name]
    timer_vector = 32  # PIC_BASE 32 + IRQ 0 (architecture.md §11)
    interrupts = []
    for quantum in (997, 4099):
        r = _run(_image_with_quantum(tmp_path, quantum), name, n)
        assert r.stop == "exit"
        assert r.console == expected_console(name, n)
        assert r.exit_code == 0
        assert read_fs(r.disk) == expected_files(name, n)
        interrupts.append(r.counters.get(f"interrupt_{timer_vector}", 0))
    # Both slices did preempt the run, at different points: the timer fired a different
    # number of times.
    assert 0 < interrupts[1] < interrupts[0], interrupts


# ---- the Python side --------------------------------------------------------------------


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_config(name: str) -> None:
    w = WORKLOADS[name]
    cfg = os_config(name, 3 if name != "compile" else 2)
    assert cfg.memory == OS_MEMORY == 16 << 20
    assert cfg.console_input == f"{name} {3 if name != 'compile' else 2}\n".encode()
    assert cfg.budget > 0
    assert os_config(name).console_input == f"{name} {w.default_n}\n".encode()
    assert os_config(name, 2, budget=123).budget == 123
    files = read_fs(cfg.disk)
    expected = expected_files(name, 3 if name != "compile" else 2)
    if expected is not None:  # the disk holds every file the model ends with, unwritten ones as given
        assert files.keys() == expected.keys()


def test_config_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError, match="no workload"):
        os_config("nosuch", 1)
    with pytest.raises(ValueError, match="n = 0"):
        os_config("diskio", 0)
    with pytest.raises(ValueError):
        os_disk("compile", WORKLOADS["compile"].max_n + 1)


def test_compile_disk_has_room_for_each_object() -> None:
    from conformance.guest_os.mkfs import read_directory

    n = 4
    entries = {e.name: e for e in read_directory(os_disk("compile", n))}
    for i in range(n):
        obj = models.compile_object(models.compile_source(i))
        assert entries[models.object_name(i)].size == 0
        assert entries[models.object_name(i)].capacity * models.SECTOR_SIZE >= len(obj)
        assert entries[models.source_name(i)].size == len(models.compile_source(i))


def test_models_by_hand() -> None:
    # LCG and FNV-1a against their published definitions' first values.
    assert models.lcg_next(0) == models.LCG_C
    assert models.fnv1a(b"") == 0xCBF29CE484222325
    assert models.fnv1a(b"a") == 0xAF63DC4C8601EC8C  # the FNV-1a 64 test vector for "a"
    # compile's object of a tiny source, by hand: tokens "ab", "12", "c"; two lines.
    src = b"ab 12\nc\n"
    words = [0x4A424F50, 3, 2, 1]
    words += [models.fnv1a(t) & 0xFFFFFFFF for t in (b"ab", b"12", b"c")]
    words += [models.fnv1a(src) & 0xFFFFFFFF]
    assert models.compile_object(src) == b"".join(w.to_bytes(4, "little") for w in words)
    # compute's matrix order: the largest m with m^3 <= 16 n.
    assert [models.compute_matrix_size(n) for n in (1, 2, 4, 16, 1000)] == [2, 3, 4, 6, 25]
    # diskio's read-back checksum equals its write checksum; the file holds n sectors.
    r = models.diskio_model(3)
    line = r.console.decode()
    assert re.search(r"write=(\w+) read=\1 ", line)
    assert len(r.files[models.DISKIO_FILE]) == 3 * models.SECTOR_SIZE


# ---- the user code alone, on a Python system-call layer ------------------------------------
#
# The same workload sources, assembled with ulib but without the kernel, run at CPL 3 on a
# bare machine whose every IDT gate is a host gate (architecture.md §6.3 step 4): a system
# call exits to this Python layer, which serves it (a flat file table, a heap mapped in
# advance, fork as a snapshot of the machine with the child run to its exit first).  A
# mismatch here is the workload's own; a mismatch only on p64os is the kernel's.  It also
# runs every child before its parent goes on: a schedule the kernel's timer never makes.

_USER_BASE, _USER_STACK_TOP = 0x8000000000, 0x8040000000  # README, memory map
_TEXT, _HEAP_PA, _HEAP, _STACK_PA, _STACK = 0x200000, 0x400000, 8 << 20, 0xC00000, 1 << 20
_SYSCALL_VEC = 0x80


def _open_flags() -> str:
    text = (PACKAGE_DIR / "kernel" / "file.s").read_text()
    return "\n".join(m.group(0) for m in re.finditer(r"^\.equ\s+O_\w+\s*,\s*\w+", text, re.MULTILINE))


def _user_image(name: str, tmp: Path):
    src = tmp / f"{name}_user.s"
    user = PACKAGE_DIR / "user"
    src.write_text(
        f'.include "{PACKAGE_DIR / "include" / "p64.s"}"\n.include "{PACKAGE_DIR / "include" / "abi.s"}"\n'
        f"{_open_flags()}\n.org {_TEXT}\n"
        f"_start: call {name}_main\n        call u_exit\n"
        f'.include "{user / "ulib.s"}"\n.include "{user / (name + ".s")}"\n'
    )
    return assemble_file(src)


class _UserRun:
    """One workload at CPL 3 with its system calls served here."""

    def __init__(self, image, n: int, files: dict[str, bytes], capacity: dict[str, int]) -> None:
        from cffi_core.machine import Machine
        from cffi_core.pagetables import PTE_U, PTE_W, PageAllocator, PageTables

        m = self.m = Machine("x86-64-2005", OS_MEMORY)
        m.load(image)
        self.pt = PageTables(m.write_u64, PageAllocator(0xD00000, OS_MEMORY), 4)
        self.pt.map(0, 0, 0x200000, PTE_W)  # the IDT, supervisor-only
        self.pt.map(_TEXT, _TEXT, 0x200000, PTE_U)
        self.pt.map(_USER_BASE, _HEAP_PA, _HEAP, PTE_U | PTE_W)
        self.pt.map(_USER_STACK_TOP - _STACK, _STACK_PA, _STACK, PTE_U | PTE_W)
        self._flags = (PTE_U, PTE_W)
        for v in range(256):  # GATE_P, GATE_TYPE 2 (host gate), DPL 3
            m.write_u64(0x1000 + 16 * v + 8, 1 | 2 << 1 | 3 << 4)
        cpu = m.cpu
        cpu.idtr, cpu.cr3, cpu.cr4 = 0x1000, self.pt.root, 2
        cpu.cr0 = 1 | 1 << 4 | 1 << 15  # CR0_PE | CR0_WP | CR0_PG
        cpu.cpl, cpu.r[15], cpu.r[1] = 3, _USER_STACK_TOP, n
        self.console = bytearray()
        self.files = {k: bytearray(v) for k, v in files.items()}
        self.room = {k: capacity.get(k, 0) * models.SECTOR_SIZE or len(v) for k, v in files.items()}
        self.fds: dict[int, list] = {}
        self.brk = _USER_BASE
        self.zombies: list[tuple[int, int]] = []
        self.next_pid = 2

    def _pa(self, va: int, size: int) -> int:
        for base, pa, length in ((_TEXT, _TEXT, 0x200000), (_USER_BASE, _HEAP_PA, _HEAP)):
            if base <= va and va + size <= base + length:
                return va - base + pa
        base = _USER_STACK_TOP - _STACK
        assert base <= va and va + size <= _USER_STACK_TOP, hex(va)
        return va - base + _STACK_PA

    def run(self) -> int:
        from cffi_core.exits import ExitReason

        while True:
            e = self.m.run(10**9)
            assert e.reason == ExitReason.HOST_GATE and e.vector == _SYSCALL_VEC, (e, hex(self.m.cpu.pc))
            status = self._syscall()
            if status is not None:
                return status

    def _syscall(self) -> int | None:
        m, cpu = self.m, self.m.cpu
        num, a1, a2, a3 = cpu.r[7], cpu.r[1], cpu.r[2], cpu.r[3]
        r = 0
        if num == 1:  # exit
            return a1
        if num == 2:  # write
            data = m.read(self._pa(a2, a3), a3)
            if a1 == 1:
                self.console += data
                r = len(data)
            else:
                f = self.fds[a1]
                r = min(len(data), self.room[f[0]] - f[1])
                self.files[f[0]][f[1] : f[1] + r] = data[:r]
                f[1] += r
        elif num == 3:  # read
            f = self.fds[a1]
            data = bytes(self.files[f[0]][f[1] : f[1] + a3])
            m.write(self._pa(a2, len(data)), data)
            f[1] += len(data)
            r = len(data)
        elif num == 4:  # fork: the child runs to its exit on a snapshot, then the parent resumes
            snap, saved = m.snapshot(), (self.brk, {k: list(v) for k, v in self.fds.items()}, self.zombies)
            self.zombies, pid = [], self.next_pid
            self.next_pid += 1
            cpu.r[1] = 0
            status = self.run()
            m.restore(snap)
            self.brk, self.fds, self.zombies = saved
            self.zombies.append((pid, status))
            r = pid
        elif num == 5:  # wait
            if not self.zombies:
                r = -1
            else:
                r, status = self.zombies.pop(0)
                if a1:
                    m.write(self._pa(a1, 8), status.to_bytes(8, "little"))
        elif num == 8:  # brk
            self.brk = a1 or self.brk
            r = self.brk
        elif num == 9:  # mprotect
            user, writable = self._flags
            for va in range(a1, a1 + a2, 4096):
                self.pt.map(va, self._pa(va, 4096), 4096, user | (writable if a3 & 2 else 0))
            m.tlb_flush()
        elif num == 10:  # open
            raw = m.read(self._pa(a1, 16), 16)
            name = raw[: raw.index(0)].decode()
            if name in self.files:
                r = 3 + len(self.fds)
                self.fds[r] = [name, 0]
                if a2 & 0x10:  # O_TRUNC (kernel/file.s)
                    self.files[name].clear()
            else:
                r = -1
        elif num == 11:  # close
            del self.fds[a1]
        elif num == 12:  # lseek
            self.fds[a1][1] = r = a2
        else:
            raise AssertionError(f"system call {num}")
        cpu.r[1] = r & ((1 << 64) - 1)
        return None


@pytest.mark.parametrize("name", MODELED)
def test_user_code_on_a_python_system_call_layer(name: str, tmp_path: Path) -> None:
    n = SMALL_N[name]
    files, capacity = WORKLOADS[name].files(n)
    run = _UserRun(_user_image(name, tmp_path), n, files, capacity)
    assert run.run() == expected_exit_code(name, n)
    assert bytes(run.console) == expected_console(name, n)
    assert {k: bytes(v) for k, v in run.files.items()} == expected_files(name, n)
