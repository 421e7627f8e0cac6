; The paravirtual port of conformance/guests/spaces.s: two live address spaces, switched by set_cr3, and a page user mode used remapped.
;
; A and B map PAGED_VA to different frames (marks 0x70 and 0x77 at offset 8).  User mode reads
; PAGED_VA in A, asks the kernel (int 0x42) to switch to B — set_cr3 (docs/paravirt-abi.md
; §4.6) where the native kernel loads CR3 —, reads and writes the same address there, goes back
; to A; then the kernel remaps the page (mmu_update and invlpg, §7.3, §4.7) to frame 3,
; read-only, and user mode reads it again and tries to write it (#PF, logged).  r1-r5 = what
; user mode read: 0x70, 0x77, 0x70, 0, 0x73; r6/r7 = PT_B[0] and PT[0] read back (A/D bits the
; walker set; their frames made pseudo-physical again), r8 = the quadword written through B.
.include "lib/directed.s"
.include "../lib/body_spaces.s"

; paging_spaces (after paging_on): lib/paging.s's B — its own PML4_B, PDPT_B, PD_B and PT_B,
; the first 2 MiB by the same PT_LOW — with PAGED_VA + 4 KiB * i mapping DATA + 4 KiB * i in A
; and DATA + 4 KiB * (7 - i) in B, each frame marked 0x70 + i at offset 8.  B is filled with
; plain stores while its pages are ordinary, A's live PT by requests; then one batch makes B's
; pages read-only in PT_LOW and pins them bottom-up (§7.3).
paging_spaces:
        push    r9
        push    r12
        la      r9, mem_base
        ld      r9, [r9]
        li      r13, PML4_B
        li      r14, PDPT_B | PTE_PWU
        add     r14, r14, r9
        sd      r14, [r13]
        li      r13, PDPT_B
        li      r14, PD_B | PTE_PWU
        add     r14, r14, r9
        sd      r14, [r13]
        li      r13, PD_B
        li      r14, PT_LOW | PTE_PWU
        add     r14, r14, r9
        sd      r14, [r13]
        li      r14, PT_B | PTE_PWU
        add     r14, r14, r9
        sd      r14, [r13 + 8]
        li      r12, 0
ps_fill:                               ; i = r12 / 8
        shli    r13, r12, 9            ; 4 KiB * i
        li      r14, DATA
        add     r14, r14, r13          ; the frame
        shri    r13, r12, 3
        addi    r13, r13, 0x70         ; its mark: 0x70 + i
        sd      r13, [r14 + 8]
        ori     r14, r14, PTE_PWU
        add     r14, r14, r9           ; machine
        li      r13, PT
        add     r13, r13, r12
        add     r13, r13, r9
        call    mmu_queue              ; A: PT[i] -> DATA + 4 KiB * i
        li      r13, PT_B + 56
        sub     r13, r13, r12
        sd      r14, [r13]             ; B: PT_B[7 - i] -> the same frame
        addi    r12, r12, 8
        li      r13, 64
        bltu    r12, r13, ps_fill
        li      r12, PT_LOW
        li      r13, PT_B
        li      r14, 1
        call    ro_and_pin
        li      r13, PD_B
        li      r14, 2
        call    ro_and_pin
        li      r13, PDPT_B
        li      r14, 3
        call    ro_and_pin
        li      r13, PML4_B
        li      r14, 4
        call    ro_and_pin
        call    mmu_submit
        pop     r12
        pop     r9
        ret
.include "lib/end.s"
