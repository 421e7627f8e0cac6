; The paravirtual port of conformance/guests/pagefault.s: page faults in the kernel and in user mode, repaired and retried.
;
; A not-present write in the kernel and a user write to a read-only page, each repaired by the
; kernel's #PF handler — which reads the faulting address from SHARED_CR2 (docs/paravirt-abi.md
; §6.2; CR2 is the VMM's to read) and changes the entry by mmu_update (§7.3) and invlpg (§4.7)
; where the native one stores into the table and executes invlpg.  r1/r2 = the values read
; back, r3/r4 = the faults' CR2; the log holds vector 14 with the error codes (PF_W = 2 in the
; kernel, PF_P | PF_W | PF_U = 7 from user mode: §6.2 gives PF_U exactly for the virtual CPL 3).
.include "lib/directed.s"
main:
        call    paging_on
        gate    14, h_pf, INTERRUPT_GATE
        li      r13, PT + 40           ; PAGED_VA + 0x5000: present, user, read-only
        li      r14, DATA + 0x5000 | PTE_P | PTE_U
        call    pte_set
        li      r6, PAGED_VA + 0x3000
        li      r7, 0x1111
        sd      r7, [r6]               ; not present: #PF, mapped, retried
        ld      r1, [r6]
        la      r6, last_cr2
        ld      r3, [r6]
        enter_user back
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
        la      r13, shared_info
        ld      r13, [r13]
        ld      r13, [r13 + SHARED_CR2]
        la      r14, last_cr2
        sd      r13, [r14]
        shri    r14, r13, 12
        andi    r14, r14, 511
        shli    r12, r14, 12
        li      r13, DATA | PTE_PWU
        add     r12, r12, r13          ; the new PTE
        shli    r14, r14, 3
        li      r13, PT
        add     r13, r14, r13
        mov     r14, r12
        call    pte_set
        la      r13, last_cr2
        ld      r13, [r13]
        call    pv_invlpg
        pop     r12
        pop     r14
        pop     r13
        addi    sp, sp, 8
        push    r7
        pv_iret

.align 8
last_cr2: .quad 0
.include "lib/end.s"
