; nanobench's console I/O: polled input and byte-at-a-time output (docs/devices.md §5).
;
; The console has no flow control: output never blocks, and input is all there from the start
; (the host gives it when it builds the machine), so polling CONSOLE_STATUS once tells whether
; a byte is waiting.  Each `in` and `out` is an exit to the host (docs/architecture.md §10).

; getc() -> r1 = the next input byte, or -1 when the input is used up.
getc:
        in      r1, CONSOLE_STATUS     ; the number of bytes waiting
        beqz    r1, gc_end
        in      r1, CONSOLE_DATA
        ret
gc_end:
        li      r1, -1
        ret

; read_line(r1 = buffer, r2 = its size) -> r1 = the length of the line read into the buffer
; without its '\n', or -1 if the input ends before a '\n' or the line does not fit.
read_line:
        push    r8
        push    r9
        push    r10
        mov     r8, r1
        mov     r9, r2
        li      r10, 0                 ; r10 = bytes stored
rl_next:
        call    getc
        blt     r1, r0, rl_bad
        li      r2, 10
        beq     r1, r2, rl_done
        bgeu    r10, r9, rl_bad
        add     r2, r8, r10
        sb      r1, [r2]
        addi    r10, r10, 1
        jmp     rl_next
rl_done:
        mov     r1, r10
        jmp     rl_ret
rl_bad:
        li      r1, -1
rl_ret:
        pop     r10
        pop     r9
        pop     r8
        ret

; putc(r1 = a byte): print it.
putc:
        out     CONSOLE_DATA, r1
        ret

; puts(r1 = a NUL-terminated string): print it.
puts:
        lbu     r2, [r1]
        beqz    r2, ps_done
        out     CONSOLE_DATA, r2
        addi    r1, r1, 1
        jmp     puts
ps_done:
        ret

; putn(r1 = bytes, r2 = their count): print them.
putn:
        add     r2, r1, r2
pn_next:
        beq     r1, r2, pn_done
        lbu     r3, [r1]
        out     CONSOLE_DATA, r3
        addi    r1, r1, 1
        jmp     pn_next
pn_done:
        ret

; print_dec(r1 = an unsigned value): print it in decimal, digits from the last one backwards.
print_dec:
        la      r2, dec_buf_end        ; r2 = where the next digit goes (moving down)
        li      r3, 10
pd_next:
        remu    r4, r1, r3
        divu    r1, r1, r3
        addi    r4, r4, '0'
        addi    r2, r2, -1
        sb      r4, [r2]
        bnez    r1, pd_next
        mov     r1, r2
        la      r2, dec_buf_end
        sub     r2, r2, r1
        jmp     putn                   ; putn returns to print_dec's caller

; print_hex(r1 = a value): print it as 0x and 16 hexadecimal digits.
print_hex:
        li      r2, '0'
        out     CONSOLE_DATA, r2
        li      r2, 'x'
        out     CONSOLE_DATA, r2
        li      r3, 60                 ; the shift of the next digit
ph_next:
        shr     r2, r1, r3
        andi    r2, r2, 15
        addi    r2, r2, '0'
        li      r4, '9'
        bgeu    r4, r2, ph_out
        addi    r2, r2, 'a' - '0' - 10
ph_out:
        out     CONSOLE_DATA, r2
        addi    r3, r3, -4
        bge     r3, r0, ph_next
        ret
