; What every paravirtual test guest of the VMM's tests includes: the suite's paravirtual library (constants, hypercall macros) and the tests' result macros.
;
; The guests run under a VMM whose guest_abi is "paravirt" (docs/paravirt-abi.md): their kernel
; starts with r1 at start info, events masked, the bootstrap tables mapping virtual =
; pseudo-physical, no stack (sp = 0) and no trap table (§3).  Each ends with lib/end.s, which
; defines the page the VMM fills with the hypercall stubs (§2.2).
.include "../../../../conformance/guests/paravirt/lib/pv.s"  ; the constants and hypercall macros

.equ STACK_TOP, 0x80000                ; the kernel's stack: the guests are far smaller

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
.macro gate table, vector, handler, attributes
        la      r3, \handler
        li      r4, \table + GATE_SIZE * \vector
        sd      r3, [r4]
        li      r3, \attributes
        sd      r3, [r4 + 8]
.endm
