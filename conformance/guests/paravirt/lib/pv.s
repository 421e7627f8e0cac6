; The paravirtual guest library's one home: the ABI's constants and the hypercall macros (docs/paravirt-abi.md).
;
; Every paravirtual guest of the suite includes this file, first: the machine's constants
; (include/p64.s) and the ABI's (include/pv.s, generated from conformance/paravirt.py), and
; the macros that reach the VMM through the hypercall page (§2.1) — the only way a
; paravirtual kernel asks for what it may not do itself.  It defines no code and no address:
; the directed guests add their start and signature (directed.s, end.s), other guests their own.
; The image must end with the page the VMM fills with stubs (end.s, or `.align 4096` then
; `hypercall_page: .space 4096`, §2.2).
.include "../../../guest_os/include/p64.s"
.include "../../../guest_os/include/pv.s"

.equ INTERRUPT_GATE, GATE_P            ; §6.1 type 0: the delivery sets the event mask
.equ TRAP_GATE, GATE_P | GATE_TRAP     ; type 1: leaves it
.equ FAST_GATE, TRAP_GATE | GATE_DPL3 | PV_GATE_FAST  ; §6.3: user mode's system calls, no VMM entry

; hypercall n: call stub n of the hypercall page (§2.1): arguments in r1..r6, the result in r1
; (negative: -code, §10), r7 clobbered, r2 set where a refusal names an index.
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

; print label, length: console_write of `length` bytes at `label` (§4.12); clobbers r1, r2, r7.
.macro print label, length
        la      r1, \label
        li      r2, \length
        hypercall HYPERCALL_CONSOLE_WRITE
.endm
