; Mechanism: time (docs/architecture.md §9).  A `wrmsr MSR_TSC` sets the TSC; `rdtsc` reads it
; back (the value + 1 right after), and again after exits to the host (port I/O) and after a
; halt that the timer ends, where the TSC counts the halted ticks like TIMER_NOW.  Time is
; counted in retired instructions, so every value here is the same under any correct VMM.
; r1 = rdtsc right after the write, r2 = after an out, r3 = TIMER_NOW, r4 = rdmsr MSR_TSC,
; r5/r6 = rdtsc and TIMER_NOW after the halt, r7 = rdtsc after writing -2 (wraps), r8 = rdtsc at
; CPL 3 (a #GP on classic-1974, §4.4).
.include "lib/prelude.s"
main:
        gate    32, h_timer, GATE_P
        li      r9, MSR_TSC
        li      r10, 0x1000000
        wrmsr   r9, r10
        rdtsc   r1
        out     0x99, r0               ; an unclaimed port: an exit, nothing else
        rdtsc   r2
        in      r3, TIMER_NOW
        rdmsr   r4, r9
        li      r10, 0xfffe
        out     PIC_MASK, r10
        li      r10, 400
        out     TIMER_COUNT, r10
        li      r10, 1
        out     TIMER_CTRL, r10
        sti
        hlt                            ; 400 ticks, most of them halted
        cli
        rdtsc   r5
        in      r6, TIMER_NOW
        li      r10, -2
        wrmsr   r9, r10
        rdtsc   r7
        rdtsc   r7
        li      r10, 0xffff
        out     PIC_MASK, r10
        li      r8, 0x5a5a
        enter_user 0, back
        rdtsc   r8
        int     VEC_BACK
back:   jmp     finish

h_timer:
        irq_enter 32
        pop     r13
        iret
.include "lib/signature.s"
