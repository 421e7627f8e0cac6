; A kernel that maps its own page at the very top of the address space (0xffff_ffff_ffff_f000,
; where a software VMM keeps its IDT: address-space compression, Fisher-Ogden 2006 §2.3.1),
; writes it, reads it back and exits with what it read plus the page's second quadword.
.equ PTE_PW, 3
.equ PML4, 0x10000
.equ PDPT, 0x11000
.equ PD, 0x12000
.equ PT, 0x13000
.equ PD0, 0x14000
.equ FRAME, 0x50000
.org 0x1000
_start: li      sp, 0x30000
        li      r1, FRAME + 8
        li      r2, 0x600d
        sd      r2, [r1]              ; the page's second quadword, written before paging
        li      r1, PML4
        li      r2, PDPT | PTE_PW
        sd      r2, [r1 + 8 * 511]
        li      r2, PD0 | PTE_PW      ; PML4[0] -> PD0 used as a PDPT: 1 GiB identity page
        sd      r2, [r1]
        li      r1, PD0
        li      r2, 0x80 | PTE_PW
        sd      r2, [r1]
        li      r1, PDPT
        li      r2, PD | PTE_PW
        sd      r2, [r1 + 8 * 511]
        li      r1, PD
        li      r2, PT | PTE_PW
        sd      r2, [r1 + 8 * 511]
        li      r1, PT
        li      r2, FRAME | PTE_PW
        sd      r2, [r1 + 8 * 511]
        li      r1, PML4
        mtcr    cr3, r1
        li      r1, 1 | 1 << 15
        mtcr    cr0, r1
        li      r1, -4096             ; 0xffff_ffff_ffff_f000
        li      r2, 0x1234
        sd      r2, [r1]
        ld      r3, [r1]
        ld      r4, [r1 + 8]
        add     r3, r3, r4
        out     0x500, r3
