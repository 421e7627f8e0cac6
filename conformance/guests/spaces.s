; Mechanism: two live address spaces (docs/architecture.md §7, §8.1).  lib/paging.s builds A
; and B, which map PAGED_VA to different frames (marks 0x70 and 0x77 at offset 8).  Ring 3
; reads PAGED_VA in A, asks the kernel (int 0x42) to load CR3 with B, reads and writes the same
; address there, goes back to A, then the kernel remaps the page ring 3 has used (PTE changed,
; invlpg) to frame 3, read-only, and ring 3 reads it again and tries to write it (#PF, logged).
; r1-r5 = what ring 3 read: 0x70, 0x77, 0x70, 0 (A's frame was not written), 0x73;
; r6/r7 = PT_B[0] and PT[0] read back (A/D bits, §7.5), r8 = the quadword written through B.
.include "lib/prelude.s"
.include "lib/paging.s"
.equ VEC_SYS, 0x42
main:
        call    paging_on
        call    paging_spaces
        gate    VEC_SYS, h_sys, GATE_P | GATE_DPL3
        gate    14, h_pf_log, GATE_P
        enter_user 0, back
        li      r9, PAGED_VA
        ld      r1, [r9 + 8]           ; A: frame 0
        li      r10, 1
        int     VEC_SYS                ; CR3 = B
        ld      r2, [r9 + 8]           ; B: frame 7
        sd      r9, [r9 + 16]          ; through B: D in PT_B[0]
        li      r10, 2
        int     VEC_SYS                ; CR3 = A
        ld      r3, [r9 + 8]           ; A again: frame 0, not B's cached one
        ld      r4, [r9 + 16]
        li      r10, 3
        int     VEC_SYS                ; PAGED_VA -> frame 3, read-only
        ld      r5, [r9 + 8]
        sd      r9, [r9 + 16]          ; #PF(P|W|U), logged and skipped
        int     VEC_BACK
back:   li      r9, PT_B
        ld      r6, [r9]
        li      r9, PT
        ld      r7, [r9]
        li      r9, DATA + 0x7000
        ld      r8, [r9 + 16]
        jmp     finish

log_stub h_pf_log, 14, skip_err

; h_sys: r10 = 1: CR3 = B; 2: CR3 = A; 3: PT[0] = frame 3, P|U, then invlpg (§8.1).
h_sys:  push    r13
        push    r14
        li      r13, 1
        beq     r10, r13, sys_b
        li      r13, 2
        beq     r10, r13, sys_a
        li      r13, DATA + 0x3000 | PTE_P | PTE_U
        li      r14, PT
        sd      r13, [r14]
        li      r14, PAGED_VA
        invlpg  [r14]
        jmp     sys_out
sys_b:  li      r13, PML4_B
        mtcr    cr3, r13
        jmp     sys_out
sys_a:  li      r13, PML4
        mtcr    cr3, r13
sys_out:
        pop     r14
        pop     r13
        iret
.include "lib/signature.s"
