; init, process 1: read the command line `name N` from the console and run workload `name` with N.
;
; README, "Boot parameters".  The line is read byte by byte from fd 0 into a buffer on the
; stack (user text is read-only), split at the first space, and the name looked up in
; in_table; the workload's result is init's exit status, which ends the run (the kernel
; writes it to RESULT_EXIT).  An unknown name prints a usage line and exits with 2.

.equ IN_LINE_MAX, 64

init_start:
        addi    sp, sp, -IN_LINE_MAX
        li      r8, 0                  ; bytes in the line
in_read:
        li      r1, STDIN
        add     r2, sp, r8
        li      r3, 1
        call    u_read
        li      r2, 1
        bne     r1, r2, in_line_done   ; no more input
        add     r2, sp, r8
        lbu     r1, [r2]
        li      r3, 10
        beq     r1, r3, in_line_done
        addi    r8, r8, 1
        li      r3, IN_LINE_MAX - 1
        bltu    r8, r3, in_read
in_line_done:
        add     r2, sp, r8
        sb      r0, [r2]               ; the name ends at the first space or the line's end
        mov     r9, sp
in_split:
        lbu     r1, [r9]
        beqz    r1, in_lookup
        li      r2, 32
        beq     r1, r2, in_split_here
        addi    r9, r9, 1
        jmp     in_split
in_split_here:
        sb      r0, [r9]
        addi    r9, r9, 1
in_lookup:                             ; r9: the text after the name
        la      r10, in_table
in_lookup_loop:
        ld      r1, [r10]
        beqz    r1, in_usage
        mov     r2, sp
        call    strcmp
        beqz    r1, in_found
        addi    r10, r10, 16
        jmp     in_lookup_loop
in_found:
        mov     r1, r9
        call    parse_dec
        ld      r2, [r10 + 8]
        callr   r2
        call    u_exit
in_usage:
        la      r1, in_msg_usage
        call    puts
        li      r1, 2
        call    u_exit

        .align  8
in_table:                              ; name, entry; a 0 name ends it
        .quad   in_name_forkwait, forkwait_main
        .quad   in_name_compute, compute_main
        .quad   in_name_compile, compile_main
        .quad   in_name_mmu, mmu_main
        .quad   in_name_diskio, diskio_main
        .quad   in_name_ktest, ktest_main
        .quad   in_name_fstest, fstest_main
        .quad   0, 0
in_name_forkwait:       .asciz "forkwait"
in_name_compute:        .asciz "compute"
in_name_compile:        .asciz "compile"
in_name_mmu:            .asciz "mmu"
in_name_diskio:         .asciz "diskio"
in_name_ktest:          .asciz "ktest"
in_name_fstest:         .asciz "fstest"
in_msg_usage:
        .asciz  "usage: forkwait|compute|compile|mmu|diskio|ktest|fstest N\n"
        .align  4
