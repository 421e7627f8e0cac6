; System calls: the dispatch table, and the calls too small for a file of their own.
;
; A user program traps with `int SYSCALL_VEC` (README, "System calls"), the number in r7 and
; the arguments in r1-r5.  The handler's result goes into the frame's r1; trapret restores
; every other register as it was, so a system call preserves them all.

; syscall(r1 = trap frame)
syscall:
        push    r8
        mov     r8, r1
        ld      r7, [r8 + TF_R7]
        li      r2, NSYSCALL
        bgeu    r7, r2, sc_bad         ; unsigned: a negative number is out of range too
        beqz    r7, sc_bad
        shli    r7, r7, 3
        la      r2, syscall_table
        add     r7, r7, r2
        ld      r7, [r7]
        ld      r1, [r8 + TF_R1]
        ld      r2, [r8 + TF_R2]
        ld      r3, [r8 + TF_R3]
        ld      r4, [r8 + TF_R4]
        ld      r5, [r8 + TF_R5]
        callr   r7
        jmp     sc_done
sc_bad:
        li      r1, -1
sc_done:
        sd      r1, [r8 + TF_R1]
        pop     r8
        ret

; sys_getpid() -> the current process's pid
sys_getpid:
        la      r1, cur
        ld      r1, [r1]
        ld      r1, [r1 + P_PID]
        ret

; sys_yield() -> 0, after the other runnable processes had their turn
sys_yield:
        call    yield
        li      r1, 0
        ret

        .align  8
syscall_table:                         ; indexed by the numbers of user/ulib.s (SYS_*)
        .quad   0                      ; 0: none
        .quad   sys_exit               ; 1  (proc.s)
        .quad   sys_write              ; 2  (file.s)
        .quad   sys_read               ; 3  (file.s)
        .quad   sys_fork               ; 4  (proc.s)
        .quad   sys_wait               ; 5  (proc.s)
        .quad   sys_getpid             ; 6
        .quad   sys_yield              ; 7
        .quad   sys_brk                ; 8  (vm.s)
        .quad   sys_mprotect           ; 9  (vm.s)
        .quad   sys_open               ; 10 (file.s)
        .quad   sys_close              ; 11 (file.s)
        .quad   sys_lseek              ; 12 (file.s)
syscall_table_end:
.equ NSYSCALL, (syscall_table_end - syscall_table) / 8
