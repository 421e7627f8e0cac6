; The mmu workload: TLB misses, page-table updates and a copy-on-write fork of a large address space (Adams & Agesen 2006 §6).
;
; The paper finds the MMU the costliest thing to virtualize in software: every guest
; page-table write is a trace or a hidden fault for a shadow-paging VMM, every CR3 load and
; invlpg an exit.  Three parts, each printing a checksum (models.mmu_model states them in
; Python):
;   (a) tlb      - n read-modify-writes of LCG-chosen quadwords over W = MMU_PAGES heap
;                  pages (2 MiB: 8 times the reach of the 64-entry data TLB, manual §8.2);
;   (b) mprotect - (n >> 5) + 1 times: the range of MMU_RANGE_PAGES pages made read-only,
;                  read, made writable, written (two mprotects, i.e. PTE updates + invlpg);
;   (c) fork     - (n >> 12) + 1 rounds: the parent fills all W pages and forks; the child
;                  writes every MMU_COW_STRIDE-th page (copy-on-write breaks) and exits with
;                  its checksum's low 7 bits; the parent checks its own pages are unchanged.
; Heap (page-aligned): [A, A + W pages) the working set, then the range of (b).

.equ MMU_PAGES, 512
.equ MMU_RANGE_PAGES, 16
.equ MMU_TOUCH_OFFSET, 16
.equ MMU_COW_STRIDE, 4
.equ MMU_LCG_A, 6364136223846793005        ; models.LCG_A, LCG_C
.equ MMU_LCG_C, 1442695040888963407
.equ MMU_FNV_OFFSET, 0xcbf29ce484222325
.equ MMU_FNV_PRIME, 0x100000001b3

mmu_main:                                  ; mmu_main(r1 = n) -> r1 = exit status
        save_callee
        addi    sp, sp, -16                ; [sp]: a wait status; [sp + 8]: a checksum
        mov     r8, r1                     ; r8 = n
        li      r1, 0
        call    u_brk
        blt     r1, r0, mmu_fail
        li      r2, PAGE_SIZE - 1
        add     r9, r1, r2                 ; r9 = A, page-aligned
        shri    r9, r9, 12
        shli    r9, r9, 12
        li      r1, (MMU_PAGES + MMU_RANGE_PAGES) * PAGE_SIZE
        add     r1, r1, r9
        mov     r10, r1
        call    u_brk
        blt     r1, r0, mmu_fail
        bltu    r1, r10, mmu_fail

        ; (a) random read-modify-writes over the working set
        mov     r10, r8                    ; r10 = x
        li      r11, MMU_FNV_OFFSET        ; r11 = checksum
        li      r12, MMU_LCG_A
        li      r13, MMU_LCG_C
        li      r14, MMU_FNV_PRIME
        li      r1, 0                      ; r1 = k
mmu_touch:
        bgeu    r1, r8, mmu_touched
        mul     r10, r10, r12
        add     r10, r10, r13
        shri    r2, r10, 33                ; page (x >> 33) mod W
        andi    r2, r2, MMU_PAGES - 1
        shli    r2, r2, 12
        shri    r3, r10, 24                ; quadword (x >> 24) mod 512
        andi    r3, r3, 511
        shli    r3, r3, 3
        add     r2, r2, r3
        add     r2, r2, r9
        ld      r3, [r2]
        xor     r11, r11, r3
        mul     r11, r11, r14
        add     r3, r3, r10
        sd      r3, [r2]
        addi    r1, r1, 1
        jmp     mmu_touch
mmu_touched:
        la      r1, mmu_s_head
        call    puts
        mov     r1, r8
        call    putdec
        la      r1, mmu_s_tlb
        call    puts
        mov     r1, r11
        call    puthex

        ; (b) mprotect toggles of the range after the working set
        shri    r10, r8, 5
        addi    r10, r10, 1                ; r10 = toggles
        li      r11, 0                     ; r11 = k
        li      r12, MMU_FNV_OFFSET        ; r12 = checksum
        li      r13, MMU_PAGES * PAGE_SIZE
        add     r13, r13, r9               ; r13 = the range
        li      r14, MMU_FNV_PRIME
mmu_toggle:
        bgeu    r11, r10, mmu_toggled
        mov     r1, r13
        li      r2, MMU_RANGE_PAGES * PAGE_SIZE
        li      r3, 0                      ; read-only
        call    u_mprotect
        blt     r1, r0, mmu_fail
        mov     r1, r13
        li      r2, MMU_RANGE_PAGES * PAGE_SIZE
        add     r2, r2, r13
mmu_toggle_read:
        ld      r3, [r1]
        xor     r12, r12, r3
        mul     r12, r12, r14
        li      r3, PAGE_SIZE
        add     r1, r1, r3
        bltu    r1, r2, mmu_toggle_read
        mov     r1, r13
        li      r2, MMU_RANGE_PAGES * PAGE_SIZE
        li      r3, PROT_WRITE
        call    u_mprotect
        blt     r1, r0, mmu_fail
        mov     r1, r13
        li      r2, MMU_RANGE_PAGES * PAGE_SIZE
        add     r2, r2, r13
        addi    r4, r11, 1
mmu_toggle_write:
        ld      r3, [r1]
        add     r3, r3, r4
        sd      r3, [r1]
        li      r3, PAGE_SIZE
        add     r1, r1, r3
        bltu    r1, r2, mmu_toggle_write
        addi    r11, r11, 1
        jmp     mmu_toggle
mmu_toggled:
        la      r1, mmu_s_prot
        call    puts
        mov     r1, r10
        call    putdec
        li      r1, ' '
        call    putc
        mov     r1, r12
        call    puthex

        ; (c) fork rounds over the filled working set
        shri    r10, r8, 12
        addi    r10, r10, 1                ; r10 = rounds
        li      r11, 0                     ; r11 = r
        li      r12, 0                     ; r12 = rounds whose parent pages stayed intact
        li      r13, 0                     ; r13 = sum of the children's statuses
        li      r14, 0                     ; r14 = the parent's checksum after the wait
mmu_round:
        bgeu    r11, r10, mmu_rounds_done
        mov     r1, r9
        mov     r2, r11
        call    mmu_fill
        mov     r1, r9
        call    mmu_sum
        sd      r1, [sp + 8]
        call    u_fork
        blt     r1, r0, mmu_round_next
        beqz    r1, mmu_child
        sd      r0, [sp]
        mov     r1, sp
        call    u_wait
        blt     r1, r0, mmu_round_next
        ld      r1, [sp]
        add     r13, r13, r1
        mov     r1, r9
        call    mmu_sum
        mov     r14, r1
        ld      r2, [sp + 8]
        bne     r1, r2, mmu_round_next
        addi    r12, r12, 1
mmu_round_next:
        addi    r11, r11, 1
        jmp     mmu_round
mmu_child:
        mov     r1, r9                     ; copy-on-write breaks: every 4th page
        li      r2, MMU_PAGES * PAGE_SIZE
        add     r2, r2, r9
        li      r3, MMU_COW_STRIDE * PAGE_SIZE
mmu_child_write:
        ld      r4, [r1 + MMU_TOUCH_OFFSET]
        li      r5, 0xffff
        add     r4, r4, r5
        sd      r4, [r1 + MMU_TOUCH_OFFSET]
        add     r1, r1, r3
        bltu    r1, r2, mmu_child_write
        mov     r1, r9
        call    mmu_sum
        andi    r1, r1, 0x7f
        call    u_exit
mmu_rounds_done:
        la      r1, mmu_s_fork
        call    puts
        mov     r1, r10
        call    putdec
        la      r1, mmu_s_ok
        call    puts
        mov     r1, r12
        call    putdec
        la      r1, mmu_s_child
        call    puts
        mov     r1, r13
        call    putdec
        la      r1, mmu_s_parent
        call    puts
        mov     r1, r14
        call    puthex
        li      r1, 10
        call    putc
        li      r1, 0
        beq     r12, r10, mmu_out
        li      r1, 1                      ; a fork round changed the parent's pages
        jmp     mmu_out
mmu_fail:
        li      r1, 2                      ; brk or mprotect refused
mmu_out:
        addi    sp, sp, 16
        restore_callee
        ret

; mmu_fill(r1 = A, r2 = round r): page p's quadword at MMU_TOUCH_OFFSET = (p + 1) LCG_A + r
mmu_fill:
        li      r3, MMU_LCG_A
        li      r4, MMU_PAGES * PAGE_SIZE
        add     r4, r4, r1
        li      r5, PAGE_SIZE
        mov     r6, r3                     ; r6 = (p + 1) LCG_A
mmu_fill_page:
        add     r7, r6, r2
        sd      r7, [r1 + MMU_TOUCH_OFFSET]
        add     r6, r6, r3
        add     r1, r1, r5
        bltu    r1, r4, mmu_fill_page
        ret

; mmu_sum(r1 = A) -> r1 = FNV mix of every page's quadword at MMU_TOUCH_OFFSET
mmu_sum:
        li      r2, MMU_PAGES * PAGE_SIZE
        add     r2, r2, r1
        li      r3, MMU_FNV_OFFSET
        li      r4, MMU_FNV_PRIME
        li      r5, PAGE_SIZE
mmu_sum_page:
        ld      r6, [r1 + MMU_TOUCH_OFFSET]
        xor     r3, r3, r6
        mul     r3, r3, r4
        add     r1, r1, r5
        bltu    r1, r2, mmu_sum_page
        mov     r1, r3
        ret

mmu_s_head:
        .asciz  "mmu n="
mmu_s_tlb:
        .asciz  "\ntlb "
mmu_s_prot:
        .asciz  "\nmprotect "
mmu_s_fork:
        .asciz  "\nfork "
mmu_s_ok:
        .asciz  " ok="
mmu_s_child:
        .asciz  " child="
mmu_s_parent:
        .asciz  " parent="
        .align  4
