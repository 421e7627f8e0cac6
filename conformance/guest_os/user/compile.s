; The compile workload: many short processes that read sources and write objects, then a link (Adams & Agesen 2006 §6).
;
; Like the paper's compile macrobenchmarks, most of its time goes to process creation and
; exit, system calls and file I/O rather than to computing: the parent forks one child per
; source file src000 … src(n-1), at most COMPILE_JOBS at a time; each child reads its source,
; "compiles" it (tokens: runs of bytes above 0x20, each replaced by its FNV-1a) and writes
; obj<NNN>, then exits.  When every child is done the parent "links": it reads the objects in
; order and prints their total tokens, lines and FNV-1a.  Each child writes only its own file
; and the parent prints only after the last wait, so nothing printed or written depends on
; the scheduler.  The object format is models.compile_object's: little-endian u32s
; COMPILE_MAGIC, tokens, lines, tokens starting with a digit, each token's hash, the
; source's hash (hashes are the low 32 bits of FNV-1a 64).
; Heap: [base, +8 KiB) the source buffer, [+8 KiB, +16 KiB) the object buffer.

.equ COMPILE_JOBS, 2
.equ COMPILE_BUF, 8192
.equ COMPILE_MAGIC, 0x4a424f50             ; "POBJ"
.equ COMPILE_FNV_OFFSET, 0xcbf29ce484222325
.equ COMPILE_FNV_PRIME, 0x100000001b3

compile_main:                              ; compile_main(r1 = n) -> r1 = exit status
        save_callee
        addi    sp, sp, -16                ; [sp]: a file name; [sp + 8]: a wait status
        mov     r8, r1                     ; r8 = n
        li      r1, 0
        call    u_brk
        blt     r1, r0, compile_fail
        addi    r9, r1, 7                  ; r9 = base, 8-byte aligned
        shri    r9, r9, 3
        shli    r9, r9, 3
        li      r1, 2 * COMPILE_BUF
        add     r1, r1, r9
        mov     r10, r1
        call    u_brk
        blt     r1, r0, compile_fail
        bltu    r1, r10, compile_fail

        li      r10, 0                     ; r10 = next source
        li      r11, 0                     ; r11 = children running
        li      r12, 0                     ; r12 = children reaped with status 0
compile_spawn:
        bgeu    r10, r8, compile_drain
        sltiu   r1, r11, COMPILE_JOBS
        bnez    r1, compile_fork
        call    compile_reap               ; J running: wait for one first
        add     r12, r12, r1
        addi    r11, r11, -1
compile_fork:
        call    u_fork
        blt     r1, r0, compile_forked     ; no process free: that source stays uncompiled
        beqz    r1, compile_child
        addi    r11, r11, 1
compile_forked:
        addi    r10, r10, 1
        jmp     compile_spawn
compile_child:
        mov     r1, r10
        mov     r2, r9
        call    compile_one
        call    u_exit
compile_drain:
        beqz    r11, compile_link
        call    compile_reap
        add     r12, r12, r1
        addi    r11, r11, -1
        jmp     compile_drain

compile_link:                              ; every child is done: read the objects in order
        li      r10, 0
        li      r11, COMPILE_FNV_OFFSET    ; r11 = link checksum
        li      r13, 0                     ; r13 = tokens
        li      r14, 0                     ; r14 = lines
compile_link_file:
        bgeu    r10, r8, compile_report
        mov     r1, sp
        la      r2, compile_s_obj
        mov     r3, r10
        call    compile_name
        mov     r1, sp
        li      r2, O_RDONLY
        call    u_open
        blt     r1, r0, compile_link_next  ; a missing object shows in the checksum
        li      r2, COMPILE_BUF
        add     r2, r2, r9
        call    compile_read_all           ; r1 = bytes, the descriptor closed
        li      r2, COMPILE_BUF
        add     r2, r2, r9                 ; r2 = the object
        add     r3, r2, r1                 ; r3 = its end
        sltiu   r4, r1, 12
        bnez    r4, compile_link_bytes     ; too short for a header: hash it only
        lwu     r4, [r2 + 4]
        add     r13, r13, r4
        lwu     r4, [r2 + 8]
        add     r14, r14, r4
compile_link_bytes:
        li      r5, COMPILE_FNV_PRIME
compile_link_byte:
        bgeu    r2, r3, compile_link_next
        lbu     r4, [r2]
        xor     r11, r11, r4
        mul     r11, r11, r5
        addi    r2, r2, 1
        jmp     compile_link_byte
compile_link_next:
        addi    r10, r10, 1
        jmp     compile_link_file

compile_report:
        la      r1, compile_s_n
        call    puts
        mov     r1, r8
        call    putdec
        la      r1, compile_s_ok
        call    puts
        mov     r1, r12
        call    putdec
        la      r1, compile_s_tokens
        call    puts
        mov     r1, r13
        call    putdec
        la      r1, compile_s_lines
        call    puts
        mov     r1, r14
        call    putdec
        la      r1, compile_s_link
        call    puts
        mov     r1, r11
        call    puthex
        li      r1, 10
        call    putc
        li      r1, 0
        beq     r12, r8, compile_out
        li      r1, 1                      ; a child failed
        jmp     compile_out
compile_fail:
        li      r1, 2                      ; the heap could not grow
compile_out:
        addi    sp, sp, 16
        restore_callee
        ret

; compile_reap() -> r1 = 1 if a child was reaped with status 0, else 0
compile_reap:
        addi    sp, sp, -8
        sd      r0, [sp]
        mov     r1, sp
        call    u_wait
        blt     r1, r0, compile_reap_bad
        ld      r1, [sp]
        sltiu   r1, r1, 1
        addi    sp, sp, 8
        ret
compile_reap_bad:
        li      r1, 0
        addi    sp, sp, 8
        ret

; compile_name(r1 = buffer, r2 = 3-letter prefix, r3 = i < 1000): "<prefix><i as 3 digits>\0"
compile_name:
        lbu     r4, [r2]
        sb      r4, [r1]
        lbu     r4, [r2 + 1]
        sb      r4, [r1 + 1]
        lbu     r4, [r2 + 2]
        sb      r4, [r1 + 2]
        li      r5, 10
        remu    r4, r3, r5
        addi    r4, r4, '0'
        sb      r4, [r1 + 5]
        divu    r3, r3, r5
        remu    r4, r3, r5
        addi    r4, r4, '0'
        sb      r4, [r1 + 4]
        divu    r3, r3, r5
        remu    r4, r3, r5
        addi    r4, r4, '0'
        sb      r4, [r1 + 3]
        sb      r0, [r1 + 6]
        ret

; compile_read_all(r1 = fd, r2 = buffer of COMPILE_BUF bytes) -> r1 = bytes read (a read
; error ends it); closes fd.
compile_read_all:
        push    r8
        push    r9
        push    r10
        mov     r8, r1
        mov     r9, r2
        li      r10, 0                     ; r10 = bytes so far
compile_read_more:
        li      r3, COMPILE_BUF
        sub     r3, r3, r10
        beqz    r3, compile_read_done
        mov     r1, r8
        add     r2, r9, r10
        call    u_read
        bge     r0, r1, compile_read_done  ; 0: end of file; < 0: an error
        add     r10, r10, r1
        jmp     compile_read_more
compile_read_done:
        mov     r1, r8
        call    u_close
        mov     r1, r10
        pop     r10
        pop     r9
        pop     r8
        ret

; compile_one(r1 = i, r2 = heap base) -> r1 = exit status: the child's job, src<i> to obj<i>.
compile_one:
        push    r8
        push    r9
        push    r10
        addi    sp, sp, -8                 ; [sp]: a file name
        mov     r8, r1
        mov     r9, r2
        mov     r1, sp
        la      r2, compile_s_src
        mov     r3, r8
        call    compile_name
        mov     r1, sp
        li      r2, O_RDONLY
        call    u_open
        li      r10, 3
        blt     r1, r0, compile_one_out    ; status 3: no source
        mov     r2, r9
        call    compile_read_all
        mov     r2, r1
        mov     r1, r9
        li      r3, COMPILE_BUF
        add     r3, r3, r9
        call    compile_tokenize
        mov     r10, r1                    ; r10 = object bytes
        mov     r1, sp
        la      r2, compile_s_obj
        mov     r3, r8
        call    compile_name
        mov     r1, sp
        li      r2, O_WRONLY | O_TRUNC
        call    u_open
        blt     r1, r0, compile_one_nofile
        mov     r8, r1                     ; r8 = the object's descriptor
        li      r2, COMPILE_BUF
        add     r2, r2, r9
        mov     r3, r10
        call    u_write
        mov     r9, r1
        mov     r1, r8
        call    u_close
        li      r1, 0
        beq     r9, r10, compile_one_status
        li      r1, 5                      ; status 5: a short write
compile_one_status:
        mov     r10, r1
        jmp     compile_one_out
compile_one_nofile:
        li      r10, 4                     ; status 4: no object file
compile_one_out:
        mov     r1, r10
        addi    sp, sp, 8
        pop     r10
        pop     r9
        pop     r8
        ret

; compile_tokenize(r1 = source, r2 = bytes, r3 = object buffer) -> r1 = object bytes.
compile_tokenize:
        push    r8
        push    r9
        push    r10
        push    r11
        push    r12
        mov     r11, r3                    ; r11 = the object
        mov     r12, r1                    ; r12 = the source
        add     r2, r1, r2                 ; r2 = its end
        addi    r3, r3, 16                 ; r3 = where the next hash goes
        li      r6, COMPILE_FNV_PRIME
        li      r8, 0                      ; r8 = tokens
        li      r9, 0                      ; r9 = lines
        li      r10, 0                     ; r10 = tokens that start with a digit
compile_tok_space:
        bgeu    r1, r2, compile_tok_end
        lbu     r4, [r1]
        sltiu   r7, r4, 0x21
        beqz    r7, compile_tok_start
        addi    r1, r1, 1
        li      r7, 10
        bne     r4, r7, compile_tok_space
        addi    r9, r9, 1                  ; a newline ends a line
        jmp     compile_tok_space
compile_tok_start:
        addi    r7, r4, -'0'
        sltiu   r7, r7, 10
        add     r10, r10, r7
        addi    r8, r8, 1
        li      r5, COMPILE_FNV_OFFSET
compile_tok_byte:
        xor     r5, r5, r4
        mul     r5, r5, r6
        addi    r1, r1, 1
        bgeu    r1, r2, compile_tok_done
        lbu     r4, [r1]
        sltiu   r7, r4, 0x21
        beqz    r7, compile_tok_byte
compile_tok_done:
        sw      r5, [r3]
        addi    r3, r3, 4
        jmp     compile_tok_space
compile_tok_end:
        li      r5, COMPILE_FNV_OFFSET     ; the trailer: FNV-1a of the whole source
compile_tok_sum:
        bgeu    r12, r2, compile_tok_trailer
        lbu     r4, [r12]
        xor     r5, r5, r4
        mul     r5, r5, r6
        addi    r12, r12, 1
        jmp     compile_tok_sum
compile_tok_trailer:
        sw      r5, [r3]
        addi    r3, r3, 4
        li      r4, COMPILE_MAGIC
        sw      r4, [r11]
        sw      r8, [r11 + 4]
        sw      r9, [r11 + 8]
        sw      r10, [r11 + 12]
        sub     r1, r3, r11
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

compile_s_src:
        .asciz  "src"
compile_s_obj:
        .asciz  "obj"
compile_s_n:
        .asciz  "compile n="
compile_s_ok:
        .asciz  " ok="
compile_s_tokens:
        .asciz  " tokens="
compile_s_lines:
        .asciz  " lines="
compile_s_link:
        .asciz  " link="
        .align  4
