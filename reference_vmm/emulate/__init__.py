"""Full emulation (Fisher-Ogden 2006 §2.1): every guest instruction interpreted by the executable spec."""

from reference_vmm.emulate.monitor import EmulatedVM, EmulateVMM

__all__ = ["EmulateVMM", "EmulatedVM"]
