; Obstacle: pushf pushes the real FLAGS, IF and IOPL included (docs/architecture.md §4.3).
; r1 = pushf at CPL 0 after setting IOPL 1, r2 = pushf at CPL 3 (entered with IF = 0, IOPL 0).
.include "lib/prelude.s"
main:
        li      r3, 1 << 12
        push    r3
        popf                           ; IOPL = 1 (CPL 0 may change it)
        pushf
        pop     r1
        li      r2, 0x5a5a             ; kept when pushf traps (classic-1974)
        enter_user 0, back
        li      r4, 0x5a5a
        push    r4                     ; so that a trapped pushf leaves 0x5a5a to pop
        pushf
        pop     r2
        pop     r4
        int     VEC_BACK
back:   jmp     finish
.include "lib/signature.s"
