; The paravirtual port of conformance/guests/timer.s: timer events wake the kernel's idle wait three times.
;
; The native periodic timer on IRQ 0 (vector 32) becomes set_timer re-armed at each event
; (docs/paravirt-abi.md §4.9: one-shot; a periodic tick is the guest's to re-arm), its PIC line
; the timer's event channel (§5.2) bound to the kernel's interrupt 32, and `sti; hlt` the block
; hypercall (§4.8), on whose return the upcall comes.  The handler counts in memory: it runs
; inside the upcall, which keeps the registers of the code it interrupted.  r1 = events
; counted; the log holds three vector-32 entries.
.include "lib/directed.s"
main:
        bind_irq PORT_TIMER, h_timer
        li      r3, 0xfffe
        unmask  PORT_TIMER
        li      r3, 300
        mov     r13, r3
        call    timer_periodic
        li      r3, 3
wait:   block
        ev_cli
        la      r1, ticks
        ld      r1, [r1]
        li      r3, 3
        bltu    r1, r3, wait
        li      r13, 0                 ; stop the timer
        call    timer_periodic
        li      r3, 0xffff
        mask_all
        jmp     finish

h_timer:
        li      r13, 32
        call    log_event
        la      r13, ticks
        ld      r14, [r13]
        addi    r14, r14, 1
        sd      r14, [r13]
        ret

.align 8
ticks:  .quad 0
.include "lib/end.s"
