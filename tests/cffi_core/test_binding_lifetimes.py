"""Views over core memory outlive their owner safely: a view kept after its Machine or VMCS is
garbage collected keeps the core alive (no use after free; .ci/sanitize.sh runs this file under
ASan), and the core goes as soon as the last view does."""

from __future__ import annotations

import gc
import weakref

from cffi_core.machine import Machine, MiB
from cffi_core.vmx import VmcsField

MEMORY = 1 * MiB


def _churn() -> list[object]:
    """Allocations the size of a machine and of its parts, so that freed core memory would be
    reused (and overwritten) by now."""
    machines = [Machine("vtx-2006", memory=MEMORY) for _ in range(3)]
    junk: list[object] = list(machines)
    for m in machines:
        m.memory[:] = b"\xff" * MEMORY
        m.cpu.pc = 0xDEAD000
        for _ in range(50):
            v = m.vmcs()
            v.regs[3] = v.regs[15] = 0xDEAD
            junk.append(v)
    junk += [bytearray(b"\xee" * 512) for _ in range(2000)]
    return junk


def _collect() -> list[object]:
    gc.collect()
    return _churn()


def test_memory_view_keeps_working_after_its_machine_is_collected():
    m = Machine(memory=MEMORY)
    m.write(0x100, b"kept")
    whole, part = m.memory, m.memory[0x100:0x200]
    del m
    junk = _collect()
    assert bytes(whole[0x100:0x104]) == b"kept"
    part[4:8] = b"more"
    assert bytes(whole[0x100:0x108]) == b"keptmore"
    whole[MEMORY - 4 :] = b"last"
    assert bytes(whole[MEMORY - 4 :]) == b"last"
    del junk


def test_cpu_and_register_views_keep_working_after_their_machine_is_collected():
    m = Machine(memory=MEMORY)
    m.cpu.pc, m.cpu.r[3], m.cpu.rsp[1] = 0x1234, 7, 0x8000
    cpu, r, rsp = m.cpu, m.cpu.r, m.cpu.rsp
    del m
    junk = _collect()
    assert (cpu.pc, cpu.r[3], r[3], rsp[1]) == (0x1234, 7, 7, 0x8000)
    r[4] = 9
    cpu.flags = 1 << 9
    assert (cpu.r[4], cpu.state()["flags"]) == (9, 1 << 9)
    del junk


def test_a_register_view_alone_keeps_the_core():
    m = Machine(memory=MEMORY)
    m.cpu.r[5] = 55
    r = m.cpu.r
    del m
    junk = _collect()
    assert list(r)[5] == 55
    del junk


def test_vmcs_registers_keep_working_after_the_vmcs_and_machine_are_collected():
    m = Machine("vtx-2006", memory=MEMORY)
    v = m.vmcs()
    v.regs[3] = 7
    regs = v.regs
    del v, m
    junk = _collect()
    assert regs[3] == 7
    regs[15] = 0x4000
    assert list(regs)[15] == 0x4000
    del junk


def test_a_vmcs_keeps_working_after_its_machine_is_dropped():
    m = Machine("vtx-2006", memory=MEMORY)
    v, w = m.vmcs(), m.vmcs()
    v[VmcsField.GUEST_PC] = 0x1000
    del m
    junk = _collect()
    assert v[VmcsField.GUEST_PC] == 0x1000
    w.copy_from(v)
    assert w.read(VmcsField.GUEST_PC) == 0x1000
    del junk


def test_the_core_goes_with_the_last_view_and_not_before():
    m = Machine(memory=MEMORY)
    handle = weakref.ref(m._m)
    mem, cpu = m.memory, m.cpu
    del m
    gc.collect()
    assert handle() is not None
    del mem
    gc.collect()
    assert handle() is not None
    del cpu
    gc.collect()
    assert handle() is None


def test_a_machine_without_views_is_freed_at_once_without_the_cycle_collector():
    # Views refer to the core's handle, never back to the Machine: no reference cycle keeps a
    # machine's RAM until the next collection.
    gc.disable()
    try:
        m = Machine("vtx-2006", memory=MEMORY)
        m.vmcs().regs[1] = 1
        handle = weakref.ref(m._m)
        del m
        assert handle() is None
    finally:
        gc.enable()
