"""The hardware-assisted VMM with nested paging (Fisher-Ogden 2006 §3.1.2): no shadow tables."""

from reference_vmm.hardware_ept.monitor import HardwareEptVM, HardwareEptVMM

__all__ = ["HardwareEptVM", "HardwareEptVMM"]
