; User mode calls a stub of the hypercall page: no hypercall, the fault of its host's transport from user mode (docs/paravirt-abi.md §2.4).
;
; hcall at CPL 3 is #GP(0), int 0x82 from user mode #GP(PV_REFUSED_INT_ERROR), vmcall from user
; mode #UD; the handler logs and skips it, so r1 keeps 0x55; then back to the kernel.
.include "lib/directed.s"
main:
        call    paging_on
        enter_user back
        li      r1, 0x55
        call    hypercall_page + PV_STUB_SIZE * HYPERCALL_VERSION
        mov     r2, r1
        int     VEC_BACK
back:   mov     r1, r2
        li      r2, 0
        jmp     finish

.include "lib/end.s"
