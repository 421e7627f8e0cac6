; Builds a new address space, pins its tables in one mmu_update batch and switches to it with set_cr3 (docs/paravirt-abi.md §7.3's fork in small).
;
; The new L1 is a copy of the bootstrap L1 of the first 2 MiB with the new table pages made
; read-only; the new L2 points at it and at the bootstrap L1 of the next 2 MiB (a pinned L1 may
; serve several L2s); then an L3 and an L4.  The batch first makes the bootstrap mapping of the
; four new pages read-only (else pinning them is EWRITABLE), invalidating each, then pins L1 to
; L4, bottom-up.  Results, in order: the batch's r1 and r2; set_cr3's r1; the VMM's slot of the
; new L4 as the guest reads it (present); a word read through the new space; the unpin of the
; new L4 (EINUSE: the current base); the unpin of the bootstrap L4 (0: no longer in use).
.include "lib/pv.s"

.equ NEW_L1, 0x100000
.equ NEW_L2, 0x101000
.equ NEW_L3, 0x102000
.equ NEW_L4, 0x103000

.org 0x1000
_start:
        li      sp, STACK_TOP
        results_begin
        mov     r10, r1                  ; start info
        ld      r11, [r10 + START_MEM_BASE]
        ld      r12, [r10 + START_PT_BASE]   ; the bootstrap L4 (then L3, L2, L1s), virtual = pseudo-physical

        ; the new L1: a copy of the bootstrap L1 of [0, 2 MiB), the four new tables read-only
        addi    r3, r12, 3 * 4096
        li      r4, NEW_L1
        li      r5, 512
copy:   ld      r6, [r3]
        sd      r6, [r4]
        addi    r3, r3, 8
        addi    r4, r4, 8
        addi    r5, r5, -1
        bnez    r5, copy
        li      r4, NEW_L1 + 8 * (NEW_L1 >> 12)
        li      r5, 4
        li      r7, ~PTE_W
ro:     ld      r6, [r4]
        and     r6, r6, r7
        sd      r6, [r4]
        addi    r4, r4, 8
        addi    r5, r5, -1
        bnez    r5, ro
        ; the new L2, L3 and L4 (machine addresses: pseudo-physical + mem_base)
        li      r3, NEW_L1 | PTE_P | PTE_W
        add     r3, r3, r11
        li      r4, NEW_L2
        sd      r3, [r4]
        ld      r3, [r12 + 2 * 4096 + 8]  ; the bootstrap L2's entry of [2 MiB, 4 MiB)
        sd      r3, [r4 + 8]
        li      r3, NEW_L2 | PTE_P | PTE_W
        add     r3, r3, r11
        li      r4, NEW_L3
        sd      r3, [r4]
        li      r3, NEW_L3 | PTE_P | PTE_W
        add     r3, r3, r11
        li      r4, NEW_L4
        sd      r3, [r4]

        ; the batch: 4 x (the bootstrap entry read-only, invlpg), then pin L1, L2, L3, L4
        add     r14, r12, r11            ; machine address of the bootstrap L4
        addi    r8, r14, 3 * 4096 + 8 * (NEW_L1 >> 12)   ; its L1's entry of NEW_L1
        li      r3, NEW_L1 | PTE_P
        add     r3, r3, r11
        li      r4, NEW_L1 | MMU_CMD_INVLPG
        li      r2, 4096
        li      r9, REQUESTS
        li      r5, 4
pages:  sd      r8, [r9 + MMU_REQ_PTR]   ; MMU_CMD_UPDATE is 0
        sd      r3, [r9 + MMU_REQ_VAL]
        sd      r4, [r9 + MMU_REQ_SIZE + MMU_REQ_PTR]
        sd      r0, [r9 + MMU_REQ_SIZE + MMU_REQ_VAL]
        addi    r9, r9, 2 * MMU_REQ_SIZE
        addi    r8, r8, 8
        add     r3, r3, r2
        add     r4, r4, r2
        addi    r5, r5, -1
        bnez    r5, pages
        li      r3, NEW_L1 | MMU_CMD_PIN
        add     r3, r3, r11
        li      r4, 1
        request 8, r3, r4
        li      r3, NEW_L2 | MMU_CMD_PIN
        add     r3, r3, r11
        li      r4, 2
        request 9, r3, r4
        li      r3, NEW_L3 | MMU_CMD_PIN
        add     r3, r3, r11
        li      r4, 3
        request 10, r3, r4
        li      r3, NEW_L4 | MMU_CMD_PIN
        add     r3, r3, r11
        li      r4, 4
        request 11, r3, r4
        mmu_update_n 12

        ; switch
        li      r1, NEW_L4
        add     r1, r1, r11
        li      r2, 0
        hypercall HYPERCALL_SET_CR3
        record  r1
        li      r3, NEW_L4 + 8 * 511
        ld      r3, [r3]
        andi    r3, r3, PTE_P
        record  r3
        la      r3, marker
        ld      r3, [r3]
        record  r3

        ; unpin: the new L4 is the current base; the bootstrap L4 no longer is
        li      r3, NEW_L4 | MMU_CMD_UNPIN
        add     r3, r3, r11
        request 0, r3, r0
        mmu_update_n 1
        ori     r3, r14, MMU_CMD_UNPIN
        request 0, r3, r0
        mmu_update_n 1
        results_end

        .align  8
marker: .quad   0x5eed

.include "lib/end.s"
