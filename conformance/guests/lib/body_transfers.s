; The body of the transfers guest, shared by conformance/guests/transfers.s and its paravirtual port: the indirect transfers under test.
.equ ROUNDS, 4

; mix reg, k: reg := rotl(reg, 5) + k (order-dependent: a visit out of turn changes the rest)
.macro mix reg, k
        shli    r12, \reg, 5
        shri    \reg, \reg, 59
        or      \reg, \reg, r12
        addi    \reg, \reg, \k
.endm

main:
        li      r3, 0
        li      r4, ROUNDS
        li      r5, 0
        li      r6, 0
        li      r7, 0
round:  la      r10, f_a               ; callr to three functions 16 KiB apart
        callr   r10
        la      r10, f_b
        callr   r10
        la      r10, f_c
        callr   r10
        la      r11, back_b            ; jr there and back, in another order
        la      r10, j_b
        jr      r10
back_b: la      r11, back_a
        la      r10, j_a
        jr      r10
back_a: la      r11, back_c
        la      r10, j_c
        jr      r10
back_c: la      r10, c_c               ; `ret` from `shared` to sites 16 KiB apart
        callr   r10
        la      r10, c_a
        callr   r10
        la      r10, c_b
        callr   r10
        addi    r4, r4, -1
        bnez    r4, round
        li      r10, 0
        li      r11, 0
        li      r12, 0
        jmp     finish

shared:                                ; called from c_a, c_b, c_c: returns to each in turn
        mix     r3, 3
        ret

; Three regions of the same layout: f_X (callr target), j_X (jr target), c_X (calls `shared`,
; whose return site c_X + 4 is at the same offset in every region).
.org 0x4000
f_a:    mix     r1, 0x11
        addi    r5, r5, 1
        ret
.org 0x4040
j_a:    mix     r2, 0x21
        addi    r5, r5, 1
        jr      r11
.org 0x4080
c_a:    call    shared
        mix     r3, 0x31
        addi    r5, r5, 1
        ret

.org 0x8000
f_b:    mix     r1, 0x12
        addi    r6, r6, 1
        ret
.org 0x8040
j_b:    mix     r2, 0x22
        addi    r6, r6, 1
        jr      r11
.org 0x8080
c_b:    call    shared
        mix     r3, 0x32
        addi    r6, r6, 1
        ret

.org 0xc000
f_c:    mix     r1, 0x13
        addi    r7, r7, 1
        ret
.org 0xc040
j_c:    mix     r2, 0x23
        addi    r7, r7, 1
        jr      r11
.org 0xc080
c_c:    call    shared
        mix     r3, 0x33
        addi    r7, r7, 1
        ret
