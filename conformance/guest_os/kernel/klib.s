; Kernel library: memory copy and fill, string compare, printing to the console, panic.
;
; Output is polled: one `out CONSOLE_DATA` per byte (devices.md §5: output never blocks).
; These functions follow the README's calling convention (r1-r7 clobbered, r8-r14 kept).

; kmemcpy(r1 = dst, r2 = src, r3 = n): quadwords while both are aligned (§5.2), then bytes.
kmemcpy:
        or      r4, r1, r2
        andi    r4, r4, 7
        bnez    r4, kl_cpy_bytes
kl_cpy_quads:
        sltiu   r4, r3, 8
        bnez    r4, kl_cpy_bytes
        ld      r5, [r2]
        sd      r5, [r1]
        addi    r1, r1, 8
        addi    r2, r2, 8
        addi    r3, r3, -8
        jmp     kl_cpy_quads
kl_cpy_bytes:
        beqz    r3, kl_cpy_done
        lbu     r5, [r2]
        sb      r5, [r1]
        addi    r1, r1, 1
        addi    r2, r2, 1
        addi    r3, r3, -1
        jmp     kl_cpy_bytes
kl_cpy_done:
        ret

; kmemset(r1 = dst, r2 = byte, r3 = n)
kmemset:
        andi    r2, r2, 0xff
        shli    r4, r2, 8
        or      r2, r2, r4
        shli    r4, r2, 16
        or      r2, r2, r4
        shli    r4, r2, 32
        or      r2, r2, r4
        andi    r4, r1, 7
        bnez    r4, kl_set_bytes
kl_set_quads:
        sltiu   r4, r3, 8
        bnez    r4, kl_set_bytes
        sd      r2, [r1]
        addi    r1, r1, 8
        addi    r3, r3, -8
        jmp     kl_set_quads
kl_set_bytes:
        beqz    r3, kl_set_done
        sb      r2, [r1]
        addi    r1, r1, 1
        addi    r3, r3, -1
        jmp     kl_set_bytes
kl_set_done:
        ret

; kpage_zero(r1 = page): clear 4 KiB, eight stores per loop (the hot path of kalloc).
kpage_zero:
        addi    r2, r1, PAGE_SIZE
kl_zero_loop:
        sd      r0, [r1]
        sd      r0, [r1 + 8]
        sd      r0, [r1 + 16]
        sd      r0, [r1 + 24]
        sd      r0, [r1 + 32]
        sd      r0, [r1 + 40]
        sd      r0, [r1 + 48]
        sd      r0, [r1 + 56]
        addi    r1, r1, 64
        bltu    r1, r2, kl_zero_loop
        ret

; kpage_copy(r1 = dst page, r2 = src page): copy 4 KiB, four quadwords per loop (COW breaks).
kpage_copy:
        addi    r3, r1, PAGE_SIZE
kl_pcopy_loop:
        ld      r4, [r2]
        ld      r5, [r2 + 8]
        ld      r6, [r2 + 16]
        ld      r7, [r2 + 24]
        sd      r4, [r1]
        sd      r5, [r1 + 8]
        sd      r6, [r1 + 16]
        sd      r7, [r1 + 24]
        addi    r1, r1, 32
        addi    r2, r2, 32
        bltu    r1, r3, kl_pcopy_loop
        ret

; kstrcmp(r1 = a, r2 = b) -> r1 = 0 if equal, else the difference of the first differing bytes
kstrcmp:
        lbu     r3, [r1]
        lbu     r4, [r2]
        bne     r3, r4, kl_cmp_diff
        beqz    r3, kl_cmp_diff
        addi    r1, r1, 1
        addi    r2, r2, 1
        jmp     kstrcmp
kl_cmp_diff:
        sub     r1, r3, r4
        ret

; kputc(r1 = byte): one byte to the console.
kputc:
        io_out  CONSOLE_DATA, r1
        ret

; kprint(r1 = NUL-terminated message): the message to the console.
kprint:
        lbu     r2, [r1]
        beqz    r2, kl_print_done
        io_out  CONSOLE_DATA, r2
        addi    r1, r1, 1
        jmp     kprint
kl_print_done:
        ret

; kprint_dec(r1 = unsigned value): decimal digits, built backwards on the stack.
kprint_dec:
        addi    sp, sp, -32
        addi    r2, sp, 32
        li      r5, 10
kl_dec_loop:
        remu    r3, r1, r5
        divu    r1, r1, r5
        addi    r3, r3, 48
        addi    r2, r2, -1
        sb      r3, [r2]
        bnez    r1, kl_dec_loop
        addi    r3, sp, 32
kl_dec_out:
        lbu     r4, [r2]
        io_out  CONSOLE_DATA, r4
        addi    r2, r2, 1
        bltu    r2, r3, kl_dec_out
        addi    sp, sp, 32
        ret

; kprint_hex(r1 = value): "0x" and lowercase hex digits without leading zeros.
kprint_hex:
        li      r4, 48                 ; '0'
        io_out  CONSOLE_DATA, r4
        li      r4, 120                ; 'x'
        io_out  CONSOLE_DATA, r4
        addi    sp, sp, -32
        addi    r2, sp, 32
kl_hex_loop:
        andi    r3, r1, 15
        shri    r1, r1, 4
        sltiu   r4, r3, 10
        bnez    r4, kl_hex_digit
        addi    r3, r3, 39             ; 'a' - '0' - 10
kl_hex_digit:
        addi    r3, r3, 48
        addi    r2, r2, -1
        sb      r3, [r2]
        bnez    r1, kl_hex_loop
        addi    r3, sp, 32
        jmp     kl_dec_out             ; the same output loop (it restores sp)

; panic(r1 = message): print "panic: <message>" and end the run with RESULT_EXIT 0xdead
; (devices.md §7).  Never returns.
panic:
        arch_cli
        push    r1
        la      r1, kl_panic_msg
        call    kprint
        pop     r1
        call    kprint
        li      r1, 10
        call    kputc
        li      r1, 0xdead
        io_out  RESULT_EXIT, r1
kl_panic_halt:
        arch_halt
        jmp     kl_panic_halt

kl_panic_msg:
        .asciz  "panic: "
        .align  4

        arch_code                      ; the arch layer's own code and data (include/arch.s)
