; Mechanism: disk DMA (devices.md §6): read sector 1 into memory, waiting for IRQ 14 with
; `sti; hlt`, then write a changed copy back to sector 3 (the disk is part of the observation).
; r1/r2 = status after each command (2 = done), r3 = checksum of the sector read,
; r4 = its first quadword, r5 = DISK_SIZE.
.include "lib/prelude.s"
.include "lib/disk.s"
.equ BUF, DATA
main:
        gate    46, h_disk, GATE_P     ; IRQ 14 at the reset PIC base 32
        li      r3, 0xbfff
        out     PIC_MASK, r3
        in      r5, DISK_SIZE
        li      r3, 1
        out     DISK_SECTOR, r3
        out     DISK_COUNT, r3
        li      r3, BUF
        out     DISK_ADDR, r3
        li      r3, 1
        out     DISK_CMD, r3           ; read
        call    wait_disk
        mov     r1, r3
        checksum_sector BUF, r8
        li      r6, BUF
        ld      r4, [r6]
        xori    r8, r4, 0xffff
        sd      r8, [r6]
        li      r6, 3
        out     DISK_SECTOR, r6
        li      r6, 2
        out     DISK_CMD, r6           ; write
        mov     r7, r3
        call    wait_disk
        mov     r2, r3
        mov     r3, r7
        li      r6, 0
        li      r7, 0
        li      r8, 0
        jmp     finish

        disk_driver wait_disk, h_disk, disk_irqs, 46, DISK_CMD
.include "lib/signature.s"
