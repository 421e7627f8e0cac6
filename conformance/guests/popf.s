; Obstacle: popf at CPL > IOPL silently ignores a change of IF, and at CPL > 0 a change of
; IOPL (docs/architecture.md §4.3, §6.4; the silent privilege failure of Robin & Irvine 2000).
; r1 = FLAGS after popf at CPL 0; ring 3's FLAGS after its popf show in "user flags".
.include "lib/prelude.s"
main:
        li      r3, FLAGS_IOPL3
        push    r3
        popf                           ; CPL 0: IOPL changes
        pushf
        pop     r1
        li      r3, 0
        push    r3
        popf                           ; and back to IOPL 0
        enter_user 0, back
        li      r3, FLAGS_IF | FLAGS_IOPL3
        push    r3
        popf                           ; CPL 3 > IOPL 0: neither IF nor IOPL changes
        int     VEC_BACK
back:   jmp     finish
.include "lib/signature.s"
