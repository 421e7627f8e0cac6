; paging_on: 4-level paging (the reset CR4.PL, docs/architecture.md §7) with the first 2 MiB
; identity-mapped by one user-writable 2 MiB page, and PD[1] -> PT for the 4 KiB pages a guest
; maps itself at 0x200000 + 4096 * i (PT starts empty: RAM is zero at reset).  Clobbers r13, r14.
.equ PTE_P, 1
.equ PTE_W, 2
.equ PTE_U, 4
.equ PTE_PWU, PTE_P | PTE_W | PTE_U
.equ PTE_PS, 1 << 7
.equ PAGED_VA, 0x200000
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
