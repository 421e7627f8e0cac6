; The single-step trap (docs/architecture.md §6.4): the kernel sets TF with popf, the #DB
; handler counts steps and prints each pushed pc's low byte, and clears TF in its frame after
; eight.  Exits with the count.
.equ FLAGS_TF, 1 << 8
.equ IDT, 0x20000
_start: li      sp, 0x30000
        li      r1, IDT
        lidt    r1
        li      r2, IDT + 16 * 1
        la      r3, step
        sd      r3, [r2]
        li      r3, 1
        sd      r3, [r2 + 8]
        li      r1, FLAGS_TF
        push    r1
        popf
        li      r2, 0
        addi    r2, r2, 1
        addi    r2, r2, 2
        addi    r2, r2, 3
        addi    r2, r2, 4
        addi    r2, r2, 5
        addi    r2, r2, 6
        addi    r2, r2, 7
        addi    r2, r2, 8
        addi    r2, r2, 9
        out     0x500, r4
step:   addi    r4, r4, 1
        ld      r5, [sp]
        out     0x3f8, r5
        li      r5, 8
        bltu    r4, r5, back
        ld      r5, [sp + 16]
        xori    r5, r5, FLAGS_TF      ; TF is set in the frame: clear it
        sd      r5, [sp + 16]
back:   iret
