; The paravirtual port of conformance/guests/disk.s: read sector 1 into memory, then write a changed copy back to sector 3.
;
; The disk's registers and IRQ 14 become the block ring and its event channel (docs/paravirt-
; abi.md §9, §5.2) — one request per command, its buffer a machine address, its response's
; status 0 reported as the native disk's DISK_STATUS_DONE — and `sti; hlt` the block hypercall
; (lib/end.s wait_disk).  r1/r2 = the status after each command (2 = done), r3 = the checksum
; of the sector read, r4 = its first quadword, r5 = the disk's size in sectors (start info's
; block_sectors, the native DISK_SIZE); the disk is part of the observation.
.include "lib/directed.s"
.equ BUF, DATA
main:
        bind_irq PORT_BLOCK, disk_irq
        li      r3, 0xbfff
        unmask  PORT_BLOCK
        la      r5, start_info
        ld      r5, [r5]
        ld      r5, [r5 + START_BLOCK_SECTORS]
        li      r3, 1
        disk_set disk_sector, r3
        disk_set disk_count, r3
        li      r3, BUF
        disk_set disk_addr, r3
        li      r3, 1
        mov     r13, r3
        call    disk_start             ; read
        call    wait_disk
        mov     r1, r3
        checksum_sector BUF, r8
        li      r6, BUF
        ld      r4, [r6]
        xori    r8, r4, 0xffff
        sd      r8, [r6]
        li      r6, 3
        disk_set disk_sector, r6
        li      r6, 2
        mov     r13, r6
        call    disk_start             ; write
        mov     r7, r3
        call    wait_disk
        mov     r2, r3
        mov     r3, r7
        li      r6, 0
        li      r7, 0
        li      r8, 0
        jmp     finish
.include "lib/end.s"
