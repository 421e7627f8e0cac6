; The paravirtual port of conformance/guests/console.s: console input read and echoed.
;
; The console's registers become the console ring (docs/paravirt-abi.md §9): CONSOLE_STATUS is
; the input bytes waiting on the ring, a read of CONSOLE_DATA the next input byte (all ones when
; none waits, as the native device answers), a write one byte onto the output ring.  The guest
; polls, reads each waiting byte, echoes it and checksums it; one more read finds none.
; r1 = bytes waiting at first, r2 = the checksum, r3 = the read past the end, r4 = the bytes
; waiting at the end (0), r5 = bytes read.
.include "lib/directed.s"
main:
        call    con_status
        mov     r1, r13
next:   call    con_status
        mov     r4, r13
        beqz    r4, done
        call    con_getc
        mov     r6, r13
        call    con_putc
        shli    r7, r2, 5
        add     r2, r7, r2
        add     r2, r2, r6
        addi    r5, r5, 1
        jmp     next
done:   call    con_getc
        mov     r3, r13
        li      r6, 10
        mov     r13, r6
        call    con_putc
        li      r6, 0
        li      r7, 0
        jmp     finish
.include "lib/end.s"
