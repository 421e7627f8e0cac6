; Obstacle: rdcs returns cs with the real CPL (docs/architecture.md §4.3; ring aliasing).
; r1 = rdcs at CPL 0, r2 = at CPL 3.
.include "lib/prelude.s"
main:
        rdcs    r1
        li      r2, 0x5a5a             ; kept when rdcs traps (classic-1974)
        enter_user 0, back
        rdcs    r2
        int     VEC_BACK
back:   jmp     finish
.include "lib/signature.s"
