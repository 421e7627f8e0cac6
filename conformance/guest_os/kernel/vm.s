; Virtual memory: the kernel's tables, per-process 4-level tables, demand paging, copy-on-write, brk, mprotect, copyin/copyout.
;
; Every process's PML4 has two entries (README, memory map): entry 0 points to the kernel's
; PDPT, shared by all (the kernel's 2 MiB pages and the user text's 4 KiB pages, all global so
; that they survive CR3 writes, architecture.md §2 CR4_PGE), and entry 1 to the process's own
; PDPT, under which its heap (from USER_BASE up) and stack (below USER_STACK_TOP) live.  Only
; this private part is copied at fork, freed at exit and traced for copy-on-write.
;
; Leaf entries of user pages carry PTE_COW (bit 9, ignored by the walker, §7.2) when the page
; is logically writable but shared: the hardware sees it read-only, the first write faults,
; and the fault handler copies it (or just makes it writable again when the last other
; mapping is gone).  Every change to an entry that may be cached is followed by invlpg or a
; CR3 write (§8.1).  The kernel reaches user memory only through copyin/copyout, which walk
; the tables in software and use the one-to-one map of RAM: the kernel never takes a page
; fault on a user address.

.equ USER_BASE, 0x8000000000           ; PML4 entry 1 (README)
.equ USER_STACK_TOP, 0x8040000000
.equ USER_STACK_SIZE, 0x100000         ; 1 MiB
.equ USER_STACK_BOTTOM, USER_STACK_TOP - USER_STACK_SIZE
.equ USER_HEAP_MAX, USER_STACK_BOTTOM & ~0x1fffff  ; brk stays out of the stack's page table
.equ PTE_COW, 1 << 9                   ; software: shared, copy on the first write
.equ PTE_TABLE, PTE_P | PTE_W | PTE_U  ; non-leaf: the leaf decides (W and U AND over levels, §7.3)
.equ PTE_UPAGE, PTE_P | PTE_W | PTE_U  ; a private user page
.equ PTE_KLARGE, PTE_P | PTE_W | PTE_PS | PTE_G  ; a kernel 2 MiB page
.equ PTE_UTEXT, PTE_P | PTE_U | PTE_G  ; a page of user text: read-only, the same everywhere

; pte_frame rd, rs: the frame address of entry rs (include/arch.s).

        .align  8
cur_cr3:        .quad 0                ; the CR3 loaded now (switchuvm skips an equal write)

; kvm_init(): build the kernel's tables and turn paging on (include/arch.s: arch_kvm_init).
kvm_init:
        arch_kvm_init
        ret

; switchuvm(r1 = pml4): load the address space unless it is loaded already (a CR3 write
; flushes the non-global TLB entries, §8.1: switching back to the same process keeps them).
switchuvm:
        la      r2, cur_cr3
        ld      r3, [r2]
        beq     r1, r3, vm_switch_done
        sd      r1, [r2]
        arch_set_cr3 r1
vm_switch_done:
        ret

; walk(r1 = pml4, r2 = va, r3 = alloc) -> r1 = the address of va's level-1 entry, or 0 (a
; missing table when alloc = 0, or no memory).  Only for the private part (PML4 entry >= 1).
walk:
        li      r4, 12
; walk_to(r1 = pml4, r2 = va, r3 = alloc, r4 = 12 for the level-1 entry, 21 for the level-2
; (page directory) entry) -> r1 = the entry's address, or 0 as walk.
walk_to:
        save_callee
        mov     r8, r2
        mov     r9, r3
        mov     r10, r1                ; the table of this level
        mov     r13, r4
        li      r11, 39                ; index shift: PML4, PDPT, PD, PT (§7.1)
vm_walk_loop:
        shr     r5, r8, r11
        andi    r5, r5, 511
        shli    r5, r5, 3
        add     r12, r10, r5           ; the entry
        beq     r11, r13, vm_walk_found
        ld      r6, [r12]
        andi    r7, r6, PTE_P
        bnez    r7, vm_walk_next
        beqz    r9, vm_walk_fail
        call    kalloc
        beqz    r1, vm_walk_fail
        arch_batch_begin               ; the new table's pin and its entry: one batch
        arch_new_table r1, r11         ; a table of the level below the one at shift r11
        ori     r6, r1, PTE_TABLE
        pte_write r12, r6
        arch_batch_end
vm_walk_next:
        pte_frame r10, r6
        addi    r11, r11, -9
        jmp     vm_walk_loop
vm_walk_found:
        mov     r1, r12
        jmp     vm_walk_ret
vm_walk_fail:
        li      r1, 0
vm_walk_ret:
        restore_callee
        ret

; vm_valid(r1 = va) -> r1 = 1 if va may be mapped in the current process: the heap
; [USER_BASE, brk) or the stack [USER_STACK_BOTTOM, USER_STACK_TOP); else 0.
vm_valid:
        li      r2, USER_STACK_BOTTOM
        bltu    r1, r2, vm_valid_heap
        li      r2, USER_STACK_TOP
        bltu    r1, r2, vm_valid_yes
        jmp     vm_valid_no
vm_valid_heap:
        li      r2, USER_BASE
        bltu    r1, r2, vm_valid_no
        la      r2, cur
        ld      r2, [r2]
        ld      r2, [r2 + P_BRK]
        bltu    r1, r2, vm_valid_yes
vm_valid_no:
        li      r1, 0
        ret
vm_valid_yes:
        li      r1, 1
        ret

; vm_touch(r1 = va, r2 = write) -> r1 = the physical address of va in the current process,
; after doing what a page fault would: allocate a demand page, break copy-on-write for a
; write.  The user text may be read too.  0 if the access is not allowed (outside the text,
; heap and stack, a write to a read-only page) or memory ran out.
vm_touch:
        push    r8
        push    r9
        push    r10
        push    r11
        push    r12
        mov     r8, r1
        mov     r9, r2
        li      r3, USER_TEXT          ; the shared user text: mapped one to one, read-only
        bltu    r8, r3, vm_touch_fail
        li      r3, USER_TEXT_END
        bgeu    r8, r3, vm_touch_private
        bnez    r9, vm_touch_fail
        mov     r1, r8
        jmp     vm_touch_ret
vm_touch_private:
        call    vm_valid
        beqz    r1, vm_touch_fail
        la      r1, cur
        ld      r1, [r1]
        ld      r1, [r1 + P_PML4]
        mov     r2, r8
        li      r3, 1
        call    walk
        beqz    r1, vm_touch_fail
        mov     r10, r1                ; the entry's address
        ld      r11, [r10]             ; the entry
        andi    r3, r11, PTE_P
        bnez    r3, vm_touch_present
        call    kalloc                 ; demand paging: a zeroed page on the first touch
        beqz    r1, vm_touch_fail
        ori     r11, r1, PTE_UPAGE
        arch_batch_begin               ; the entry and its invalidation: one batch
        pte_write r10, r11
        arch_invlpg r8
        arch_batch_end
        li      r3, USER_STACK_BOTTOM  ; a stack page: lower the stack's low-water mark
        bltu    r8, r3, vm_touch_ok
        shri    r3, r8, 12
        shli    r3, r3, 12
        la      r4, cur
        ld      r4, [r4]
        ld      r5, [r4 + P_STACK_LO]
        bgeu    r3, r5, vm_touch_ok
        sd      r3, [r4 + P_STACK_LO]
        jmp     vm_touch_ok
vm_touch_present:
        beqz    r9, vm_touch_ok
        andi    r3, r11, PTE_W
        bnez    r3, vm_touch_ok
        andi    r3, r11, PTE_COW
        beqz    r3, vm_touch_fail      ; read-only by mprotect: no write
        pte_frame r12, r11             ; copy-on-write: the shared frame
        mov     r1, r12
        call    kref_get
        li      r3, 1
        beq     r1, r3, vm_touch_own
        call    kalloc_raw             ; still shared: copy it into a frame of our own
        beqz    r1, vm_touch_fail
        mov     r11, r1
        mov     r2, r12
        call    kpage_copy
        mov     r1, r12
        call    kfree                  ; one reference fewer to the shared frame
        ori     r11, r11, PTE_UPAGE
        jmp     vm_touch_set
vm_touch_own:                          ; the other mappings are gone: just make it writable
        xori    r11, r11, PTE_COW
        ori     r11, r11, PTE_W
vm_touch_set:
        arch_batch_begin
        pte_write r10, r11
        arch_invlpg r8
        arch_batch_end
vm_touch_ok:
        pte_frame r1, r11
        andi    r2, r8, PAGE_SIZE - 1
        or      r1, r1, r2
        jmp     vm_touch_ret
vm_touch_fail:
        li      r1, 0
vm_touch_ret:
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

; vm_fault(r1 = address, r2 = error code) -> r1 = 0 if the fault was repaired (the
; instruction is retried), -1 if not.  A not-present page in the heap or stack is a demand
; page; a write to a present page is repaired only if it is copy-on-write (§7.5: PF_P, PF_W).
vm_fault:
        andi    r3, r2, PF_P
        beqz    r3, vm_fault_go
        andi    r3, r2, PF_W
        beqz    r3, vm_fault_no        ; a present page and a read: nothing to repair
vm_fault_go:
        andi    r2, r2, PF_W
        call    vm_touch
        beqz    r1, vm_fault_no
        li      r1, 0
        ret
vm_fault_no:
        li      r1, -1
        ret

; copyout(r1 = user dst, r2 = kernel src, r3 = n) -> r1 = 0, or -1 if some user page may
; not be written.  Page by page through vm_touch: demand pages are allocated and
; copy-on-write broken exactly as a user write would.
copyout:
        push    r8
        push    r9
        push    r10
        push    r11
        mov     r8, r1
        mov     r9, r2
        mov     r10, r3
vm_co_loop:
        beqz    r10, vm_co_ok
        mov     r1, r8
        li      r2, 1
        call    vm_touch
        beqz    r1, vm_co_fail
        andi    r3, r8, PAGE_SIZE - 1  ; bytes left in this page
        li      r4, PAGE_SIZE
        sub     r11, r4, r3
        bgeu    r10, r11, vm_co_chunk
        mov     r11, r10
vm_co_chunk:
        mov     r2, r9
        mov     r3, r11
        call    kmemcpy
        add     r8, r8, r11
        add     r9, r9, r11
        sub     r10, r10, r11
        jmp     vm_co_loop
vm_co_ok:
        li      r1, 0
        jmp     vm_co_ret
vm_co_fail:
        li      r1, -1
vm_co_ret:
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

; copyin(r1 = kernel dst, r2 = user src, r3 = n) -> r1 = 0, or -1 if some user page may not
; be read.  An untouched heap or stack page reads as zeros (it is allocated, as a read would).
copyin:
        push    r8
        push    r9
        push    r10
        push    r11
        mov     r8, r2                 ; user address
        mov     r9, r1                 ; kernel address
        mov     r10, r3
vm_ci_loop:
        beqz    r10, vm_co_ok
        mov     r1, r8
        li      r2, 0
        call    vm_touch
        beqz    r1, vm_co_fail
        mov     r2, r1                 ; the source: the user page, one to one
        andi    r3, r8, PAGE_SIZE - 1
        li      r4, PAGE_SIZE
        sub     r11, r4, r3
        bgeu    r10, r11, vm_ci_chunk
        mov     r11, r10
vm_ci_chunk:
        mov     r1, r9
        mov     r3, r11
        call    kmemcpy
        add     r8, r8, r11
        add     r9, r9, r11
        sub     r10, r10, r11
        jmp     vm_ci_loop

; uvm_create() -> r1 = a new PML4 sharing the kernel's entry 0, or 0.  Its pin and its entry
; form one batch (include/arch.s: arch_batch_begin).
uvm_create:
        call    kalloc
        beqz    r1, vm_create_done
        arch_batch_begin
        arch_new_l4 r1
        li      r2, KPDPT | PTE_TABLE
        pte_write r1, r2
        arch_batch_end
vm_create_done:
        ret

; Fork and exit touch only what a process can have mapped: its heap [USER_BASE, brk) and
; its stack [P_STACK_LO, USER_STACK_TOP) (P_STACK_LO: the lowest stack page ever allocated).
; They visit those ranges one page table (2 MiB) at a time instead of scanning whole tables,
; so their cost follows the pages a process uses: forkwait's child has one or two.  Two facts
; of the layout make this simple: the user region is exactly PDPT entry 0 (USER_STACK_TOP =
; USER_BASE + 1 GiB), and the heap and the stack never share a page table (USER_HEAP_MAX).

; page_roundup reg: round the address in reg up to a page boundary.
.macro page_roundup reg
        addi    \reg, \reg, PAGE_SIZE - 1
        shri    \reg, \reg, 12
        shli    \reg, \reg, 12
.endm

; chunk_end rd, va, hi: rd = min(hi, the next 2 MiB boundary above va).  Clobbers r7.
.macro chunk_end rd, va, hi
        li      r7, 0x1fffff
        or      \rd, \va, r7
        addi    \rd, \rd, 1
        bgeu    \hi, \rd, vm_ce\@
        mov     \rd, \hi
vm_ce\@:
.endm

; uvm_copy(r1 = parent process, r2 = child pml4) -> r1 = 0, or -1 when memory ran out (the
; child's tables then hold what was copied so far, consistently: uvm_free frees them).
; Writable pages become copy-on-write in both; the caller flushes the parent's TLB.  Its
; page-table writes form one batch (include/arch.s: arch_batch_begin), applied before return.
uvm_copy:
        push    r8
        push    r9
        arch_batch_begin
        mov     r8, r1
        mov     r9, r2
        ld      r1, [r8 + P_PML4]
        mov     r2, r9
        li      r3, USER_BASE
        ld      r4, [r8 + P_BRK]
        page_roundup r4
        call    uvm_copy_range
        bnez    r1, vm_copy_ret
        ld      r1, [r8 + P_PML4]
        mov     r2, r9
        ld      r3, [r8 + P_STACK_LO]
        li      r4, USER_STACK_TOP
        call    uvm_copy_range
vm_copy_ret:
        arch_batch_end
        pop     r9
        pop     r8
        ret

; uvm_copy_range(r1 = parent pml4, r2 = child pml4, r3 = lo, r4 = hi: page-aligned) -> r1 =
; 0 or -1.  Each present page of [lo, hi) is mapped in the child too, one more reference.
uvm_copy_range:
        save_callee
        mov     r8, r1
        mov     r9, r2
        mov     r10, r3                ; va
        mov     r11, r4
vm_cr_chunk:
        bgeu    r10, r11, vm_cr_ok
        chunk_end r12, r10, r11
        mov     r1, r8
        mov     r2, r10
        li      r3, 0
        call    walk
        beqz    r1, vm_cr_skip         ; no page table here: nothing mapped
        mov     r13, r1                ; the parent's entry
        arch_batch_sync                ; the child's walk reads entries queued by an earlier chunk
        mov     r1, r9
        mov     r2, r10
        li      r3, 1
        call    walk
        beqz    r1, vm_cr_fail
        mov     r14, r1                ; the child's entry
vm_cr_page:
        bgeu    r10, r12, vm_cr_chunk
        ld      r3, [r13]
        andi    r4, r3, PTE_P
        beqz    r4, vm_cr_next
        andi    r4, r3, PTE_W | PTE_COW
        beqz    r4, vm_cr_share        ; read-only (mprotect): shared as it is
        ori     r3, r3, PTE_W | PTE_COW
        xori    r3, r3, PTE_W          ; copy-on-write: read-only for the hardware
        pte_write r13, r3
vm_cr_share:
        pte_write r14, r3
        pte_frame r1, r3
        call    kref_inc
vm_cr_next:
        addi    r13, r13, 8
        addi    r14, r14, 8
        addi    r10, r10, PAGE_SIZE
        jmp     vm_cr_page
vm_cr_skip:
        mov     r10, r12
        jmp     vm_cr_chunk
vm_cr_ok:
        li      r1, 0
        jmp     vm_cr_ret
vm_cr_fail:
        li      r1, -1
vm_cr_ret:
        restore_callee
        ret

; uvm_free(r1 = process): drop a reference to every user frame, free the private tables and
; the PML4.  The PML4 must not be loaded in CR3 (exit switches to KPML4 first).  Its
; page-table writes form one batch, as uvm_copy's (include/arch.s: arch_batch_begin).
uvm_free:
        push    r8
        push    r9
        arch_batch_begin
        mov     r8, r1
        ld      r1, [r8 + P_PML4]
        li      r2, USER_BASE
        ld      r3, [r8 + P_BRK]
        page_roundup r3
        call    uvm_free_range
        ld      r1, [r8 + P_PML4]
        ld      r2, [r8 + P_STACK_LO]
        li      r3, USER_STACK_TOP
        call    uvm_free_range
        arch_free_uvm r8               ; the PML4, its PDPT and page directory become pages again
        ld      r1, [r8 + P_PML4]      ; the PDPT and its one page directory
        ld      r1, [r1 + 8]
        andi    r2, r1, PTE_P
        beqz    r2, vm_free_top
        pte_frame r9, r1
        ld      r1, [r9]
        andi    r2, r1, PTE_P
        beqz    r2, vm_free_pdpt
        pte_frame r1, r1
        call    kfree
vm_free_pdpt:
        mov     r1, r9
        call    kfree
vm_free_top:
        ld      r1, [r8 + P_PML4]
        call    kfree
        arch_batch_end
        pop     r9
        pop     r8
        ret

; uvm_free_range(r1 = pml4, r2 = lo, r3 = hi: page-aligned): free the pages of [lo, hi) and
; the page tables that map them (their directory entries cleared).
uvm_free_range:
        save_callee
        mov     r8, r1
        mov     r9, r2                 ; va
        mov     r10, r3
vm_fr_chunk:
        bgeu    r9, r10, vm_fr_done
        chunk_end r11, r9, r10
        mov     r1, r8
        mov     r2, r9
        li      r3, 0
        li      r4, 21
        call    walk_to                ; the page-directory entry of this 2 MiB
        beqz    r1, vm_fr_skip
        mov     r12, r1
        ld      r1, [r12]
        andi    r2, r1, PTE_P
        beqz    r2, vm_fr_skip
        pte_frame r13, r1              ; the page table
        shri    r2, r9, 12
        andi    r2, r2, 511
        shli    r2, r2, 3
        add     r13, r13, r2           ; the entry of va
vm_fr_page:
        bgeu    r9, r11, vm_fr_table
        ld      r1, [r13]
        andi    r2, r1, PTE_P
        beqz    r2, vm_fr_next
        pte_frame r1, r1
        call    kfree
vm_fr_next:
        addi    r13, r13, 8
        addi    r9, r9, PAGE_SIZE
        jmp     vm_fr_page
vm_fr_table:
        ld      r1, [r12]
        pte_write r12, r0
        pte_frame r1, r1
        arch_free_table r1
        call    kfree
        jmp     vm_fr_chunk
vm_fr_skip:
        mov     r9, r11
        jmp     vm_fr_chunk
vm_fr_done:
        restore_callee
        ret

; vm_unmap(r1 = va): remove the current process's page at va, if any.
vm_unmap:
        push    r8
        push    r9
        mov     r8, r1
        la      r1, cur
        ld      r1, [r1]
        ld      r1, [r1 + P_PML4]
        mov     r2, r8
        li      r3, 0
        call    walk
        beqz    r1, vm_unmap_done
        mov     r9, r1
        ld      r1, [r9]
        andi    r2, r1, PTE_P
        beqz    r2, vm_unmap_done
        pte_frame r1, r1
        call    kfree
        pte_write r9, r0
        arch_invlpg r8
vm_unmap_done:
        pop     r9
        pop     r8
        ret

; sys_brk(r1 = addr) -> the new break, or -1.  0 asks for the current break.  Growing only
; moves the break (pages come on the first touch); shrinking frees the whole pages above it.
sys_brk:
        push    r8
        push    r9
        push    r10
        la      r2, cur
        ld      r8, [r2]
        ld      r9, [r8 + P_BRK]
        beqz    r1, vm_brk_cur
        li      r2, USER_BASE
        bltu    r1, r2, vm_brk_fail
        li      r2, USER_HEAP_MAX
        bltu    r2, r1, vm_brk_fail
        mov     r10, r1
        sd      r1, [r8 + P_BRK]
        bgeu    r1, r9, vm_brk_done
        addi    r8, r1, PAGE_SIZE - 1  ; shrink: unmap [roundup(new), roundup(old))
        shri    r8, r8, 12
        shli    r8, r8, 12
        addi    r9, r9, PAGE_SIZE - 1
        shri    r9, r9, 12
        shli    r9, r9, 12
        arch_batch_begin               ; the unmapped pages' entries and invalidations: one batch
vm_brk_free:
        bgeu    r8, r9, vm_brk_end
        mov     r1, r8
        call    vm_unmap
        addi    r8, r8, PAGE_SIZE
        jmp     vm_brk_free
vm_brk_end:
        arch_batch_end
vm_brk_done:
        mov     r1, r10
        jmp     vm_brk_ret
vm_brk_cur:
        mov     r1, r9
        jmp     vm_brk_ret
vm_brk_fail:
        li      r1, -1
vm_brk_ret:
        pop     r10
        pop     r9
        pop     r8
        ret

; sys_mprotect(r1 = addr, r2 = len, r3 = prot) -> 0 or -1.  addr must be page-aligned and
; every page of [addr, addr + len) in the heap or stack.  prot bit 1 (PROT_WRITE) makes the
; pages writable (copy-on-write if still shared), else read-only.  Untouched pages are
; allocated first, so that the protection has an entry to live in.
sys_mprotect:
        push    r8
        push    r9
        push    r10
        push    r11
        andi    r4, r1, PAGE_SIZE - 1
        bnez    r4, vm_mp_fail
        blt     r2, r0, vm_mp_fail
        mov     r8, r1
        add     r9, r1, r2
        addi    r9, r9, PAGE_SIZE - 1
        shri    r9, r9, 12
        shli    r9, r9, 12
        bltu    r9, r8, vm_mp_fail     ; wrapped around
        mov     r10, r3
        mov     r11, r8
vm_mp_check:
        bgeu    r11, r9, vm_mp_apply
        mov     r1, r11
        call    vm_valid
        beqz    r1, vm_mp_fail
        addi    r11, r11, PAGE_SIZE
        jmp     vm_mp_check
vm_mp_apply:
        bgeu    r8, r9, vm_mp_ok
        mov     r1, r8
        li      r2, 0
        call    vm_touch
        beqz    r1, vm_mp_fail
        la      r1, cur
        ld      r1, [r1]
        ld      r1, [r1 + P_PML4]
        mov     r2, r8
        li      r3, 0
        call    walk
        mov     r11, r1
        ld      r3, [r11]
        ori     r3, r3, PTE_W | PTE_COW
        xori    r3, r3, PTE_W | PTE_COW ; read-only
        andi    r4, r10, PROT_WRITE
        beqz    r4, vm_mp_set
        push    r3
        pte_frame r1, r3
        call    kref_get
        pop     r3
        li      r4, 1
        beq     r1, r4, vm_mp_own
        ori     r3, r3, PTE_COW        ; shared with another process: writable after a copy
        jmp     vm_mp_set
vm_mp_own:
        ori     r3, r3, PTE_W
vm_mp_set:
        arch_batch_begin
        pte_write r11, r3
        arch_invlpg r8
        arch_batch_end
        addi    r8, r8, PAGE_SIZE
        jmp     vm_mp_apply
vm_mp_ok:
        li      r1, 0
        jmp     vm_mp_ret
vm_mp_fail:
        li      r1, -1
vm_mp_ret:
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret
