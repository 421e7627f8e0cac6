; Mechanism: vmcall outside guest mode is #UD (docs/architecture.md §3, §4.2), at CPL 0, in an
; sti shadow, and at CPL 3; the registers are untouched.  A VMM sees each as a VM exit and must
; give the guest the #UD a bare machine gives.  The log holds three #UD (vector 6).
.include "lib/prelude.s"
main:
        li      r1, 0x5a5a
        vmcall  0
        cli
        sti
        vmcall  1
        cli
        enter_user 0, back
        vmcall  0xffff
        li      r2, 0x5a5a
        int     VEC_BACK
back:   jmp     finish
.include "lib/signature.s"
