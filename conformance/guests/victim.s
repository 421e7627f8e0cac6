; The victim of the safety tests (conformance/test_safety.py, test_stateful.py): paging,
; its IDT, timer interrupts, disk DMA, and every page of its 1 MiB of RAM.  Before
; its timer starts it writes a word into each page no other part of it uses (the image, the
; page tables, the IDT and its two data pages are used already), and at the end it reads them
; all back into a checksum, so that a neighbour's stray write into any page of its RAM changes
; its console; the suite also compares its whole RAM with the native run's (docs/vmm-api.md
; §9).  r1 = timer interrupts taken (3), r2 = checksum of the pattern it wrote, r3 = checksum
; of the sector it read, r4 = the disk's final status (2, done), r5 = checksum of the pages.
.include "lib/prelude.s"
.include "lib/paging.s"
.include "lib/victim_work.s"

; skip_own next (lib/victim_work.s skip_used): to `next` for the IDT, PATTERN and SECTOR.
.macro skip_own next
        li      r10, IDT
        beq     r6, r10, \next
        li      r10, DATA
        bltu    r6, r10, c3\@
        li      r10, DATA + 0x2000
        bltu    r6, r10, \next         ; PATTERN and SECTOR
c3\@:
.endm

main:
        call    paging_on
        mark_pages
        gate    32, h_timer, GATE_P
        gate    46, h_disk, GATE_P
        li      r3, 0xbffe             ; unmask IRQ 0 (timer) and IRQ 14 (disk)
        out     PIC_MASK, r3
        li      r3, 700
        out     TIMER_COUNT, r3
        li      r3, 3                  ; enable, periodic
        out     TIMER_CTRL, r3
        sti
        fill_pattern
        li      r3, 1                  ; read sector 1 into SECTOR
        out     DISK_SECTOR, r3
        out     DISK_COUNT, r3
        li      r3, SECTOR
        out     DISK_ADDR, r3
        li      r3, 1
        out     DISK_CMD, r3
        sum_pattern
wait:   hlt                            ; until three ticks and the disk are done (IF is 1)
        la      r5, disk_done
        ld      r5, [r5]
        beqz    r5, wait
        li      r5, 3
        bltu    r1, r5, wait
        cli
        out     TIMER_CTRL, r0
        li      r5, 0xffff
        out     PIC_MASK, r5
        finish_sums

h_timer:                               ; count up to 3, then leave the rest uncounted
        push    r13
        li      r13, 3
        bgeu    r1, r13, t_eoi
        li      r13, 32
        call    log_event
        addi    r1, r1, 1
t_eoi:  li      r13, PIC_EOI
        out     PIC_CMD, r13
        pop     r13
        iret

h_disk:
        push    r13
        li      r13, 46
        call    log_event
        in      r4, DISK_CMD           ; the status: 2 done, 3 error
        out     DISK_CMD, r0           ; acknowledge
        la      r13, disk_done
        sd      r4, [r13]
        li      r13, PIC_EOI
        out     PIC_CMD, r13
        pop     r13
        iret

.align 8
disk_done: .quad 0
.include "lib/signature.s"
.align 4096
victim_end:
