; The common start of every directed guest: constants, an IDT whose fault handlers log each
; event and step over the faulting instruction, and macros to enter ring 3 and come back.
; The guest then defines `main` (CPL 0) and ends with `jmp finish` (lib/signature.s).
; Registers r13 and r14 belong to this library; guests keep their results in r1-r8.
.equ CONSOLE_DATA, 0x3f8               ; docs/architecture.md §11
.equ CONSOLE_STATUS, 0x3f9
.equ RESULT_EXIT, 0x500
.equ PIC_CMD, 0x20
.equ PIC_MASK, 0x21
.equ PIC_EOI, 0x20
.equ TIMER_COUNT, 0x40
.equ TIMER_CTRL, 0x41
.equ TIMER_NOW, 0x42                   ; read: the clock (devices.md §4)
.equ DISK_SECTOR, 0x1f0
.equ DISK_COUNT, 0x1f1
.equ DISK_ADDR, 0x1f2
.equ DISK_CMD, 0x1f3
.equ DISK_SIZE, 0x1f4
.equ DISK2_SECTOR, 0x170               ; the second disk: the same registers at 0x170
.equ DISK2_COUNT, 0x171
.equ DISK2_ADDR, 0x172
.equ DISK2_CMD, 0x173
.equ DISK2_SIZE, 0x174
.equ RAM_END, 0x100000                 ; the guests' RAM: GUEST_MEMORY in conformance/guests

.equ FLAGS_TF, 1 << 8                  ; §2
.equ FLAGS_IF, 1 << 9
.equ FLAGS_IOPL3, 3 << 12
.equ CR0_PE, 1
.equ CR0_TS, 1 << 3
.equ CR0_WP, 1 << 4
.equ CR0_PG, 1 << 15
.equ CR4_TSD, 1 << 2
.equ MSR_TSC, 0x10                    ; §2: a write sets the TSC offset
.equ MSR_RSP0, 0x100
.equ GATE_P, 1                         ; §6.2; type 0 = interrupt gate, ring 0 handler
.equ GATE_DPL3, 3 << 4
.equ VEC_BACK, 0x80                    ; int 0x80 from ring 3: back to the kernel (below)

.equ PML4, 0x10000                     ; memory map of a guest (1 MiB of RAM suffices)
.equ PDPT, 0x11000
.equ PD, 0x12000
.equ PT, 0x13000
.equ IDT, 0x20000
.equ KSTACK_TOP, 0x30000
.equ USTACK_TOP, 0x40000
.equ DATA, 0x50000                     ; frames the guests map and touch
.equ EXLOG_MAX, 16

; gate vector, handler, attributes: write IDT entry `vector` (§6.2).
.macro gate vec, handler, attrs
        li      r13, IDT + 16 * \vec
        la      r14, \handler
        sd      r14, [r13]
        li      r14, \attrs
        sd      r14, [r13 + 8]
.endm

; enter_user flags, back: iret to ring 3 with FLAGS = `flags` at the code that follows;
; that code returns with `int VEC_BACK`, which resumes the kernel at `back` with a fresh
; kernel stack and the FLAGS ring 3 ran with in `user_flags` (read from the int frame, so no
; sensitive instruction is needed to see them).
.macro enter_user flags, back
        enter_ring \flags, 3, \back
.endm

; enter_ring flags, ring, back: the same for any outer ring 1-3 (§4.1: rings 1 and 2 make
; supervisor accesses, so they see the pages ring 0 sees, and return with `int VEC_BACK` too).
.macro enter_ring flags, ring, back
        la      r13, \back
        la      r14, resume
        sd      r13, [r14]
        li      r13, USTACK_TOP
        push    r13
        li      r13, \flags
        push    r13
        li      r13, \ring
        push    r13
        la      r13, ring\@
        push    r13
        iret
ring\@:
.endm

; The operations a guest's body shares with its paravirtual port under one name each
; (lib/body_<name>.s): here the native instruction, in paravirt/lib/directed.s the ABI's
; (docs/paravirt-abi.md §8), as the guest OS's include/arch.s and arch_pv.s.
.equ SYSCALL_GATE, GATE_P | GATE_DPL3  ; a gate ring 3 may `int` (§6.3)

; user_mode back: enter_user with FLAGS 0 — ring 3, interrupts off — returning at `back`.
.macro user_mode back
        enter_user 0, \back
.endm

; trap_return: return from a handler's frame to the code it interrupted (§6.4).
.macro trap_return
        iret
.endm

; write_bytes: print the r5 bytes at r4 on the console; r1 = r5 (bytes written), r4 past them
; (uses r13, r14).
.macro write_bytes
        add     r13, r4, r5
        mov     r1, r5
wb_next\@:
        bgeu    r4, r13, wb_done\@
        lbu     r14, [r4]
        out     CONSOLE_DATA, r14
        addi    r4, r4, 1
        jmp     wb_next\@
wb_done\@:
.endm

; read_cr2 reg: reg = CR2, the linear address of the last page fault (§7.5).
.macro read_cr2 reg
        mfcr    \reg, cr2
.endm

; irq_enter vec: the start of an external-interrupt handler: save r13, log the vector, EOI
; (docs/devices.md: the PIC takes the next IRQ only after it).  The handler pops r13 itself.
.macro irq_enter vec
        push    r13
        li      r13, \vec
        call    log_event
        li      r13, PIC_EOI
        out     PIC_CMD, r13
.endm

; log_stub name, vector, tail: a handler that loads its vector into r13 and joins `tail`.
.macro log_stub name, vec, tail
\name:  push    r13
        li      r13, \vec
        jmp     \tail
.endm

.org 0x1000
_start:
        li      sp, KSTACK_TOP
        li      r1, IDT
        lidt    r1
        li      r1, MSR_RSP0
        li      r2, KSTACK_TOP
        wrmsr   r1, r2
        gate    0, h_de, GATE_P
        gate    6, h_ud, GATE_P
        gate    8, h_df, GATE_P
        gate    13, h_gp, GATE_P
        gate    14, h_pf_fatal, GATE_P
        gate    17, h_ac, GATE_P
        gate    18, h_mc, GATE_P
        gate    VEC_BACK, h_back, GATE_P | GATE_DPL3
        li      r1, 0
        li      r2, 0
        jmp     main

; ---- handlers (ring 0, interrupt gates) ----
; Faults that a guest provokes on purpose (#DE, #UD, #GP) are logged and skipped: the pushed
; pc is the faulting instruction (§6.1), so adding 4 resumes after it.
log_stub h_de, 0, skip_noerr
log_stub h_ud, 6, skip_noerr
log_stub h_gp, 13, skip_err
; Anything else is unexpected: log it and end the run with exit code 0xff.
log_stub h_df, 8, fatal_err
log_stub h_pf_fatal, 14, fatal_err
log_stub h_ac, 17, fatal_err
log_stub h_mc, 18, fatal_err

skip_noerr:                            ; stack: r13, pc, cs, FLAGS, sp
        call    log_event
        ld      r13, [sp + 8]
        addi    r13, r13, 4
        sd      r13, [sp + 8]
        pop     r13
        iret

skip_err:                              ; stack: r13, error code, pc, cs, FLAGS, sp
        push    r14
        ld      r14, [sp + 16]
        shli    r14, r14, 8
        or      r13, r13, r14          ; a log entry is vector | error code << 8
        call    log_event
        ld      r13, [sp + 24]
        addi    r13, r13, 4
        sd      r13, [sp + 24]
        pop     r14
        pop     r13
        addi    sp, sp, 8              ; the handler pops the error code (§6.4)
        iret

fatal_err:
        call    log_event
        li      r13, 0xff
        la      r14, exit_code
        sd      r13, [r14]
        jmp     finish

; log_event: append r13 to the exception log (count every event, keep the first EXLOG_MAX).
log_event:
        push    r12
        push    r14
        la      r14, exlog_n
        ld      r12, [r14]
        addi    r12, r12, 1
        sd      r12, [r14]
        li      r14, EXLOG_MAX
        bltu    r14, r12, log_full
        shli    r12, r12, 3
        la      r14, exlog - 8
        add     r14, r14, r12
        sd      r13, [r14]
log_full:
        pop     r14
        pop     r12
        ret

h_back:                                ; int VEC_BACK from ring 3; frame: pc, cs, FLAGS, sp
        ld      r13, [sp + 16]
        la      r14, user_flags
        sd      r13, [r14]
        la      r14, resume
        ld      r14, [r14]
        li      sp, KSTACK_TOP
        jr      r14
