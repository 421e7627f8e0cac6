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
.equ PATTERN, DATA                     ; 4 KiB written and summed
.equ SECTOR, DATA + 0x1000             ; the disk reads sector 1 here
.equ PAGE_WORD, 0x800                  ; the word of each page: below any stack's reach

; skip_used next: go to `next` when the page at r6 is one of those the guest uses otherwise.
.macro skip_used next
        li      r10, 0x1000
        bltu    r6, r10, c1\@
        la      r11, victim_end
        bltu    r6, r11, \next         ; the image
c1\@:   li      r10, PML4
        bltu    r6, r10, c2\@
        li      r10, PT + 0x1000
        bltu    r6, r10, \next         ; the page tables
c2\@:   li      r10, IDT
        beq     r6, r10, \next
        li      r10, DATA
        bltu    r6, r10, c3\@
        li      r10, DATA + 0x2000
        bltu    r6, r10, \next         ; PATTERN and SECTOR
c3\@:
.endm

main:
        call    paging_on
        li      r6, 0                  ; one word in every other page: page address xor a constant
        li      r7, RAM_END
        li      r8, 0x6a09e667f3bcc909
wpage:  skip_used wnext
        xor     r5, r6, r8
        sd      r5, [r6 + PAGE_WORD]
wnext:  addi    r6, r6, 4096
        bltu    r6, r7, wpage
        gate    32, h_timer, GATE_P
        gate    46, h_disk, GATE_P
        li      r3, 0xbffe             ; unmask IRQ 0 (timer) and IRQ 14 (disk)
        out     PIC_MASK, r3
        li      r3, 700
        out     TIMER_COUNT, r3
        li      r3, 3                  ; enable, periodic
        out     TIMER_CTRL, r3
        sti
        li      r6, PATTERN            ; write the pattern: word i = i * 0x9e3779b97f4a7c15
        li      r7, PATTERN + 4096
        li      r8, 0x9e3779b97f4a7c15
        li      r5, 0
fill:   sd      r5, [r6]
        add     r5, r5, r8
        addi    r6, r6, 8
        bltu    r6, r7, fill
        li      r3, 1                  ; read sector 1 into SECTOR
        out     DISK_SECTOR, r3
        out     DISK_COUNT, r3
        li      r3, SECTOR
        out     DISK_ADDR, r3
        li      r3, 1
        out     DISK_CMD, r3
        li      r2, 0                  ; sum the pattern back while the timer ticks
        li      r6, PATTERN
sum:    ld      r5, [r6]
        xor     r2, r2, r5
        shli    r5, r2, 13
        shri    r2, r2, 51
        or      r2, r2, r5
        addi    r6, r6, 8
        bltu    r6, r7, sum
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
        li      r3, 0                  ; checksum of the sector read
        li      r6, SECTOR
        li      r7, SECTOR + 512
sect:   ld      r5, [r6]
        add     r3, r3, r5
        shli    r5, r3, 7
        shri    r3, r3, 57
        or      r3, r3, r5
        addi    r6, r6, 8
        bltu    r6, r7, sect
        li      r5, 0                  ; checksum of the words of every other page
        li      r6, 0
        li      r7, RAM_END
rpage:  skip_used rnext
        ld      r8, [r6 + PAGE_WORD]
        add     r5, r5, r8
        shli    r8, r5, 11
        shri    r5, r5, 53
        or      r5, r5, r8
rnext:  addi    r6, r6, 4096
        bltu    r6, r7, rpage
        li      r6, 0
        li      r7, 0
        li      r8, 0
        li      r10, 0
        li      r11, 0
        jmp     finish

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
