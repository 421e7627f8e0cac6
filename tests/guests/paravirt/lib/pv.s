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
