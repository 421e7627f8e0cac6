; Mechanism: external interrupts — the periodic timer (IRQ 0, vector 32) wakes `sti; hlt`
; three times (docs/architecture.md §6.5, devices.md §4).  r1 = interrupts counted; the log
; holds three vector-32 entries; the signature's clock shows the halted ticks (§9).
.include "lib/prelude.s"
main:
        gate    32, h_timer, GATE_P
        li      r3, 0xfffe
        out     PIC_MASK, r3           ; unmask IRQ 0
        li      r3, 300
        out     TIMER_COUNT, r3
        li      r3, 3                  ; enable, periodic
        out     TIMER_CTRL, r3
wait:   sti
        hlt
        cli
        li      r3, 3
        bltu    r1, r3, wait
        out     TIMER_CTRL, r0         ; stop the timer
        li      r3, 0xffff
        out     PIC_MASK, r3
        jmp     finish

h_timer:
        irq_enter 32
        addi    r1, r1, 1
        pop     r13
        iret
.include "lib/signature.s"
