; nanobench's benchmarks: Adams & Agesen's (2006) seven nanobenchmarks and the empty loop.
;
; bench_<name>(r1 = N) -> r1 = the check value.  Each does its setup, writes POST_BEGIN, runs
; the measured loop N times, writes POST_END, and computes the check value from what the loop
; did, so that a VMM that skipped or repeated an operation shows in the output.  Every loop has
; the shape of bench_empty (count down, one branch back) so that the empty loop's cost is the
; overhead to subtract.  The paper's names are kept (call/ret is "callret").

; bench_empty: the loop alone.  Check: the iterations, counted.
bench_empty:
        push    r8
        push    r9
        mov     r8, r1                 ; r8 = iterations left
        li      r9, 0
        post    POST_BEGIN
be_loop:
        beqz    r8, be_done
        addi    r9, r9, 1
        addi    r8, r8, -1
        jmp     be_loop
be_done:
        post    POST_END
        mov     r1, r9
        pop     r9
        pop     r8
        ret

; bench_syscall: a system call round trip, ring 3 -> ring 0 -> ring 3 (Adams & Agesen 2006:
; "syscall").  The loop runs in ring 3 (user_syscall, below): `int SYSCALL_VEC` through the DPL 3
; gate, h_syscall's `iret` back.  The kernel enters ring 3 with `iret` from a frame it builds
; (§6.4: a return to an outer ring), and ring 3 comes back with SYS_EXIT, which h_syscall
; turns into a jump to syscall_return with the kernel's stack.  Both transitions fall between
; the POST codes but happen once per run, so they cancel out of a per-iteration measure.
; Check: the sum of the results, null(i) = i + 1 for i = 0 .. N-1, i.e. N (N + 1) / 2.
bench_syscall:
        push    r8
        push    r9
        push    r10
        mov     r8, r1                 ; r8 = N, for ring 3
        la      r2, kernel_sp
        sd      sp, [r2]
        post    POST_BEGIN
        li      r2, USTACK_TOP         ; the iret frame: sp, FLAGS, cs, pc (§6.4)
        push    r2
        push    r0                     ; FLAGS: IF = 0, IOPL = 0
        li      r2, 3                  ; cs: ring 3
        push    r2
        la      r2, user_syscall
        push    r2
        iret
syscall_return:                        ; h_syscall's SYS_EXIT: r1 = the status, sp = kernel_sp
        post    POST_END
        pop     r10
        pop     r9
        pop     r8
        ret

; bench_in: `in` from the POST port, "an off-CPU chipset register" (Adams & Agesen 2006), an
; exit to the host at each read (§10).  Check: the sum of the bytes read; each read returns
; the last code written (devices.md §7.2), POST_BEGIN, so the sum is N * POST_BEGIN.
bench_in:
        push    r8
        push    r9
        mov     r8, r1
        li      r9, 0
        post    POST_BEGIN
bi_loop:
        beqz    r8, bi_done
        in      r2, POST_CODE
        add     r9, r9, r2
        addi    r8, r8, -1
        jmp     bi_loop
bi_done:
        post    POST_END
        mov     r1, r9
        pop     r9
        pop     r8
        ret

; bench_cr8wr: write the TPR (CR8, §6.5) with no interrupt pending (IF = 0, every PIC line
; masked).  The values written go 0, 1, ..., 15, 0, ...: iteration i writes i mod 16.
; Check: the sum of the values written plus CR8 read back after the loop ((N - 1) mod 16, or 0
; for N = 0); CR8 is then put back to 0.
bench_cr8wr:
        push    r8
        push    r9
        push    r10
        mov     r8, r1                 ; r8 = N
        li      r9, 0                  ; r9 = i
        li      r10, 0                 ; r10 = the sum
        post    POST_BEGIN
bc_loop:
        beq     r9, r8, bc_done
        andi    r2, r9, 15
        mtcr    cr8, r2
        add     r10, r10, r2
        addi    r9, r9, 1
        jmp     bc_loop
bc_done:
        post    POST_END
        mfcr    r2, cr8
        add     r1, r10, r2
        mtcr    cr8, r0
        pop     r10
        pop     r9
        pop     r8
        ret

; bench_callret: a call to and a return from a function, through a register (`callr`) and the
; stack (`ret`): indirect control flow, which a binary translator cannot run as it is (Adams &
; Agesen 2006, "call/ret").  The function is empty but for counting its calls in r1.
; Check: the calls counted, N.
bench_callret:
        push    r8
        push    r9
        mov     r8, r1
        li      r1, 0
        la      r9, count_call
        post    POST_BEGIN
br_loop:
        beqz    r8, br_done
        callr   r9
        addi    r8, r8, -1
        jmp     br_loop
br_done:
        post    POST_END
        pop     r9
        pop     r8
        ret

; count_call(r1) -> r1 + 1: the function bench_callret calls.
count_call:
        addi    r1, r1, 1
        ret

; bench_pgfault: a true page fault (Adams & Agesen 2006, "pgfault").  Each iteration loads from
; BENCH_VA, which is not mapped: #PF, h_pf (traps.s) maps it and stores its fault count in the
; frame, and the load retries and succeeds; then the kernel unmaps the page again: clears the
; PTE and invalidates it (§8.1).  Check: the sum of the values loaded, 1 + 2 + ... + N.
bench_pgfault:
        push    r8
        push    r9
        push    r10
        push    r11
        mov     r8, r1
        li      r9, 0                  ; r9 = the sum
        li      r10, PT_BENCH          ; r10 = BENCH_VA's PTE
        li      r11, BENCH_VA
        sd      r0, [r10]              ; unmapped, whatever ran before
        invlpg  [r11]
        la      r2, pf_count
        sd      r0, [r2]
        post    POST_BEGIN
bp_loop:
        beqz    r8, bp_done
        ld      r2, [r11]              ; #PF, mapped by h_pf, retried: the fault's number
        add     r9, r9, r2
        sd      r0, [r10]              ; unmap
        invlpg  [r11]
        addi    r8, r8, -1
        jmp     bp_loop
bp_done:
        post    POST_END
        mov     r1, r9
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

; bench_divzero: a fault with no MMU involvement (Adams & Agesen 2006, "divzero"): `div` by r0,
; which reads zero; h_de steps over it.  Check: the #DE that h_de counted, N.
bench_divzero:
        push    r8
        mov     r8, r1
        la      r2, de_count
        sd      r0, [r2]
        post    POST_BEGIN
bd_loop:
        beqz    r8, bd_done
de_site:
        div     r2, r2, r0             ; #DE (§3 Division): h_de resumes after it
        addi    r8, r8, -1
        jmp     bd_loop
bd_done:
        post    POST_END
        la      r2, de_count
        ld      r1, [r2]
        pop     r8
        ret

; bench_ptemod: rewrite a live PTE with the value it holds, then `invlpg` (Adams & Agesen 2006,
; "ptemod": what a guest kernel does all the time, and what a shadow-paging VMM must trace).
; Setup maps BENCH_VA with A and D already set, so that no walk changes the entry, and touches
; it, so the translation is live (in the TLB, or in a VMM's shadow tables).
; Check: the sum of the PTE values written, N * (BENCH_FRAME | P | W | A | D).
bench_ptemod:
        push    r8
        push    r9
        push    r10
        push    r11
        mov     r8, r1
        li      r9, 0                  ; r9 = the sum
        li      r10, PT_BENCH
        li      r11, BENCH_VA
        li      r2, BENCH_FRAME | PTE_KERNEL | PTE_A | PTE_D
        sd      r2, [r10]
        invlpg  [r11]
        ld      r2, [r11]              ; touch: the translation is now in use
        post    POST_BEGIN
bm_loop:
        beqz    r8, bm_done
        ld      r2, [r10]              ; the PTE ...
        sd      r2, [r10]              ; ... written back unchanged
        invlpg  [r11]
        add     r9, r9, r2
        addi    r8, r8, -1
        jmp     bm_loop
bm_done:
        post    POST_END
        mov     r1, r9
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

; ---- ring 3 ------------------------------------------------------------------------------------
; The only code that runs in ring 3, on pages of its own that map_memory marks user, read-only
; (§7.4); the rest of the kernel is supervisor-only, so ring 3 can neither read nor jump to it.
.align PAGE_SIZE
user_text:

; user_syscall (ring 3; r8 = N from the kernel): N null system calls, then exit(the sum of
; their results).
user_syscall:
        li      r9, 0                  ; r9 = i
        li      r10, 0                 ; r10 = the sum
us_loop:
        beq     r9, r8, us_done
        mov     r1, r9
        li      r7, SYS_NULL
        int     SYSCALL_VEC
        add     r10, r10, r1
        addi    r9, r9, 1
        jmp     us_loop
us_done:
        mov     r1, r10
        li      r7, SYS_EXIT
        int     SYSCALL_VEC
        ud                             ; exit does not return

.align PAGE_SIZE
user_text_end:
