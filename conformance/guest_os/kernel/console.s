; The console driver: interrupt-driven input into a ring buffer, polled output.
;
; Input: with CONSOLE_RX_IRQ set in CONSOLE_CTRL the console raises IRQ 4 (vector 36) while
; input bytes wait (docs/devices.md §5); the handler moves them into a ring and wakes the
; readers.  A reader that finds the ring empty sleeps on it.  If the ring fills up, the
; driver turns the receive interrupt off (the bytes stay in the device) and back on when a
; reader has made room, so a long input can never keep the CPU in the handler.
; Output: one `out CONSOLE_DATA` per byte; the console never blocks.

.equ CONS_BUFSIZE, 1024                ; a power of two: positions are counters masked by it
.equ CONS_CHUNK, 128                   ; bytes moved per copyin/copyout

        .align  8
cons_r:         .quad 0                ; bytes taken by readers (the sleep channel)
cons_w:         .quad 0                ; bytes put in by the driver
cons_rx_off:    .quad 0                ; 1 while the receive interrupt is off (ring full)

; console_init(): turn the receive interrupt on.
console_init:
        li      r1, CONSOLE_RX_IRQ
        io_out  CONSOLE_CTRL, r1
        ret

; console_drain(): move the waiting input bytes into the ring while there is room.
console_drain:
        la      r6, cons_w
        ld      r1, [r6]
        la      r2, cons_r
        ld      r2, [r2]
cn_drain_loop:
        sub     r3, r1, r2
        li      r4, CONS_BUFSIZE
        bgeu    r3, r4, cn_drain_full
        io_in   r3, CONSOLE_STATUS
        beqz    r3, cn_drain_done
        io_in   r3, CONSOLE_DATA
        andi    r4, r1, CONS_BUFSIZE - 1
        li      r5, CONS_BUF
        add     r4, r4, r5
        sb      r3, [r4]
        addi    r1, r1, 1
        jmp     cn_drain_loop
cn_drain_full:
        io_out  CONSOLE_CTRL, r0
        li      r3, 1
        la      r4, cons_rx_off
        sd      r3, [r4]
cn_drain_done:
        sd      r1, [r6]
        ret

; console_intr(): the IRQ 4 handler (trap.s sends the EOI after it).
console_intr:
        call    console_drain
        la      r1, cons_r
        jmp     wakeup

; console_read(r1 = user buffer, r2 = n >= 0) -> r1 = bytes read (at most CONS_CHUNK, up to
; and including a newline), or -1 if the buffer cannot be written.  Sleeps while there is no
; input.
console_read:
        push    r8
        push    r9
        push    r10
        addi    sp, sp, -CONS_CHUNK
        mov     r8, r1
        mov     r9, r2
        li      r1, 0
        beqz    r9, cn_read_ret
        li      r2, CONS_CHUNK
        bgeu    r2, r9, cn_read_wait
        mov     r9, r2
cn_read_wait:
        ; Bytes that came while the interrupt was off or masked are in the device, not the
        ; ring: one status read before sleeping picks them up.
        call    console_drain
        la      r1, cons_r
        ld      r2, [r1]
        la      r3, cons_w
        ld      r3, [r3]
        bne     r2, r3, cn_read_take
        call    sleep
        jmp     cn_read_wait
cn_read_take:                          ; r2 = cons_r, r3 = cons_w
        li      r10, 0
cn_read_loop:
        andi    r4, r2, CONS_BUFSIZE - 1
        li      r5, CONS_BUF
        add     r4, r4, r5
        lbu     r4, [r4]
        add     r5, sp, r10
        sb      r4, [r5]
        addi    r2, r2, 1
        addi    r10, r10, 1
        li      r5, 10
        beq     r4, r5, cn_read_got
        beq     r10, r9, cn_read_got
        bne     r2, r3, cn_read_loop
cn_read_got:
        la      r1, cons_r
        sd      r2, [r1]
        la      r1, cons_rx_off        ; room again: the receive interrupt back on
        ld      r2, [r1]
        beqz    r2, cn_read_copy
        sd      r0, [r1]
        li      r2, CONSOLE_RX_IRQ
        io_out  CONSOLE_CTRL, r2
cn_read_copy:
        mov     r1, r8
        mov     r2, sp
        mov     r3, r10
        call    copyout
        bnez    r1, cn_read_ret        ; -1
        mov     r1, r10
cn_read_ret:
        addi    sp, sp, CONS_CHUNK
        pop     r10
        pop     r9
        pop     r8
        ret

; console_write(r1 = user buffer, r2 = n >= 0) -> r1 = n, or -1 if the buffer cannot be read
console_write:
        push    r8
        push    r9
        push    r10
        push    r11
        addi    sp, sp, -CONS_CHUNK
        mov     r8, r1
        mov     r9, r2
        li      r10, 0                 ; bytes written
cn_write_loop:
        sub     r11, r9, r10
        beqz    r11, cn_write_done
        li      r2, CONS_CHUNK
        bgeu    r2, r11, cn_write_chunk
        mov     r11, r2
cn_write_chunk:
        mov     r1, sp
        add     r2, r8, r10
        mov     r3, r11
        call    copyin
        bnez    r1, cn_write_ret       ; -1
        mov     r1, sp
        add     r2, sp, r11
cn_write_out:
        lbu     r3, [r1]
        io_out  CONSOLE_DATA, r3
        addi    r1, r1, 1
        bltu    r1, r2, cn_write_out
        add     r10, r10, r11
        jmp     cn_write_loop
cn_write_done:
        mov     r1, r9
cn_write_ret:
        addi    sp, sp, CONS_CHUNK
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret
