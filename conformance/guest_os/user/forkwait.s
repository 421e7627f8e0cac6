; The forkwait workload: n times fork + wait, each child exiting at once (Adams & Agesen 2006 §6.1).
;
; The paper's process-creation benchmark (40,000 iterations on their machines): each
; iteration is a fork (a new address space, the parent's heap and stack marked
; copy-on-write), a switch to the child, its exit, and the parent's wait.  Under a VMM
; every page-table write, CR3 load and privileged instruction of that path costs a trap or
; an exit, so forkwait is the workload where software and hardware VMMs differ most.
; Prints "forkwait n=<n> ok=<children reaped with status 0>"; exits 0 when every child was.

forkwait_main:                             ; forkwait_main(r1 = n) -> r1 = exit status
        push    r8
        push    r9
        push    r10
        addi    sp, sp, -8                 ; [sp]: the status word wait stores
        mov     r8, r1                     ; r8 = n
        li      r9, 0                      ; r9 = iterations done
        li      r10, 0                     ; r10 = children reaped with status 0
forkwait_loop:
        bgeu    r9, r8, forkwait_report
        call    u_fork
        blt     r1, r0, forkwait_report    ; no process free: stop and report the count
        beqz    r1, forkwait_child
        sd      r0, [sp]
        mov     r1, sp
        call    u_wait
        blt     r1, r0, forkwait_next
        ld      r2, [sp]
        bnez    r2, forkwait_next
        addi    r10, r10, 1
forkwait_next:
        addi    r9, r9, 1
        jmp     forkwait_loop
forkwait_child:
        li      r1, 0
        call    u_exit
forkwait_report:
        la      r1, forkwait_s_n
        call    puts
        mov     r1, r8
        call    putdec
        la      r1, forkwait_s_ok
        call    puts
        mov     r1, r10
        call    putdec
        li      r1, 10
        call    putc
        li      r1, 0
        beq     r10, r8, forkwait_done
        li      r1, 1
forkwait_done:
        addi    sp, sp, 8
        pop     r10
        pop     r9
        pop     r8
        ret

forkwait_s_n:
        .asciz  "forkwait n="
forkwait_s_ok:
        .asciz  " ok="
        .align  4
