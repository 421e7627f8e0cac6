"""Bad arguments to every public method of Machine, its CPU, Vmcs and Platform raise one
exception at the boundary (TypeError, ValueError, IndexError or the binding's own errors),
whose message names the argument, before anything reaches the core; nothing changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from cffi_core._binding import SnapshotError, VMXError
from cffi_core.asm import assemble
from cffi_core.machine import Machine, MachineSnapshot, TLBConfig
from cffi_core.platform import Platform
from cffi_core.vmx import IntrType, Vmcs, VmcsField, intr_info

MEMORY = 1 << 20


class Rig:
    """A vmx machine with a VMCS, and a second machine with its own."""

    def __init__(self) -> None:
        self.m = Machine("vtx-2009+iommu", memory=MEMORY)
        self.v = self.m.vmcs()
        self.other = Machine("vtx-2009", memory=MEMORY)
        self.other_v = self.other.vmcs()
        self.p = Platform(memory=MEMORY)


def _set(obj: Any, name: str, value: object) -> None:
    setattr(obj, name, value)


def _item(view: Any, i: object, value: object = None) -> None:
    if value is None:
        view[i]
    else:
        view[i] = value


# label -> (call on a Rig, exception type, the name the message must contain)
CASES: dict[str, tuple[Callable[[Rig], object], type[BaseException], str]] = {
    # Machine()
    "Machine(None)": (lambda r: Machine(None), TypeError, "profile"),  # type: ignore[arg-type]
    "Machine(5)": (lambda r: Machine(5), TypeError, "profile"),  # type: ignore[arg-type]
    "Machine(memory='1')": (lambda r: Machine(memory="1"), TypeError, "memory"),  # type: ignore[arg-type]
    "Machine(memory=1.5)": (lambda r: Machine(memory=1.5), TypeError, "memory"),  # type: ignore[arg-type]
    "Machine(memory=-4096)": (lambda r: Machine(memory=-4096), ValueError, "memory"),
    "Machine(tlb='big')": (lambda r: Machine(tlb="big"), TypeError, "tlb"),  # type: ignore[arg-type]
    "TLBConfig(float)": (lambda r: TLBConfig(dtlb_entries=64.0), TypeError, "tlb.dtlb_entries"),  # type: ignore[arg-type]
    "TLBConfig(-1)": (lambda r: TLBConfig(itlb_ways=-1), ValueError, "tlb.itlb_ways"),
    "Machine(shared_memory=1)": (lambda r: Machine(memory=MEMORY, shared_memory=1), TypeError, "shared_memory"),  # type: ignore[arg-type]
    # memory
    "read(0, 4.0)": (lambda r: r.m.read(0, 4.0), TypeError, "size"),  # type: ignore[arg-type]
    "read('0', 4)": (lambda r: r.m.read("0", 4), TypeError, "addr"),  # type: ignore[arg-type]
    "read(-1, 4)": (lambda r: r.m.read(-1, 4), ValueError, "addr"),
    "read(0, -1)": (lambda r: r.m.read(0, -1), ValueError, "size"),
    "read(0, 2**40)": (lambda r: r.m.read(0, 2**40), ValueError, "size"),
    "write(0, 'str')": (lambda r: r.m.write(0, "str"), TypeError, "data"),  # type: ignore[arg-type]
    "write(0, 5)": (lambda r: r.m.write(0, 5), TypeError, "data"),  # type: ignore[arg-type]
    "write(0, None)": (lambda r: r.m.write(0, None), TypeError, "data"),  # type: ignore[arg-type]
    "write(2**64, b'x')": (lambda r: r.m.write(2**64, b"x"), ValueError, "addr"),
    "read_u64(None)": (lambda r: r.m.read_u64(None), TypeError, "addr"),  # type: ignore[arg-type]
    "write_u64(0, 2**64)": (lambda r: r.m.write_u64(0, 2**64), ValueError, "value"),
    "write_u64(0, 1.0)": (lambda r: r.m.write_u64(0, 1.0), TypeError, "value"),  # type: ignore[arg-type]
    "code_written(0, '4')": (lambda r: r.m.code_written(0, "4"), TypeError, "size"),  # type: ignore[arg-type]
    "load(None)": (lambda r: r.m.load(None), TypeError, "image"),  # type: ignore[arg-type]
    "load(bytes)": (lambda r: r.m.load(b"\x7fELF"), TypeError, "image"),  # type: ignore[arg-type]
    # runs
    "run('10')": (lambda r: r.m.run("10"), TypeError, "budget"),  # type: ignore[arg-type]
    "run(10.0)": (lambda r: r.m.run(10.0), TypeError, "budget"),  # type: ignore[arg-type]
    "run(1e30)": (lambda r: r.m.run(1e30), TypeError, "budget"),  # type: ignore[arg-type]
    "run(None)": (lambda r: r.m.run(None), TypeError, "budget"),  # type: ignore[arg-type]
    "run(-1)": (lambda r: r.m.run(-1), ValueError, "budget"),
    "run(2**64)": (lambda r: r.m.run(2**64), ValueError, "budget"),
    "vmrun(None)": (lambda r: r.m.vmrun(None, 10), TypeError, "vmcs"),  # type: ignore[arg-type]
    "vmrun(other's VMCS)": (lambda r: r.m.vmrun(r.other_v, 10), VMXError, "vmcs"),
    "vmrun(v, -1)": (lambda r: r.m.vmrun(r.v, -1), ValueError, "budget"),
    "vmrun(v, '10')": (lambda r: r.m.vmrun(r.v, "10"), TypeError, "budget"),  # type: ignore[arg-type]
    "vmrun(v, 2**64)": (lambda r: r.m.vmrun(r.v, 2**64), ValueError, "budget"),
    # vmx and iommu
    "invvpid(0)": (lambda r: r.m.invvpid(0), ValueError, "vpid"),
    "invvpid('1')": (lambda r: r.m.invvpid("1"), TypeError, "vpid"),  # type: ignore[arg-type]
    "iommu_attach(-1, 0)": (lambda r: r.m.iommu_attach(-1, 0), ValueError, "device"),
    "iommu_attach(0, 'root')": (lambda r: r.m.iommu_attach(0, "root"), TypeError, "root"),  # type: ignore[arg-type]
    "iommu_detach(None)": (lambda r: r.m.iommu_detach(None), TypeError, "device"),  # type: ignore[arg-type]
    "dma_read(0, 0, -1)": (lambda r: r.m.dma_read(0, 0, -1), ValueError, "size"),
    "dma_read(0, '0', 1)": (lambda r: r.m.dma_read(0, "0", 1), TypeError, "addr"),  # type: ignore[arg-type]
    "dma_write(0, 0, 'x')": (lambda r: r.m.dma_write(0, 0, "x"), TypeError, "data"),  # type: ignore[arg-type]
    "dma_write(1.0, 0, b'x')": (lambda r: r.m.dma_write(1.0, 0, b"x"), TypeError, "device"),  # type: ignore[arg-type]
    # time, walks, counters, snapshots
    "advance_clock(-1)": (lambda r: r.m.advance_clock(-1), ValueError, "ticks"),
    "advance_clock(2**64)": (lambda r: r.m.advance_clock(2**64), ValueError, "ticks"),
    "advance_clock past 2**64-1": (lambda r: (r.m.advance_clock(5), r.m.advance_clock(2**64 - 5)), ValueError, "ticks"),
    "advance_clock(1.0)": (lambda r: r.m.advance_clock(1.0), TypeError, "ticks"),  # type: ignore[arg-type]
    "walk('x')": (lambda r: r.m.walk("x"), TypeError, "va"),  # type: ignore[arg-type]
    "walk(2**64)": (lambda r: r.m.walk(2**64), ValueError, "va"),
    "walk(0, 'exec')": (lambda r: r.m.walk(0, "exec"), ValueError, "access"),
    "walk(0, 1)": (lambda r: r.m.walk(0, 1), TypeError, "access"),  # type: ignore[arg-type]
    "walk(0, 'read', 4)": (lambda r: r.m.walk(0, "read", 4), ValueError, "cpl"),
    "walk(0, 'read', 0, 'yes')": (lambda r: r.m.walk(0, "read", 0, "yes"), TypeError, "set_ad"),  # type: ignore[arg-type]
    "retired('guest')": (lambda r: r.m.retired("guest"), TypeError, "guest"),  # type: ignore[arg-type]
    "restore(None)": (lambda r: r.m.restore(None), TypeError, "snap"),  # type: ignore[arg-type]
    "restore(another shape)": (lambda r: r.m.restore(Machine(memory=2 * MEMORY).snapshot()), SnapshotError, "snap"),
    "restore(str data)": (
        lambda r: r.m.restore(MachineSnapshot(r.m.profile.name, MEMORY, "data")),  # type: ignore[arg-type]
        TypeError,
        "snap.data",
    ),
    # the CPU's fields and registers
    "cpu.pc = 'x'": (lambda r: _set(r.m.cpu, "pc", "x"), TypeError, "cpu.pc"),
    "cpu.pc = 2**64": (lambda r: _set(r.m.cpu, "pc", 2**64), ValueError, "cpu.pc"),
    "cpu.cr3 = 1.5": (lambda r: _set(r.m.cpu, "cr3", 1.5), TypeError, "cpu.cr3"),
    "cpu.halted = -1": (lambda r: _set(r.m.cpu, "halted", -1), ValueError, "cpu.halted"),
    "cpu.intr_vector = 2**40": (lambda r: _set(r.m.cpu, "intr_vector", 2**40), ValueError, "cpu.intr_vector"),
    "cpu.intr_vector = None": (lambda r: _set(r.m.cpu, "intr_vector", None), TypeError, "cpu.intr_vector"),
    "cpu.nosuch = 1": (lambda r: _set(r.m.cpu, "nosuch", 1), AttributeError, "nosuch"),
    "cpu.r[1] = 1.5": (lambda r: _item(r.m.cpu.r, 1, 1.5), TypeError, "cpu.r[1]"),
    "cpu.r[2] = 2**64": (lambda r: _item(r.m.cpu.r, 2, 2**64), ValueError, "cpu.r[2]"),
    "cpu.r['1']": (lambda r: _item(r.m.cpu.r, "1"), TypeError, "cpu.r"),
    "cpu.r[16]": (lambda r: _item(r.m.cpu.r, 16), IndexError, "cpu.r"),
    "cpu.r.load(15 values)": (lambda r: r.m.cpu.r.load([0] * 15), ValueError, "cpu.r"),
    "cpu.r.load(..., 2**64)": (lambda r: r.m.cpu.r.load([7] * 15 + [2**64]), ValueError, "cpu.r[15]"),
    "cpu.r.load(..., 1.5)": (lambda r: r.m.cpu.r.load([1.5] + [7] * 15), TypeError, "cpu.r[0]"),
    "cpu.rsp[0] = 'x'": (lambda r: _item(r.m.cpu.rsp, 0, "x"), TypeError, "cpu.rsp[0]"),
    "cpu.rsp[3] = 0": (lambda r: _item(r.m.cpu.rsp, 3, 0), IndexError, "cpu.rsp"),
    # Vmcs
    "Vmcs(None)": (lambda r: Vmcs(None), TypeError, "machine"),  # type: ignore[arg-type]
    "vmcs.read('GUEST_PC')": (lambda r: r.v.read("GUEST_PC"), TypeError, "field"),  # type: ignore[arg-type]
    "vmcs.read(-1)": (lambda r: r.v.read(-1), ValueError, "field"),
    "vmcs.read(2**40)": (lambda r: r.v.read(2**40), ValueError, "field"),
    "vmcs.read(99)": (lambda r: r.v.read(99), VMXError, "field"),
    "vmcs.write(None, 1)": (lambda r: r.v.write(None, 1), TypeError, "field"),  # type: ignore[arg-type]
    "vmcs.write(pc, 1.5)": (lambda r: r.v.write(VmcsField.GUEST_PC, 1.5), TypeError, "value"),  # type: ignore[arg-type]
    "vmcs.write(pc, 2**64)": (lambda r: r.v.write(VmcsField.GUEST_PC, 2**64), ValueError, "value"),
    "vmcs[pc] = 'x'": (lambda r: _item(r.v, VmcsField.GUEST_PC, "x"), TypeError, "value"),
    "copy_from(None)": (lambda r: r.v.copy_from(None), TypeError, "other"),  # type: ignore[arg-type]
    "copy_from(other's VMCS)": (lambda r: r.v.copy_from(r.other_v), VMXError, "other"),
    "vmcs.regs[1] = 'x'": (lambda r: _item(r.v.regs, 1, "x"), TypeError, "vmcs.regs[1]"),
    "vmcs.regs[0] = 1.5": (lambda r: _item(r.v.regs, 0, 1.5), TypeError, "vmcs.regs[0]"),
    "vmcs.regs[20]": (lambda r: _item(r.v.regs, 20), IndexError, "vmcs.regs"),
    "vmcs.regs[None]": (lambda r: _item(r.v.regs, None), TypeError, "vmcs.regs"),
    "intr_info(256, ...)": (lambda r: intr_info(256, IntrType.EXTERNAL), ValueError, "vector"),
    "intr_info(1, 7)": (lambda r: intr_info(1, 7), ValueError, "kind"),  # type: ignore[arg-type]
    "intr_info(1, ..., 'no')": (lambda r: intr_info(1, IntrType.EXTERNAL, "no"), TypeError, "has_error"),  # type: ignore[arg-type]
    # Platform
    "Platform(None)": (lambda r: Platform(None), TypeError, "profile"),  # type: ignore[arg-type]
    "Platform(disk='abc')": (lambda r: Platform(memory=MEMORY, disk="abc"), TypeError, "disk"),  # type: ignore[arg-type]
    "Platform(disk2=5)": (lambda r: Platform(memory=MEMORY, disk2=5), TypeError, "disk2"),  # type: ignore[arg-type]
    "Platform(console_input='x')": (lambda r: Platform(memory=MEMORY, console_input="x"), TypeError, "console_input"),  # type: ignore[arg-type]
    "platform.load(None)": (lambda r: r.p.load(None), TypeError, "image"),  # type: ignore[arg-type]
    "platform.run('10')": (lambda r: r.p.run("10"), TypeError, "budget"),  # type: ignore[arg-type]
    "platform.run(-1)": (lambda r: r.p.run(-1), ValueError, "budget"),
}


def _state(r: Rig) -> tuple:
    return (
        r.m.cpu.state(),
        r.m.clock,
        {k: v for k, v in r.m.counters.items() if k not in ("vmcs_reads", "vmcs_writes")},
        bytes(r.m.memory[:0x2000]),
        list(r.v.regs),
        r.p.machine.clock,
    )


@pytest.mark.parametrize("case", CASES)
def test_a_bad_argument_raises_one_clear_exception_naming_it(case):
    call, kind, name = CASES[case]
    r = Rig()
    before = _state(r)
    with pytest.raises(kind) as info:
        call(r)
    assert type(info.value) is kind, f"{case}: {info.value!r}"
    assert name in str(info.value), f"{case}: {info.value}"
    # one exception: not cffi's, nor one raised while handling it
    assert info.value.__suppress_context__ or info.value.__context__ is None, f"{case}: {info.value.__context__!r}"
    if case != "advance_clock past 2**64-1":  # its first, valid call let five ticks pass
        assert _state(r) == before, f"{case} changed the machine"


def test_good_arguments_of_every_accepted_kind_still_work():
    m = Machine(memory=MEMORY)
    m.write(0x100, bytearray(b"ab"))
    m.write(0x102, memoryview(b"cd"))
    assert m.read(0x100, 4) == b"abcd"
    m.write_u64(0x200, -1)  # a negative word is its two's complement
    assert m.read_u64(0x200) == 2**64 - 1
    m.cpu.r[1] = -2
    m.cpu.pc = -4096
    assert (m.cpu.r[1], m.cpu.pc) == (2**64 - 2, 2**64 - 4096)
    assert m.walk(-4096) == m.walk(2**64 - 4096)
    np = pytest.importorskip("numpy")
    m.load(assemble("_start: jmp _start"))
    assert m.run(np.uint64(5)).reason.name == "BUDGET"
    assert m.clock == 5
    v = Machine("vtx-2006", memory=MEMORY).vmcs()
    v[VmcsField.GUEST_PC] = -8
    v.regs[np.int64(3)] = -1
    assert (v[VmcsField.GUEST_PC], v.regs[3]) == (2**64 - 8, 2**64 - 1)


def test_register_values_and_load_move_every_register_at_once():
    m = Machine("x86-2005", memory=MEMORY)
    m.cpu.r.load(list(range(16)))
    assert m.cpu.r.values() == [0, *range(1, 16)]  # r0 reads 0
    assert [m.cpu.r[i] for i in range(16)] == m.cpu.r.values()
    m.cpu.rsp.load([3, 2**64 - 1, 5])
    assert m.cpu.rsp.values() == [3, 2**64 - 1, 5]
