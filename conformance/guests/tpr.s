; Mechanism: the TPR (CR8) holds back a pending interrupt and lets it through once lowered
; (docs/architecture.md §6.5: delivered when V >> 4 > CR8; the timer's vector 32 is class 2);
; then an interrupt pending while IF = 0 wakes `sti; hlt`, and one pending at `sti` waits for the
; instruction in its shadow (an `in`, which exits to the host).  The handler counts in r6 and
; keeps the pc it interrupted in r5.  r1 = CR8 read back (0xf), r2 = interrupts taken under
; TPR 15 (0), r3 = PIC_IRR then (1), r4 = taken under TPR 2 (0), r7 = taken once TPR is 1 (1),
; r8 = the pc after the shadowed `in` minus the pc the last interrupt interrupted (0).  Last, a
; TPR of 16 is refused: #GP(0) in the exception log, and cr8 stays 0.
.include "lib/prelude.s"
main:
        gate    32, h_timer, GATE_P
        li      r3, 0xfffe
        out     PIC_MASK, r3           ; unmask IRQ 0
        li      r3, 15
        mtcr    cr8, r3
        mfcr    r1, cr8
        li      r3, 20
        out     TIMER_COUNT, r3
        li      r3, 1                  ; one-shot
        out     TIMER_CTRL, r3
        sti
        li      r4, 60
spin1:  addi    r4, r4, -1             ; the deadline passes: IRQ 0 pending, held back
        bnez    r4, spin1
        mov     r2, r6
        in      r3, 0x22               ; PIC_IRR
        li      r4, 2
        mtcr    cr8, r4                ; class 2 is still held back (2 > 2 is false)
        nop
        mov     r4, r6
        li      r7, 1
        mtcr    cr8, r7                ; delivered at the next boundary
        mov     r7, r6
        mfcr    r8, cr8
        mtcr    cr8, r0
        cli                            ; pending while IF = 0, then sti; hlt
        li      r9, 5
        out     TIMER_COUNT, r9
        li      r9, 1
        out     TIMER_CTRL, r9
        li      r9, 20
spin2:  addi    r9, r9, -1
        bnez    r9, spin2
        sti
        hlt
        cli                            ; pending at sti: delivered after the shadowed in
        li      r9, 3
        out     TIMER_COUNT, r9
        li      r9, 1
        out     TIMER_CTRL, r9
        li      r9, 20
spin3:  addi    r9, r9, -1
        bnez    r9, spin3
        sti
        in      r9, CONSOLE_STATUS
after:  cli
        la      r8, after
        sub     r8, r8, r5
        li      r9, 0xffff
        out     PIC_MASK, r9
        li      r9, 16                 ; a TPR above 15: #GP(0), logged and skipped (§2)
        mtcr    cr8, r9
        jmp     finish

h_timer:
        irq_enter 32
        addi    r6, r6, 1
        ld      r5, [sp + 8]           ; the interrupted pc (§6.3 frame)
        pop     r13
        iret
.include "lib/signature.s"
