"""Native runs on the bare platform: the examples, determinism, stop reasons, interrupts."""

from __future__ import annotations

from pathlib import Path

import pytest

from cffi_core.asm import assemble, assemble_file
from cffi_core.platform import MachineError, Platform

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GUESTS = Path(__file__).resolve().parents[1] / "guests"


def _run(source: str, profile: str = "x86-2005", **kw):
    p = Platform(profile, **kw)
    p.load(assemble(source))
    return p.run(1_000_000)


def test_hello_prints_and_exits_zero():
    p = Platform()
    p.load(assemble_file(EXAMPLES / "hello.s"))
    r = p.run()
    assert (r.stop, r.exit_code, r.console) == ("exit", 0, b"hello, world\n")


@pytest.mark.parametrize("profile", ["x86-2005", "x86-64-2005", "classic-1974"])
def test_paging_example_takes_a_syscall_and_a_page_fault(profile):
    p = Platform(profile)
    p.load(assemble_file(EXAMPLES / "paging.s"))
    r = p.run()
    assert (r.stop, r.exit_code) == ("exit", 0)
    assert b"system call" in r.console
    assert r.counters["exception_14"] == 1
    assert r.counters["exception_128"] == 2
    assert r.counters["insn_host_cpl3"] > 0


def test_two_runs_of_the_same_image_count_the_same():
    image = assemble_file(EXAMPLES / "paging.s")
    results = []
    for _ in range(2):
        p = Platform()
        p.load(image)
        results.append(p.run())
    assert results[0] == results[1]


def test_hlt_with_interrupts_off_stops_as_halted():
    assert _run("_start: hlt").stop == "halted"


def test_budget_stops_a_spinning_guest():
    r = _run("_start: jmp _start")
    assert (r.stop, r.clock) == ("budget", 1_000_000)


def test_triple_fault_shuts_down():
    # No IDT: the #UD cannot be delivered, neither can the #DF.
    assert _run("_start: ud").stop == "shutdown"


def test_host_gate_in_a_native_run_is_a_machine_error():
    src = """
    _start: li r1, 0x8000
            lidt r1
            li r2, 0x8000 + 16 * 6
            li r3, 1 | 2 << 1          ; present host gate
            sd r3, [r2 + 8]
            ud
    """
    with pytest.raises(MachineError, match="host gate"):
        _run(src)


def test_timer_interrupt_wakes_a_halted_cpu():
    p = Platform()
    p.load(assemble_file(GUESTS / "timer_hlt.s"))
    r = p.run(1_000_000)
    assert (r.stop, r.exit_code, len(r.console)) == ("exit", 3, 3)
    assert r.counters["interrupt_32"] == 3
    assert r.counters["halted_ticks"] > 0
    assert 15000 <= r.clock < 16000


def test_disk_dma_reads_and_writes_back():
    disk = bytes(range(256)) * 4  # two sectors
    p = Platform(disk=disk)
    p.load(assemble_file(GUESTS / "disk_rw.s"))
    r = p.run(1_000_000)
    assert (r.stop, r.exit_code) == ("exit", int.from_bytes(disk[512 + 8 : 512 + 12], "little") + 1)
    assert r.disk[:8] == disk[512:520]
    assert "interrupt_46" not in r.counters  # IRQ 14 stays masked: the guest polls


SECOND_DISK_READ = """
; read sector 0 of the second disk to 0x8000 by polling, then exit with the status
        li      r1, 1
        out     0x171, r1
        li      r1, 0x8000
        out     0x172, r1
        li      r1, 1
        out     0x173, r1
wait:   in      r2, 0x173
        li      r3, 1
        beq     r2, r3, wait
        out     0x500, r2
"""


def test_the_second_disk_dmas_as_device_1_and_an_iommu_domain_confines_it():
    from cffi_core.pagetables import EPT_R, EPT_W, PageAllocator, PageTables, ept_pointer

    image = bytes(range(256)) * 2
    p = Platform("vtx-2009+iommu", 1 << 20, disk2=image)
    p.load(assemble(SECOND_DISK_READ))
    r = p.run(100_000)
    assert (r.stop, r.exit_code) == ("exit", 2) and p.machine.read(0x8000, 512) == image
    # Device 1 attached to an empty domain: the same read is refused, device 0 is unaffected.
    q = Platform("vtx-2009+iommu", 1 << 20, disk2=image)
    tables = PageTables(q.machine.write_u64, PageAllocator(0x80000, 0x90000), 4)
    tables.map(0x9000, 0x9000, 0x1000, flags=EPT_R | EPT_W)  # not the buffer's page
    q.machine.iommu_attach(1, ept_pointer(tables.root, 4))
    q.load(assemble(SECOND_DISK_READ))
    r = q.run(100_000)
    assert (r.stop, r.exit_code) == ("exit", 3) and q.machine.read(0x8000, 512) == bytes(512)
    assert [(f.device, f.address) for f in q.machine.iommu_faults()] == [(1, 0x8000)]
    assert r.disk2 == image
