; Hello, world on P64: prints a string on the console and writes exit code 0.
.equ CONSOLE_DATA, 0x3f8        ; docs/architecture.md §11
.equ RESULT_EXIT, 0x500

.org 0x1000
_start:
        la      r1, message
next:   lbu     r2, [r1]
        beqz    r2, done
        out     CONSOLE_DATA, r2
        addi    r1, r1, 1
        jmp     next
done:   out     RESULT_EXIT, r0  ; exit code 0: the run ends here
        hlt

message:
        .asciz  "hello, world\n"
