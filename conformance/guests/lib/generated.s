; The fixed part of every generated guest (conformance/strategies.py): more logging gates than
; lib/prelude.s installs, the register seeds a body starts from, and the end that adds a
; checksum of the data page to the signature.  Include it after lib/prelude.s; a generated
; guest calls `gen_setup` from `main`, runs its body, returns to CPL 0 with `int VEC_BACK` and
; continues at `gen_end`.  Like lib/signature.s it uses only innocuous and privileged
; instructions, so that only the body can make a VMM's run differ from the native one.
; Registers: r1-r8 belong to the body; r12 holds DATA for the body's memory operands.
.equ GATE_TRAP, 1 << 1                 ; docs/architecture.md §6.2: GATE_TYPE 1 keeps IF
.equ VEC_USER0, 0x40                   ; DPL 3 trap gates a body may `int` at any CPL
.equ VEC_USER1, 0x41
.equ VEC_KERNEL, 0x50                  ; a DPL 0 gate: `int` from CPL 3 raises #GP
.equ VEC_REMAP, 0x42                   ; DPL 3 system calls of a body at any CPL (below)
.equ VEC_SPACE, 0x43
.equ VEC_TIMER, 32                     ; IRQ 0 at the reset PIC_BASE (devices.md §3)
.equ DATA_SIZE, 4096

gen_setup:
        gate    1, h_db, GATE_P
        gate    3, h_bp, GATE_P | GATE_TRAP | GATE_DPL3
        gate    14, h_pf_skip, GATE_P
        gate    17, h_ac_skip, GATE_P
        gate    18, h_mc_skip, GATE_P
        gate    VEC_USER0, h_user0, GATE_P | GATE_TRAP | GATE_DPL3
        gate    VEC_USER1, h_user1, GATE_P | GATE_DPL3
        gate    VEC_KERNEL, h_kernel, GATE_P
        gate    VEC_REMAP, h_remap, GATE_P | GATE_DPL3
        gate    VEC_SPACE, h_space, GATE_P | GATE_DPL3
        gate    VEC_TIMER, h_timer, GATE_P
        li      r1, 0                  ; seeds: zero, one, all ones, the sign bit, ...
        li      r2, 1
        li      r3, -1
        li      r4, 1 << 63
        li      r5, DATA
        li      r6, 0x7fffffffffffffff
        li      r7, 3
        li      r8, 0x123456789abcdef0
        li      r12, DATA
        ret

; Traps and software interrupts push the next pc (§6.1): log and resume there.
log_stub h_db, 1, resume_noerr
log_stub h_bp, 3, resume_noerr
log_stub h_user0, VEC_USER0, resume_noerr
log_stub h_user1, VEC_USER1, resume_noerr
log_stub h_kernel, VEC_KERNEL, resume_noerr
; Faults a body provokes (a wild address, a misaligned access) are logged and skipped.
log_stub h_pf_skip, 14, skip_err
log_stub h_ac_skip, 17, skip_err
log_stub h_mc_skip, 18, skip_noerr

resume_noerr:                          ; stack: r13, pc, cs, FLAGS, sp
        call    log_event
        pop     r13
        iret

; The timer's interrupt (a body arms it one-shot): log it, EOI, resume the interrupted code.
h_timer:
        push    r13
        li      r13, VEC_TIMER
        call    log_event
        li      r13, PIC_EOI
        out     PIC_CMD, r13
        pop     r13
        iret

; System calls that let a body at any CPL change what its pages map, the way a kernel does
; for its processes: `int VEC_REMAP` stores r10 at the page-table entry r9 and drops the
; translation of r11 (invlpg), so that a mapping ring 3 has used changes under it, defined
; (docs/architecture.md §8.1); `int VEC_SPACE` loads CR3 = r9 (another address space).
; Not logged: the registers the body prints show what the new mapping gives.
h_remap:
        sd      r10, [r9]
        invlpg  [r11]
        iret
h_space:
        mtcr    cr3, r9
        iret

; gen_end: print "data=<sum>" (a checksum of the data page: sum of its quadwords, each
; rotated by its index), then "tables=<sum>" (the same of the entries bodies map and remap:
; PD[0..2], PT[0..7] and address space B's, lib/paging.s — so the A/D bits the walker set show,
; docs/architecture.md §7.5), then the common signature (lib/signature.s).
gen_end:
        li      r9, 0
        li      r10, DATA
        li      r11, DATA + DATA_SIZE
        call    ge_sum
        la      r10, s_data
        call    print_str
        mov     r10, r9
        call    print_hex_nl
        li      r9, 0
        li      r10, 0x12000           ; PD
        li      r11, 0x12000 + 24
        call    ge_sum
        li      r10, 0x13000           ; PT
        li      r11, 0x13000 + 64
        call    ge_sum
        li      r10, 0x16000           ; PD_B
        li      r11, 0x16000 + 24
        call    ge_sum
        li      r10, 0x17000           ; PT_B
        li      r11, 0x17000 + 64
        call    ge_sum
        la      r10, s_tables
        call    print_str
        mov     r10, r9
        call    print_hex_nl
        jmp     finish

; ge_sum: fold the quadwords of [r10, r11) into r9 (clobbers r10, r12).
ge_sum:
        ld      r12, [r10]
        xor     r9, r9, r12
        shli    r12, r9, 7
        shri    r9, r9, 57
        or      r9, r9, r12
        addi    r10, r10, 8
        bltu    r10, r11, ge_sum
        ret

s_data: .asciz "data="
s_tables: .asciz "tables="
.align 4
