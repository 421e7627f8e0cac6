; nanobench's interrupt handlers: #DE and #PF for the fault benchmarks, the system call gate, panics.
;
; Every gate is an interrupt gate to ring 0 (docs/architecture.md §6.2).  Delivery pushes, from
; the new sp upward, [error code], pc, cs, FLAGS, sp (§6.3 step 7); a handler saves every
; register it uses, pops the error code itself and returns with `iret` (§6.4).  A fault pushes
; the pc of the faulting instruction (§6.1), so returning to it retries the instruction.

; h_de: the divide error of bench_divzero (§6.1: a fault, no error code).  It counts the event
; and resumes after the `div` (pc + 4), which never completes: the destination is unchanged
; (§3).  A #DE anywhere else is a bug: panic.
h_de:
        push    r2                     ; stack: r3, r2, pc, cs, FLAGS, sp
        push    r3
        ld      r2, [sp + 16]          ; the pushed pc: the div
        la      r3, de_site
        bne     r2, r3, de_unexpected
        addi    r2, r2, 4
        sd      r2, [sp + 16]
        la      r3, de_count
        ld      r2, [r3]
        addi    r2, r2, 1
        sd      r2, [r3]
        pop     r3
        pop     r2
        iret
de_unexpected:
        pop     r3
        pop     r2
        jmp     h_de_panic

; h_pf: the page fault of bench_pgfault, a supervisor read of the not-present BENCH_VA
; (CR2 = BENCH_VA, error code 0: §7.5).  It counts the fault, stores the count in the first
; quadword of BENCH_FRAME (through the one-to-one map), maps BENCH_VA to BENCH_FRAME and returns
; to the load, which retries and reads the count.  No `invlpg` is needed: a translation that
; failed is not cached (§8.2).  Any other page fault is a bug: panic.
h_pf:
        push    r2                     ; stack: r3, r2, error code, pc, cs, FLAGS, sp
        push    r3
        mfcr    r2, cr2
        li      r3, BENCH_VA
        bne     r2, r3, pf_unexpected
        ld      r2, [sp + 16]          ; the error code
        bnez    r2, pf_unexpected
        la      r3, pf_count
        ld      r2, [r3]
        addi    r2, r2, 1
        sd      r2, [r3]
        li      r3, BENCH_FRAME
        sd      r2, [r3]
        li      r2, BENCH_FRAME | PTE_KERNEL
        li      r3, PT_BENCH
        sd      r2, [r3]
        pop     r3
        pop     r2
        addi    sp, sp, 8              ; pop the error code (§6.4)
        iret
pf_unexpected:
        pop     r3
        pop     r2
        jmp     h_pf_panic

; h_syscall: the system call gate, `int SYSCALL_VEC` from ring 3 (GATE_DPL3), number in r7,
; argument in r1, result in r1, every other register preserved (README: system calls).  The
; frame is on the TRAP_STACK_TOP stack (MSR_RSP0).  SYS_NULL comes first and costs three
; instructions: the benchmark measures the round trip, not the kernel's work.
h_syscall:
        bnez    r7, sc_other           ; SYS_NULL = 0
        addi    r1, r1, 1              ; null(x) -> x + 1
        iret
sc_other:
        push    r2
        li      r2, SYS_EXIT
        beq     r7, r2, sc_exit
        pop     r2
        li      r1, -1                 ; an unknown system call
        iret
sc_exit:                               ; exit(r1 = status): back to bench_syscall
        la      r2, kernel_sp
        ld      sp, [r2]               ; the ring 3 frame is dropped with the trap stack
        jmp     syscall_return

; Panic stubs: an exception the kernel does not expect.  r1 = the vector, r2 = the pushed pc.
.macro fatal name, vec
\name:
        li      r1, \vec
        ld      r2, [sp]               ; no error code: the pc is on top
        jmp     panic
.endm
.macro fatal_err name, vec
\name:
        li      r1, \vec
        ld      r2, [sp + 8]           ; above the error code
        jmp     panic
.endm
fatal h_de_panic, VEC_DE
fatal h_db, VEC_DB
fatal h_ud, VEC_UD
fatal_err h_df, VEC_DF
fatal_err h_gp, VEC_GP
fatal_err h_pf_panic, VEC_PF
fatal_err h_ac, VEC_AC
fatal h_mc, VEC_MC

; panic(r1 = vector, r2 = pc): "nanobench: unexpected exception <v> at pc 0x<pc>\n", exit 3.
panic:
        li      sp, KSTACK_TOP         ; whatever the stack was, start a fresh one
        mov     r8, r1
        mov     r9, r2
        la      r1, s_panic
        call    puts
        mov     r1, r8
        call    print_dec
        la      r1, s_panic_pc
        call    puts
        mov     r1, r9
        call    print_hex
        li      r1, 10
        call    putc
        li      r1, EXIT_PANIC
        jmp     exit
