"""Hardware-assisted VMMs (Fisher-Ogden 2006 §3.1): first-generation VT-x with shadow paging
(``monitor``) and what guest-mode VMMs share (``guest_mode``)."""

from reference_vmm.hardware.monitor import HardwareVM, HardwareVMM

__all__ = ["HardwareVM", "HardwareVMM"]
