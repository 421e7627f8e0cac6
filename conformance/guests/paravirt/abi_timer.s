; set_timer then block: at the upcall SHARED_TIME is the deadline plus the delivery's tick (docs/paravirt-abi.md §4.9, §5.3).
;
; The guest sets the timer 500 ticks ahead of SHARED_TIME and blocks; its upcall handler reads
; SHARED_TIME.  r1 = the time seen at the upcall minus the deadline: 1 by the ABI, on every host.
.include "lib/directed.s"
main:
        bind_irq PORT_TIMER, h_timer
        unmask  PORT_TIMER
        hypercall HYPERCALL_VERSION    ; SHARED_TIME is written on every hypercall's return
        la      r14, shared_info
        ld      r14, [r14]
        ld      r1, [r14 + SHARED_TIME]
        addi    r1, r1, 500
        la      r13, deadline
        sd      r1, [r13]
        hypercall HYPERCALL_SET_TIMER
wait:   block
        ev_cli
        la      r1, fired
        ld      r1, [r1]
        beqz    r1, wait
        la      r1, seen
        ld      r1, [r1]
        la      r2, deadline
        ld      r2, [r2]
        sub     r1, r1, r2
        li      r2, 0
        li      r3, 0
        li      r4, 0
        li      r5, 0
        li      r6, 0
        li      r7, 0
        li      r8, 0
        jmp     finish

h_timer:
        la      r14, shared_info
        ld      r14, [r14]
        ld      r13, [r14 + SHARED_TIME]
        la      r14, seen
        sd      r13, [r14]
        la      r14, fired
        li      r13, 1
        sd      r13, [r14]
        ret

.align 8
deadline: .quad 0
seen:     .quad 0
fired:    .quad 0

.include "lib/end.s"
