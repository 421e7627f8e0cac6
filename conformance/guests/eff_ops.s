; Efficiency, the operations a lazy VMM intercepts for nothing (conformance/test_efficiency.py):
; a kernel loop that, every round, reads the TSC, raises and lowers its TPR (CR8) and reads it
; back, reads a guest-state MSR (RSP0), stores and reloads its IDTR (sidt/lidt), among plain
; ALU work; then it idles with `sti; hlt` until the timer has woken it NAPS times.  A VMM can
; run all of it without an exit where the host helps: the TSC offset (architecture §9, vmx.md
; V.3), the TPR shadow, the MSR bitmap, guest mode's own IDTR, and halted time skipped to the
; next device deadline (architecture §9).  The loop's counts are the .equ below; the test reads
; them from here.  r1 = xor of the TSC readings, r2 = the TPR read back (summed), r3 = RSP0
; read back (summed), r4 = the IDTR stored (summed), r5 = timer interrupts taken.
.include "lib/prelude.s"
.equ ROUNDS, 300                       ; rounds of the operations loop
.equ NAPS, 6                           ; hlt waits, each ended by the timer
.equ TIMER_PERIOD, 400                 ; ticks between timer interrupts
main:
        li      r9, ROUNDS
        li      r10, MSR_RSP0
round:  rdtsc   r6                     ; TSC: the guest's clock plus its offset
        xor     r1, r1, r6
        li      r6, 5                  ; TPR up (blocks vectors 0x00-0x5f), read back, down
        mtcr    cr8, r6
        mfcr    r7, cr8
        add     r2, r2, r7
        mtcr    cr8, r0
        rdmsr   r7, r10                ; RSP0: guest state, nothing for a VMM to do
        add     r3, r3, r7
        sidt    r7                     ; the IDTR, stored and loaded back
        lidt    r7
        add     r4, r4, r7
        li      r6, 10                 ; plain work between the operations
work:   add     r8, r8, r6
        xor     r8, r8, r9
        shli    r11, r8, 3
        shri    r8, r8, 61
        or      r8, r8, r11
        addi    r6, r6, -1
        bnez    r6, work
        addi    r9, r9, -1
        bnez    r9, round
        gate    32, h_timer, GATE_P    ; idle: the timer wakes `hlt` NAPS times
        li      r6, 0xfffe
        out     PIC_MASK, r6
        li      r6, TIMER_PERIOD
        out     TIMER_COUNT, r6
        li      r6, 3                  ; enable, periodic
        out     TIMER_CTRL, r6
nap:    sti
        hlt
        cli
        li      r6, NAPS
        bltu    r5, r6, nap
        out     TIMER_CTRL, r0
        li      r6, 0xffff
        out     PIC_MASK, r6
        li      r6, 0
        li      r7, 0
        li      r8, 0
        li      r9, 0
        li      r10, 0
        li      r11, 0
        jmp     finish

h_timer:
        push    r13
        li      r13, PIC_EOI
        out     PIC_CMD, r13
        addi    r5, r5, 1
        pop     r13
        iret
.include "lib/signature.s"
