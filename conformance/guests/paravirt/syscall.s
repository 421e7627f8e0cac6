; The paravirtual port of conformance/guests/syscall.s: user mode under paging makes system calls that print and return.
;
; The gate is the fast system-call gate (docs/paravirt-abi.md §6.3: a trap gate of DPL 3 the
; VMM puts in the machine's IDT, so `int 0x81` reaches the kernel without entering the VMM),
; the kernel prints with console_write (§4.12) where the native one writes CONSOLE_DATA a byte
; at a time, and returns with the iret hypercall (§4.4).  r1 = the last call's return value
; (bytes written), r2 = the cs the kernel saw in the frame (the virtual CPL, 3), r3 = calls made.
.include "lib/directed.s"
.include "../lib/body_syscall.s"
.include "lib/end.s"
