; Processes: the process table, the scheduler and context switch, sleep/wakeup, fork, exit, wait.
;
; As in xv6: each process has a kernel stack whose top holds its trap frame (trap.s) while it
; is in the kernel; `swtch` saves the callee-saved registers on the current stack and
; switches stacks, so a context is just a saved sp.  The scheduler runs on the boot stack and
; picks runnable processes round robin; a process gives the CPU back by switching to it
; (sched).  The kernel runs with interrupts off (trap.s), so sleep/wakeup need no lock: a
; wakeup cannot slip in between the test of a condition and the sleep.  With nothing to run,
; the scheduler waits in `sti; hlt` (architecture.md §6.5).

.equ NPROC, 64
.equ PROC_SIZE, 256
.equ KSTACK_SIZE, 8192
.equ KSTACK_SHIFT, 5                   ; KSTACK_SIZE / PROC_SIZE = 1 << 5
.equ PROCS_END, PROCS + NPROC * PROC_SIZE
.equ NOFILE, 16                        ; open files per process (file.s)

.equ P_STATE, 0                        ; the process structure
.equ P_PID, 8
.equ P_PARENT, 16                      ; the parent's structure
.equ P_KSP, 24                         ; saved sp of the context (swtch)
.equ P_KSTACK, 32                      ; top of the kernel stack (MSR_RSP0)
.equ P_PML4, 40                        ; the address space (vm.s)
.equ P_CHAN, 48                        ; what it sleeps on
.equ P_XSTATUS, 56                     ; exit status, for wait
.equ P_BRK, 64                         ; end of the heap (vm.s)
.equ P_OFILE, 72                       ; NOFILE pointers into the file table (file.s)
.equ P_STACK_LO, 200                   ; lowest stack page allocated (vm.s)

.equ PS_UNUSED, 0
.equ PS_EMBRYO, 1
.equ PS_SLEEPING, 2
.equ PS_RUNNABLE, 3
.equ PS_RUNNING, 4
.equ PS_ZOMBIE, 5

        .align  8
cur:            .quad 0                ; the current process, 0 in the scheduler
initproc:       .quad 0
nextpid:        .quad 1
sched_ksp:      .quad 0                ; the scheduler's saved context

; proc_alloc() -> r1 = a cleared EMBRYO process with a pid and a kernel stack whose first
; switch returns through trapret with the frame at the top of the stack, or 0.
proc_alloc:
        li      r1, PROCS
        li      r2, PROCS_END
pr_alloc_loop:
        ld      r3, [r1 + P_STATE]
        beqz    r3, pr_alloc_found
        addi    r1, r1, PROC_SIZE
        bltu    r1, r2, pr_alloc_loop
        li      r1, 0
        ret
pr_alloc_found:
        push    r8
        mov     r8, r1
        li      r2, 0
        li      r3, PROC_SIZE
        call    kmemset
        li      r2, PS_EMBRYO
        sd      r2, [r8 + P_STATE]
        la      r2, nextpid
        ld      r3, [r2]
        sd      r3, [r8 + P_PID]
        addi    r3, r3, 1
        sd      r3, [r2]
        li      r2, PROCS              ; kernel stack i for slot i
        sub     r3, r8, r2
        shli    r3, r3, KSTACK_SHIFT
        li      r2, KSTACKS + KSTACK_SIZE
        add     r3, r3, r2
        sd      r3, [r8 + P_KSTACK]
        addi    r2, r3, -(TF_SIZE + 64) ; a context below the frame: r14..r8, then trapret
        sd      r2, [r8 + P_KSP]
        la      r3, trapret
        sd      r3, [r2 + 56]
        mov     r1, r8
        pop     r8
        ret

; swtch(r1 = where to save the current context, r2 = the context to resume)
swtch:
        save_callee
        sd      sp, [r1]
        mov     sp, r2
        restore_callee
        ret

; scheduler(): run runnable processes round robin, forever (on the boot stack).
scheduler:
        li      r8, PROCS_END - PROC_SIZE  ; the slot last run: start the scan at slot 0
pr_sched_loop:
        mov     r9, r8
        li      r10, NPROC
pr_sched_scan:
        addi    r9, r9, PROC_SIZE
        li      r2, PROCS_END
        bltu    r9, r2, pr_sched_check
        li      r9, PROCS
pr_sched_check:
        ld      r2, [r9 + P_STATE]
        li      r3, PS_RUNNABLE
        beq     r2, r3, pr_sched_run
        addi    r10, r10, -1
        bnez    r10, pr_sched_scan
        arch_idle                      ; nothing to run: wait for an interrupt
        jmp     pr_sched_loop
pr_sched_run:
        mov     r8, r9
        li      r2, PS_RUNNING
        sd      r2, [r9 + P_STATE]
        la      r2, cur
        sd      r9, [r2]
        ld      r1, [r9 + P_PML4]
        call    switchuvm
        ld      r1, [r9 + P_KSTACK]    ; its traps from user mode land on its own stack
        arch_set_kstack r1, r2
        la      r1, sched_ksp
        ld      r2, [r9 + P_KSP]
        call    swtch
        la      r2, cur
        sd      r0, [r2]
        jmp     pr_sched_loop

; sched(): switch from the current process (its state already changed) to the scheduler.
sched:
        la      r1, cur
        ld      r1, [r1]
        addi    r1, r1, P_KSP
        la      r2, sched_ksp
        ld      r2, [r2]
        jmp     swtch                  ; swtch returns to our caller when we are resumed

; yield(): give up the CPU for one round.
yield:
        la      r1, cur
        ld      r1, [r1]
        li      r2, PS_RUNNABLE
        sd      r2, [r1 + P_STATE]
        jmp     sched

; sleep(r1 = channel): wait until wakeup(channel).  The channel is any nonzero kernel address.
sleep:
        la      r2, cur
        ld      r2, [r2]
        sd      r1, [r2 + P_CHAN]
        li      r3, PS_SLEEPING
        sd      r3, [r2 + P_STATE]
        call    sched
        la      r2, cur
        ld      r2, [r2]
        sd      r0, [r2 + P_CHAN]
        ret

; wakeup(r1 = channel): make every process sleeping on channel runnable.
wakeup:
        li      r2, PROCS
        li      r3, PROCS_END
        li      r5, PS_SLEEPING
pr_wake_loop:
        ld      r4, [r2 + P_STATE]
        bne     r4, r5, pr_wake_next
        ld      r4, [r2 + P_CHAN]
        bne     r4, r1, pr_wake_next
        li      r4, PS_RUNNABLE
        sd      r4, [r2 + P_STATE]
pr_wake_next:
        addi    r2, r2, PROC_SIZE
        bltu    r2, r3, pr_wake_loop
        ret

; userinit(): process 1, init, about to enter user mode at init_start with the console on
; fds 0, 1, 2 and an empty heap and stack.
userinit:
        push    r8
        call    proc_alloc
        mov     r8, r1
        la      r2, initproc
        sd      r8, [r2]
        call    uvm_create
        beqz    r1, pr_init_fail
        sd      r1, [r8 + P_PML4]
        li      r1, USER_BASE
        sd      r1, [r8 + P_BRK]
        li      r1, USER_STACK_TOP     ; no stack page yet
        sd      r1, [r8 + P_STACK_LO]
        ld      r1, [r8 + P_KSTACK]
        addi    r1, r1, -TF_SIZE
        li      r2, 0
        li      r3, TF_SIZE
        call    kmemset
        ld      r1, [r8 + P_KSTACK]
        la      r2, init_start
        sd      r2, [r1 - TF_SIZE + TF_PC]
        li      r2, 3                  ; CPL 3
        sd      r2, [r1 - TF_SIZE + TF_CS]
        li      r2, FLAGS_IF           ; interrupts on in user mode, IOPL 0 (§2)
        sd      r2, [r1 - TF_SIZE + TF_FLAGS]
        li      r2, USER_STACK_TOP
        sd      r2, [r1 - TF_SIZE + TF_SP]
        mov     r1, r8
        call    file_init_console
        li      r1, PS_RUNNABLE
        sd      r1, [r8 + P_STATE]
        pop     r8
        ret
pr_init_fail:
        la      r1, pr_msg_init
        call    panic

; sys_fork() -> the child's pid, 0 in the child, -1 if no process slot or memory is free.
sys_fork:
        push    r8
        push    r9
        push    r10
        la      r1, cur
        ld      r8, [r1]
        call    proc_alloc
        beqz    r1, pr_fork_fail
        mov     r9, r1
        call    uvm_create
        beqz    r1, pr_fork_noproc
        sd      r1, [r9 + P_PML4]
        ld      r1, [r8 + P_BRK]       ; the same heap and stack ranges
        sd      r1, [r9 + P_BRK]
        ld      r1, [r8 + P_STACK_LO]
        sd      r1, [r9 + P_STACK_LO]
        mov     r1, r8
        ld      r2, [r9 + P_PML4]
        call    uvm_copy
        mov     r10, r1
        arch_reload_cr3 r1             ; the parent's pages just became read-only (§8.1)
        bnez    r10, pr_fork_novm
        sd      r8, [r9 + P_PARENT]
        ld      r1, [r9 + P_KSTACK]    ; the child returns from the same system call ...
        addi    r1, r1, -TF_SIZE
        ld      r2, [r8 + P_KSTACK]
        addi    r2, r2, -TF_SIZE
        li      r3, TF_SIZE
        call    kmemcpy
        ld      r1, [r9 + P_KSTACK]    ; ... with 0
        sd      r0, [r1 - TF_SIZE + TF_R1]
        mov     r1, r8
        mov     r2, r9
        call    file_fork
        li      r1, PS_RUNNABLE
        sd      r1, [r9 + P_STATE]
        ld      r1, [r9 + P_PID]
        jmp     pr_fork_ret
pr_fork_novm:
        mov     r1, r9
        call    uvm_free
pr_fork_noproc:
        sd      r0, [r9 + P_STATE]
pr_fork_fail:
        li      r1, -1
pr_fork_ret:
        pop     r10
        pop     r9
        pop     r8
        ret

; proc_exit(r1 = status): end the current process.  Never returns.  Its files and memory go
; at once; the structure and kernel stack stay (ZOMBIE) until the parent's wait.  Orphans
; go to init.  When init itself exits the run ends with its status (devices.md §7).
sys_exit:
proc_exit:
        mov     r8, r1
        la      r1, cur
        ld      r9, [r1]
        la      r1, initproc
        ld      r10, [r1]
        bne     r9, r10, pr_exit_normal
        io_out  RESULT_EXIT, r8
pr_exit_halt:
        arch_halt
        jmp     pr_exit_halt
pr_exit_normal:
        mov     r1, r9
        call    file_exit
        li      r1, KPML4              ; leave the address space before freeing it
        call    switchuvm
        mov     r1, r9
        call    uvm_free
        sd      r0, [r9 + P_PML4]
        li      r2, PROCS              ; give the children to init
        li      r3, PROCS_END
        li      r11, 0                 ; 1 if one of them is a zombie already
pr_exit_orphans:
        ld      r4, [r2 + P_PARENT]
        bne     r4, r9, pr_exit_next
        sd      r10, [r2 + P_PARENT]
        ld      r4, [r2 + P_STATE]
        li      r5, PS_ZOMBIE
        bne     r4, r5, pr_exit_next
        li      r11, 1
pr_exit_next:
        addi    r2, r2, PROC_SIZE
        bltu    r2, r3, pr_exit_orphans
        beqz    r11, pr_exit_zombie
        mov     r1, r10
        call    wakeup
pr_exit_zombie:
        sd      r8, [r9 + P_XSTATUS]
        li      r1, PS_ZOMBIE
        sd      r1, [r9 + P_STATE]
        ld      r1, [r9 + P_PARENT]    ; a parent in wait sleeps on itself
        call    wakeup
        call    sched
        la      r1, pr_msg_zombie
        call    panic

; sys_wait(r1 = status address or 0) -> the pid of an exited child, its status stored as a
; quadword at the address; -1 if there is no child (or the address cannot be written).
sys_wait:
        push    r8
        push    r9
        push    r10
        push    r11
        mov     r8, r1
        la      r1, cur
        ld      r9, [r1]
pr_wait_loop:
        li      r10, PROCS
        li      r11, 0                 ; children seen
pr_wait_scan:
        ld      r2, [r10 + P_PARENT]
        bne     r2, r9, pr_wait_next
        ld      r2, [r10 + P_STATE]
        beqz    r2, pr_wait_next
        li      r11, 1
        li      r3, PS_ZOMBIE
        bne     r2, r3, pr_wait_next
        beqz    r8, pr_wait_reap
        mov     r1, r8
        addi    r2, r10, P_XSTATUS
        li      r3, 8
        call    copyout
        bnez    r1, pr_wait_fail       ; the child stays a zombie, as in xv6
pr_wait_reap:
        sd      r0, [r10 + P_STATE]
        sd      r0, [r10 + P_PARENT]
        ld      r1, [r10 + P_PID]
        jmp     pr_wait_ret
pr_wait_next:
        addi    r10, r10, PROC_SIZE
        li      r2, PROCS_END
        bltu    r10, r2, pr_wait_scan
        beqz    r11, pr_wait_fail
        mov     r1, r9
        call    sleep
        jmp     pr_wait_loop
pr_wait_fail:
        li      r1, -1
pr_wait_ret:
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

pr_msg_init:    .asciz "userinit: no memory"
pr_msg_zombie:  .asciz "zombie exit"
        .align  4
