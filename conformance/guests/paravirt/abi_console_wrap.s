; 3,000 bytes through the console ring, whose output half holds 2,048 (docs/paravirt-abi.md §9): the output wraps around the ring.
;
; Byte i is 'a' + i mod 26, a newline every hundredth; each line is sent (con_flush) as it
; ends.  The console must show exactly those bytes, then the signature.
.include "lib/directed.s"
main:
        li      r3, 0
put:    li      r4, 26
        remu    r5, r3, r4
        addi    r13, r5, 'a'
        li      r4, 100
        remu    r5, r3, r4
        li      r4, 99
        bne     r5, r4, byte
        li      r13, 10
byte:   call    con_putc
        bne     r5, r4, next
        call    con_flush
next:   addi    r3, r3, 1
        li      r4, 3000
        bltu    r3, r4, put
        call    con_flush
        li      r3, 0
        li      r4, 0
        li      r5, 0
        jmp     finish

.include "lib/end.s"
