"""Where a deprivileged guest runs: the ring plans of Fisher-Ogden (2006) §2.3.1 and the VMM's reserved range.

A trap-and-emulate VMM keeps ring 0 for itself and runs the guest kernel (guest CPL 0) at a
less privileged real ring, so that every privileged instruction traps (§2.1).  Which ring
depends on what protects the VMM from the guest kernel (docs/architecture.md §4.1, §5.3):

- ``0/1/3`` with ``seglimit`` (profile ``x86-2005``): guest CPL 0 at real ring 1, guest CPL 3
  at ring 3.  Paging separates ring 1 from ring 3 (U/S), and the segment limit (MSR_SEGLIMIT)
  keeps ring 1 out of the reserved range, as VMware's 32-bit VMM did.
- ``0/3/3`` (ring compression) on the classically virtualizable ``classic-1974``: guest CPL 0
  at real ring 3 too, unprotected from its own user code by U/S, so it gets a shadow address
  space of its own (``Space.KERNEL``) and guest user code another (``Space.USER``).  It is
  sound there because every way out of the guest kernel (``iret`` included) traps at CPL > 0.
- ``0/1/3`` protected by paging alone (``x86-64-2005`` and every other profile without
  ``seglimit`` or ``classic``): ring compression cannot be used there by trap-and-emulate,
  because the guest kernel's ``iret`` to ring 3 executes at ring 3 without trapping and the VMM
  would never learn that it must switch to the user shadow.  So guest CPL 0 runs at ring 1 and
  the reserved range is protected by paging: supervisor-only, read-only (real CR0.WP = 1), not
  executable.  The price is address-space compression made visible: *reads* of the reserved
  page at guest CPL 0-2 (supervisor rings, real ring 1-2) see the VMM's IDT.

**The reserved range** is the top 4 KiB page of the linear address space, ``RESERVED_VA`` =
0xffff_ffff_ffff_f000 (canonical with 2, 3 and 4 paging levels).  The VMM's IDT — 256 host
gates — is mapped there in every shadow address space, and the real IDTR points at it
(address-space compression, §2.3.1).  A guest that touches that page sees its *own* memory
there, as on hardware: each access traps (segment limit, or a supervisor/read-only page) and is
emulated — except for reads at guest CPL 0-2 under the paging-protected ``0/1/3`` plan, which
read the VMM's IDT.  ``sidt`` at CPL 0 on the x86-like profiles returns ``RESERVED_VA`` (the "Red
Pill").
"""

from __future__ import annotations

from dataclasses import dataclass

from reference_vmm.shadow import Space

__all__ = [
    "RESERVED_VA",
    "RING_1_PAGING",
    "RING_1_SEGLIMIT",
    "RING_COMPRESSION",
    "SEGLIMIT_BELOW_RESERVED",
    "RingPlan",
    "ring_plan",
]

RESERVED_VA = 0xFFFF_FFFF_FFFF_F000
SEGLIMIT_BELOW_RESERVED = RESERVED_VA - 1
"""MSR_SEGLIMIT and MSR_CSLIMIT that stop ring 1-3 just below the reserved page (limits are 4 KiB
granular, §5.3)."""


@dataclass(frozen=True)
class RingPlan:
    """How guest CPLs map to real rings and which shadow space each uses."""

    name: str
    compression: bool
    """True: guest CPL 0-2 at real ring 3 with their own shadow space (ring compression)."""
    seglimit: bool
    """True: the segment limit keeps rings 1-3 out of the reserved range."""

    def real_ring(self, cpl: int) -> int:
        """The real ring guest code at ``cpl`` runs at."""
        if self.compression:
            return 3
        return 1 if cpl <= 1 else cpl

    def real_iopl(self, iopl: int, cpl: int = 0) -> int:
        """The real IOPL for a guest at ``cpl`` whose IOPL is ``iopl``.  Under ``0/1/3`` it is at
        least 1 for the guest kernel, so that its ``cli``, ``sti``, ``popf`` and ``iret`` change
        the real IF — which then *is* the guest's IF, and the real CPU takes the guest's
        interrupts exactly when the guest would — and its ``in``/``out`` exit straight to the
        VMM's devices; guest ring 3 still traps on them unless the guest gave it IOPL 3 (IOPL 1
        or 0 is the same there, but ``pushf`` shows which: the obstacle of §4.3).  Guest CPL 1
        and 2 run at real ring = their CPL (``real_ring``) with the guest's own IOPL, which gives
        them exactly their rights (docs/architecture.md §4.2): an IOPL-sensitive instruction
        they may not run traps and is emulated (the guest's #GP), and ``popf``/``iret`` drop a
        change of IF where the guest's would.  (A guest CPL 1 the VMM did not see arrive — the
        guest kernel's ``iret`` to ring 1, see ``guest_cpl`` — keeps the kernel's real IOPL:
        ring aliasing.)  Under ring compression (``classic``) they trap at every real ring > 0
        anyway (§4.4)."""
        if self.compression or cpl in (1, 2):
            return iopl
        return max(iopl, 1)

    def guest_cpl(self, real: int, before: int) -> int:
        """The guest CPL after direct execution left the real CPU at ring ``real``; ``before`` is
        the guest CPL when it started.  Only ``iret`` changes the ring without trapping, and only
        outward, to the popped CPL, which becomes the real ring as it is: to ring 2 or 3 it is
        seen; to ring 1 from guest CPL 0 it is *not*, since guest CPL 0 runs at real ring 1 too,
        and the guest stays at ``before`` = 0 for the VMM (ring aliasing: the inherent deviation
        of this plan, Popek & Goldberg 1974 Theorem 1 — ``iret`` is sensitive and unprivileged
        on the x86-like machine, and no choice of real rings avoids it: whichever ring guest
        CPL 0 runs at, the guest's ``iret`` can pop exactly that ring without trapping)."""
        if self.compression or real == 1:
            return before
        return real

    def space(self, cpl: int) -> Space:
        """The shadow space guest code at ``cpl`` uses."""
        if not self.compression:
            return Space.SHARED
        return Space.USER if cpl == 3 else Space.KERNEL


RING_1_SEGLIMIT = RingPlan("0/1/3, segment limit", compression=False, seglimit=True)
RING_COMPRESSION = RingPlan("0/3/3, ring compression", compression=True, seglimit=False)
RING_1_PAGING = RingPlan("0/1/3, paging-protected", compression=False, seglimit=False)


def ring_plan(features: frozenset[str]) -> RingPlan:
    """The plan for a host with ``features`` (docs/architecture.md §12)."""
    if "seglimit" in features:
        return RING_1_SEGLIMIT
    if "classic" in features:
        return RING_COMPRESSION
    return RING_1_PAGING
