; Obstacle: iret writes FLAGS under the popf rules, so at CPL 3 with IOPL 0 a change of IF or
; IOPL is silently ignored (docs/architecture.md §4.3, §6.4).  r1 = FLAGS after an iret at
; CPL 0 that sets IOPL 3; ring 3's FLAGS after its own iret show in "user flags".
.include "lib/prelude.s"
main:
        mov     r3, sp
        push    r3                     ; frame: sp, FLAGS, cs, pc
        li      r3, FLAGS_IOPL3
        push    r3
        push    r0
        la      r3, k0
        push    r3
        iret                           ; CPL 0 -> CPL 0, IOPL changes
k0:     pushf
        pop     r1
        push    r0
        popf
        enter_user 0, back
        mov     r3, sp
        push    r3
        li      r3, FLAGS_IF | FLAGS_IOPL3
        push    r3
        li      r3, 3
        push    r3
        la      r3, u1
        push    r3
        iret                           ; CPL 3 -> CPL 3: IF and IOPL stay 0
        addi    sp, sp, 32             ; classic-1974: the iret trapped; drop its frame
u1:     int     VEC_BACK
back:   jmp     finish
.include "lib/signature.s"
