; The guest kernel's own traps through its trap table (docs/paravirt-abi.md §6): privileged instructions raise #VEC_GP(0), a store into a pinned table #VEC_PF with SHARED_CR2; and the hypercalls' refusals outside paging.
;
; Each handler records, in order: the vector, the error code, the frame's cs, FLAGS and sp, the
; frame's own address and SHARED_CR2; then it steps over the faulting instruction and returns
; with the iret hypercall.  The refused iret (a frame with cs = 2) returns into its stub's ud:
; the #VEC_UD handler records the vector and r1, and resumes at ud_resume.  Then each refusal records
; r1 and r2 (try_call), and the host's own transport instruction, executed outside the hypercall
; page with r7 and the immediate differing, records r1.
.include "lib/pv.s"

.equ TABLE, 0x30000
.equ BAD_TABLE, 0x31000
.equ BAD_FRAME, 0x32000

.org 0x1000
_start:
        li      sp, STACK_TOP
        results_begin
        mov     r10, r1
        gate    TABLE, VEC_GP, with_error_13, INTERRUPT_GATE
        gate    TABLE, VEC_PF, with_error_14, INTERRUPT_GATE
        gate    TABLE, VEC_UD, ud_handler, TRAP_GATE
        li      r1, TABLE
        hypercall HYPERCALL_SET_TRAP_TABLE
        record  r1

        cli                             ; the privileged instructions: #VEC_GP(0) each
        sti
        hlt
        mtcr    cr3, r0
        li      r3, MSR_RSP0
        rdmsr   r4, r3
        out     CONSOLE_DATA, r0
        invlpg  [r0]
        ld      r3, [r10 + START_PT_BASE]
        sd      r0, [r3 + 8]            ; a store into the pinned bootstrap L4: #VEC_PF(P|W), CR2 = it
        li      r3, PV_VIRT_LIMIT
        ld      r3, [r3]                ; beyond the segment limit: #VEC_GP(0)

        li      sp, BAD_FRAME           ; an iret frame with cs = 2: EINVAL, then #VEC_UD at the stub
        li      r3, 2
        sd      r3, [sp + IRET_CS]
        la      r3, ud_resume
        sd      r3, [sp + IRET_PC]
        pv_iret
ud_resume:
        li      sp, STACK_TOP

        ; set_trap_table's refusals, r2 the vector: each from a table with one bad entry
        gate    BAD_TABLE, PV_HYPERCALL_VECTOR, ud_handler, TRAP_GATE
        try_call HYPERCALL_SET_TRAP_TABLE, BAD_TABLE, 0            ; EPERM, 0x82
        gate    BAD_TABLE, PV_HYPERCALL_VECTOR, ud_handler, 0
        gate    BAD_TABLE, 40, ud_handler, TRAP_GATE | (1 << 6)
        try_call HYPERCALL_SET_TRAP_TABLE, BAD_TABLE, 0            ; EINVAL, 40 (ring 1)
        gate    BAD_TABLE, 40, ud_handler, TRAP_GATE | (1 << 9)
        try_call HYPERCALL_SET_TRAP_TABLE, BAD_TABLE, 0            ; EINVAL, 40 (bit 9)
        gate    BAD_TABLE, 40, ud_handler, GATE_P | (2 << 1)
        try_call HYPERCALL_SET_TRAP_TABLE, BAD_TABLE, 0            ; EINVAL, 40 (a host gate)
        gate    BAD_TABLE, 40, ud_handler, 0xfe  ; not present: never refused, whatever its bits
        li      r3, BAD_TABLE + GATE_SIZE * 41
        li      r4, PV_VIRT_LIMIT
        sd      r4, [r3]
        li      r4, TRAP_GATE
        sd      r4, [r3 + 8]
        try_call HYPERCALL_SET_TRAP_TABLE, BAD_TABLE, 0            ; EPERM, 41 (handler at the limit)
        gate    BAD_TABLE, 41, ud_handler, 0
        gate    BAD_TABLE, PV_UPCALL_VECTOR, ud_handler, TRAP_GATE | GATE_DPL3 | PV_GATE_FAST
        try_call HYPERCALL_SET_TRAP_TABLE, BAD_TABLE, 0            ; EINVAL, 0x30 (fast at the upcall)
        gate    BAD_TABLE, PV_UPCALL_VECTOR, ud_handler, 0
        gate    BAD_TABLE, 0x80, ud_handler, TRAP_GATE | GATE_DPL3 | PV_GATE_FAST
        gate    BAD_TABLE, 0x81, ud_handler, TRAP_GATE | GATE_DPL3 | PV_GATE_FAST
        try_call HYPERCALL_SET_TRAP_TABLE, BAD_TABLE, 0            ; EINVAL, 0x81 (a second fast gate)
        gate    BAD_TABLE, 0x81, ud_handler, INTERRUPT_GATE | GATE_DPL3 | PV_GATE_FAST
        gate    BAD_TABLE, 0x80, ud_handler, 0
        try_call HYPERCALL_SET_TRAP_TABLE, BAD_TABLE, 0            ; EINVAL, 0x81 (fast, not a trap gate)
        try_call HYPERCALL_SET_TRAP_TABLE, 0x40000000, 0           ; EFAULT (unmapped)

        ; the other hypercalls' refusals
        try_call 12, 0, 0                                          ; ENOSYS (no such hypercall)
        la      r3, hypercall_page + PV_STUB_SIZE * HYPERCALL_CONSOLE_WRITE + 4
        lwu     r4, [r3]                ; the host's transport instruction of console_write (§2.1)
        la      r3, transport
        sw      r4, [r3]
        li      r7, HYPERCALL_VERSION
        call    transport               ; ENOSYS where the immediate and r7 differ (hcall, vmcall); int 0x82's number is r7
        record  r1
        try_call HYPERCALL_CONSOLE_WRITE, message, PV_CONSOLE_WRITE_MAX + 1  ; E2BIG
        try_call HYPERCALL_CONSOLE_WRITE, 0x40000000, 1           ; EFAULT (unmapped)
        try_call HYPERCALL_CONSOLE_WRITE, PV_VIRT_LIMIT - 4, 8    ; EFAULT (across the limit)
        try_call HYPERCALL_CONSOLE_WRITE, -4096, 8                ; EFAULT (the VMM's page of the machine's IDT)
        try_call HYPERCALL_CONSOLE_WRITE, message, 3              ; 3: "ok\n"
        try_call HYPERCALL_EVTCHN_SEND, PORT_TIMER, 0             ; EBADPORT
        try_call HYPERCALL_EVTCHN_SEND, 3, 0                      ; EBADPORT
        try_call HYPERCALL_EVTCHN_SEND, PORT_BLOCK, 0             ; ENODEV
        try_call HYPERCALL_EVTCHN_UNMASK, PV_NR_PORTS, 0          ; EBADPORT
        try_call HYPERCALL_SCHED_OP, 3, 0                         ; EINVAL
        try_call HYPERCALL_STACK_SWITCH, 0x12345, 0               ; 0: never refused
        try_call HYPERCALL_INVLPG, PV_VIRT_LIMIT, 0               ; 0: never refused
        results_end

with_error_13:
        li      r3, VEC_GP
        jmp     with_error
with_error_14:
        li      r3, VEC_PF
with_error:
        record  r3
        ld      r4, [sp]                ; the frame: error, pc, cs, FLAGS, sp (§6.2)
        record  r4
        ld      r4, [sp + 16]
        record  r4
        ld      r4, [sp + 24]
        record  r4
        ld      r4, [sp + 32]
        record  r4
        record  sp
        ld      r4, [r10 + START_SHARED_INFO]
        ld      r4, [r4 + SHARED_CR2]
        record  r4
        ld      r4, [sp + 8]
        addi    r4, r4, 4               ; step over the faulting instruction
        sd      r4, [sp + 8]
        addi    sp, sp, 8               ; pop the error code
        push    r7
        pv_iret

ud_handler:
        li      r3, VEC_UD
        record  r3
        record  r1
        la      r4, ud_resume
        sd      r4, [sp]
        push    r7
        pv_iret

; The transport instruction, copied here from the hypercall page, then ret (§2.2: a guest that
; executes a transport outside the page loads r7 itself).
transport:
        ud
        ret

message: .ascii "ok\n"

.include "lib/end.s"
