; Blocks with no timer set, no disk and no console input: nothing can make a port pending, so the VM stops halted (docs/paravirt-abi.md §4.8).
.include "lib/pv.s"

.org 0x1000
_start:
        li      sp, STACK_TOP
        print   going, 6
        li      r1, SCHEDOP_BLOCK
        hypercall HYPERCALL_SCHED_OP
        print   woken, 6                ; never
        shutdown r0

going:  .ascii  "block\n"
woken:  .ascii  "woken\n"

.include "lib/end.s"
