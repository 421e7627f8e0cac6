; Guest time under a monitor: a periodic timer interrupts a kernel that touches a fresh page
; between interrupts (paging on, each first touch a page fault a shadow-paging VMM hides); the
; handler prints the low byte of rdtsc and of TIMER_NOW.  The bytes are the same only if the
; guest's clock counts exactly its own ticks (docs/architecture.md §9).
.equ PIC_CMD, 0x20
.equ PIC_MASK, 0x21
.equ TIMER_COUNT, 0x40
.equ TIMER_CTRL, 0x41
.equ TIMER_NOW, 0x42
.equ CONSOLE, 0x3f8
.equ PTE_PWU, 7
.equ PTE_PS, 0x80
.equ PML4, 0x10000
.equ PDPT, 0x11000
.equ PD, 0x12000
.equ IDT, 0x20000
_start: li      sp, 0x30000
        li      r1, IDT
        lidt    r1
        li      r2, IDT + 16 * 32
        la      r3, tick
        sd      r3, [r2]
        li      r3, 1
        sd      r3, [r2 + 8]
        li      r1, PML4              ; 2 MiB pages over the first 4 MiB
        li      r2, PDPT | PTE_PWU
        sd      r2, [r1]
        li      r1, PDPT
        li      r2, PD | PTE_PWU
        sd      r2, [r1]
        li      r1, PD
        li      r2, PTE_PS | PTE_PWU
        sd      r2, [r1]
        li      r1, PML4
        mtcr    cr3, r1
        li      r1, 1 | 1 << 15
        mtcr    cr0, r1
        li      r1, 0xfffe
        out     PIC_MASK, r1
        li      r1, 777
        out     TIMER_COUNT, r1
        li      r1, 3
        out     TIMER_CTRL, r1
        li      r5, 0x80000           ; the next fresh page
        sti
work:   sd      r5, [r5]              ; first touch of a page: a hidden fault under shadows
        addi    r5, r5, 4096
        li      r6, 40
spin:   addi    r6, r6, -1
        bnez    r6, spin
        li      r6, 8
        bltu    r4, r6, work
        cli
        out     TIMER_CTRL, r0
        out     0x500, r4
tick:   push    r1
        rdtsc   r1
        out     CONSOLE, r1
        in      r1, TIMER_NOW
        out     CONSOLE, r1
        addi    r4, r4, 1
        li      r1, 0x20
        out     PIC_CMD, r1
        pop     r1
        iret
