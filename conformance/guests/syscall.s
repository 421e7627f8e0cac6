; Mechanism: ring 3 under paging makes system calls (int 0x81, a DPL 3 gate) that print and
; return to it with iret (docs/architecture.md §6.3-§6.4).  r1 = the last call's return value
; (bytes written), r2 = the cs the kernel saw in the frame, r3 = calls made.
.include "lib/prelude.s"
.include "lib/paging.s"
.equ VEC_WRITE, 0x81
main:
        call    paging_on
        gate    VEC_WRITE, h_write, GATE_P | GATE_DPL3
        enter_user 0, back
        li      r3, 0
        la      r4, msg1
        li      r5, msg2 - msg1
        int     VEC_WRITE
        addi    r3, r3, 1
        la      r4, msg2
        li      r5, msg_end - msg2
        int     VEC_WRITE
        addi    r3, r3, 1
        int     VEC_BACK
back:   la      r6, frame_cs
        ld      r2, [r6]
        li      r4, 0
        li      r5, 0
        li      r6, 0
        jmp     finish

; h_write: print r5 bytes at r4 (user addresses); return the count in r1.
h_write:                               ; frame: pc, cs, FLAGS, sp
        ld      r13, [sp + 8]
        la      r14, frame_cs
        sd      r13, [r14]
        add     r13, r4, r5
        mov     r1, r5
w_next: bgeu    r4, r13, w_done
        lbu     r14, [r4]
        out     CONSOLE_DATA, r14
        addi    r4, r4, 1
        jmp     w_next
w_done: iret

.align 8
frame_cs: .quad 0
msg1:   .ascii "hello from ring 3\n"
msg2:   .ascii "and again\n"
msg_end:
.align 4
.include "lib/signature.s"
