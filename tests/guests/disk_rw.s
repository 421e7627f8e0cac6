; Reads sector 1 by DMA, increments the quadword at offset 8, writes the sector back to
; sector 0, and exits with that quadword's low 32 bits (docs/devices.md, the disk).
_start: li r1, 1
        out 0x1f0, r1               ; sector 1
        li r1, 1
        out 0x1f1, r1               ; one sector
        li r1, 0x4000
        out 0x1f2, r1               ; buffer
        li r1, 1
        out 0x1f3, r1               ; read
poll:   in r2, 0x1f3
        li r3, 2
        bne r2, r3, poll
        li r1, 0
        out 0x1f3, r1               ; acknowledge
        li r1, 0x4000
        ld r2, [r1 + 8]
        addi r2, r2, 1
        sd r2, [r1 + 8]
        li r1, 0
        out 0x1f0, r1               ; write the sector back to sector 0
        li r1, 2
        out 0x1f3, r1
wpoll:  in r2, 0x1f3
        li r3, 2
        bne r2, r3, wpoll
        li r1, 0x4000
        ld r2, [r1 + 8]
        out 0x500, r2
