; Efficiency, compute-bound (conformance/test_efficiency.py): a guest that only computes — ALU,
; loads and stores over 1 KiB, branches — for about 50,000 instructions, then prints one
; checksum ("s=<hex>") and exits with code 0.  No privileged or sensitive instruction: a VMM
; should run almost all of it directly (Popek & Goldberg 1974, efficiency).
.equ CONSOLE_DATA, 0x3f8
.equ RESULT_EXIT, 0x500
.equ DATA, 0x50000
.equ ROUNDS, 40
.org 0x1000
_start:
        li      sp, 0x30000
        li      r1, 0                  ; the checksum
        li      r2, 0x9e3779b97f4a7c15
        li      r3, 0                  ; round
round:  li      r4, DATA
        li      r5, DATA + 1024
pass:   ld      r6, [r4]
        add     r6, r6, r2
        xor     r6, r6, r3
        sd      r6, [r4]
        add     r1, r1, r6
        shli    r7, r1, 5
        shri    r1, r1, 59
        or      r1, r1, r7
        addi    r4, r4, 8
        bltu    r4, r5, pass
        addi    r3, r3, 1
        li      r7, ROUNDS
        bltu    r3, r7, round
        li      r8, 's'
.include "lib/hex_exit.s"
