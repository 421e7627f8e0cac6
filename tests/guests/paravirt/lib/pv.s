; What every directed paravirtual guest includes: the machine's and the ABI's constants, and hypercall macros.
;
; The guests run under a VMM whose guest_abi is "paravirt" (docs/paravirt-abi.md): their kernel
; starts with r1 at start info, events masked, the bootstrap tables mapping virtual =
; pseudo-physical, no stack (sp = 0) and no trap table (§3).  Each ends with lib/end.s, which
; defines the page the VMM fills with the hypercall stubs (§2.2).
.include "../../../../conformance/guest_os/include/p64.s"
.include "../../../../conformance/guest_os/include/pv.s"

.equ STACK_TOP, 0x80000                ; the kernel's stack: the guests are far smaller

; hypercall n: call stub n of the hypercall page (§2.1): arguments in r1..r6, result in r1
; (negative: -code, §10), r7 clobbered.
.macro hypercall n
        call    hypercall_page + PV_STUB_SIZE * \n
.endm

; pv_iret: return from an event frame with r7 pushed on top (§4.4); jumped to, never called.
.macro pv_iret
        jmp     hypercall_page + PV_STUB_SIZE * HYPERCALL_IRET
.endm

; shutdown reg: end the VM with exit code reg (§4.8); never returns.
.macro shutdown reg
        mov     r2, \reg
        li      r1, SCHEDOP_SHUTDOWN
        hypercall HYPERCALL_SCHED_OP
        ud
.endm

; print label, length: console_write of `length` bytes at `label` (§4.12); clobbers r1, r2.
.macro print label, length
        la      r1, \label
        li      r2, \length
        hypercall HYPERCALL_CONSOLE_WRITE
.endm

; Results: a guest records values (hypercall results, entries read back) in an array and ends by
; writing the array to the console as raw little-endian quadwords, which the test reads back.
; r13 is the array's cursor: the guests leave it alone.
.equ RESULTS, 0x70000

.macro results_begin
        li      r13, RESULTS
.endm

; record reg: append reg's value to the results.
.macro record reg
        sd      \reg, [r13]
        addi    r13, r13, 8
.endm

; results_end: console_write the results, then shut down with exit code 0.
.macro results_end
        li      r1, RESULTS
        sub     r2, r13, r1
        hypercall HYPERCALL_CONSOLE_WRITE
        shutdown r0
.endm

; request i, ptr, val: store mmu_update request i (registers or constants in ptr/val regs) at REQUESTS.
.equ REQUESTS, 0x60000
.macro request i, ptr, val
        li      r9, REQUESTS + MMU_REQ_SIZE * \i
        sd      \ptr, [r9 + MMU_REQ_PTR]
        sd      \val, [r9 + MMU_REQ_VAL]
.endm

; mmu_update_n n: mmu_update of the first n requests at REQUESTS; records r1 and r2.
.macro mmu_update_n n
        li      r1, REQUESTS
        li      r2, \n
        hypercall HYPERCALL_MMU_UPDATE
        record  r1
        record  r2
.endm

; try_mmu ptr, val: a batch of one request (registers); records r1 and r2.
.macro try_mmu ptr, val
        request 0, \ptr, \val
        mmu_update_n 1
.endm

; try_call n, a1, a2: hypercall n with r1 = a1, r2 = a2 (registers or constants); records r1 and r2.
.macro try_call n, a1, a2
        li      r1, \a1
        li      r2, \a2
        hypercall \n
        record  r1
        record  r2
.endm

; gate table, vector, handler, attributes: store a trap-table entry (docs/paravirt-abi.md §6.1);
; clobbers r3, r4.
.equ INTERRUPT_GATE, GATE_P            ; type 0: the delivery sets the event mask
.equ TRAP_GATE, GATE_P | GATE_TRAP     ; type 1: leaves it
.macro gate table, vector, handler, attributes
        la      r3, \handler
        li      r4, \table + GATE_SIZE * \vector
        sd      r3, [r4]
        li      r3, \attributes
        sd      r3, [r4 + 8]
.endm
