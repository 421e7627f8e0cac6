"""trap-and-emulate's expected deviation explains ring aliasing and address-space compression only where they predict the failure."""

from __future__ import annotations

from typing import ClassVar

import pytest

from conformance.api import observe
from conformance.checks import blocks_touching, explained_by_deviation
from conformance.strategies import Block, GuestProgram
from reference_vmm.native import NativeVMM
from reference_vmm.trap_emulate.monitor import TrapEmulateVMM
from reference_vmm.trap_emulate.rings import RESERVED_VA
from tests.mutants.trap_emulate import TscIgnoresGuestWrmsr  # a bug at every ring, aliased or not


def _program(cpl: int, *lines: str, paging: bool = False) -> GuestProgram:
    return GuestProgram(cpl=cpl, paging=paging, flags=0, body=tuple(Block((line,)) for line in lines))


def _differs(vmm, profile: str, program: GuestProgram) -> bool:
    native = observe(NativeVMM, program.image, program.config, profile=profile)
    return not native.equivalent(observe(vmm, program.image, program.config, profile=profile))


class _GreedyTrap(TrapEmulateVMM):
    reserved_range: ClassVar[tuple[int, int]] = (0, 1 << 64)


@pytest.mark.parametrize("profile", ["x86-2005", "x86-64-2005"])
def test_a_ring_1_body_that_behaves_as_the_kernels_is_ring_aliasing(profile):
    # At guest CPL 1 with IOPL 0, `in` is #GP natively; the VMM believes CPL 0 and lets it run.
    body = _program(1, "in r1, 0x42")
    assert _differs(TrapEmulateVMM, profile, body)
    assert explained_by_deviation(TrapEmulateVMM, profile, body, ring_aliasing=True)
    # The same failure without the ring-aliasing explanation is not the sensitive instructions'.
    assert not explained_by_deviation(TrapEmulateVMM, profile, body)


def test_a_bug_at_the_aliased_ring_is_not_explained():
    # wrmsr of the TSC at CPL 1 is #GP natively; aliased, the VMM emulates it as the kernel's, and
    # the reference VMM then reads back what the kernel would.  The mutant forgets the value.
    tsc = ("li r9, 0x10", "li r10, 5", "wrmsr r9, r10", "rdtsc r1")
    body = _program(1, "rdcs r3", *tsc)  # rdcs: a sensitive block to drop
    assert explained_by_deviation(TrapEmulateVMM, "x86-2005", body, ring_aliasing=True)
    assert _differs(TscIgnoresGuestWrmsr, "x86-2005", body)
    assert not explained_by_deviation(TscIgnoresGuestWrmsr, "x86-2005", body, ring_aliasing=True)
    kernel = _program(0, *tsc)
    assert _differs(TscIgnoresGuestWrmsr, "x86-2005", kernel)
    assert not explained_by_deviation(TscIgnoresGuestWrmsr, "x86-2005", kernel, ring_aliasing=True)


def test_reads_of_the_reserved_page_are_explained_only_without_a_segment_limit():
    body = _program(0, "li r4, -8", "ld r1, [r4 + 0]", "addi r2, r0, 7")
    top = (RESERVED_VA, 1 << 64)
    assert blocks_touching(body, "x86-64-2005", *top) == {1}
    # x86-64-2005: ring 1 reads the VMM's IDT page where a bare machine takes #MC.
    assert _differs(TrapEmulateVMM, "x86-64-2005", body)
    assert explained_by_deviation(TrapEmulateVMM, "x86-64-2005", body)
    # x86-2005: the segment limit keeps the guest out, and the run is equivalent.
    assert not _differs(TrapEmulateVMM, "x86-2005", body)
    assert not explained_by_deviation(TrapEmulateVMM, "x86-2005", body)


def test_a_reserved_range_beyond_one_mebibyte_is_refused():
    with pytest.raises(ValueError, match="reserved_range"):
        explained_by_deviation(_GreedyTrap, "x86-64-2005", _program(0, "addi r1, r0, 1"))
