; The compute workload: integer kernels with checksums, no system calls in their loops (Adams & Agesen 2006 §6).
;
; The paper's compute-bound programs run at native speed under every VMM: they make no
; privileged operation, so a VMM runs them directly (Popek & Goldberg's efficiency) and
; only the page faults that first touch the heap leave the guest.  Three kernels share one
; LCG started at x = n (models.compute_model states the same thing in Python):
;   sort   - n quadwords x, bottom-up merge sort (ascending, unsigned), FNV mix of the result
;   fnv1a  - 8n bytes (the top byte of each x), 64-bit FNV-1a
;   matmul - A and B of m x m quadwords (the top 16 bits of x), m the largest with
;            m^3 <= 16n; the FNV mix of C = A B (mod 2^64), row-major
; Heap: [base, +8n) the array, [+8n, +16n) the merge buffer (then the hash's bytes),
; [+16n, +16n + 16m^2) A then B.

.equ COMPUTE_LCG_A, 6364136223846793005    ; Knuth's MMIX LCG (models.LCG_A, LCG_C)
.equ COMPUTE_LCG_C, 1442695040888963407
.equ COMPUTE_FNV_OFFSET, 0xcbf29ce484222325
.equ COMPUTE_FNV_PRIME, 0x100000001b3

compute_main:                              ; compute_main(r1 = n) -> r1 = exit status
        save_callee
        mov     r8, r1                     ; r8 = n
        li      r10, 1                     ; r10 = m: grow while (m+1)^3 <= 16n
        shli    r3, r8, 4
compute_m_loop:
        addi    r4, r10, 1
        mul     r5, r4, r4
        mul     r5, r5, r4
        bltu    r3, r5, compute_m_done
        mov     r10, r4
        jmp     compute_m_loop
compute_m_done:
        li      r1, 0
        call    u_brk
        blt     r1, r0, compute_fail
        addi    r9, r1, 7                  ; r9 = base, 8-byte aligned
        shri    r9, r9, 3
        shli    r9, r9, 3
        shli    r1, r8, 4                  ; the heap's end: base + 16n + 16m^2
        mul     r2, r10, r10
        shli    r2, r2, 4
        add     r1, r1, r2
        add     r1, r1, r9
        mov     r12, r1
        call    u_brk
        blt     r1, r0, compute_fail
        bltu    r1, r12, compute_fail
        mov     r11, r8                    ; r11 = x, the LCG state
        li      r12, COMPUTE_LCG_A
        li      r13, COMPUTE_LCG_C
        li      r14, COMPUTE_FNV_PRIME

        ; sort: fill n quadwords, sort them, mix them
        mov     r1, r9
        shli    r2, r8, 3
        add     r2, r2, r9
compute_fill:
        bgeu    r1, r2, compute_filled
        mul     r11, r11, r12
        add     r11, r11, r13
        sd      r11, [r1]
        addi    r1, r1, 8
        jmp     compute_fill
compute_filled:
        mov     r1, r9
        shli    r2, r8, 3
        add     r2, r2, r9
        mov     r3, r8
        call    compute_sort               ; r1 = where the sorted quadwords are
        shli    r2, r8, 3
        add     r2, r2, r1
        li      r3, COMPUTE_FNV_OFFSET
compute_sum_sort:
        bgeu    r1, r2, compute_sorted
        ld      r4, [r1]
        xor     r3, r3, r4
        mul     r3, r3, r14
        addi    r1, r1, 8
        jmp     compute_sum_sort
compute_sorted:
        push    r3
        la      r1, compute_s_head
        call    puts
        mov     r1, r8
        call    putdec
        la      r1, compute_s_sort
        call    puts
        pop     r1
        call    puthex

        ; fnv1a: 8n bytes after the array (the merge buffer is free again)
        shli    r1, r8, 3
        add     r1, r1, r9
        shli    r2, r8, 3
        add     r2, r2, r1
        mov     r5, r1
compute_fill_bytes:
        bgeu    r1, r2, compute_hash
        mul     r11, r11, r12
        add     r11, r11, r13
        shri    r3, r11, 56
        sb      r3, [r1]
        addi    r1, r1, 1
        jmp     compute_fill_bytes
compute_hash:
        li      r3, COMPUTE_FNV_OFFSET
compute_hash_loop:
        bgeu    r5, r2, compute_hashed
        lbu     r4, [r5]
        xor     r3, r3, r4
        mul     r3, r3, r14
        addi    r5, r5, 1
        jmp     compute_hash_loop
compute_hashed:
        push    r3
        la      r1, compute_s_hash
        call    puts
        pop     r1
        call    puthex

        ; matmul: A and B after the merge buffer, filled in one sweep (A then B, row-major)
        shli    r1, r8, 4
        add     r1, r1, r9
        mul     r2, r10, r10
        shli    r2, r2, 4
        add     r2, r2, r1
compute_fill_mat:
        bgeu    r1, r2, compute_mat
        mul     r11, r11, r12
        add     r11, r11, r13
        shri    r3, r11, 48
        sd      r3, [r1]
        addi    r1, r1, 8
        jmp     compute_fill_mat
compute_mat:
        shli    r1, r8, 4
        add     r1, r1, r9
        mul     r2, r10, r10
        shli    r2, r2, 3
        add     r2, r2, r1
        mov     r3, r10
        call    compute_matmul
        push    r1
        la      r1, compute_s_mat
        call    puts
        mov     r1, r10
        call    putdec
        li      r1, 'x'
        call    putc
        mov     r1, r10
        call    putdec
        li      r1, ' '
        call    putc
        pop     r1
        call    puthex
        li      r1, 10
        call    putc
        li      r1, 0
        jmp     compute_out
compute_fail:
        li      r1, 2                      ; the heap could not grow
compute_out:
        restore_callee
        ret

; compute_sort(r1 = array, r2 = buffer, r3 = n) -> r1 = the one of the two holding the n
; quadwords sorted ascending (unsigned).  Bottom-up merge sort: runs of width w = 1, 2, 4 …
; merged pairwise from one area into the other, which then swap roles.
compute_sort:
        push    r8
        push    r9
        push    r10
        push    r11
        push    r12
        mov     r8, r1                     ; r8 = source of this pass
        mov     r9, r2                     ; r9 = destination
        mov     r10, r3                    ; r10 = n
        li      r11, 1                     ; r11 = w
compute_sort_pass:
        bgeu    r11, r10, compute_sort_done
        li      r12, 0                     ; r12 = lo, the start of a pair of runs
compute_sort_pair:
        bgeu    r12, r10, compute_sort_swap
        add     r2, r12, r11               ; mid = min(lo + w, n)
        bleu    r2, r10, compute_sort_mid
        mov     r2, r10
compute_sort_mid:
        add     r4, r2, r11                ; hi = min(mid + w, n)
        bleu    r4, r10, compute_sort_hi
        mov     r4, r10
compute_sort_hi:
        shli    r1, r12, 3
        add     r5, r9, r1                 ; r5 = out
        add     r1, r8, r1                 ; r1 = left run, up to r2
        shli    r2, r2, 3
        add     r2, r8, r2
        mov     r3, r2                     ; r3 = right run, up to r4
        shli    r4, r4, 3
        add     r4, r8, r4
compute_merge:
        bgeu    r1, r2, compute_rest_right
        bgeu    r3, r4, compute_rest_left
        ld      r6, [r1]
        ld      r7, [r3]
        bltu    r7, r6, compute_take_right ; equal keys: the left one first
        sd      r6, [r5]
        addi    r1, r1, 8
        addi    r5, r5, 8
        jmp     compute_merge
compute_take_right:
        sd      r7, [r5]
        addi    r3, r3, 8
        addi    r5, r5, 8
        jmp     compute_merge
compute_rest_left:
        bgeu    r1, r2, compute_pair_done
        ld      r6, [r1]
        sd      r6, [r5]
        addi    r1, r1, 8
        addi    r5, r5, 8
        jmp     compute_rest_left
compute_rest_right:
        bgeu    r3, r4, compute_pair_done
        ld      r6, [r3]
        sd      r6, [r5]
        addi    r3, r3, 8
        addi    r5, r5, 8
        jmp     compute_rest_right
compute_pair_done:
        add     r12, r12, r11
        add     r12, r12, r11
        jmp     compute_sort_pair
compute_sort_swap:
        mov     r6, r8
        mov     r8, r9
        mov     r9, r6
        add     r11, r11, r11
        jmp     compute_sort_pass
compute_sort_done:
        mov     r1, r8
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

; compute_matmul(r1 = A, r2 = B, r3 = m) -> r1 = FNV mix of C = A B, row-major.  A and B
; are m x m quadwords, row-major, B right after A (so A ends where B starts).
compute_matmul:
        push    r8
        push    r9
        push    r11
        push    r12
        push    r13
        push    r14
        mov     r8, r1
        mov     r9, r2
        shli    r7, r3, 3                  ; r7 = the bytes of a row
        mov     r11, r8                    ; r11 = row i of A
        li      r13, COMPUTE_FNV_OFFSET
        li      r14, COMPUTE_FNV_PRIME
compute_mm_row:
        bgeu    r11, r9, compute_mm_done
        li      r12, 0                     ; r12 = 8 j
compute_mm_col:
        bgeu    r12, r7, compute_mm_next_row
        mov     r1, r11                    ; A[i][k]
        add     r3, r11, r7
        add     r2, r9, r12                ; B[k][j]
        li      r4, 0
compute_mm_k:
        ld      r5, [r1]
        ld      r6, [r2]
        mul     r5, r5, r6
        add     r4, r4, r5
        addi    r1, r1, 8
        add     r2, r2, r7
        bltu    r1, r3, compute_mm_k
        xor     r13, r13, r4
        mul     r13, r13, r14
        addi    r12, r12, 8
        jmp     compute_mm_col
compute_mm_next_row:
        add     r11, r11, r7
        jmp     compute_mm_row
compute_mm_done:
        mov     r1, r13
        pop     r14
        pop     r13
        pop     r12
        pop     r11
        pop     r9
        pop     r8
        ret

compute_s_head:
        .asciz  "compute n="
compute_s_sort:
        .asciz  "\nsort "
compute_s_hash:
        .asciz  "\nfnv1a "
compute_s_mat:
        .asciz  "\nmatmul "
        .align  4
