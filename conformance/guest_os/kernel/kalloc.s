; The physical page allocator: a free list of 4 KiB frames and a reference count per frame.
;
; Free frames are FREE_START (0x400000) up to OS_MEMORY (README, memory map); each free frame
; holds the address of the next in its first quadword, as in xv6.  The reference count
; (REFCNT[frame >> 12], a quadword) is what copy-on-write needs: after fork a frame is mapped
; by several processes and is freed when the last mapping goes (Adams & Agesen 2006's
; forkwait is dominated by exactly this sharing and unsharing).

        .align  8
kmem_free:      .quad 0                ; head of the free list
kmem_nfree:     .quad 0                ; frames on it (for panics and tests)

; kinit(): put every frame of [FREE_START, OS_MEMORY) on the free list, lowest first out.
kinit:
        li      r1, OS_MEMORY - PAGE_SIZE
        arch_mem_top r1                ; the last frame the kernel may use
        li      r2, FREE_START
        li      r3, 0                  ; the list built so far
        li      r4, 0
ka_init_loop:
        sd      r3, [r1]
        mov     r3, r1
        addi    r4, r4, 1
        addi    r1, r1, -PAGE_SIZE
        bgeu    r1, r2, ka_init_loop
        la      r1, kmem_free
        sd      r3, [r1]
        la      r1, kmem_nfree
        sd      r4, [r1]
        ret

; kalloc_raw() -> r1 = a frame with reference count 1 (contents undefined), or 0
kalloc_raw:
        la      r2, kmem_free
        ld      r1, [r2]
        beqz    r1, ka_raw_done
        ld      r3, [r1]
        sd      r3, [r2]
        la      r2, kmem_nfree
        ld      r3, [r2]
        addi    r3, r3, -1
        sd      r3, [r2]
        shri    r3, r1, 9              ; (frame >> 12) * 8
        li      r2, REFCNT
        add     r3, r3, r2
        li      r2, 1
        sd      r2, [r3]
ka_raw_done:
        ret

; kalloc() -> r1 = a zeroed frame with reference count 1, or 0
kalloc:
        push    r8
        call    kalloc_raw
        beqz    r1, ka_done
        mov     r8, r1
        call    kpage_zero
        mov     r1, r8
ka_done:
        pop     r8
        ret

; kref_inc(r1 = frame): one more mapping of the frame.
kref_inc:
        shri    r1, r1, 9
        li      r2, REFCNT
        add     r1, r1, r2
        ld      r2, [r1]
        addi    r2, r2, 1
        sd      r2, [r1]
        ret

; kref_get(r1 = frame) -> r1 = its reference count
kref_get:
        shri    r1, r1, 9
        li      r2, REFCNT
        add     r1, r1, r2
        ld      r1, [r1]
        ret

; kfree(r1 = frame): drop one reference; the frame goes back on the free list at zero.
; Freeing a frame that is already free, or outside the allocator's range, is a kernel bug.
kfree:
        li      r2, FREE_START
        bltu    r1, r2, ka_bad
        li      r2, OS_MEMORY
        bgeu    r1, r2, ka_bad
        andi    r2, r1, PAGE_SIZE - 1
        bnez    r2, ka_bad
        shri    r3, r1, 9
        li      r2, REFCNT
        add     r3, r3, r2
        ld      r2, [r3]
        beqz    r2, ka_bad
        addi    r2, r2, -1
        sd      r2, [r3]
        bnez    r2, ka_free_done
        la      r2, kmem_free
        ld      r3, [r2]
        sd      r3, [r1]
        sd      r1, [r2]
        la      r2, kmem_nfree
        ld      r3, [r2]
        addi    r3, r3, 1
        sd      r3, [r2]
ka_free_done:
        ret
ka_bad:
        la      r1, ka_bad_msg
        call    panic

ka_bad_msg:
        .asciz  "kfree: bad frame"
        .align  4
