; The body of the spaces guest, shared by conformance/guests/spaces.s and its paravirtual port: two live address spaces and a remapped page.
.equ VEC_SYS, 0x42
main:
        call    paging_on
        call    paging_spaces
        gate    VEC_SYS, h_sys, GATE_P | GATE_DPL3
        gate    14, h_pf_log, GATE_P
        user_mode back
        li      r9, PAGED_VA
        ld      r1, [r9 + 8]           ; A: frame 0
        li      r10, 1
        int     VEC_SYS                ; to B
        ld      r2, [r9 + 8]           ; B: frame 7
        sd      r9, [r9 + 16]          ; through B: D in PT_B[0]
        li      r10, 2
        int     VEC_SYS                ; to A
        ld      r3, [r9 + 8]           ; A again: frame 0, not B's cached one
        ld      r4, [r9 + 16]
        li      r10, 3
        int     VEC_SYS                ; PAGED_VA -> frame 3, read-only
        ld      r5, [r9 + 8]
        sd      r9, [r9 + 16]          ; #PF(P|W|U), logged and skipped
        int     VEC_BACK
back:   li      r9, PT_B
        pte_load r6, r9
        li      r9, PT
        pte_load r7, r9
        li      r9, DATA + 0x7000
        ld      r8, [r9 + 16]
        jmp     finish

log_stub h_pf_log, 14, skip_err

; h_sys: r10 = 1: switch to B; 2: to A; 3: PT[0] = frame 3, P|U, then the page flushed (§8.1).
h_sys:  push    r13
        push    r14
        li      r13, 1
        beq     r10, r13, sys_b
        li      r13, 2
        beq     r10, r13, sys_a
        li      r13, DATA + 0x3000 | PTE_P | PTE_U
        li      r14, PT
        pte_store r13, r14, 0
        li      r14, PAGED_VA
        flush_page r14
        jmp     sys_out
sys_b:  li      r13, PML4_B
        load_cr3 r13
        jmp     sys_out
sys_a:  li      r13, PML4
        load_cr3 r13
sys_out:
        pop     r14
        pop     r13
        trap_return
