; ktest, the kernel self-test (after xv6's usertests): every system call, faults, copy-on-write, scheduling.
;
; ktest_main(r1 = n) runs in process 1 (init calls it) and prints one line per group of
; checks, then "ktest: ok" and returns 0, or "ktest: <k> failed" and returns 1; a failed
; check prints "ktest: FAIL <what>" first.  n is the number of children of the fork test.
; Only process 1 prints, and only while no child can run or between a child's death and the
; next fork, so the output does not depend on where the timer preempts anybody; the kernel's
; kill lines ("pid <p>: killed by <v> at 0x<pc>") come while process 1 sleeps in wait.
; Children report through their exit status.  Pids are handed out in fork order (2, 3, ...),
; so tests/guest_os/test_kernel.py can state the whole output in advance.
;
; Registers: r14 counts failures for the whole test, r12 = n, r8 = USER_BASE once the heap
; exists; sp points to a 64-byte scratch area (user text is read-only: no static data).

.equ KT_SPIN, 100000                   ; iterations of a spinning child: about 10 time slices

; kt_same a, b, name: a failure named `name` unless registers a and b are equal.
.macro kt_same a, b, name
        beq     \a, \b, kt_ok\@
        la      r1, \name
        call    kt_fail
kt_ok\@:
.endm

; kt_expect reg, value, name: a failure named `name` unless reg = value.
.macro kt_expect reg, value, name
        li      r7, \value
        kt_same \reg, r7, \name
.endm

ktest_main:
        save_callee
        addi    sp, sp, -64
        mov     r12, r1
        li      r14, 0
        la      r1, kt_s_start
        call    puts

; ---- small system calls; a system call preserves every register but r1 (README) ----
        call    u_getpid
        kt_expect r1, 1, kt_n_getpid
        li      r7, 0
        int     SYSCALL_VEC
        kt_expect r1, -1, kt_n_badcall
        li      r7, 99
        int     SYSCALL_VEC
        kt_expect r1, -1, kt_n_badcall
        li      r7, -1
        int     SYSCALL_VEC
        kt_expect r1, -1, kt_n_badcall
        call    u_yield
        kt_expect r1, 0, kt_n_yield
        li      r2, 22
        li      r3, 33
        li      r4, 44
        li      r5, 55
        li      r6, 66
        li      r9, 99
        li      r13, 1313
        li      r7, SYS_GETPID
        int     SYSCALL_VEC
        kt_expect r2, 22, kt_n_regs    ; (kt_expect uses only r7 and, on failure, r1)
        kt_expect r3, 33, kt_n_regs
        kt_expect r4, 44, kt_n_regs
        kt_expect r5, 55, kt_n_regs
        kt_expect r6, 66, kt_n_regs
        kt_expect r9, 99, kt_n_regs
        kt_expect r13, 1313, kt_n_regs
        la      r1, kt_s_syscalls
        call    puts

; ---- write ----
        li      r1, STDOUT
        la      r2, kt_s_write
        li      r3, kt_s_write_end - kt_s_write
        call    u_write
        kt_expect r1, kt_s_write_end - kt_s_write, kt_n_write
        li      r1, 9                  ; not open
        la      r2, kt_s_write
        li      r3, 1
        call    u_write
        kt_expect r1, -1, kt_n_write
        li      r1, STDOUT             ; kernel memory is not the process's
        li      r2, 0x1000
        li      r3, 4
        call    u_write
        kt_expect r1, -1, kt_n_write
        li      r1, STDOUT
        la      r2, kt_s_write
        li      r3, -1
        call    u_write
        kt_expect r1, -1, kt_n_write
        li      r1, STDOUT
        la      r2, kt_s_write
        li      r3, 0
        call    u_write
        kt_expect r1, 0, kt_n_write

; ---- read: the console's line was init's; what can be checked without more input ----
        li      r1, STDIN
        mov     r2, sp
        li      r3, 0
        call    u_read
        kt_expect r1, 0, kt_n_read
        li      r1, 5
        mov     r2, sp
        li      r3, 1
        call    u_read
        kt_expect r1, -1, kt_n_read
        li      r1, STDIN
        mov     r2, sp
        li      r3, -1
        call    u_read
        kt_expect r1, -1, kt_n_read
        la      r1, kt_s_read
        call    puts

; ---- brk: growth is lazy (pages on first touch), shrinking frees whole pages ----
        li      r1, 0
        call    u_brk
        mov     r8, r1
        kt_expect r8, USER_BASE, kt_n_brk
        li      r2, 3 * PAGE_SIZE
        add     r1, r8, r2
        call    u_brk
        kt_expect r1, USER_BASE + 3 * PAGE_SIZE, kt_n_brk
        li      r2, 0x11
        sd      r2, [r8]
        li      r2, 0x22
        sd      r2, [r8 + PAGE_SIZE]
        li      r2, 0x33
        sd      r2, [r8 + 2 * PAGE_SIZE]
        ld      r2, [r8]
        kt_expect r2, 0x11, kt_n_brk
        ld      r2, [r8 + 2 * PAGE_SIZE]
        kt_expect r2, 0x33, kt_n_brk
        li      r1, USER_BASE + PAGE_SIZE + 8  ; the third page goes, the second stays
        call    u_brk
        kt_expect r1, USER_BASE + PAGE_SIZE + 8, kt_n_brk
        li      r1, 0
        call    u_brk
        kt_expect r1, USER_BASE + PAGE_SIZE + 8, kt_n_brk
        ld      r2, [r8 + PAGE_SIZE]
        kt_expect r2, 0x22, kt_n_brk
        li      r1, USER_BASE + 3 * PAGE_SIZE
        call    u_brk
        ld      r2, [r8 + 2 * PAGE_SIZE]   ; a new page: zero
        kt_expect r2, 0, kt_n_brk
        li      r1, USER_BASE - 8
        call    u_brk
        kt_expect r1, -1, kt_n_brk
        li      r1, USER_STACK_TOP
        call    u_brk
        kt_expect r1, -1, kt_n_brk
        li      r1, 0
        call    u_brk
        kt_expect r1, USER_BASE + 3 * PAGE_SIZE, kt_n_brk
        la      r1, kt_s_brk
        call    puts

; ---- fork, exit, wait: n children exit with 10 + i ----
        li      r9, 0                  ; i
        li      r10, 0                 ; sum of the children's pids
kt_fork_loop:
        bge     r9, r12, kt_fork_waits
        call    u_fork
        blt     r1, r0, kt_fork_failed
        bnez    r1, kt_fork_parent
        addi    r1, r9, 10             ; the child
        call    u_exit
kt_fork_failed:
        la      r1, kt_n_fork
        call    kt_fail
        jmp     kt_fork_waits
kt_fork_parent:
        add     r10, r10, r1
        addi    r9, r9, 1
        jmp     kt_fork_loop
kt_fork_waits:
        li      r11, 0                 ; sum of the statuses
        mov     r13, r9                ; children to wait for
kt_fork_wait:
        beqz    r13, kt_fork_check
        mov     r1, sp
        call    u_wait
        sub     r10, r10, r1
        ld      r2, [sp]
        add     r11, r11, r2
        addi    r13, r13, -1
        jmp     kt_fork_wait
kt_fork_check:
        kt_expect r10, 0, kt_n_fork    ; every pid came back once
        li      r2, 10                 ; sum of 10 + i for i < n = 10n + n(n - 1)/2
        mul     r2, r2, r12
        addi    r3, r12, -1
        mul     r3, r3, r12
        sari    r3, r3, 1
        add     r2, r2, r3
        kt_same r11, r2, kt_n_fork
        li      r1, 0
        call    u_wait
        kt_expect r1, -1, kt_n_fork    ; no children left
        la      r1, kt_s_fork
        call    puts

; ---- copy-on-write: parent and child write the same heap and stack words ----
        li      r2, 111
        sd      r2, [r8]
        li      r2, 5
        sd      r2, [sp + 8]
        call    u_fork
        beqz    r1, kt_cow_child
        mov     r9, r1
        li      r2, 333
        sd      r2, [r8]
        mov     r1, sp
        call    u_wait
        kt_same r1, r9, kt_n_cow
        ld      r2, [sp]
        kt_expect r2, 0, kt_n_cow      ; the child saw its own values
        ld      r2, [r8]
        kt_expect r2, 333, kt_n_cow
        ld      r2, [sp + 8]
        kt_expect r2, 5, kt_n_cow
        la      r1, kt_s_cow
        call    puts
        jmp     kt_mprotect
kt_cow_child:                          ; exit status: the number of wrong values seen
        li      r9, 0
        ld      r2, [r8]
        li      r3, 111
        beq     r2, r3, kt_cow_c1
        addi    r9, r9, 1
kt_cow_c1:
        li      r2, 222
        sd      r2, [r8]
        li      r2, 6
        sd      r2, [sp + 8]
        call    u_yield                ; let the parent write its copy
        ld      r2, [r8]
        li      r3, 222
        beq     r2, r3, kt_cow_c2
        addi    r9, r9, 1
kt_cow_c2:
        ld      r2, [sp + 8]
        li      r3, 6
        beq     r2, r3, kt_cow_c3
        addi    r9, r9, 1
kt_cow_c3:
        mov     r1, r9
        call    u_exit

; ---- mprotect: a read-only page; a child's write to it kills the child (128 + 14) ----
kt_mprotect:
        li      r1, USER_BASE
        li      r2, PAGE_SIZE
        li      r3, 0
        call    u_mprotect
        kt_expect r1, 0, kt_n_mprotect
        ld      r2, [r8]               ; reading is still allowed
        kt_expect r2, 333, kt_n_mprotect
        call    u_fork
        beqz    r1, kt_mp_child
        mov     r9, r1
        mov     r1, r8                 ; the status cannot be stored in a read-only page:
        call    u_wait                 ; -1, and the child stays a zombie
        kt_expect r1, -1, kt_n_mprotect
        mov     r1, sp
        call    u_wait
        kt_same r1, r9, kt_n_mprotect
        ld      r2, [sp]
        kt_expect r2, 128 + VEC_PF, kt_n_mprotect
        li      r1, USER_BASE
        li      r2, PAGE_SIZE
        li      r3, PROT_WRITE
        call    u_mprotect
        kt_expect r1, 0, kt_n_mprotect
        li      r2, 444
        sd      r2, [r8]
        ld      r2, [r8]
        kt_expect r2, 444, kt_n_mprotect
        li      r1, USER_BASE + 8      ; not page-aligned
        li      r2, PAGE_SIZE
        li      r3, 0
        call    u_mprotect
        kt_expect r1, -1, kt_n_mprotect
        li      r1, USER_BASE + 0x100000   ; above the break
        li      r2, PAGE_SIZE
        li      r3, 0
        call    u_mprotect
        kt_expect r1, -1, kt_n_mprotect
        la      r1, kt_s_mprotect
        call    puts
        jmp     kt_faults
kt_mp_child:
        ld      r2, [r8]
kt_mp_store:
        sd      r2, [r8]               ; killed here
        li      r1, 0
        call    u_exit

; ---- faults: each child dies of one; the parent checks its status ----
kt_faults:
        la      r9, kt_fault_table
kt_faults_loop:
        ld      r10, [r9]
        beqz    r10, kt_faults_done
        call    u_fork
        beqz    r1, kt_faults_child
        mov     r1, sp
        call    u_wait
        ld      r2, [sp]
        ld      r3, [r9 + 8]
        kt_same r2, r3, kt_n_faults
        addi    r9, r9, 16
        jmp     kt_faults_loop
kt_faults_child:
        jr      r10
kt_faults_done:
        la      r1, kt_s_faults
        call    puts

; ---- preemption: two children spin without a system call; both finish ----
        li      r9, 2
kt_spin_fork:
        call    u_fork
        beqz    r1, kt_spin_child
        addi    r9, r9, -1
        bnez    r9, kt_spin_fork
        li      r9, 2
kt_spin_wait:
        mov     r1, sp
        call    u_wait
        blt     r1, r0, kt_spin_bad
        ld      r2, [sp]
        kt_expect r2, 0, kt_n_preempt
        addi    r9, r9, -1
        bnez    r9, kt_spin_wait
        jmp     kt_spin_done
kt_spin_bad:
        la      r1, kt_n_preempt
        call    kt_fail
kt_spin_done:
        la      r1, kt_s_preempt
        call    puts
        jmp     kt_files
kt_spin_child:
        li      r2, KT_SPIN
kt_spin_loop:
        addi    r2, r2, -1
        bnez    r2, kt_spin_loop
        li      r1, 0
        call    u_exit

; ---- files: the descriptor layer's refusals ----
kt_files:
        la      r1, kt_s_nosuch
        li      r2, O_RDONLY
        call    u_open
        kt_expect r1, -1, kt_n_files
        la      r1, kt_s_nosuch
        li      r2, 3                  ; no such access mode
        call    u_open
        kt_expect r1, -1, kt_n_files
        li      r1, 0x10               ; the name is not in the process's memory
        li      r2, O_RDONLY
        call    u_open
        kt_expect r1, -1, kt_n_files
        li      r1, 9
        call    u_close
        kt_expect r1, -1, kt_n_files
        li      r1, -1
        call    u_close
        kt_expect r1, -1, kt_n_files
        li      r1, STDIN              ; the console has no offset
        li      r2, 0
        call    u_lseek
        kt_expect r1, -1, kt_n_files
        li      r1, STDERR
        call    u_close
        kt_expect r1, 0, kt_n_files
        li      r1, STDERR
        la      r2, kt_s_write
        li      r3, 1
        call    u_write
        kt_expect r1, -1, kt_n_files
        li      r1, STDERR
        call    u_close
        kt_expect r1, -1, kt_n_files
        la      r1, kt_s_files
        call    puts

; ---- orphans: a child forks a grandchild and exits; init (us) inherits the grandchild ----
        call    u_fork
        beqz    r1, kt_orphan_child
        mov     r9, r1                 ; the child; the grandchild is the next pid
        li      r10, 0                 ; sum of pids waited for
        li      r11, 0                 ; sum of statuses
        li      r13, 2
kt_orphan_wait:
        mov     r1, sp
        call    u_wait
        add     r10, r10, r1
        ld      r2, [sp]
        add     r11, r11, r2
        addi    r13, r13, -1
        bnez    r13, kt_orphan_wait
        add     r2, r9, r9
        addi    r2, r2, 1
        kt_same r10, r2, kt_n_orphans
        kt_expect r11, 3 + 7, kt_n_orphans
        li      r1, 0
        call    u_wait
        kt_expect r1, -1, kt_n_orphans
        la      r1, kt_s_orphans
        call    puts
        jmp     kt_end
kt_orphan_child:
        call    u_fork
        beqz    r1, kt_orphan_grandchild
        li      r1, 3
        call    u_exit
kt_orphan_grandchild:
        call    u_yield
        call    u_yield
        li      r1, 7
        call    u_exit

; ---- the verdict ----
kt_end:
        beqz    r14, kt_end_ok
        la      r1, kt_s_ktest
        call    puts
        mov     r1, r14
        call    putdec
        la      r1, kt_s_failed
        call    puts
        li      r1, 1
        jmp     kt_ret
kt_end_ok:
        la      r1, kt_s_ok
        call    puts
        li      r1, 0
kt_ret:
        addi    sp, sp, 64
        restore_callee
        ret

; kt_fail(r1 = what): print "ktest: FAIL <what>" and count it in r14.
kt_fail:
        push    r1
        la      r1, kt_s_fail
        call    puts
        pop     r1
        call    puts
        li      r1, 10
        call    putc
        addi    r14, r14, 1
        ret

; The fault children: each dies at its `_at` label (the kill line's pc).
kt_f_ud:
        ud
kt_f_div:
        li      r2, 7
kt_f_div_at:
        div     r1, r2, r0             ; #DE
kt_f_hole:
        li      r2, USER_BASE + 0x20000000  ; between the heap and the stack
kt_f_hole_at:
        ld      r3, [r2]
kt_f_kernel:
        li      r2, 0x1000             ; a supervisor page
kt_f_kernel_at:
        ld      r3, [r2]
kt_f_text:
        la      r2, kt_f_text
kt_f_text_at:
        sd      r0, [r2]               ; user text is read-only
kt_f_cli:
        cli                            ; IOPL 0: #GP
kt_f_int:
        int     VEC_TIMER              ; a DPL 0 gate: #GP
kt_f_stack:
        push    r0                     ; past the 1 MiB stack: #PF in the gap below it
        jmp     kt_f_stack

        .align  8
kt_fault_table:                        ; entry, expected exit status
        .quad   kt_f_ud, 128 + VEC_UD
        .quad   kt_f_div, 128 + VEC_DE
        .quad   kt_f_hole, 128 + VEC_PF
        .quad   kt_f_kernel, 128 + VEC_PF
        .quad   kt_f_text, 128 + VEC_PF
        .quad   kt_f_cli, 128 + VEC_GP
        .quad   kt_f_int, 128 + VEC_GP
        .quad   kt_f_stack, 128 + VEC_PF
        .quad   0, 0

kt_s_start:     .asciz "ktest: start\n"
kt_s_syscalls:  .asciz "syscalls: ok\n"
kt_s_write:     .ascii "write: ok\n"
kt_s_write_end:
kt_s_read:      .asciz "read: ok\n"
kt_s_brk:       .asciz "brk: ok\n"
kt_s_fork:      .asciz "fork: ok\n"
kt_s_cow:       .asciz "cow: ok\n"
kt_s_mprotect:  .asciz "mprotect: ok\n"
kt_s_faults:    .asciz "faults: ok\n"
kt_s_preempt:   .asciz "preempt: ok\n"
kt_s_files:     .asciz "files: ok\n"
kt_s_orphans:   .asciz "orphans: ok\n"
kt_s_ok:        .asciz "ktest: ok\n"
kt_s_ktest:     .asciz "ktest: "
kt_s_failed:    .asciz " failed\n"
kt_s_fail:      .asciz "ktest: FAIL "
kt_s_nosuch:    .asciz "no-such-file"
kt_n_getpid:    .asciz "getpid"
kt_n_badcall:   .asciz "bad system call number"
kt_n_yield:     .asciz "yield"
kt_n_regs:      .asciz "registers kept by a system call"
kt_n_write:     .asciz "write"
kt_n_read:      .asciz "read"
kt_n_brk:       .asciz "brk"
kt_n_fork:      .asciz "fork/wait"
kt_n_cow:       .asciz "copy-on-write"
kt_n_mprotect:  .asciz "mprotect"
kt_n_faults:    .asciz "fault status"
kt_n_preempt:   .asciz "preemption"
kt_n_files:     .asciz "files"
kt_n_orphans:   .asciz "orphans"
        .align  4
