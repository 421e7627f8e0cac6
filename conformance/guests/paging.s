; Mechanism: paging, and the accessed/dirty bits the walker sets (docs/architecture.md §7.5),
; read back from the page tables; then a remap made visible by invlpg (§8).
; r1/r2 = the PTEs of a page read and of a page written, r3 = a mapped page never touched,
; r4 = PD[0] (the 2 MiB page the kernel runs in), r5 = the value read after the remap.
.include "lib/prelude.s"
.include "lib/paging.s"
main:
        call    paging_on
        li      r3, PT
        li      r4, DATA | PTE_P | PTE_W
        sd      r4, [r3]               ; PAGED_VA + 0 -> DATA
        li      r4, DATA + 0x1000 | PTE_P | PTE_W
        sd      r4, [r3 + 8]           ; PAGED_VA + 0x1000 -> DATA + 0x1000
        li      r4, DATA + 0x2000 | PTE_P | PTE_W
        sd      r4, [r3 + 16]          ; PAGED_VA + 0x2000, never touched
        li      r6, DATA + 0x2000
        li      r7, 0x77
        sd      r7, [r6]               ; through the identity map
        li      r6, PAGED_VA
        ld      r7, [r6]               ; read: A
        li      r7, 0x1234
        sd      r7, [r6 + 0x1000]      ; write: A and D
        ld      r1, [r3]
        ld      r2, [r3 + 8]
        ld      r5, [r3 + 16]
        li      r6, PD
        ld      r4, [r6]
        mov     r3, r5
        li      r6, PT
        li      r7, DATA + 0x2000 | PTE_P | PTE_W
        sd      r7, [r6]               ; PAGED_VA now -> the page holding 0x77
        li      r6, PAGED_VA
        invlpg  [r6]
        ld      r5, [r6]
        li      r6, 0
        li      r7, 0
        jmp     finish
.include "lib/signature.s"
