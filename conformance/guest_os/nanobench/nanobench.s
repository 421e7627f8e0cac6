; nanobench: a small test kernel that runs one of Adams & Agesen's (2006) nanobenchmarks N times.
;
; Adams & Agesen (2006, their Figure 4) time seven operations in FrobOS, VMware's test
; kernel, each in a loop run many times, to compare a software VMM with first-generation VT-x.
; This is the same kind of kernel for P64: it boots, builds an IDT (docs/architecture.md §6.2)
; and 4-level page tables (§7), reads one command line from the console, runs the benchmark it
; names N times, prints one line and stops.  Nothing it prints depends on time.
;
; Command line (console input, polled through CONSOLE_STATUS / CONSOLE_DATA, docs/devices.md §5):
;     <name> <N>\n        name: one of the table below; N: 1 to 9 decimal digits
; Output, then exit code 0 (RESULT_EXIT, docs/devices.md §7.1):
;     nanobench <name> n=<N> check=<decimal check value>\n
; A bad command line prints "nanobench: ..." and exits with code 2; an exception the kernel did
; not expect prints "nanobench: unexpected exception ..." and exits with code 3.
;
; | name    | the operation, repeated N times                         | check value                 |
; |---------|---------------------------------------------------------|-----------------------------|
; | syscall | ring 3 `int SYSCALL_VEC` (DPL 3 gate), `iret` back      | sum of the calls' results   |
; | in      | `in` from POST_CODE (port 0x80, off-CPU)                | sum of the bytes read       |
; | cr8wr   | `mtcr cr8` with no interrupt pending                    | sum of the values written, plus CR8 read back after the loop |
; | callret | `callr` to an almost empty function and `ret`           | calls the function counted  |
; | pgfault | a load from an unmapped page: #PF, mapped, retried; then unmapped (PTE cleared, `invlpg`) | sum of the values the loads read (the handler's fault count) |
; | divzero | `div` by zero: #DE, the handler steps over it           | #DE the handler counted     |
; | ptemod  | rewrite a live PTE with its own value, then `invlpg`    | sum of the PTE values written |
; | empty   | the loop alone, for a harness to subtract               | iterations counted          |
;
; Loop boundaries: each benchmark writes POST_BEGIN (0x01) to the POST port immediately before
; its measured loop and POST_END (0x02) immediately after it (`out POST_CODE`), so that a
; harness watching port exits can tell the loop from the boot and the report around it.
; (`in` reads the last code written, which is therefore POST_BEGIN during its loop.)
;
; Registers follow the calling convention of conformance/guest_os/README.md: arguments in
; r1-r6, the result in r1, r7 scratch, r8-r14 saved by the callee.  Handlers save all they use.
;
; Files: this one (boot, paging, IDT, command line, report), traps.s (the handlers),
; bench.s (the benchmarks and the ring 3 page), console.s (console I/O).  A section sign
; without a file name (§7) is one of docs/architecture.md.

.include "../include/p64.s"
.include "../include/abi.s"

; ---- memory map: RAM is NB_MEMORY = 1 MiB (nanobench.py) ----------------------------------
; The kernel image starts at 0x1000 (page 0 is left unmapped, so a null pointer faults) and
; must end below PML4; the tables, stacks and the benchmark frame sit at fixed addresses above.
.equ NB_RAM, 0x100000
.equ PML4, 0x80000                     ; top-level table, in CR3 (§7.1)
.equ PDPT, 0x81000
.equ PD, 0x82000
.equ PT_LOW, 0x83000                   ; level 1 table of VA 0..2 MiB: RAM one to one
.equ PT_BENCH, 0x84000                 ; level 1 table of VA 2..4 MiB: the benchmark page
.equ IDT, 0x85000                      ; 256 gates of 16 bytes (§6.2)
.equ TABLES_END, 0x86000
.equ KSTACK_TOP, 0x90000               ; kernel stack: 0x86000..0x90000
.equ TRAP_STACK_TOP, 0x92000           ; MSR_RSP0: frames of events from ring 3 (§6.3 step 6)
.equ USTACK, 0x92000                   ; one user page: the ring 3 stack
.equ USTACK_TOP, 0x93000
.equ BENCH_FRAME, 0x93000              ; the frame pgfault and ptemod map at BENCH_VA
.equ BENCH_VA, 0x200000                ; PT_BENCH entry 0: not mapped one to one on purpose

.equ PTE_KERNEL, PTE_P | PTE_W         ; supervisor, writable (§7.2, §7.4)
.equ PTE_TABLE, PTE_P | PTE_W | PTE_U  ; upper levels allow all: the leaves decide (§7.3)

.equ POST_BEGIN, 0x01                  ; written just before the measured loop
.equ POST_END, 0x02                    ; and just after it
.equ EXIT_OK, 0
.equ EXIT_USAGE, 2                     ; bad command line
.equ EXIT_PANIC, 3                     ; unexpected exception

.equ SYSCALL_VEC, 0x80                 ; the system call gate (README: int SYSCALL_VEC)
.equ SYS_NULL, 0                       ; null(x) -> x + 1: the benchmark's system call
.equ SYS_EXIT, 1                       ; exit(status): ring 3 is done, back to the kernel

.equ LINE_MAX, 64                      ; longest command line accepted
.equ COUNT_DIGITS_MAX, 9               ; N < 10^9

; post code: write `code` to the POST port (docs/devices.md §7.2: a read returns the last code
; written).  Clobbers r7.
.macro post code
        li      r7, \code
        out     POST_CODE, r7
.endm

; gate vec, handler, attrs: IDT entry `vec` = handler, attributes (§6.2).  Clobbers r1, r2.
.macro gate vec, handler, attrs
        li      r1, IDT + GATE_SIZE * \vec
        la      r2, \handler
        sd      r2, [r1]
        li      r2, \attrs
        sd      r2, [r1 + 8]
.endm

; ---- boot -------------------------------------------------------------------------------------
; The machine starts at CPL 0 with paging off, IF = 0 and every PIC line masked (§2, devices.md
; §3): no interrupt can arrive, so "no interrupt pending" holds for every benchmark.
.org 0x1000
_start:
        li      sp, KSTACK_TOP
        call    clear_tables
        call    map_memory
        call    setup_idt
        li      r1, CR4_PL4            ; 4-level paging (§2 CR4, §7.1): the reset value, but
                                       ; written so that nothing depends on what ran before
        mtcr    cr4, r1
        li      r1, PML4
        mtcr    cr3, r1
        li      r1, CR0_PE | CR0_PG    ; paging on; WP off, so the kernel may write any page
        mtcr    cr0, r1
        call    main
        jmp     exit                   ; main returns the exit code in r1

; clear_tables(): zero the page tables and the IDT, whatever RAM held before.
clear_tables:
        li      r1, PML4
        li      r2, TABLES_END
ct_next:
        sd      r0, [r1]
        addi    r1, r1, 8
        bltu    r1, r2, ct_next
        ret

; map_memory(): 4-level tables (§7.1-§7.3).  PML4[0] -> PDPT, PDPT[0] -> PD; PD[0] -> PT_LOW
; maps RAM one to one in 4 KiB pages (page 0 excepted), supervisor-only, except the pages of
; the ring 3 code (user, read-only) and the user stack (user, writable); PD[1] -> PT_BENCH,
; whose entry 0 (BENCH_VA) each benchmark maps as it needs.
map_memory:
        li      r1, PDPT | PTE_TABLE
        li      r2, PML4
        sd      r1, [r2]
        li      r1, PD | PTE_TABLE
        li      r2, PDPT
        sd      r1, [r2]
        li      r2, PD
        li      r1, PT_LOW | PTE_TABLE
        sd      r1, [r2]
        li      r1, PT_BENCH | PTE_TABLE
        sd      r1, [r2 + 8]
        li      r1, PAGE_SIZE | PTE_KERNEL ; PT_LOW[i] = i * 4 KiB | P | W, for i = 1 ...
        li      r2, PT_LOW + 8
        li      r3, NB_RAM
mm_next:
        sd      r1, [r2]
        addi    r1, r1, PAGE_SIZE
        addi    r2, r2, 8
        bltu    r1, r3, mm_next        ; ... while the page is below the end of RAM
        la      r1, user_text          ; the ring 3 code: user, read-only (§7.4)
        la      r2, user_text_end
        li      r4, PT_LOW
mm_user:
        bgeu    r1, r2, mm_stack
        shri    r3, r1, 9              ; the entry's offset: (address / 4 KiB) * 8
        add     r3, r3, r4
        ori     r5, r1, PTE_P | PTE_U
        sd      r5, [r3]
        addi    r1, r1, PAGE_SIZE
        jmp     mm_user
mm_stack:
        li      r1, USTACK | PTE_P | PTE_W | PTE_U
        li      r2, PT_LOW + (USTACK >> 9)
        sd      r1, [r2]
        ret

; setup_idt(): the gates this kernel uses (§6.2), all interrupt gates to ring 0.  The expected
; events get their handler; every other exception goes to a panic stub (traps.s); a vector
; without a gate raises #GP (§6.3 step 2), which panics too.  The system call gate has DPL 3
; so that `int SYSCALL_VEC` is allowed from ring 3 (§6.3 step 3).  MSR_RSP0 is the stack that
; an event from ring 3 switches to (§6.3 step 6).
setup_idt:
        gate    VEC_DE, h_de, GATE_P
        gate    VEC_DB, h_db, GATE_P
        gate    VEC_UD, h_ud, GATE_P
        gate    VEC_DF, h_df, GATE_P
        gate    VEC_GP, h_gp, GATE_P
        gate    VEC_PF, h_pf, GATE_P
        gate    VEC_AC, h_ac, GATE_P
        gate    VEC_MC, h_mc, GATE_P
        gate    SYSCALL_VEC, h_syscall, GATE_P | GATE_DPL3
        li      r1, IDT
        lidt    r1
        li      r1, MSR_RSP0
        li      r2, TRAP_STACK_TOP
        wrmsr   r1, r2
        ret

; exit(r1 = code): write the exit code to the result port (devices.md §7.1); the run ends there.
exit:
        out     RESULT_EXIT, r1
ex_halt:
        hlt                            ; a host that resumes anyway finds a halted machine
        jmp     ex_halt

; ---- the command line and the report -----------------------------------------------------------
; main() -> r1 = exit code: read "<name> <N>\n", look the name up, run the benchmark, report.
main:
        push    r8
        push    r9
        push    r10
        push    r11
        la      r1, line
        li      r2, LINE_MAX
        call    read_line              ; r1 = the line's length without '\n', or -1
        blt     r1, r0, main_bad_line
        mov     r10, r1                ; r10 = length
        li      r9, 0                  ; r9 = index of the space
        la      r11, line
main_space:
        bgeu    r9, r10, main_bad_line
        add     r2, r11, r9
        lbu     r2, [r2]
        li      r3, ' '
        beq     r2, r3, main_found
        addi    r9, r9, 1
        jmp     main_space
main_found:
        mov     r1, r11                ; the name: line[0 : r9]
        mov     r2, r9
        call    find_bench
        beqz    r1, main_bad_name
        mov     r8, r1                 ; r8 = the benchmark's table entry
        addi    r1, r9, 1              ; the count: line[r9 + 1 : r10]
        add     r1, r11, r1
        sub     r2, r10, r9
        addi    r2, r2, -1
        call    parse_count            ; r1 = N, or -1
        blt     r1, r0, main_bad_count
        mov     r9, r1                 ; r9 = N
        ld      r2, [r8 + BENCH_FUNC]
        callr   r2                     ; r1 = the check value
        mov     r10, r1
        la      r1, s_report           ; "nanobench <name> n=<N> check=<check>\n"
        call    puts
        ld      r1, [r8 + BENCH_NAME]
        call    puts
        la      r1, s_n
        call    puts
        mov     r1, r9
        call    print_dec
        la      r1, s_check
        call    puts
        mov     r1, r10
        call    print_dec
        li      r1, 10
        call    putc
        li      r1, EXIT_OK
        jmp     main_ret
main_bad_line:
        la      r1, s_bad_line
        call    puts
        jmp     main_usage
main_bad_name:
        la      r1, s_bad_name
        call    puts
        mov     r1, r11
        mov     r2, r9
        call    putn
        la      r1, s_bad_name_tail
        call    puts
        jmp     main_usage
main_bad_count:
        la      r1, s_bad_count
        call    puts
        addi    r1, r9, 1
        add     r1, r11, r1
        sub     r2, r10, r9
        addi    r2, r2, -1
        call    putn
        la      r1, s_bad_count_tail
        call    puts
main_usage:
        li      r1, EXIT_USAGE
main_ret:
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

; find_bench(r1 = name, r2 = length) -> r1 = its entry in bench_table, or 0.
find_bench:
        push    r8
        push    r9
        push    r10
        mov     r8, r1
        mov     r9, r2
        la      r10, bench_table
fb_entry:
        ld      r1, [r10 + BENCH_NAME]
        beqz    r1, fb_none            ; the table ends with a zero entry
        mov     r2, r8
        mov     r3, r9
        call    name_is                ; r1 = 1 if the entry's name is name[0 : length]
        bnez    r1, fb_found
        addi    r10, r10, BENCH_SIZE
        jmp     fb_entry
fb_found:
        mov     r1, r10
        jmp     fb_ret
fb_none:
        li      r1, 0
fb_ret:
        pop     r10
        pop     r9
        pop     r8
        ret

; name_is(r1 = a NUL-terminated string, r2 = bytes, r3 = their count) -> r1 = 1 if they are
; the same string, else 0.
name_is:
        add     r3, r2, r3             ; r3 = the end of the bytes
ni_next:
        lbu     r4, [r1]
        beq     r2, r3, ni_end         ; the bytes are used up: equal if the string is too
        beqz    r4, ni_no
        lbu     r5, [r2]
        bne     r4, r5, ni_no
        addi    r1, r1, 1
        addi    r2, r2, 1
        jmp     ni_next
ni_end:
        bnez    r4, ni_no
        li      r1, 1
        ret
ni_no:
        li      r1, 0
        ret

; parse_count(r1 = digits, r2 = their count) -> r1 = their decimal value, or -1 unless there
; are 1 to COUNT_DIGITS_MAX of them, all '0'-'9' (so the value fits easily).
parse_count:
        beqz    r2, pc_bad
        li      r3, COUNT_DIGITS_MAX
        bltu    r3, r2, pc_bad
        add     r2, r1, r2             ; r2 = the end
        li      r3, 0                  ; r3 = the value so far
pc_next:
        beq     r1, r2, pc_done
        lbu     r4, [r1]
        addi    r4, r4, -'0'
        li      r5, 10
        bgeu    r4, r5, pc_bad         ; not a digit (below '0' wraps to a large value)
        mul     r3, r3, r5
        add     r3, r3, r4
        addi    r1, r1, 1
        jmp     pc_next
pc_done:
        mov     r1, r3
        ret
pc_bad:
        li      r1, -1
        ret

.include "console.s"
.include "traps.s"
.include "bench.s"

; ---- data ---------------------------------------------------------------------------------------
; bench_table: one entry per benchmark, in the paper's order (Adams & Agesen 2006, Figure 4),
; then "empty"; a zero entry ends it.
.equ BENCH_NAME, 0                     ; a NUL-terminated name
.equ BENCH_FUNC, 8                     ; bench_<name>(r1 = N) -> r1 = the check value
.equ BENCH_SIZE, 16
.align 8
bench_table:
        .quad   n_syscall, bench_syscall
        .quad   n_in, bench_in
        .quad   n_cr8wr, bench_cr8wr
        .quad   n_callret, bench_callret
        .quad   n_pgfault, bench_pgfault
        .quad   n_divzero, bench_divzero
        .quad   n_ptemod, bench_ptemod
        .quad   n_empty, bench_empty
        .quad   0, 0
kernel_sp: .quad 0                     ; the kernel's sp while ring 3 runs (bench_syscall)
pf_count: .quad 0                      ; page faults h_pf handled
de_count: .quad 0                      ; divide errors h_de handled
line:   .space  LINE_MAX               ; the command line
dec_buf: .space 24                     ; print_dec's digits
dec_buf_end:
n_syscall: .asciz "syscall"
n_in:   .asciz  "in"
n_cr8wr: .asciz "cr8wr"
n_callret: .asciz "callret"
n_pgfault: .asciz "pgfault"
n_divzero: .asciz "divzero"
n_ptemod: .asciz "ptemod"
n_empty: .asciz "empty"
s_report: .asciz "nanobench "
s_n:    .asciz  " n="
s_check: .asciz " check="
s_bad_line: .asciz "nanobench: bad command line: expected '<name> <N>' and a newline\n"
s_bad_name: .asciz "nanobench: unknown benchmark '"
s_bad_name_tail: .asciz "' (known: syscall in cr8wr callret pgfault divzero ptemod empty)\n"
s_bad_count: .asciz "nanobench: bad count '"
s_bad_count_tail: .asciz "': expected 1 to 9 decimal digits\n"
s_panic: .asciz "nanobench: unexpected exception "
s_panic_pc: .asciz " at pc "
.align 4
