; Privileged instructions raise #GP(0) at CPL > 0 on every profile (docs/architecture.md §4.3),
; rdtsc too once CR4.TSD = 1: the exception log shows eight #GP(0), the registers are kept.
.include "lib/prelude.s"
main:
        li      r3, 2 | CR4_TSD        ; 4-level paging (the reset PL) and TSD
        mtcr    cr4, r3
        li      r1, 0x5a5a
        li      r2, 0x5a5a
        enter_user 0, back
        hlt
        mfcr    r1, cr0
        mtcr    cr3, r0
        lidt    r0
        wrmsr   r0, r0
        rdmsr   r2, r0
        invlpg  [r0]
        rdtsc   r2
        int     VEC_BACK
back:   jmp     finish
.include "lib/signature.s"
