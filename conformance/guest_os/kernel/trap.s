; Traps: the IDT, one stub per vector, the trap frame, dispatch to system calls, interrupts and faults.
;
; Every gate is an interrupt gate to ring 0 (architecture.md §6.2), so the kernel always runs
; with FLAGS.IF = 0: there is no kernel preemption and no locking, as in early Unix on a
; uniprocessor.  The system call gate (SYSCALL_VEC) alone has DPL 3, so that `int 0x80`
; works from user mode while `int n` of any other vector from user mode is a #GP (§6.3
; step 3) and kills the process.  An event from user mode switches to the process's kernel
; stack (MSR_RSP0, §6.3 step 6); one from the kernel (the idle loop's `hlt`) stays on the
; current stack.
;
; The trap frame, from low addresses up: r1..r14 (saved by trap_common), the vector, the
; error code (0 when the event has none: the stub pushes it, so one layout serves all), then
; what the CPU pushed: pc, cs, FLAGS, sp (§6.3 step 7).

.equ TF_R1, 0
.equ TF_R2, 8
.equ TF_R3, 16
.equ TF_R4, 24
.equ TF_R5, 32
.equ TF_R6, 40
.equ TF_R7, 48
.equ TF_R8, 56
.equ TF_R9, 64
.equ TF_R10, 72
.equ TF_R11, 80
.equ TF_R12, 88
.equ TF_R13, 96
.equ TF_R14, 104
.equ TF_VEC, 112
.equ TF_ERR, 120
.equ TF_PC, 128
.equ TF_CS, 136
.equ TF_FLAGS, 144
.equ TF_SP, 152
.equ TF_SIZE, 160
.equ NVECTORS, 48                      ; exceptions 0-31 and the PIC's IRQs 0-15 (32-47)

; trap_init(): fill the IDT, load IDTR, program the PIC and start the periodic timer.
trap_init:
        li      r1, IDT_BASE
        la      r2, trap_vectors
        li      r3, NVECTORS
        li      r4, GATE_P             ; interrupt gate, ring 0 handler, DPL 0
tr_idt_loop:
        ld      r5, [r2]
        sd      r5, [r1]
        sd      r4, [r1 + 8]
        addi    r1, r1, GATE_SIZE
        addi    r2, r2, 8
        addi    r3, r3, -1
        bnez    r3, tr_idt_loop
        li      r1, IDT_BASE + GATE_SIZE * SYSCALL_VEC
        la      r2, tv_syscall
        sd      r2, [r1]
        li      r2, GATE_P | GATE_DPL3
        sd      r2, [r1 + 8]
        li      r1, IDT_BASE
        arch_lidt r1
        li      r1, VEC_TIMER          ; IRQ n is vector 32 + n (devices.md §3)
        io_out  PIC_BASE, r1
        li      r1, 0xffff & ~((1 << TIMER_IRQ) | (1 << CONSOLE_IRQ) | (1 << DISK_IRQ))
        io_out  PIC_MASK, r1
        li      r1, TIMER_QUANTUM      ; devices.md §4: periodic, re-armed by the device
        io_out  TIMER_COUNT, r1
        li      r1, TIMER_ENABLE | TIMER_PERIODIC
        io_out  TIMER_CTRL, r1
        ret

; The stubs.  A vector without an error code pushes a 0 in its place; each saves r7 and
; passes its vector in r7 (trap_common puts both where the frame wants them).
.macro trap_stub vec
tv_\vec:
        push    r0
        push    r7
        li      r7, \vec
        jmp     trap_common
.endm
.macro trap_stub_err vec
tv_\vec:
        push    r7
        li      r7, \vec
        jmp     trap_common
.endm

        trap_stub 0
        trap_stub 1
        trap_stub 2
        trap_stub 3
        trap_stub 4
        trap_stub 5
        trap_stub 6
        trap_stub 7
        trap_stub_err 8                ; #DF, #GP, #PF, #AC push an error code (§6.1)
        trap_stub 9
        trap_stub 10
        trap_stub 11
        trap_stub 12
        trap_stub_err 13
        trap_stub_err 14
        trap_stub 15
        trap_stub 16
        trap_stub_err 17
        trap_stub 18
        trap_stub 19
        trap_stub 20
        trap_stub 21
        trap_stub 22
        trap_stub 23
        trap_stub 24
        trap_stub 25
        trap_stub 26
        trap_stub 27
        trap_stub 28
        trap_stub 29
        trap_stub 30
        trap_stub 31
        trap_stub 32
        trap_stub 33
        trap_stub 34
        trap_stub 35
        trap_stub 36
        trap_stub 37
        trap_stub 38
        trap_stub 39
        trap_stub 40
        trap_stub 41
        trap_stub 42
        trap_stub 43
        trap_stub 44
        trap_stub 45
        trap_stub 46
        trap_stub 47
tv_syscall:                            ; r7 holds the system call number: saved as the frame's r7
        push    r0
        push    r7
        li      r7, SYSCALL_VEC
        jmp     trap_common

; trap_common: complete the frame, call trap(frame), restore and return (§6.4).
trap_common:                           ; stack: r7, error code, pc, cs, FLAGS, sp
        addi    sp, sp, -TF_VEC
        sd      r1, [sp + TF_R1]
        sd      r2, [sp + TF_R2]
        sd      r3, [sp + TF_R3]
        sd      r4, [sp + TF_R4]
        sd      r5, [sp + TF_R5]
        sd      r6, [sp + TF_R6]
        ld      r1, [sp + TF_VEC]      ; the r7 the stub saved
        sd      r1, [sp + TF_R7]
        sd      r7, [sp + TF_VEC]
        sd      r8, [sp + TF_R8]
        sd      r9, [sp + TF_R9]
        sd      r10, [sp + TF_R10]
        sd      r11, [sp + TF_R11]
        sd      r12, [sp + TF_R12]
        sd      r13, [sp + TF_R13]
        sd      r14, [sp + TF_R14]
        mov     r1, sp
        call    trap
; trapret: return through the frame at sp (also the first return of a new process, proc.s).
trapret:
        ld      r1, [sp + TF_R1]
        ld      r2, [sp + TF_R2]
        ld      r3, [sp + TF_R3]
        ld      r4, [sp + TF_R4]
        ld      r5, [sp + TF_R5]
        ld      r6, [sp + TF_R6]
        ld      r7, [sp + TF_R7]
        ld      r8, [sp + TF_R8]
        ld      r9, [sp + TF_R9]
        ld      r10, [sp + TF_R10]
        ld      r11, [sp + TF_R11]
        ld      r12, [sp + TF_R12]
        ld      r13, [sp + TF_R13]
        ld      r14, [sp + TF_R14]
        addi    sp, sp, TF_PC          ; drop the saved registers, vector and error code
        arch_iret

; trap(r1 = frame): dispatch one event.
trap:
        push    r8
        push    r9
        mov     r8, r1
        ld      r9, [r8 + TF_VEC]
        li      r2, SYSCALL_VEC
        bne     r9, r2, tr_not_syscall
        call    syscall
        jmp     tr_ret
tr_not_syscall:
        li      r2, VEC_TIMER
        bgeu    r9, r2, tr_irq
        ld      r2, [r8 + TF_CS]       ; an exception: from the kernel it is a bug
        andi    r2, r2, 3
        beqz    r2, tr_kernel_fault
        li      r2, VEC_PF
        bne     r9, r2, tr_kill
        arch_get_cr2 r1
        ld      r2, [r8 + TF_ERR]
        call    vm_fault               ; demand page or copy-on-write: retry the instruction
        beqz    r1, tr_ret
tr_kill:                               ; "pid <p>: killed by <vector> at <pc>", exit 128 + vector
        la      r1, tr_msg_pid
        call    kprint
        la      r1, cur
        ld      r1, [r1]
        ld      r1, [r1 + P_PID]
        call    kprint_dec
        la      r1, tr_msg_killed
        call    kprint
        mov     r1, r9
        call    kprint_dec
        la      r1, tr_msg_at
        call    kprint
        ld      r1, [r8 + TF_PC]
        call    kprint_hex
        li      r1, 10
        call    kputc
        addi    r1, r9, 128
        call    proc_exit              ; never returns

tr_irq:                                ; devices.md §3: EOI lets the PIC present the next IRQ
        bne     r9, r2, tr_not_timer
        li      r1, PIC_EOI
        io_out  PIC_CMD, r1
        ld      r2, [r8 + TF_CS]       ; preempt user mode only: the kernel is never preempted
        andi    r2, r2, 3
        beqz    r2, tr_ret
        call    yield                  ; round robin: the quantum is over
        jmp     tr_ret
tr_not_timer:
        li      r2, VEC_CONSOLE
        bne     r9, r2, tr_not_console
        call    console_intr           ; take the input first, then EOI: the line is raised
        li      r1, PIC_EOI            ; while input waits, so an EOI before the reads
        io_out  PIC_CMD, r1            ; would only bring the same interrupt back
        jmp     tr_ret
tr_not_console:
        li      r1, PIC_EOI
        io_out  PIC_CMD, r1
        li      r2, VEC_DISK
        bne     r9, r2, tr_ret         ; any other IRQ: acknowledged and ignored
        call    disk_intr
tr_ret:
        pop     r9
        pop     r8
        ret

tr_kernel_fault:                       ; "kernel trap <vector> at <pc> cr2 <cr2>", then panic
        la      r1, tr_msg_ktrap
        call    kprint
        mov     r1, r9
        call    kprint_dec
        la      r1, tr_msg_at
        call    kprint
        ld      r1, [r8 + TF_PC]
        call    kprint_hex
        la      r1, tr_msg_cr2
        call    kprint
        arch_get_cr2 r1
        call    kprint_hex
        li      r1, 10
        call    kputc
        la      r1, tr_msg_kfault
        call    panic

        .align  8
trap_vectors:
        .quad   tv_0, tv_1, tv_2, tv_3, tv_4, tv_5, tv_6, tv_7
        .quad   tv_8, tv_9, tv_10, tv_11, tv_12, tv_13, tv_14, tv_15
        .quad   tv_16, tv_17, tv_18, tv_19, tv_20, tv_21, tv_22, tv_23
        .quad   tv_24, tv_25, tv_26, tv_27, tv_28, tv_29, tv_30, tv_31
        .quad   tv_32, tv_33, tv_34, tv_35, tv_36, tv_37, tv_38, tv_39
        .quad   tv_40, tv_41, tv_42, tv_43, tv_44, tv_45, tv_46, tv_47
tr_msg_pid:     .asciz "pid "
tr_msg_killed:  .asciz ": killed by "
tr_msg_at:      .asciz " at "
tr_msg_ktrap:   .asciz "kernel trap "
tr_msg_cr2:     .asciz " cr2 "
tr_msg_kfault:  .asciz "kernel fault"
        .align  4
