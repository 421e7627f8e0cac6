; paging_on: 4-level paging (the reset CR4.PL, docs/architecture.md §7) with the first 2 MiB
; identity-mapped by one user-writable 2 MiB page, and PD[1] -> PT for the 4 KiB pages a guest
; maps itself at 0x200000 + 4096 * i (PT starts empty: RAM is zero at reset).  Clobbers r13, r14.
.equ PTE_P, 1
.equ PTE_W, 2
.equ PTE_U, 4
.equ PTE_PWU, PTE_P | PTE_W | PTE_U
.equ PTE_PS, 1 << 7
.equ PAGED_VA, 0x200000
; pte_store val, base, off: the page-table entry at base + off = val, a plain store (§7.2);
; flush_page reg: drop the TLB's translation of the page at reg (invlpg, §8.1);
; load_cr3 reg: switch to the address space whose PML4 is at reg (§8.1).
; pte_load reg, base: reg = the page-table entry at base, as the walker left it (A/D bits, §7.5).
; The paravirtual ports define the same four with the ABI's hypercalls (paravirt/lib/directed.s).
.macro pte_store val, base, off
        sd      \val, [\base + \off]
.endm
.macro flush_page reg
        invlpg  [\reg]
.endm
.macro load_cr3 reg
        mtcr    cr3, \reg
.endm
.macro pte_load reg, base
        ld      \reg, [\base]
.endm

paging_on:
        li      r13, PML4
        li      r14, PDPT | PTE_PWU
        sd      r14, [r13]
        li      r13, PDPT
        li      r14, PD | PTE_PWU
        sd      r14, [r13]
        li      r13, PD
        li      r14, PTE_PS | PTE_PWU
        sd      r14, [r13]
        li      r14, PT | PTE_PWU
        sd      r14, [r13 + 8]
        li      r13, PML4
        mtcr    cr3, r13
        li      r13, CR0_PE | CR0_PG
        mtcr    cr0, r13
        ret

; paging_spaces (after paging_on): a second live address space, B, for guests that switch
; CR3 (docs/architecture.md §8.1: a CR3 load drops the non-global translations).  B maps the
; first 2 MiB like A (code, IDT and stacks stay put) but its own table PT_B for PAGED_VA, and
; both tables come filled: PAGED_VA + 4 KiB * i is frame DATA + 4 KiB * i in A and
; DATA + 4 KiB * (7 - i) in B, each frame marked with its number at offset 8.  So one
; virtual address reads differently in the two spaces.  Clobbers r13, r14.
.equ PML4_B, 0x14000
.equ PDPT_B, 0x15000
.equ PD_B, 0x16000
.equ PT_B, 0x17000
paging_spaces:
        li      r13, PML4_B
        li      r14, PDPT_B | PTE_PWU
        sd      r14, [r13]
        li      r13, PDPT_B
        li      r14, PD_B | PTE_PWU
        sd      r14, [r13]
        li      r13, PD_B
        li      r14, PTE_PS | PTE_PWU
        sd      r14, [r13]
        li      r14, PT_B | PTE_PWU
        sd      r14, [r13 + 8]
        push    r12
        li      r12, 0
ps_fill:                               ; i = r12 / 8
        shli    r13, r12, 9            ; 4 KiB * i
        li      r14, DATA
        add     r14, r14, r13          ; the frame
        shri    r13, r12, 3
        addi    r13, r13, 0x70         ; its mark: 0x70 + i
        sd      r13, [r14 + 8]
        ori     r14, r14, PTE_PWU
        li      r13, PT
        add     r13, r13, r12
        sd      r14, [r13]             ; A: PT[i] -> DATA + 4 KiB * i
        li      r13, PT_B + 56
        sub     r13, r13, r12
        sd      r14, [r13]             ; B: PT_B[7 - i] -> the same frame
        addi    r12, r12, 8
        li      r13, 64
        bltu    r12, r13, ps_fill
        pop     r12
        ret
