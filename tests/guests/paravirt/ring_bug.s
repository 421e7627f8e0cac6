; Claims 5,000 bytes of output on a console ring of 2,048: impossible indices, which the VMM cannot answer on the ring, so the VM stops (docs/paravirt-abi.md §9).
.include "lib/pv.s"

.org 0x1000
_start:
        li      sp, STACK_TOP
        ld      r3, [r1 + START_CONSOLE_RING]
        li      r4, 5000
        sd      r4, [r3 + CONS_OUT_PROD]
        li      r1, PORT_CONSOLE
        hypercall HYPERCALL_EVTCHN_SEND
        shutdown r0                     ; never

.include "lib/end.s"
