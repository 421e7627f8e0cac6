"""Paravirtualization (Fisher-Ogden 2006 §2.3.3; Barham et al. 2003): the guest kernel calls the VMM by hypercall (docs/paravirt-abi.md)."""

from reference_vmm.paravirt.monitor import IDT_VA, KERNEL_RING, SLICE, ParavirtVM, ParavirtVMM
from reference_vmm.paravirt.pagetables import PageTables, Refused

__all__ = ["IDT_VA", "KERNEL_RING", "SLICE", "PageTables", "ParavirtVM", "ParavirtVMM", "Refused"]
