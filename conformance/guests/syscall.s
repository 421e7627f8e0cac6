; Mechanism: ring 3 under paging makes system calls (int 0x81, a DPL 3 gate) that print and
; return to it with iret (docs/architecture.md §6.3-§6.4).  r1 = the last call's return value
; (bytes written), r2 = the cs the kernel saw in the frame, r3 = calls made.
.include "lib/prelude.s"
.include "lib/paging.s"
.include "lib/body_syscall.s"
.include "lib/signature.s"
