"""The native oracle and full emulation give equivalent observations on small guests."""

from __future__ import annotations

from pathlib import Path

import pytest

from cffi_core.asm import assemble, assemble_file
from conformance.api import VMConfig, observe
from reference_vmm.emulate import EmulateVMM
from reference_vmm.native import NativeVMM

GUESTS = Path(__file__).resolve().parents[1] / "guests"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROFILES = ["x86-2005", "classic-1974"]
SMALL = VMConfig(memory=1 << 20, budget=200_000)  # keeps the emulator's runs in milliseconds


def _both(image, config: VMConfig = SMALL, profile: str = "x86-2005"):
    native = observe(NativeVMM, image, config, profile=profile)
    emulated = observe(EmulateVMM, image, config, profile=profile)
    assert native.equivalent(emulated), "\n".join(native.diff(emulated, ("native", "emulate")))
    return native, emulated


@pytest.mark.parametrize("profile", PROFILES)
def test_hello_is_the_same_natively_and_emulated(profile):
    native, _ = _both(assemble_file(EXAMPLES / "hello.s"), profile=profile)
    assert (native.stop, native.exit_code, native.console) == ("exit", 0, b"hello, world\n")


@pytest.mark.parametrize("profile", PROFILES)
def test_paging_kernel_is_the_same_natively_and_emulated(profile):
    native, emulated = _both(assemble_file(EXAMPLES / "paging.s"), profile=profile)
    assert (native.stop, native.exit_code) == ("exit", 0)
    assert b"system call" in native.console
    # Counters are not part of equivalence, but the spec and the core count the same events.
    for key in ("instructions", "insn_host_cpl3", "exception_14", "exception_128", "ticks"):
        assert emulated.counters[key] == native.counters[key], key


TIMER_GUEST = GUESTS / "timer_hlt.s"


def test_timer_interrupt_waking_hlt_is_the_same_emulated():
    native, emulated = _both(assemble_file(TIMER_GUEST))
    assert (native.stop, native.exit_code, len(native.console)) == ("exit", 3, 3)
    assert emulated.counters["interrupt_32"] == 3
    assert emulated.counters["halted_ticks"] == native.counters["halted_ticks"] > 0


DISK_GUEST = GUESTS / "disk_rw.s"


def test_disk_dma_read_and_write_are_the_same_emulated():
    disk = bytes(range(256)) * 4  # two sectors
    config = VMConfig(memory=1 << 20, disk=disk, budget=200_000)
    native, _ = _both(assemble_file(DISK_GUEST), config)
    assert native.exit_code == int.from_bytes(disk[512 + 8 : 512 + 12], "little") + 1
    assert native.disk[:8] == disk[512:520] and native.disk[512:] == disk[512:]


def test_console_input_reaches_the_guest():
    echo = """
    loop:   in r1, 0x3f9            ; CONSOLE_STATUS
            beqz r1, done
            in r2, 0x3f8
            out 0x3f8, r2
            jmp loop
    done:   out 0x500, r0
    """
    native, _ = _both(assemble(echo), VMConfig(memory=1 << 20, console_input=b"abc", budget=10_000))
    assert native.console == b"abc"


@pytest.mark.parametrize(
    ("source", "stop"),
    [("_start: jmp _start", "budget"), ("_start: hlt", "halted"), ("_start: ud", "shutdown")],
)
def test_every_kind_of_stop_is_the_same_emulated(source, stop):
    native, _ = _both(assemble(source), VMConfig(memory=1 << 20, budget=5_000))
    assert (native.stop, native.exit_code) == (stop, None)


@pytest.mark.parametrize("vmm", [NativeVMM, EmulateVMM])
def test_run_in_slices_and_beside_another_vm_changes_nothing(vmm):
    from cffi_core.machine import Machine

    hello = assemble_file(EXAMPLES / "hello.s")
    timer = assemble_file(TIMER_GUEST)
    monitor = vmm(Machine("x86-2005", 4 << 20))
    a = monitor.create_vm(timer, SMALL)
    b = monitor.create_vm(hello, SMALL)
    while not (a.stopped and b.stopped):
        monitor.run(777)  # slices that end mid-period of the timer
    assert a.observation() == observe(vmm, timer, SMALL)
    assert b.observation() == observe(vmm, hello, SMALL)
