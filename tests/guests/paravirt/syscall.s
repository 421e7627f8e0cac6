; The fast system-call guest: its trap table's entry 0x80 carries PV_GATE_FAST (docs/paravirt-abi.md §6.3), so user mode's int 0x80 enters the kernel without the VMM.
.equ FAST_ATTRIBUTE, PV_GATE_FAST
.include "lib/syscall_body.s"
