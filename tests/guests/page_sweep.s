; Touches 3,000 fresh 4 KiB pages as fast as it can, eight stores per loop (paging on, 2 MiB
; pages over the first 16 MiB): under shadow paging every store is a hidden page fault.
; Exits with the number of pages touched.
.equ PTE_PWU, 7
.equ PTE_PS, 0x80
.equ PML4, 0x10000
.equ PDPT, 0x11000
.equ PD, 0x12000
.org 0x1000
_start: li      r1, PML4
        li      r2, PDPT | PTE_PWU
        sd      r2, [r1]
        li      r1, PDPT
        li      r2, PD | PTE_PWU
        sd      r2, [r1]
        li      r1, PD
        li      r2, PTE_PS | PTE_PWU
        li      r3, PD + 8 * 8
map:    sd      r2, [r1]
        addi    r1, r1, 8
        li      r4, 0x200000
        add     r2, r2, r4
        bltu    r1, r3, map
        li      r1, PML4
        mtcr    cr3, r1
        li      r1, 1 | 1 << 15
        mtcr    cr0, r1
        li      r1, 0x20000
        li      r3, 0x20000 + 3000 * 4096
        li      r4, 0
sweep:  sd      r1, [r1]
        sd      r1, [r1 + 4096]
        sd      r1, [r1 + 8192]
        sd      r1, [r1 + 12288]
        sd      r1, [r1 + 16384]
        sd      r1, [r1 + 20480]
        sd      r1, [r1 + 24576]
        sd      r1, [r1 + 28672]
        li      r5, 32768
        add     r1, r1, r5
        addi    r4, r4, 8
        bltu    r1, r3, sweep
        out     0x500, r4
