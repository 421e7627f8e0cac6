; An adversary of validated paging (docs/paravirt-abi.md §7): every malicious mmu_update, pin, unpin and set_cr3 must be refused with its code and change nothing.
;
; Each attempt records r1 and r2 (the results, lib/pv.s); the test names the code each must
; be.  The victim entry is the bootstrap L1's entry of VICTIM.  One batch is partly valid: its
; first request is applied, its second refused, its third not read (§4.5).  After the attempts
; the guest records the entries it attacked, read through its read-only mapping of its tables.
.include "lib/pv.s"

.equ VICTIM, 0x50000
.equ SELF_L1, 0x55000                  ; a would-be L1 that maps itself writable

.org 0x1000
_start:
        li      sp, STACK_TOP
        results_begin
        mov     r10, r1
        ld      r11, [r10 + START_MEM_BASE]
        ld      r12, [r10 + START_PT_BASE]
        add     r14, r12, r11            ; machine address of the bootstrap L4 (L3, L2, L1s follow)
        li      r3, 3 * 4096 + 8 * (VICTIM >> 12)
        add     r8, r14, r3              ; machine address of the victim entry, in the first L1

        ; 1. a writable mapping of a page-table page (the bootstrap L4): EWRITABLE
        ori     r4, r14, PTE_P | PTE_W
        try_mmu r8, r4
        ; 2. a frame just past the guest's memory: ENOTOWNED
        ld      r4, [r10 + START_MEM_SIZE]
        add     r4, r4, r11
        ori     r4, r4, PTE_P
        try_mmu r8, r4
        ; 3. the last frame of the machine's address space: ENOTOWNED
        li      r4, 0x000ffffffffff000 | PTE_P
        try_mmu r8, r4
        ; 4. a reserved bit, 5. a large page: ERSVD
        li      r4, VICTIM | PTE_P | (1 << 52)
        add     r4, r4, r11
        try_mmu r8, r4
        li      r4, VICTIM | PTE_P | PTE_PS
        add     r4, r4, r11
        try_mmu r8, r4
        ; 6., 7. the VMM's top-level slots 256 and 511, even to clear them: EPERM
        addi    r3, r14, 8 * 256
        try_mmu r3, r0
        addi    r3, r14, 8 * 511
        try_mmu r3, r0
        ; 8. an entry of a page that is no table: ENOTTABLE
        li      r3, VICTIM
        add     r3, r3, r11
        try_mmu r3, r0
        ; 9. an L2 entry naming an ordinary page: ENOTTABLE; 10. naming an L2 (itself): ELEVEL
        addi    r3, r14, 2 * 4096 + 8 * 5
        li      r4, VICTIM | PTE_P | PTE_W
        add     r4, r4, r11
        try_mmu r3, r4
        addi    r4, r14, 2 * 4096 + (PTE_P | PTE_W)
        try_mmu r3, r4
        ; 11. three requests: a valid remap of the victim (read-only, to VICTIM + 4 KiB), a
        ; writable mapping of a table, a valid unmap: r1 = -EWRITABLE, r2 = 1; the third is not read
        li      r4, (VICTIM + 4096) | PTE_P
        add     r4, r4, r11
        request 0, r8, r4
        ori     r4, r14, PTE_P | PTE_W
        request 1, r8, r4
        addi    r3, r8, 16               ; the entry of VICTIM + 8 KiB
        request 2, r3, r0
        mmu_update_n 3
        ; 12. more than MMU_UPDATE_MAX requests, the first of them valid: E2BIG, nothing applied
        mmu_update_n MMU_UPDATE_MAX + 1
        ; 13. requests the kernel cannot read: EFAULT at index 0
        li      r1, 0x40000000           ; 1 GiB: unmapped
        li      r2, 1
        hypercall HYPERCALL_MMU_UPDATE
        record  r1
        record  r2

        ; pins and unpins
        ld      r3, [r10 + START_SHARED_INFO]
        add     r3, r3, r11
        ori     r3, r3, MMU_CMD_PIN
        li      r4, 1
        try_mmu r3, r4                   ; 14. the shared info page: EPERM
        addi    r3, r14, 3 * 4096 + MMU_CMD_PIN
        try_mmu r3, r4                   ; 15. a pinned L1 again: EPINNED
        li      r3, VICTIM + 8 + MMU_CMD_PIN
        add     r3, r3, r11
        try_mmu r3, r4                   ; 16. not page-aligned: EINVAL
        li      r3, VICTIM + MMU_CMD_PIN
        add     r3, r3, r11
        li      r4, 5
        try_mmu r3, r4                   ; 17. level 5: EINVAL
        li      r3, VICTIM + 0x3000 + MMU_CMD_PIN
        add     r3, r3, r11
        li      r4, 1
        try_mmu r3, r4                   ; 18. a page the first L1 maps writable: EWRITABLE
        ld      r3, [r10 + START_MEM_SIZE]
        add     r3, r3, r11
        ori     r3, r3, MMU_CMD_PIN
        try_mmu r3, r4                   ; 19. a page past the guest's memory: ENOTOWNED
        ori     r3, r14, MMU_CMD_UNPIN
        try_mmu r3, r0                   ; 20. the current base: EINUSE
        addi    r3, r14, 3 * 4096 + MMU_CMD_UNPIN
        try_mmu r3, r0                   ; 21. an L1 an L2 names: EINUSE
        li      r3, VICTIM + 0x3000 + MMU_CMD_UNPIN
        add     r3, r3, r11
        try_mmu r3, r0                   ; 22. an ordinary page: ENOTTABLE
        li      r3, VICTIM + 5
        add     r3, r3, r11
        try_mmu r3, r0                   ; 23. command 5: EINVAL
        li      r3, VICTIM | MMU_CMD_INVLPG
        li      r4, 1
        try_mmu r3, r4                   ; 24. invlpg with val != 0: EINVAL

        ; 25. an L1 that maps itself writable: its own mapping made read-only first, then the pin: EWRITABLE
        li      r3, SELF_L1 | PTE_P | PTE_W
        add     r3, r3, r11
        li      r4, SELF_L1
        sd      r3, [r4]
        addi    r3, r8, 8 * ((SELF_L1 - VICTIM) >> 12)
        li      r4, SELF_L1 | PTE_P
        add     r4, r4, r11
        request 0, r3, r4
        li      r3, SELF_L1 | MMU_CMD_PIN
        add     r3, r3, r11
        li      r4, 1
        request 1, r3, r4
        mmu_update_n 2

        ; set_cr3: 26. unaligned: EINVAL; 27. an L1: ELEVEL; 28. an ordinary page: ENOTTABLE;
        ; 29. a user base that is an L3: ELEVEL
        addi    r1, r14, 8
        li      r2, 0
        hypercall HYPERCALL_SET_CR3
        record  r1
        addi    r1, r14, 3 * 4096
        li      r2, 0
        hypercall HYPERCALL_SET_CR3
        record  r1
        li      r1, VICTIM
        add     r1, r1, r11
        li      r2, 0
        hypercall HYPERCALL_SET_CR3
        record  r1
        mov     r1, r14
        addi    r2, r14, 4096
        hypercall HYPERCALL_SET_CR3
        record  r1

        ; what the attacked entries hold now (their read-only mapping): the victim remapped by
        ; batch 11's first request, its neighbour untouched, the L4's slots 256 and 511, the
        ; L2's slot 5
        li      r3, 3 * 4096 + 8 * (VICTIM >> 12)
        add     r3, r3, r12
        ld      r4, [r3]
        record  r4
        ld      r4, [r3 + 16]
        record  r4
        ld      r4, [r12 + 8 * 256]
        record  r4
        ld      r4, [r12 + 8 * 511]
        record  r4
        ld      r4, [r12 + 2 * 4096 + 8 * 5]
        record  r4
        results_end

.include "lib/end.s"
