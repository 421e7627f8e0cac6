; A user process making system calls through the trap table's entry 0x80 (with FAST_ATTRIBUTE: the fast gate of docs/paravirt-abi.md §6.3), then three user faults; included by syscall.s and syscall_slow.s.
;
; The kernel gives user mode its code and stack pages (PTE_U on their path, one mmu_update
; batch), and a user table of its own mapping only those two pages (§7.4: built with plain
; stores, then one batch making its four pages read-only and pinning them, and set_cr3 with it
; as the user base), sets its kernel stack (stack_switch) and enters user mode with the iret
; hypercall.  User mode makes CALLS system calls (`int 0x80`, r1 = i, the kernel returns i + 1);
; the first one's frame is recorded: cs, FLAGS, and where it is.  Then user mode executes
; `hcall 0`, `int 0x82` and `vmcall 0` (#GP(0), #GP(0x412) and #UD, §2.4) and reads a kernel
; page (#PF with PF_U, SHARED_CR2: present where the user base is unused and PTE_U keeps user
; mode out, not present where user mode runs on its own table); the kernel records each
; (vector, error, cs, FLAGS, SHARED_CR2) and resumes it after the instruction.  The last system
; call (r1 = DONE) ends the run.
.include "pv.s"

.equ CALLS, 100
.equ DONE, 0xd0e
.equ TABLE, 0x30000
.equ KSTACK, 0x90000
.equ USER_CODE, 0x40000
.equ USER_STACK, 0x48000               ; a page; user sp starts at its top
.equ USER_L1, 0x20000                  ; the user table: L1, L2, L3, L4 (pseudo-physical = virtual)
.equ USER_L2, 0x21000
.equ USER_L3, 0x22000
.equ USER_L4, 0x23000

.org 0x1000
_start:
        li      sp, STACK_TOP
        results_begin
        mov     r10, r1
        ld      r8, [r10 + START_SHARED_INFO]
        ld      r11, [r10 + START_MEM_BASE]
        ld      r12, [r10 + START_PT_BASE]
        add     r14, r12, r11            ; machine address of the bootstrap L4, then L3, L2, L1s
        gate    TABLE, 0x80, syscall, TRAP_GATE | GATE_DPL3 | FAST_ATTRIBUTE
        gate    TABLE, VEC_GP, fault_13, INTERRUPT_GATE
        gate    TABLE, VEC_PF, fault_14, INTERRUPT_GATE
        gate    TABLE, VEC_UD, fault_6, INTERRUPT_GATE
        li      r1, TABLE
        hypercall HYPERCALL_SET_TRAP_TABLE
        record  r1
        li      r1, KSTACK
        hypercall HYPERCALL_STACK_SWITCH

        ; user mode's pages: PTE_U on the L4, L3 and L2 entries of [0, 2 MiB) and on two L1 entries
        li      r5, PTE_P | PTE_W | PTE_U
        addi    r4, r14, 4096
        or      r4, r4, r5
        request 0, r14, r4               ; L4[0] -> the L3
        addi    r3, r14, 4096
        addi    r4, r14, 2 * 4096
        or      r4, r4, r5
        request 1, r3, r4                ; L3[0] -> the L2
        addi    r3, r14, 2 * 4096
        addi    r4, r14, 3 * 4096
        or      r4, r4, r5
        request 2, r3, r4                ; L2[0] -> the first L1
        addi    r3, r14, 3 * 4096 + 8 * (USER_CODE >> 12)
        li      r4, USER_CODE | PTE_P | PTE_U
        add     r4, r4, r11
        request 3, r3, r4                ; user code: read-only
        addi    r3, r14, 3 * 4096 + 8 * (USER_STACK >> 12)
        li      r4, USER_STACK | PTE_P | PTE_W | PTE_U
        add     r4, r4, r11
        request 4, r3, r4                ; user stack
        mmu_update_n 5

        ; the user table: the two user pages, then L2, L3, L4 each naming the one below
        li      r3, USER_CODE | PTE_P | PTE_U
        add     r3, r3, r11
        li      r4, USER_L1 + 8 * (USER_CODE >> 12)
        sd      r3, [r4]
        li      r3, USER_STACK | PTE_P | PTE_W | PTE_U
        add     r3, r3, r11
        li      r4, USER_L1 + 8 * (USER_STACK >> 12)
        sd      r3, [r4]
        li      r3, USER_L1 | PTE_P | PTE_W | PTE_U
        add     r3, r3, r11
        li      r4, USER_L2
        sd      r3, [r4]
        li      r3, USER_L2 | PTE_P | PTE_W | PTE_U
        add     r3, r3, r11
        li      r4, USER_L3
        sd      r3, [r4]
        li      r3, USER_L3 | PTE_P | PTE_W | PTE_U
        add     r3, r3, r11
        li      r4, USER_L4
        sd      r3, [r4]
        ; one batch: each page's bootstrap mapping read-only and invalidated, then the pins L1..L4
        addi    r8, r14, 3 * 4096 + 8 * (USER_L1 >> 12)
        li      r3, USER_L1 | PTE_P
        add     r3, r3, r11
        li      r4, USER_L1 | MMU_CMD_INVLPG
        li      r6, USER_L1 | MMU_CMD_PIN
        add     r6, r6, r11
        li      r2, 4096
        li      r9, REQUESTS
        li      r12, REQUESTS + 8 * MMU_REQ_SIZE   ; the pins follow the eight updates and invlpgs
        li      r5, 1
ro:     sd      r8, [r9 + MMU_REQ_PTR]   ; MMU_CMD_UPDATE is 0
        sd      r3, [r9 + MMU_REQ_VAL]
        sd      r4, [r9 + MMU_REQ_SIZE + MMU_REQ_PTR]
        sd      r0, [r9 + MMU_REQ_SIZE + MMU_REQ_VAL]
        sd      r6, [r12 + MMU_REQ_PTR]
        sd      r5, [r12 + MMU_REQ_VAL]
        addi    r9, r9, 2 * MMU_REQ_SIZE
        addi    r12, r12, MMU_REQ_SIZE
        addi    r8, r8, 8
        add     r3, r3, r2
        add     r4, r4, r2
        add     r6, r6, r2
        addi    r5, r5, 1
        li      r7, 5
        bne     r5, r7, ro
        mmu_update_n 12
        ld      r8, [r10 + START_SHARED_INFO]
        mov     r1, r14
        li      r2, USER_L4
        add     r2, r2, r11
        hypercall HYPERCALL_SET_CR3      ; the user base; "reload CR3": the changed entries take effect
        record  r1

        ; enter user mode: an iret frame r7, pc, cs, FLAGS, sp (§4.4)
        addi    sp, sp, -IRET_SIZE
        li      r3, USER_CODE
        sd      r3, [sp + IRET_PC]
        li      r3, 3
        sd      r3, [sp + IRET_CS]
        li      r3, FLAGS_IF
        sd      r3, [sp + IRET_FLAGS]
        li      r3, USER_STACK + 4096
        sd      r3, [sp + IRET_SP]
        sd      r0, [sp + IRET_R7]
        pv_iret

; The system call: r1 + 1 back to user mode; the first call's frame recorded; DONE ends the run.
syscall:
        li      r3, DONE
        beq     r1, r3, finish
        bnez    r1, return
        ld      r3, [sp + 8]             ; the frame: pc, cs, FLAGS, sp; record cs, FLAGS, its address
        record  r3
        ld      r3, [sp + 16]
        record  r3
        record  sp
return: addi    r1, r1, 1
        push    r7
        pv_iret
finish: results_end

fault_6:
        push    r0                       ; #UD has no error code: 0 in its place, as the others' frames
        li      r3, VEC_UD
        jmp     fault
fault_13:
        li      r3, VEC_GP
        jmp     fault
fault_14:
        li      r3, VEC_PF
fault:  record  r3
        ld      r3, [sp]                 ; error, pc, cs, FLAGS, sp
        record  r3
        ld      r3, [sp + 16]
        record  r3
        ld      r3, [sp + 24]
        record  r3
        ld      r3, [r8 + SHARED_CR2]
        record  r3
        ld      r3, [sp + 8]
        addi    r3, r3, 4
        sd      r3, [sp + 8]
        addi    sp, sp, 8
        push    r7
        pv_iret

.org USER_CODE
user:   li      r1, 0
        li      r2, CALLS
calls:  int     0x80
        bne     r1, r2, calls            ; the kernel returned r1 + 1
        hcall   0                        ; user mode: #GP(0)
        int     PV_HYPERCALL_VECTOR      ; no gate 0x82 in any trap table: #GP(0x412)
        vmcall  0                        ; #UD: outside guest mode by the CPU, in it by the VMM
        li      r3, 0x1000
        ld      r3, [r3]                 ; a kernel page: #PF(P|U)
        li      r1, DONE
        int     0x80

.include "end.s"
