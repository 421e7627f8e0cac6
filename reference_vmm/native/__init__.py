"""The native "VMM": no monitor at all, the bare platform that every other VMM is compared with."""

from reference_vmm.native.monitor import NativeVM, NativeVMM

__all__ = ["NativeVM", "NativeVMM"]
