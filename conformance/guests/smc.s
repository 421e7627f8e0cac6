; Mechanism: self-modifying code — a routine runs, is overwritten by a store, and runs again;
; the new instruction must execute (decoded-instruction caches and translations must follow
; stores to code, docs/architecture.md §15).  r1 = the first result, r2 = the second.
.include "lib/prelude.s"
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
.include "lib/signature.s"
