; The common end of every directed guest: `finish` (jumped to at CPL 0) dumps the signature —
; r1-r8, CR0/CR3/CR4/CR8, the FLAGS ring 3 last ran with, the exception log, and the guest's
; clock (the TSC and TIMER_NOW: time is counted in retired instructions, docs/architecture.md
; §9, so it is the same under any correct VMM) — on the console, then writes the exit code (0
; unless a fatal handler ran) to RESULT_EXIT.  It uses only
; innocuous and privileged instructions, so a correct trap-and-emulate VMM reproduces it and
; only the obstacle a guest provokes on purpose can make the signatures differ.
finish:
        la      r13, sig_regs
        sd      r1, [r13]
        sd      r2, [r13 + 8]
        sd      r3, [r13 + 16]
        sd      r4, [r13 + 24]
        sd      r5, [r13 + 32]
        sd      r6, [r13 + 40]
        sd      r7, [r13 + 48]
        sd      r8, [r13 + 56]
        li      sp, KSTACK_TOP
        li      r9, 0
sig_reg:                               ; "rN=<hex>\n" for N = 1..8
        li      r12, 'r'
        out     CONSOLE_DATA, r12
        addi    r12, r9, '1'
        out     CONSOLE_DATA, r12
        la      r10, s_eq
        call    print_str
        shli    r12, r9, 3
        add     r12, r12, r13
        ld      r10, [r12]
        call    print_hex_nl
        addi    r9, r9, 1
        li      r12, 8
        bltu    r9, r12, sig_reg
        la      r10, s_cr0
        call    print_str
        mfcr    r10, cr0
        call    print_hex_nl
        la      r10, s_cr3
        call    print_str
        mfcr    r10, cr3
        call    print_hex_nl
        la      r10, s_cr4
        call    print_str
        mfcr    r10, cr4
        call    print_hex_nl
        la      r10, s_cr8                 ; the TPR (§6.5): a VMM that shadows it shows here
        call    print_str
        mfcr    r10, cr8
        call    print_hex_nl
        la      r10, s_uflags
        call    print_str
        la      r10, user_flags
        ld      r10, [r10]
        call    print_hex_nl
        la      r10, s_exc                 ; "exceptions=<count>\n" then one entry a line
        call    print_str
        la      r10, exlog_n
        ld      r9, [r10]
        mov     r10, r9
        call    print_hex_nl
        li      r12, EXLOG_MAX
        bgeu    r12, r9, sig_log
        mov     r9, r12
sig_log:
        la      r13, exlog
        shli    r9, r9, 3
        add     r9, r9, r13
sig_log_next:
        bgeu    r13, r9, sig_exit
        la      r10, s_event
        call    print_str
        ld      r10, [r13]
        call    print_hex_nl
        addi    r13, r13, 8
        jmp     sig_log_next
sig_exit:
        la      r10, s_tsc                 ; the clock last: everything before it counted in it
        call    print_str
        rdtsc   r10
        call    print_hex_nl
        la      r10, s_now
        call    print_str
        in      r10, TIMER_NOW
        call    print_hex_nl
        la      r10, exit_code
        ld      r10, [r10]
        out     RESULT_EXIT, r10
        hlt

; print_str: the zero-terminated string at r10 (clobbers r10, r12).
print_str:
        lbu     r12, [r10]
        beqz    r12, ps_done
        out     CONSOLE_DATA, r12
        addi    r10, r10, 1
        jmp     print_str
ps_done:
        ret

; print_hex_nl: r10 as 16 hex digits and a newline (clobbers r10-r12).
print_hex_nl:
        li      r11, 60
ph_digit:
        shr     r12, r10, r11
        andi    r12, r12, 15
        addi    r12, r12, '0'
        push    r9
        li      r9, '9' + 1
        bltu    r12, r9, ph_out
        addi    r12, r12, 'a' - '9' - 1
ph_out:
        pop     r9
        out     CONSOLE_DATA, r12
        addi    r11, r11, -4
        bge     r11, r0, ph_digit
        li      r12, 10
        out     CONSOLE_DATA, r12
        ret

s_eq:     .asciz "="
s_cr0:    .asciz "cr0="
s_cr3:    .asciz "cr3="
s_cr4:    .asciz "cr4="
s_cr8:    .asciz "cr8="
s_tsc:    .asciz "tsc="
s_now:    .asciz "now="
s_uflags: .asciz "user flags="
s_exc:    .asciz "exceptions="
s_event:  .asciz "  event="

.align 8
exit_code:  .quad 0
user_flags: .quad 0
resume:     .quad 0
exlog_n:    .quad 0
exlog:      .space 8 * EXLOG_MAX
sig_regs:   .space 8 * 8
