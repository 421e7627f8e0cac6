; Safety adversary (conformance/test_safety.py): both disks DMA at every 64 KiB of the address
; space past the end of the guest's RAM up to SWEEP_END, beyond any host's RAM the suite builds
; — reads (disk -> memory) that would overwrite a victim, a VMM or the host, and writes
; (memory -> disk) that would copy their memory onto the guest's own disk.  On a bare machine
; every one ends in status error (DMA beyond RAM); a VMM must keep it so, whether it emulates
; the disks or passes one through (docs/vmx.md V.10).
; r1 = commands that ended in error, r2 = commands that ended otherwise, r4 = the last address.
.include "lib/prelude.s"
.include "lib/disk.s"
.equ SWEEP_END, 0x1200000              ; 18 MiB: past the 16 MiB + canary host of the suite
.equ STRIDE, 0x10000                   ; DISK_MAX_COUNT sectors: 64 KiB a command
main:
        gate    46, h_disk, GATE_P     ; IRQ 14 and 15 at the reset PIC base 32
        gate    47, h_disk2, GATE_P
        li      r3, 0x3fff
        out     PIC_MASK, r3
        li      r1, 0
        li      r2, 0
        li      r3, 128
        out     DISK_COUNT, r3
        out     DISK2_COUNT, r3
        out     DISK_SECTOR, r0
        out     DISK2_SECTOR, r0
        li      r5, 1                  ; the first pass: disk reads, disk2 writes
pass:   li      r4, RAM_END
sweep:  out     DISK_ADDR, r4
        out     DISK2_ADDR, r4
        out     DISK_CMD, r5
        xori    r6, r5, 3              ; 1 <-> 2: the other direction
        out     DISK2_CMD, r6
        call    wait_disk
        call    tally
        call    wait_disk2
        call    tally
        li      r6, STRIDE
        add     r4, r4, r6
        li      r6, SWEEP_END
        bltu    r4, r6, sweep
        li      r6, 2
        beq     r5, r6, done
        mov     r5, r6                 ; the second pass: disk writes, disk2 reads
        jmp     pass
done:   li      r3, 0
        li      r5, 0
        li      r6, 0
        li      r7, 0
        li      r8, 0
        jmp     finish

; tally: r3 = a status; count it in r1 (error) or r2 (anything else).
tally:  li      r6, 3
        beq     r3, r6, refused
        addi    r2, r2, 1
        ret
refused:
        addi    r1, r1, 1
        ret

        disk_driver wait_disk, h_disk, disk_irqs, 46, DISK_CMD
        disk_driver wait_disk2, h_disk2, disk2_irqs, 47, DISK2_CMD
.include "lib/signature.s"
