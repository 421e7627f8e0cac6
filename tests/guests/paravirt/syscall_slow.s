; The fast system-call guest without PV_GATE_FAST: each int 0x80 of user mode goes through the VMM (the comparison for syscall.s).
.equ FAST_ATTRIBUTE, 0
.include "lib/syscall_body.s"
