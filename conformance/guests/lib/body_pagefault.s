; The body of the pagefault guest, shared by conformance/guests/pagefault.s and its paravirtual port: two page faults repaired and retried.
main:
        call    paging_on
        gate    14, h_pf, GATE_P
        li      r6, PT
        li      r7, DATA + 0x5000 | PTE_P | PTE_U
        pte_store r7, r6, 40           ; PAGED_VA + 0x5000: present, user, read-only
        li      r6, PAGED_VA + 0x3000
        li      r7, 0x1111
        sd      r7, [r6]               ; not present: #PF, mapped, retried
        ld      r1, [r6]
        la      r6, last_cr2
        ld      r3, [r6]
        user_mode back
        li      r6, PAGED_VA + 0x5000
        li      r7, 0x2222
        sd      r7, [r6]               ; read-only: #PF, made writable, retried
        ld      r2, [r6]
        int     VEC_BACK
back:   la      r6, last_cr2
        ld      r4, [r6]
        li      r6, 0
        li      r7, 0
        jmp     finish

; h_pf: map PAGED_VA + 4096 * i to DATA + 4096 * i, user-writable, whatever the cause.
h_pf:   push    r13                    ; stack: r13, error code, pc, cs, FLAGS, sp
        push    r14
        push    r12
        ld      r14, [sp + 24]
        shli    r14, r14, 8
        ori     r13, r14, 14
        call    log_event
        read_cr2 r13
        la      r14, last_cr2
        sd      r13, [r14]
        shri    r14, r13, 12
        andi    r14, r14, 511
        shli    r12, r14, 12
        li      r13, DATA | PTE_PWU
        add     r12, r12, r13          ; the new PTE
        shli    r14, r14, 3
        li      r13, PT
        add     r14, r14, r13
        pte_store r12, r14, 0
        read_cr2 r13
        flush_page r13
        pop     r12
        pop     r14
        pop     r13
        addi    sp, sp, 8
        trap_return

.align 8
last_cr2: .quad 0
