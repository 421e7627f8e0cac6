; A kernel that rewrites its own page tables: two address spaces share an identity map of the
; first 2 MiB and differ in a 16-page window at 2 MiB, which the kernel remaps 64 times (PTE
; store, invlpg), writing through the window in one space and reading it through the other
; (mov cr3 each time).  Exits with a checksum of what it read and of the A/D bits the walker
; left in the window's entries (docs/architecture.md §7.5, §8.1).
.equ PTE_P, 1
.equ PTE_W, 2
.equ PTE_U, 4
.equ PTE_PWU, 7
.equ PTE_AD, 0x60
.equ CR0_PE, 1
.equ CR0_PG, 1 << 15
.equ PML4_A, 0x10000
.equ PML4_B, 0x11000
.equ PDPT_A, 0x12000
.equ PDPT_B, 0x18000
.equ PD_A, 0x13000
.equ PD_B, 0x14000
.equ PT_ID, 0x15000               ; identity 0..2 MiB, 4 KiB pages
.equ PT_A, 0x16000                ; the window in space A
.equ PT_B, 0x17000                ; the window in space B
.equ DATA, 0x40000                ; 64 frames the window moves over
.equ WINDOW, 0x200000
.org 0x1000
_start: li      sp, 0x30000
        li      r1, PML4_A
        li      r2, PDPT_A | PTE_PWU
        sd      r2, [r1]
        li      r1, PML4_B
        li      r2, PDPT_B | PTE_PWU
        sd      r2, [r1]
        li      r1, PDPT_A
        li      r2, PD_A | PTE_PWU
        sd      r2, [r1]
        li      r1, PDPT_B
        li      r2, PD_B | PTE_PWU
        sd      r2, [r1]
        li      r1, PD_A
        li      r2, PT_ID | PTE_PWU
        sd      r2, [r1]
        li      r2, PT_A | PTE_PWU
        sd      r2, [r1 + 8]
        li      r1, PD_B
        li      r2, PT_ID | PTE_PWU
        sd      r2, [r1]
        li      r2, PT_B | PTE_PWU
        sd      r2, [r1 + 8]
        li      r1, PT_ID + 8         ; identity map (page 0 left unmapped)
        li      r2, 0x1000 | PTE_PWU
        li      r3, PT_ID + 4096
id:     sd      r2, [r1]
        addi    r1, r1, 8
        addi    r2, r2, 4096
        bltu    r1, r3, id
        li      r1, PT_B              ; space B's window: DATA + 4096 * i, read-only
        li      r2, DATA | PTE_P
        li      r3, PT_B + 128
wb:     sd      r2, [r1]
        addi    r1, r1, 8
        addi    r2, r2, 4096
        bltu    r1, r3, wb
        li      r1, PML4_A
        mtcr    cr3, r1
        li      r1, CR0_PE | CR0_PG
        mtcr    cr0, r1
        li      r4, 0                 ; i
        li      r5, 0                 ; checksum
loop:   andi    r6, r4, 15            ; window slot
        shli    r7, r6, 3
        li      r8, PT_A
        add     r7, r7, r8            ; &PT_A[slot]
        shli    r8, r4, 3
        sub     r8, r8, r4            ; 7 i
        andi    r8, r8, 15            ; frame (7 i) mod 16 of DATA
        shli    r8, r8, 12
        li      r9, DATA | PTE_P | PTE_W
        add     r8, r8, r9
        sd      r8, [r7]              ; remap the slot
        shli    r9, r6, 12
        li      r10, WINDOW
        add     r9, r9, r10           ; the slot's address
        invlpg  [r9]
        ld      r10, [r9]
        add     r10, r10, r4
        sd      r10, [r9]             ; frame[...] += i through space A
        li      r1, PML4_B
        mtcr    cr3, r1
        shri    r11, r8, 12
        andi    r11, r11, 15
        shli    r11, r11, 12
        li      r12, WINDOW
        add     r11, r11, r12         ; the same frame, seen through space B
        ld      r12, [r11]
        add     r5, r5, r12
        shli    r12, r5, 5
        shri    r5, r5, 59
        or      r5, r5, r12
        li      r1, PML4_A
        mtcr    cr3, r1
        addi    r4, r4, 1
        li      r1, 64
        bltu    r4, r1, loop
        li      r1, PT_A              ; fold in the A/D bits the walker set
        li      r3, PT_A + 128
ad:     ld      r2, [r1]
        andi    r2, r2, PTE_AD
        add     r5, r5, r2
        addi    r1, r1, 8
        bltu    r1, r3, ad
        li      r1, PT_B
        ld      r2, [r1]
        andi    r2, r2, PTE_AD
        add     r5, r5, r2
        out     0x500, r5
