; A tiny kernel: enables 4-level paging, drops to ring 3, serves a system call, takes and
; repairs a page fault, and shuts down with exit code 0 (docs/architecture.md §6, §7).
.equ CONSOLE_DATA, 0x3f8
.equ RESULT_EXIT, 0x500
.equ PTE_P, 1
.equ PTE_W, 2
.equ PTE_U, 4
.equ PTE_PWU, PTE_P | PTE_W | PTE_U
.equ CR0_PE, 1
.equ CR0_PG, 1 << 15
.equ MSR_RSP0, 0x100
.equ GATE_P, 1
.equ GATE_INTR, 0 << 1           ; interrupt gate: clears IF
.equ GATE_DPL3, 3 << 4           ; int n allowed from ring 3
.equ GATE_RING0, 0 << 6

.equ PML4, 0x10000               ; page tables, one page each
.equ PDPT, 0x11000
.equ PD, 0x12000
.equ PT, 0x13000                 ; maps the first 2 MiB, identity
.equ PT_FAULT, 0x14000           ; filled in by the page-fault handler
.equ IDT, 0x20000
.equ KSTACK_TOP, 0x30000
.equ USTACK_TOP, 0x40000
.equ DEMAND_VA, 0x200000         ; first page of the second 2 MiB: not mapped at first
.equ DEMAND_PA, 0x50000

.equ SYS_EXIT, 0
.equ SYS_WRITE, 1

.org 0x1000
_start:
        li      sp, KSTACK_TOP
        ; identity-map 0..2 MiB with 4 KiB user pages (page 0 stays unmapped)
        li      r1, PML4
        li      r2, PDPT | PTE_PWU
        sd      r2, [r1]
        li      r1, PDPT
        li      r2, PD | PTE_PWU
        sd      r2, [r1]
        li      r1, PD
        li      r2, PT | PTE_PWU
        sd      r2, [r1]
        li      r1, PT + 8              ; entry 1
        li      r2, 0x1000 | PTE_PWU
        li      r3, PT + 4096
map:    sd      r2, [r1]
        addi    r1, r1, 8
        addi    r2, r2, 4096
        bltu    r1, r3, map
        ; gates: #PF (14) and the system call (0x80)
        li      r1, IDT + 16 * 14
        la      r2, page_fault
        sd      r2, [r1]
        li      r2, GATE_P | GATE_INTR | GATE_RING0
        sd      r2, [r1 + 8]
        li      r1, IDT + 16 * 0x80
        la      r2, syscall
        sd      r2, [r1]
        li      r2, GATE_P | GATE_INTR | GATE_DPL3 | GATE_RING0
        sd      r2, [r1 + 8]
        li      r1, IDT
        lidt    r1
        li      r1, KSTACK_TOP
        li      r2, MSR_RSP0
        wrmsr   r2, r1
        ; paging on
        li      r1, PML4
        mtcr    cr3, r1
        li      r1, CR0_PE | CR0_PG
        mtcr    cr0, r1
        ; iret to ring 3: the frame is sp, flags, cs, pc (pushed in that order)
        li      r1, USTACK_TOP
        push    r1
        push    r0                      ; FLAGS: IF = 0, IOPL = 0
        li      r1, 3
        push    r1                      ; cs: CPL 3
        la      r1, user
        push    r1
        iret

; ---- ring 0: page fault handler (interrupt gate, error code on the stack) ----
page_fault:
        addi    sp, sp, 8               ; drop the error code
        push    r1
        push    r2
        mfcr    r1, cr2
        li      r2, DEMAND_VA
        bne     r1, r2, fail            ; only the demand page is expected to fault
        li      r1, PD + 8              ; PD[1] -> PT_FAULT
        li      r2, PT_FAULT | PTE_PWU
        sd      r2, [r1]
        li      r1, PT_FAULT            ; PT_FAULT[0] -> DEMAND_PA
        li      r2, DEMAND_PA | PTE_PWU
        sd      r2, [r1]
        la      r1, faults
        ld      r2, [r1]
        addi    r2, r2, 1
        sd      r2, [r1]
        pop     r2
        pop     r1
        iret                            ; retry the faulting store

; ---- ring 0: system calls, r1 = number, r2/r3 = arguments ----
syscall:
        li      r4, SYS_WRITE
        beq     r1, r4, sys_write
        beqz    r1, sys_exit
fail:   li      r2, 1
sys_exit:
        out     RESULT_EXIT, r2
        hlt
sys_write:                              ; r2 = buffer, r3 = length
        add     r3, r2, r3
sw_loop:
        bgeu    r2, r3, sw_done
        lbu     r4, [r2]
        out     CONSOLE_DATA, r4
        addi    r2, r2, 1
        jmp     sw_loop
sw_done:
        iret

; ---- ring 3 ----
user:
        li      r5, DEMAND_VA
        li      r6, 0x1234
        sd      r6, [r5]                ; page fault, repaired by the kernel
        ld      r7, [r5]
        bne     r6, r7, user_fail
        li      r1, SYS_WRITE
        la      r2, message
        li      r3, message_end - message
        int     0x80
        la      r1, faults              ; exactly one fault expected
        ld      r2, [r1]
        li      r3, 1
        bne     r2, r3, user_fail
        li      r1, SYS_EXIT
        li      r2, 0
        int     0x80
user_fail:
        li      r1, SYS_EXIT
        li      r2, 1
        int     0x80

faults: .quad   0
message:
        .ascii  "ring 3 says hello through a system call\n"
message_end:
