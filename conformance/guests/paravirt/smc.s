; The paravirtual port of conformance/guests/smc.s: self-modifying code — a routine runs, is overwritten by a store, and runs again.
;
; Nothing here is sensitive: the code is the native guest's, in the kernel (docs/paravirt-abi.md
; §3: the bootstrap mapping is writable and executable, so the store reaches the code page);
; only the start and the signature are the paravirtual library's.  r1 = the first result,
; r2 = the second.
.include "lib/directed.s"
main:
        call    patched
        mov     r1, r3
        la      r4, template
        lwu     r5, [r4]
        la      r4, patched
        sw      r5, [r4]
        call    patched
        mov     r2, r3
        li      r3, 0
        li      r4, 0
        li      r5, 0
        jmp     finish

patched:
        addi    r3, r0, 7
        ret
template:
        addi    r3, r0, 42
.include "lib/end.s"
