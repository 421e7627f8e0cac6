; The directed guests' disk driver (docs/devices.md §6): one macro that makes, for one disk,
; a routine that sleeps until the disk's interrupt and returns its status, and the interrupt
; handler that logs the vector and wakes it; another that checksums a sector in memory.
; Include after lib/prelude.s; install the handler with `gate` and unmask the disk's PIC line
; before the first command.  It defines macros only, no code: the paravirtual ports' library
; (paravirt/lib/directed.s) includes it for checksum_sector.
;
; disk_driver wait, handler, flag, vector, cmd:
;   wait    — `call wait`: sleep (sti; hlt) until the interrupt has come (perhaps already,
;             while the guest waited for another disk), then r3 = the status read from port
;             `cmd`, acknowledged (DISK_CMD_ACK); interrupts are off on return
;   handler — the handler of `vector`: logs it, EOIs the PIC, sets `flag`
.macro disk_driver wait, handler, flag, vec, cmd
\wait:  cli
        la      r3, \flag
        ld      r3, [r3]
        bnez    r3, got\@
        sti                            ; hlt runs in sti's shadow: no interrupt between them
        hlt
        jmp     \wait
got\@:  la      r3, \flag
        sd      r0, [r3]
        in      r3, \cmd
        out     \cmd, r0
        ret
\handler:
        push    r13
        li      r13, \vec
        call    log_event
        li      r13, PIC_EOI
        out     PIC_CMD, r13
        push    r14
        la      r14, \flag
        li      r13, 1
        sd      r13, [r14]
        pop     r14
        pop     r13
        iret
.align 8
\flag:  .quad 0
.endm

; checksum_sector buf, tmp: r3 = a rotate-and-add checksum of the 64 quadwords at `buf`
; (uses r6, r7 and `tmp`).
.macro checksum_sector buf, tmp
        li      r6, \buf
        li      r7, \buf + 512
        li      r3, 0
sum\@:  ld      \tmp, [r6]
        add     r3, r3, \tmp
        shli    \tmp, r3, 7
        shri    r3, r3, 57
        or      r3, r3, \tmp
        addi    r6, r6, 8
        bltu    r6, r7, sum\@
.endm
