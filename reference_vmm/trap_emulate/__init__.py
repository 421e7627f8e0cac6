"""Trap-and-emulate (Fisher-Ogden 2006 §2.1/§2.2): the guest runs directly at a deprivileged ring; what traps is emulated."""

from reference_vmm.trap_emulate.monitor import SLICE, TrapEmulateVM, TrapEmulateVMM
from reference_vmm.trap_emulate.rings import RESERVED_VA, RingPlan, ring_plan

__all__ = ["RESERVED_VA", "SLICE", "RingPlan", "TrapEmulateVM", "TrapEmulateVMM", "ring_plan"]
