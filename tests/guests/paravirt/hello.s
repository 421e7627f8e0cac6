; Boots, checks start info's magic and the ABI version, says hello with console_write and shuts down with exit code 7.
.include "lib/pv.s"

.org 0x1000
_start:
        li      sp, STACK_TOP
        mov     r10, r1                 ; r1: start info (docs/paravirt-abi.md §3)
        ld      r2, [r10 + START_MAGIC]
        li      r3, START_MAGIC_VALUE
        bne     r2, r3, bad
        hypercall HYPERCALL_VERSION
        li      r3, PV_ABI_VERSION
        bne     r1, r3, bad
        print   hello, hello_end - hello
        li      r3, hello_end - hello
        bne     r1, r3, bad             ; console_write returns the length
        li      r4, 7
        shutdown r4
bad:    li      r4, 99
        shutdown r4

hello:  .ascii  "hello, paravirt\n"
hello_end:

.include "lib/end.s"
