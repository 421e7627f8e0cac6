; Mechanism: an interrupt pending at `sti` waits for the instruction in sti's shadow even when
; that instruction is one a VMM must handle first (docs/architecture.md §6.5): a load through a
; mapping never used (a hidden page fault under shadow paging), the first store to a page only
; read so far (the dirty bit a shadow pager emulates), and an `out` (an exit).  Each time the
; timer's IRQ is made pending with IF = 0, then `sti; X`: the handler keeps the pc it interrupted
; in r5, which must be the instruction after X.  r1 = the word loaded (0x5a), r2, r3, r4 = the
; pc after each X minus the pc interrupted (0 each), r7 = interrupts taken (3).
.include "lib/prelude.s"
.include "lib/paging.s"
.macro pend                            ; IRQ 0 requested while IF = 0 (a one-shot tick)
        li      r9, 4
        out     TIMER_COUNT, r9
        li      r9, 1
        out     TIMER_CTRL, r9
        li      r9, 16
pend\@: addi    r9, r9, -1
        bnez    r9, pend\@
.endm
main:
        call    paging_on
        gate    32, h_timer, GATE_P
        li      r3, 0xfffe
        out     PIC_MASK, r3           ; unmask IRQ 0
        li      r13, DATA + 0x3000
        li      r14, 0x5a
        sd      r14, [r13]
        li      r13, PT + 8            ; PAGED_VA + 4 KiB -> DATA + 0x3000: mapped, never used
        li      r14, (DATA + 0x3000) | PTE_PWU
        sd      r14, [r13]
        li      r6, PAGED_VA + 0x1000
        pend
        sti
        ld      r1, [r6]               ; in the shadow: a walk natively, a hidden fault to a VMM
after1: cli
        la      r2, after1
        sub     r2, r2, r5
        pend
        sti
        sd      r1, [r6 + 8]           ; in the shadow: the page's first store (its D bit)
after2: cli
        la      r3, after2
        sub     r3, r3, r5
        pend
        sti
        out     0x99, r0               ; in the shadow: port I/O, an exit to the host
after3: cli
        la      r4, after3
        sub     r4, r4, r5
        li      r9, 0xffff
        out     PIC_MASK, r9
        li      r8, 0
        jmp     finish

h_timer:
        irq_enter 32
        addi    r7, r7, 1
        ld      r5, [sp + 8]           ; the interrupted pc (§6.3 frame)
        pop     r13
        iret
.include "lib/signature.s"
