; The end of the standalone guests (compute.s, eff_calls.s): the letter in r8, '=', the 16 hex
; digits of r1 and a newline on the console, then exit with 0.  One console word per character,
; no signature library: their host entries stay the computation's.  The includer defines
; CONSOLE_DATA and RESULT_EXIT.
        out     CONSOLE_DATA, r8
        li      r8, '='
        out     CONSOLE_DATA, r8
        li      r7, 60                 ; 16 hex digits of r1
digit:  shr     r8, r1, r7
        andi    r8, r8, 15
        addi    r8, r8, '0'
        li      r9, '9' + 1
        bltu    r8, r9, emit
        addi    r8, r8, 'a' - '9' - 1
emit:   out     CONSOLE_DATA, r8
        addi    r7, r7, -4
        bge     r7, r0, digit
        li      r8, 10
        out     CONSOLE_DATA, r8
        out     RESULT_EXIT, r0
        hlt
