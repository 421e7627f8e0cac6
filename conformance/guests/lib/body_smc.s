; The body of the smc guest, shared by conformance/guests/smc.s and its paravirtual port: a routine run, overwritten by a store, and run again.
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
