; The body of the syscall guest, shared by conformance/guests/syscall.s and its paravirtual port: user mode's system calls that print.
.equ VEC_WRITE, 0x81
main:
        call    paging_on
        gate    VEC_WRITE, h_write, SYSCALL_GATE
        user_mode back
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

; h_write: print r5 bytes at r4 (user addresses, read through the same tables); return the
; count in r1 and r4 past the bytes.
h_write:                               ; frame: pc, cs, FLAGS, sp
        ld      r13, [sp + 8]
        la      r14, frame_cs
        sd      r13, [r14]
        write_bytes
        trap_return

.align 8
frame_cs: .quad 0
msg1:   .ascii "hello from ring 3\n"
msg2:   .ascii "and again\n"
msg_end:
.align 4
