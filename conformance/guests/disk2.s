; Mechanism: the second disk (architecture §11), the one a VMM may pass through to the guest
; (docs/vmx.md V.10): a DMA read and write completed by IRQ 15, then DMAs that reach past the
; end of RAM, which must end in status error and move nothing, into memory or onto the disk.
; r1/r2 = status of the good read and write (2 = done), r3 = checksum of the sector read,
; r4 = status of a read (disk -> memory) straddling the end of RAM, r5 = of one far beyond it,
; r6 = of a write (memory -> disk) from beyond RAM (3 = error each), r7 = what the straddling
; read would have overwritten inside RAM (still 0), r8 = DISK2_SIZE.
.include "lib/prelude.s"
.include "lib/disk.s"
.equ BUF, DATA
main:
        gate    47, h_disk2, GATE_P    ; IRQ 15 at the reset PIC base 32
        li      r3, 0x7fff
        out     PIC_MASK, r3
        in      r8, DISK2_SIZE
        li      r3, 1
        out     DISK2_SECTOR, r3
        out     DISK2_COUNT, r3
        li      r3, BUF
        out     DISK2_ADDR, r3
        li      r3, 1
        out     DISK2_CMD, r3          ; read sector 1
        call    wait_disk2
        mov     r1, r3
        checksum_sector BUF, r4
        li      r6, BUF
        ld      r4, [r6]
        xori    r4, r4, 0x5a5a
        sd      r4, [r6]
        li      r6, 3
        out     DISK2_SECTOR, r6
        li      r6, 2
        out     DISK2_CMD, r6          ; write the changed copy to sector 3
        mov     r7, r3
        call    wait_disk2
        mov     r2, r3
        push    r7                     ; the checksum, r3 at the end
        ; A read whose buffer straddles the end of RAM: all or nothing, so nothing.
        li      r6, 0
        out     DISK2_SECTOR, r6
        li      r6, RAM_END - 256
        out     DISK2_ADDR, r6
        li      r6, 1
        out     DISK2_CMD, r6
        call    wait_disk2
        mov     r4, r3
        ; A read far beyond RAM: where a VMM's host memory or another guest might be.
        li      r6, 0x40000000
        out     DISK2_ADDR, r6
        li      r6, 1
        out     DISK2_CMD, r6
        call    wait_disk2
        mov     r5, r3
        ; A write (memory -> disk) from just beyond RAM into sector 2: the disk keeps its data.
        li      r6, 2
        out     DISK2_SECTOR, r6
        li      r6, RAM_END
        out     DISK2_ADDR, r6
        li      r6, 2
        out     DISK2_CMD, r6
        call    wait_disk2
        mov     r6, r3
        li      r7, RAM_END - 8
        ld      r7, [r7]
        pop     r3
        jmp     finish

        disk_driver wait_disk2, h_disk2, disk2_irqs, 47, DISK2_CMD
.include "lib/signature.s"
