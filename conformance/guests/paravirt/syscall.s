; The paravirtual port of conformance/guests/syscall.s: user mode under paging makes system calls that print and return.
;
; The gate is the fast system-call gate (docs/paravirt-abi.md §6.3: a trap gate of DPL 3 the
; VMM puts in the machine's IDT, so `int 0x81` reaches the kernel without entering the VMM),
; the kernel prints with console_write (§4.12) where the native one writes CONSOLE_DATA a byte
; at a time, and returns with the iret hypercall (§4.4).  r1 = the last call's return value
; (bytes written), r2 = the cs the kernel saw in the frame (the virtual CPL, 3), r3 = calls made.
.include "lib/directed.s"
.equ VEC_WRITE, 0x81
main:
        call    paging_on
        gate    VEC_WRITE, h_write, FAST_GATE
        enter_user back
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

; h_write: print r5 bytes at r4 (user addresses, which the kernel reads through the same
; tables); return the count in r1 and r4 past the bytes, as the native handler leaves them.
h_write:                               ; frame: pc, cs, FLAGS, sp
        push    r7                     ; the iret frame's r7 (§4.4): user mode's, kept
        ld      r13, [sp + 16]
        la      r14, frame_cs
        sd      r13, [r14]
        push    r2
        mov     r1, r4
        mov     r2, r5
        hypercall HYPERCALL_CONSOLE_WRITE
        pop     r2
        add     r4, r4, r5
        pv_iret

.align 8
frame_cs: .quad 0
msg1:   .ascii "hello from ring 3\n"
msg2:   .ascii "and again\n"
msg_end:
.align 4
.include "lib/end.s"
