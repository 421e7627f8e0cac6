"""The Python Machine wrapper: construction errors, memory access, loading, walks, state."""

from __future__ import annotations

import os

import pytest

from cffi_core._binding import RangeError, StateError
from cffi_core.asm import assemble
from cffi_core.machine import ExitReason, Machine, MiB, TLBConfig
from cffi_core.pagetables import PAGE_2M, PTE_U, PTE_W, PageAllocator, PageTables
from cffi_core.profiles import PROFILES, ProfileError


def test_unknown_profile_is_refused_with_the_known_ones():
    with pytest.raises(ProfileError, match=r"unknown profile 'pentium'.*x86-2005"):
        Machine("pentium")


def test_profiles_add_features_by_name():
    m = Machine("vtx-2009+iommu", memory=1 << 20)
    assert m.profile.features == PROFILES["vtx-2009"].features | {"iommu"}
    with pytest.raises(ProfileError, match=r"unknown features.*'mmx'"):
        Machine("vtx-2006+mmx")
    with pytest.raises(ProfileError, match="unknown profile 'vtx-2010'"):
        Machine("vtx-2010")


@pytest.mark.parametrize("size", [0, 4095, 1000 * 4096 + 1, 8 * 1024**3, -4096])
def test_invalid_memory_size_is_refused(size):
    with pytest.raises(ValueError, match="memory"):
        Machine(memory=size)


def test_invalid_tlb_geometry_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="dtlb"):
        Machine(tlb=TLBConfig(dtlb_entries=48))


def test_physical_access_outside_ram_raises_range_error():
    m = Machine(memory=1 * MiB)
    with pytest.raises(RangeError):
        m.write(1 * MiB - 4, b"12345678")
    with pytest.raises(RangeError):
        m.read(2**64 - 8, 16)


def test_image_that_does_not_fit_is_refused():
    m = Machine(memory=64 * 1024)
    image = assemble(".org 0xfffc\n.quad 1")
    with pytest.raises(ValueError, match="does not fit"):
        m.load(image)


def test_load_sets_pc_to_the_entry_point():
    m = Machine(memory=1 * MiB)
    m.load(assemble(".org 0x2000\nnop\n_start: hlt"))
    assert m.cpu.pc == 0x2004


def test_impossible_cpu_state_names_the_field():
    m = Machine(memory=1 * MiB)
    m.cpu.cpl = 7
    with pytest.raises(StateError, match="cpl"):
        m.run(10)


def test_zero_copy_memory_view_sees_writes():
    m = Machine(memory=1 * MiB)
    m.write(0x100, b"\xaa\xbb")
    assert bytes(m.memory[0x100:0x102]) == b"\xaa\xbb"


def test_walk_reports_every_entry_read():
    m = Machine(memory=4 * MiB)
    pt = PageTables(m.write_u64, PageAllocator(0x300000, 0x400000), levels=4)
    pt.map(0x40000000, 0x200000, PAGE_2M, flags=PTE_W | PTE_U, page=PAGE_2M)
    m.cpu.cr3 = pt.root
    m.cpu.cr0 = 1 | 1 << 15
    w = m.walk(0x40000123, "write", cpl=3)
    assert (w.fault, w.physical, w.page_level, w.memory_references) == (0, 0x200123, 2, 3)
    assert m.walk(0x80000000, "read").fault == 14


def test_run_reports_port_output():
    m = Machine(memory=1 * MiB)
    m.load(assemble("_start: li r1, 42\nout 0x3f8, r1\nhlt"))
    ex = m.run(100)
    assert (ex.reason, ex.port, ex.value) == (ExitReason.IO_OUT, 0x3F8, 42)
    assert m.run(100).reason is ExitReason.HLT


def test_exit_and_event_names_have_the_core_values():
    from cffi_core._binding import lib
    from cffi_core.exits import EventKind, ExitReason

    for r in ExitReason:
        assert r == getattr(lib, f"P64_EXIT_{r.name}")
    for k in EventKind:
        assert k == getattr(lib, f"P64_EVENT_{k.name}")


@pytest.mark.parametrize("shared", [True, False])
def test_shared_memory_is_seen_by_the_parent_of_a_fork_and_private_memory_is_not(shared):
    m = Machine(memory=1 * MiB, shared_memory=shared)
    m.write(0x200, b"before")
    pid = os.fork()
    if pid == 0:  # the child writes RAM and leaves at once, running no pytest machinery
        m.write(0x200, b"after!")
        os._exit(0)
    os.waitpid(pid, 0)
    assert m.read(0x200, 6) == (b"after!" if shared else b"before")
    assert m.shared_memory is shared


def test_shared_memory_must_be_a_bool():
    with pytest.raises(TypeError, match="shared_memory"):
        Machine(memory=1 * MiB, shared_memory=1)
