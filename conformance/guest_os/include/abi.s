; The calling convention's two macros: save and restore the callee-saved registers r8-r14 (README, "The calling convention").
;
; The macros save all seven, so that a reader need not check which ones the function touches;
; a short function may instead push just the one or two it uses, and pop them in reverse.
.macro save_callee
        push    r8
        push    r9
        push    r10
        push    r11
        push    r12
        push    r13
        push    r14
.endm

; restore_callee: the pops in the opposite order (the stack is last in, first out).
.macro restore_callee
        pop     r14
        pop     r13
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r8
.endm
