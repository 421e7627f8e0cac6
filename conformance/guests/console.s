; Mechanism: console input (docs/devices.md §5): the guest polls CONSOLE_STATUS and reads each
; waiting byte from CONSOLE_DATA, echoes it and checksums it; one more read finds none (all
; ones).  r1 = bytes waiting at first, r2 = the checksum, r3 = the read past the end,
; r4 = CONSOLE_STATUS at the end (0), r5 = bytes read.
.include "lib/prelude.s"
main:
        in      r1, CONSOLE_STATUS
next:   in      r4, CONSOLE_STATUS
        beqz    r4, done
        in      r6, CONSOLE_DATA
        out     CONSOLE_DATA, r6
        shli    r7, r2, 5
        add     r2, r7, r2
        add     r2, r2, r6
        addi    r5, r5, 1
        jmp     next
done:   in      r3, CONSOLE_DATA
        li      r6, 10
        out     CONSOLE_DATA, r6
        li      r6, 0
        li      r7, 0
        jmp     finish
.include "lib/signature.s"
