"""Mutants of the defence against address-space compression: a trap-and-emulate VMM that leaves the guest kernel a way into its reserved range; all keep the name "trap-and-emulate".

A software VMM keeps its IDT page mapped at the top of every guest address space, and on
``x86-2005`` the segment limit (MSR_SEGLIMIT, docs/architecture.md §5.3) is what keeps the guest
kernel, run at real ring 1, out of it (``reference_vmm/trap_emulate/rings.py``). The safety test
``conformance/test_compression.py`` reads the top 1 MiB from the guest kernel and kills these.

``MUTANT`` and ``WITNESS`` are this module's catalog entry (docs/mutants.md §3); ``MUTANTS`` makes
the module a catalog of its own for ``python -m conformance.mutation --catalog
tests.mutants.compression``.
"""

from __future__ import annotations

from conformance.mutation import Mutant
from reference_vmm.trap_emulate import TrapEmulateVMM
from reference_vmm.trap_emulate.monitor import TrapEmulateVM
from reference_vmm.trap_emulate.rings import RingPlan
from tests.mutants.witness import Program, kernel

__all__ = ["MUTANT", "MUTANTS", "WITNESS", "SegmentLimitForgotten"]


class _NoSegmentLimitVM(TrapEmulateVM):
    def __init__(self, monitor, image, config, base, pool) -> None:
        super().__init__(monitor, image, config, base, pool)
        p = self.plan
        # The bug: the ring plan of x86-2005 kept (guest kernel at real ring 1) without its segment
        # limit, so `_enter` never loads MSR_SEGLIMIT/MSR_CSLIMIT below the reserved page (§5.3):
        # paging alone (supervisor, read-only) guards the VMM's IDT, and ring 1 may read it.
        self.plan = RingPlan(p.name, compression=p.compression, seglimit=False)


SegmentLimitForgotten = type(
    "SegmentLimitForgotten",
    (TrapEmulateVMM,),
    {
        "vm_class": _NoSegmentLimitVM,
        "__doc__": "Runs the guest kernel at ring 1 without the segment limit below its IDT page.",
        "__module__": __name__,
    },
)

# The guest kernel maps a frame of its own at the top page (0xffff_ffff_ffff_f000, where the VMM
# keeps its IDT) through tables at 0x60000-0x62fff, and loads its first quadword: r1 = 0x600d
# natively (and under a VMM that emulates the access on the guest's memory), the VMM's IDT
# (gate 0's handler, 0) where the guest kernel can read it.
TOP_PAGE_READ = kernel(
    """
        li      r1, DATA
        li      r2, 0x600d
        sd      r2, [r1]
        li      r1, PML4
        li      r2, 0x60000 | PTE_PWU
        sd      r2, [r1 + 8 * 511]
        li      r1, 0x60000
        li      r2, 0x61000 | PTE_PWU
        sd      r2, [r1 + 8 * 511]
        li      r1, 0x61000
        li      r2, 0x62000 | PTE_PWU
        sd      r2, [r1 + 8 * 511]
        li      r1, 0x62000
        li      r2, DATA | PTE_P | PTE_W
        sd      r2, [r1 + 8 * 511]
        li      r3, -4096
        invlpg  [r3]                   ; §8.1: the new entries are used after an invalidation
        ld      r1, [r3]
""",
    paging=True,
)

MUTANT = Mutant(
    "te-segment-limit-forgotten",
    f"{__name__}:SegmentLimitForgotten",
    "trap-and-emulate",
    "safety",
    ("x86-2005",),
    "runs the guest kernel at ring 1 without the segment limit below its IDT page: the kernel reads the VMM's IDT",
)
WITNESS = Program(TOP_PAGE_READ)
MUTANTS = (MUTANT,)
