; The victim of the safety tests (conformance/test_safety.py): a well-behaved guest that uses
; every resource an adversary beside it could disturb — paging, its IDT, timer interrupts,
; disk DMA, memory — and whose signature does not depend on when interrupts arrive.  Under a
; VMM with resource control (Popek & Goldberg 1974) its observation is the same beside any
; other guest as alone.  r1 = timer interrupts taken (3), r2 = checksum of the pattern it
; wrote, r3 = checksum of the sector it read, r4 = the disk's final status (2, done).
.include "lib/prelude.s"
.include "lib/paging.s"
.equ PATTERN, DATA                     ; 4 KiB written and summed
.equ SECTOR, DATA + 0x1000             ; the disk reads sector 1 here
main:
        call    paging_on
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
        li      r5, 0
        li      r6, 0
        li      r7, 0
        li      r8, 0
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
