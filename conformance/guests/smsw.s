; Obstacle: smsw reads CR0[15:0] at any CPL without trapping (docs/architecture.md §4.3; the
; non-privileged sensitive SMSW of Robin & Irvine 2000).  r1 = smsw at CPL 0, r2 = at CPL 3.
.include "lib/prelude.s"
main:
        li      r3, CR0_PE | CR0_TS | CR0_WP
        mtcr    cr0, r3                ; a CR0 a VMM would not run the guest with
        smsw    r1
        li      r2, 0x5a5a             ; kept when smsw traps (classic-1974: #GP, skipped)
        enter_user 0, back
        smsw    r2
        int     VEC_BACK
back:   jmp     finish
.include "lib/signature.s"
