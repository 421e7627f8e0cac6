"""The p64os kernel: ktest's output on every profile and under the reference VMMs, init, console input, leaks.

ktest (conformance/guest_os/user/ktest.s) checks the system calls from inside; these tests
state its whole console output in advance from what it does: one line per group of checks,
and for each child it kills on purpose the kernel's line ``pid <p>: killed by <vector> at
0x<pc>`` (README, "Kernel interfaces"), whose pid follows from the order of the forks (pids
are handed out 2, 3, ... and ktest runs in process 1) and whose pc is the faulting
instruction's label in the image.
"""

from __future__ import annotations

import re
import shutil
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from cffi_core.asm import assemble_file
from cffi_core.platform import Platform
from cffi_core.profiles import PROFILES, get_profile
from conformance.api import VMConfig, observe
from conformance.guest_os import OS_MEMORY, OS_SOURCE, PACKAGE_DIR, os_disk, os_image

BUDGET = 50_000_000
VEC_DE, VEC_UD, VEC_GP, VEC_PF = 0, 6, 13, 14  # docs/architecture.md §6.1
TIMER_VECTOR = 32  # IRQ 0 with PIC_BASE 32
CONSOLE_VECTOR = 36  # IRQ 4

# The fault children of ktest in fork order: the label of the faulting instruction and the
# vector it raises (architecture.md §6.1: a fault's pushed pc is the instruction itself).
FAULTS = [
    ("kt_f_ud", VEC_UD),  # ud
    ("kt_f_div_at", VEC_DE),  # div by r0
    ("kt_f_hole_at", VEC_PF),  # between the heap and the stack
    ("kt_f_kernel_at", VEC_PF),  # a supervisor page from user mode
    ("kt_f_text_at", VEC_PF),  # a store to the read-only user text
    ("kt_f_cli", VEC_GP),  # cli with IOPL 0
    ("kt_f_int", VEC_GP),  # int through a DPL 0 gate (§6.3 step 3: pc = the int)
    ("kt_f_stack", VEC_PF),  # a push below the 1 MiB stack
]
USAGE = b"usage: forkwait|compute|compile|mmu|diskio|ktest|fstest N\n"


def _kill_line(pid: int, vector: int, pc: int) -> str:
    return f"pid {pid}: killed by {vector} at {pc:#x}"


def expected_ktest(n: int, symbols: dict[str, int]) -> bytes:
    """ktest's console for size n: n children in the fork test, then one child each for
    copy-on-write, mprotect (killed by its store) and every fault, two spinners, and a
    child whose own child is orphaned; only the killed ones add kernel lines."""
    lines = ["ktest: start", "syscalls: ok", "write: ok", "read: ok", "brk: ok", "fork: ok", "cow: ok"]
    pid = 1 + n + 1  # init, the fork test's children, the copy-on-write child
    pid += 1
    lines += [_kill_line(pid, VEC_PF, symbols["kt_mp_store"]), "mprotect: ok"]
    for label, vector in FAULTS:
        pid += 1
        lines.append(_kill_line(pid, vector, symbols[label]))
    lines += ["faults: ok", "preempt: ok", "files: ok", "orphans: ok", "ktest: ok"]
    return "".join(line + "\n" for line in lines).encode()


def _platform(profile: str, console_input: bytes) -> Platform:
    """A bare machine with p64os loaded and ktest's disk (an empty file system)."""
    p = Platform(profile, OS_MEMORY, console_input=console_input, disk=os_disk("ktest"))
    p.load(os_image())
    return p


def _nfree(p: Platform) -> int:
    """The kernel allocator's count of free frames (kernel/kalloc.s: kmem_nfree)."""
    return p.machine.read_u64(os_image().symbols["kmem_nfree"])


def test_image_is_reproducible_and_laid_out() -> None:
    a, b = assemble_file(OS_SOURCE), assemble_file(OS_SOURCE)
    assert [(s.address, bytes(s.data)) for s in a.segments] == [(s.address, bytes(s.data)) for s in b.segments]
    assert a.entry == b.entry == a.symbols["boot"]
    sym = a.symbols
    # The kernel image stays below the tables boot.s places at KERNEL_LIMIT, the user text
    # inside the 2 MiB the kernel maps for it (README, memory map).
    assert sym["kernel_end"] <= sym["KERNEL_LIMIT"] == 0x80000
    assert sym["USER_TEXT"] == 0x200000 <= sym["init_start"] < sym["user_end"] <= sym["USER_TEXT_END"] == 0x400000
    assert (sym["USER_BASE"], sym["USER_STACK_TOP"], sym["OS_MEMORY"]) == (0x80_0000_0000, 0x80_4000_0000, OS_MEMORY)
    assert sym["TF_SIZE"] % 16 == 0  # trap frames keep the kernel stack 16-byte aligned
    names = ["exit", "write", "read", "fork", "wait", "getpid", "yield", "brk", "mprotect", "open", "close", "lseek"]
    assert [sym[f"SYS_{name.upper()}"] for name in names] == list(range(1, 13))  # README, "System calls"


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_ktest_native(profile: str) -> None:
    r = _platform(profile, b"ktest 3\n").run(BUDGET)
    assert r.stop == "exit", r.console[-400:]
    assert r.console == expected_ktest(3, dict(os_image().symbols))
    assert r.exit_code == 0
    # The spinners were preempted: the timer interrupted user mode many times.
    assert r.counters.get(f"interrupt_{TIMER_VECTOR}", 0) > 20


def test_no_frame_leaks() -> None:
    """Each fork, copy-on-write break, demand page and exit gives back every frame it took:
    runs with more children end with the same number of free frames."""
    free = []
    for n in (1, 6):
        p = _platform("x86-64-2005", f"ktest {n}\n".encode())
        assert p.run(BUDGET).exit_code == 0
        free.append(_nfree(p))
    assert free[0] == free[1] > 3000  # of 3072 frames, init keeps a handful


def test_unknown_workload_prints_usage() -> None:
    r = _platform("x86-2005", b"nosuch 5\n").run(BUDGET)
    assert (r.stop, r.exit_code, r.console) == ("exit", 2, USAGE)


def test_console_input_that_comes_later_wakes_init() -> None:
    """init sleeps in read until the console's receive interrupt (IRQ 4) brings the line."""
    p = _platform("x86-64-2005", b"")
    r = p.run(1_000_000)
    assert (r.stop, r.console) == ("budget", b"")
    delivered = r.counters.get(f"interrupt_{CONSOLE_VECTOR}", 0)
    p.devices.console.feed(b"ktest 1\n")
    r = p.run(BUDGET)
    assert (r.stop, r.exit_code) == ("exit", 0)
    assert r.console == expected_ktest(1, dict(os_image().symbols))
    assert r.counters.get(f"interrupt_{CONSOLE_VECTOR}", 0) > delivered


_QUANTUM = re.compile(r"^(\.equ\s+TIMER_QUANTUM\s*,\s*)([^;\n]+)", re.MULTILINE)


def test_ktest_output_does_not_depend_on_the_time_slice(tmp_path: Path) -> None:
    symbols = dict(os_image().symbols)
    ticks = []
    for quantum in (997, 6007):
        tree = tmp_path / f"q{quantum}"
        shutil.copytree(PACKAGE_DIR, tree, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        boot = tree / "kernel" / "boot.s"
        text, count = _QUANTUM.subn(rf"\g<1>{quantum}", boot.read_text())
        assert count == 1
        boot.write_text(text)
        image = assemble_file(tree / OS_SOURCE.name)
        assert {k: image.symbols[k] for k in symbols if k.startswith("kt_")} == {
            k: v for k, v in symbols.items() if k.startswith("kt_")
        }
        p = Platform("x86-64-2005", OS_MEMORY, console_input=b"ktest 2\n", disk=os_disk("ktest"))
        p.load(image)
        r = p.run(BUDGET)
        assert (r.stop, r.exit_code) == ("exit", 0)
        assert r.console == expected_ktest(2, symbols)
        ticks.append(r.counters.get(f"interrupt_{TIMER_VECTOR}", 0))
    assert ticks[0] > ticks[1] > 0  # both slices preempted, at different points


def _vmm_runs() -> list[tuple[str, str]]:
    """One profile per reference VMM: the first, in PROFILES order, that it runs on."""
    runs = []
    for ep in sorted(entry_points(group="popek.vmms"), key=lambda e: e.name):
        if ep.name == "native":
            continue
        cls = ep.load()
        for profile in ("x86-64-2005", "vtx-2006", "vtx-2009"):
            if not cls.requires - get_profile(profile).features:
                runs.append((ep.name, profile))
                break
    return runs


# (Not named ``vmm``: the conformance plugin gives tests with that parameter to the run of
# that VMM alone.)
@pytest.mark.parametrize(("vmm_name", "profile"), _vmm_runs())
def test_ktest_under_reference_vmms(vmm_name: str, profile: str) -> None:
    """The same console and exit code as the native run (Popek & Goldberg's equivalence); a
    paravirtual VMM runs the paravirtual build, held to the native build's console."""
    (cls,) = [ep.load() for ep in entry_points(group="popek.vmms") if ep.name == vmm_name]
    obs = observe(
        cls,
        os_image(paravirt=cls.guest_abi == "paravirt"),
        VMConfig(memory=OS_MEMORY, disk=os_disk("ktest"), console_input=b"ktest 1\n", budget=BUDGET),
        profile=profile,
    )
    assert (obs.stop, obs.exit_code) == ("exit", 0)
    assert obs.console == expected_ktest(1, dict(os_image().symbols))


def test_kernel_fault_panics() -> None:
    """A fault in the kernel is a panic: the trap line, the message and RESULT_EXIT 0xdead.
    The host plants a `ud` (word 0x55000000, docs/generated/instructions.md) at the start of
    the getpid system call, which ktest makes first."""
    p = _platform("x86-2005", b"ktest 1\n")
    pc = os_image().symbols["sys_getpid"]
    p.machine.write(pc, (0x55 << 24).to_bytes(4, "little"))
    r = p.run(BUDGET)
    assert (r.stop, r.exit_code) == ("exit", 0xDEAD)
    m = re.fullmatch(rb"ktest: start\nkernel trap 6 at (0x[0-9a-f]+) cr2 0x[0-9a-f]+\npanic: kernel fault\n", r.console)
    assert m and int(m.group(1), 16) == pc, r.console


# Every privileged instruction (docs/architecture.md §4.3), and `mov` to or from a control
# register, which is mtcr/mfcr.
_PRIVILEGED = {"mtcr", "mfcr", "invlpg", "wrmsr", "rdmsr", "lidt", "cli", "sti", "hlt", "iret", "in", "out"}


def _raw_privileged(path: Path) -> list[str]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = re.sub(r"^\s*[A-Za-z_][\w]*:", "", line.split(";")[0]).strip()
        if not code:
            continue
        word = code.split()[0].lower()
        if word in _PRIVILEGED or (word == "mov" and re.search(r"\bcr\d\b", code.lower())):
            found.append(f"{path.name}:{number}: {line.strip()}")
    return found


def test_kernel_makes_privileged_operations_only_through_arch_s() -> None:
    """include/arch.s holds every privileged instruction of the kernel, so that a
    paravirtual build changes that file alone; the kernel files only use its macros."""
    kernel = [*sorted((PACKAGE_DIR / "kernel").glob("*.s")), OS_SOURCE]
    assert [hit for path in kernel for hit in _raw_privileged(path)] == []
    assert _raw_privileged(PACKAGE_DIR / "include" / "arch.s")  # the check does see them
