; ktest, the kernel self-test (placeholder while it is written).
ktest_main:
        push    r8
        la      r1, kt_msg_hello
        call    puts
        call    u_getpid
        call    putdec
        li      r1, 10
        call    putc
        li      r1, 0
        pop     r8
        ret
kt_msg_hello:   .asciz "ktest: pid "
        .align  4
