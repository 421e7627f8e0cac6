; Efficiency, system-heavy (conformance/test_efficiency.py): a ring-3 process under paging that
; makes a system call every few instructions (int 0x81 through a DPL 3 gate; the kernel reads
; CR3, counts, prints a byte every 16 calls and returns with iret), touches a fresh page every
; 32 calls (a #PF the kernel repairs), while the timer interrupts it.  A trap-and-emulate VMM
; intervenes at every privileged instruction and event; the thresholds of docs/vmm-api.md §8
; say how often that may be.  r1 = system calls made, r2 = timer interrupts seen (nonzero).
.include "lib/prelude.s"
.include "lib/paging.s"
.equ VEC_SYS, 0x81
.equ CALLS, 512
main:
        call    paging_on
        gate    VEC_SYS, h_sys, GATE_P | GATE_DPL3
        gate    14, h_pf, GATE_P
        gate    32, h_timer, GATE_P
        li      r3, 0xfffe
        out     PIC_MASK, r3
        li      r3, 2000
        out     TIMER_COUNT, r3
        li      r3, 3
        out     TIMER_CTRL, r3
        li      r1, 0
        li      r2, 0
        enter_user FLAGS_IF, back
        li      r4, 0
        li      r7, CALLS
u_loop: addi    r5, r4, 7              ; a little user work between calls
        mul     r5, r5, r5
        xor     r6, r6, r5
        int     VEC_SYS
        andi    r5, r4, 31
        bnez    r5, u_next
        shri    r5, r4, 5              ; every 32 calls: a fresh page (#PF at first touch)
        shli    r5, r5, 12
        li      r8, PAGED_VA
        add     r5, r5, r8
        sd      r6, [r5]
u_next: addi    r4, r4, 1
        bltu    r4, r7, u_loop
        int     VEC_BACK
back:   cli
        out     TIMER_CTRL, r0
        li      r3, 0xffff
        out     PIC_MASK, r3
        li      r3, 0
        li      r4, 0
        li      r5, 0
        li      r6, 0
        li      r7, 0
        li      r8, 0
        sltu    r2, r0, r2             ; 1: the timer did interrupt it
        jmp     finish

h_sys:                                 ; frame: pc, cs, FLAGS, sp
        push    r13
        mfcr    r13, cr3               ; a privileged read, as kernels do on entry
        addi    r1, r1, 1
        andi    r13, r1, 15
        bnez    r13, s_done
        li      r13, '.'
        out     CONSOLE_DATA, r13
s_done: pop     r13
        iret

h_pf:   push    r13                    ; map the faulting page of PAGED_VA to DATA + 4 KiB * i
        push    r14
        mfcr    r13, cr2
        shri    r14, r13, 12
        andi    r14, r14, 15
        shli    r14, r14, 12
        li      r13, DATA | PTE_PWU
        add     r14, r14, r13
        mfcr    r13, cr2
        shri    r13, r13, 12
        andi    r13, r13, 511
        shli    r13, r13, 3
        push    r12
        li      r12, PT
        add     r13, r13, r12
        pop     r12
        sd      r14, [r13]
        mfcr    r13, cr2
        invlpg  [r13]
        pop     r14
        pop     r13
        addi    sp, sp, 8              ; the error code
        iret

h_timer:
        push    r13
        addi    r2, r2, 1
        li      r13, PIC_EOI
        out     PIC_CMD, r13
        pop     r13
        iret
.include "lib/signature.s"
