; Obstacle: sidt returns the real IDTR at any CPL (docs/architecture.md §4.3; the "Red Pill",
; address-space compression).  r1 = sidt at CPL 0, r2 = at CPL 3.
.include "lib/prelude.s"
main:
        sidt    r1
        li      r2, 0x5a5a             ; kept when sidt traps (classic-1974)
        enter_user 0, back
        sidt    r2
        int     VEC_BACK
back:   jmp     finish
.include "lib/signature.s"
