; Obstacle: cli, sti, in and out raise #GP(0) when CPL > IOPL (docs/architecture.md §4.2, §4.3)
; and execute when IOPL allows them.  Ring 3 runs the four with IOPL 0 (four #GP logged), then
; again with IOPL 3 (none on x86-like profiles; four more on classic-1974, §4.4).
; r1 = CONSOLE_STATUS read at IOPL 0 (0x5a5a if refused), r2 = read at IOPL 3.
.include "lib/prelude.s"
main:
        li      r1, 0x5a5a
        li      r2, 0x5a5a
        enter_user 0, second
        cli
        sti
        in      r1, CONSOLE_STATUS
        li      r3, '0'
        out     CONSOLE_DATA, r3
        int     VEC_BACK
second: enter_user FLAGS_IOPL3, back
        cli
        sti
        in      r2, CONSOLE_STATUS
        li      r3, '3'
        out     CONSOLE_DATA, r3
        cli
        int     VEC_BACK
back:   li      r3, 10
        out     CONSOLE_DATA, r3
        jmp     finish
.include "lib/signature.s"
