; Timer events through the trap table (docs/paravirt-abi.md §5): the event mask held by stores (cli/sti), a masked port, evtchn_unmask, sched_op block.
;
; The upcall handler clears upcall_pending first, records the frame's FLAGS and the event mask
; at its entry, and counts the timer events it serves (pending and unmasked).  The main program
; records, after each step: the upcalls counted, the timer port's pending byte, upcall_pending.
.include "lib/pv.s"

.equ TABLE, 0x30000

.org 0x1000
_start:
        li      sp, STACK_TOP
        results_begin
        mov     r10, r1
        ld      r8, [r10 + START_SHARED_INFO]   ; r8: the shared info page, for the whole run
        gate    TABLE, PV_UPCALL_VECTOR, upcall, INTERRUPT_GATE
        li      r1, TABLE
        hypercall HYPERCALL_SET_TRAP_TABLE

        ; 1. masked (the start state): the deadline passes in a loop, the event waits pending
        li      r1, 500
        call    timer_in
        li      r5, 1000
spin1:  addi    r5, r5, -1
        bnez    r5, spin1
        call    state                   ; 0 upcalls; pending 1; upcall_pending 1

        ; 2. sti as stores: clear the mask, see upcall_pending, take it with version (§5.1)
        sb      r0, [r8 + SHARED_EVENT_MASK]
        lbu     r3, [r8 + SHARED_UPCALL_PENDING]
        beqz    r3, no_upcall
        hypercall HYPERCALL_VERSION
no_upcall:
        call    state                   ; 1 upcall; pending 0; upcall_pending 0

        ; 3. the timer's port masked: the event is pending, no upcall; evtchn_unmask re-raises it
        li      r3, 1
        sb      r3, [r8 + SHARED_EVTCHN_MASK + PORT_TIMER]
        li      r1, 300
        call    timer_in
        li      r5, 600
spin3:  addi    r5, r5, -1
        bnez    r5, spin3
        call    state                   ; 1 upcall; pending 1; upcall_pending 0
        li      r1, PORT_TIMER
        hypercall HYPERCALL_EVTCHN_UNMASK
        call    state                   ; 2 upcalls; pending 0; upcall_pending 0

        ; 4. block: halted until the deadline, the upcall on the return
        li      r1, 1000
        call    timer_in
        record  r1                      ; the deadline
        li      r1, SCHEDOP_BLOCK
        hypercall HYPERCALL_SCHED_OP
        record  r1                      ; 0
        ld      r3, [r8 + SHARED_TIME]
        record  r3                      ; after the deadline
        call    state                   ; 3 upcalls

        ; 5. a deadline already passed: pending at once, taken on the return
        li      r1, 1
        hypercall HYPERCALL_SET_TIMER
        call    state                   ; 4 upcalls

        ; 6. disarmed: nothing happens
        li      r1, 100
        call    timer_in
        li      r1, 0
        hypercall HYPERCALL_SET_TIMER
        li      r5, 300
spin6:  addi    r5, r5, -1
        bnez    r5, spin6
        call    state                   ; 4 upcalls; pending 0
        results_end

; timer_in: set_timer(now + r1), now read fresh (SHARED_TIME is written at every entry); r1 = the deadline.
timer_in:
        mov     r6, r1
        hypercall HYPERCALL_VERSION
        ld      r1, [r8 + SHARED_TIME]
        add     r1, r1, r6
        mov     r6, r1
        hypercall HYPERCALL_SET_TIMER
        mov     r1, r6
        ret

; state: record the upcalls served, the timer port's pending byte, upcall_pending.
state:
        la      r3, upcalls
        ld      r3, [r3]
        record  r3
        lbu     r3, [r8 + SHARED_EVTCHN_PENDING + PORT_TIMER]
        record  r3
        lbu     r3, [r8 + SHARED_UPCALL_PENDING]
        record  r3
        ret

upcall:
        push    r3
        push    r4
        sb      r0, [r8 + SHARED_UPCALL_PENDING]   ; first (§5.3)
        ld      r3, [sp + 16 + 16]      ; the frame: pc, cs, FLAGS, sp above the two pushes
        record  r3                      ; FLAGS_IF: events were allowed
        lbu     r3, [r8 + SHARED_EVENT_MASK]
        record  r3                      ; 1: the interrupt gate masked them
        lbu     r3, [r8 + SHARED_EVTCHN_PENDING + PORT_TIMER]
        beqz    r3, served
        lbu     r4, [r8 + SHARED_EVTCHN_MASK + PORT_TIMER]
        bnez    r4, served
        sb      r0, [r8 + SHARED_EVTCHN_PENDING + PORT_TIMER]
        la      r3, upcalls
        ld      r4, [r3]
        addi    r4, r4, 1
        sd      r4, [r3]
served: pop     r4
        pop     r3
        push    r7
        pv_iret

        .align  8
upcalls: .quad  0

.include "lib/end.s"
