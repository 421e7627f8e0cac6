; Efficiency, call-dense kernel code (conformance/test_efficiency.py): a CPL 0 loop whose every
; round makes a direct `call`, an indirect `callr` and a `jr`, both functions ending in `ret`:
; five transfers among about 280 plain instructions (three work loops of 85 to 110: ALU, loads
; and stores, direct branches); then it prints one checksum ("c=<hex>") and exits with code 0,
; as compute.s does.
; Transfers are innocuous: a trap-and-emulate or hardware VMM runs them directly, and a binary
; translator as in-TC sequences that reach the target's fragment (through the TC hash for
; callr, jr and ret) without leaving the TC (Adams & Agesen 2006 §3.2), not as a VMM exit each.
; The plain work is long enough that those sequences' extra host ticks stay within the share of
; a slice a VMM may spend beyond the guest's (docs/vmm-api.md §9), so the VMM need not fall
; back to emulation either.
.equ CONSOLE_DATA, 0x3f8
.equ RESULT_EXIT, 0x500
.equ DATA, 0x50000
.equ ROUNDS, 200
.equ INNER, 12                         ; iterations of each piece's work loop (7 or 9 instructions)
.org 0x1000
_start:
        li      sp, 0x30000
        li      r1, 0                  ; the checksum
        li      r2, 0x9e3779b97f4a7c15
        li      r3, ROUNDS
        li      r4, DATA
        la      r9, f_indirect
round:  call    f_direct
        callr   r9
        la      r10, hop
        jr      r10
        addi    r1, r1, 1              ; skipped by the jr
hop:    li      r5, INNER
w_hop:  ld      r6, [r4 + 8]
        add     r6, r6, r1
        xor     r6, r6, r3
        sd      r6, [r4 + 8]
        xor     r1, r1, r6
        addi    r5, r5, -1
        bnez    r5, w_hop
        addi    r3, r3, -1
        bnez    r3, round
        li      r8, 'c'
.include "lib/hex_exit.s"

f_direct:
        li      r5, INNER
w_dir:  ld      r6, [r4]
        add     r6, r6, r2
        sd      r6, [r4]
        shli    r7, r1, 5
        shri    r1, r1, 59
        or      r1, r1, r7
        add     r1, r1, r6
        addi    r5, r5, -1
        bnez    r5, w_dir
        ret

f_indirect:
        li      r5, INNER
w_ind:  ld      r6, [r4 + 16]
        mul     r7, r6, r5
        add     r6, r6, r1
        sd      r6, [r4 + 16]
        xor     r1, r1, r7
        addi    r5, r5, -1
        bnez    r5, w_ind
        ret
