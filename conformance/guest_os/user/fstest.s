; The file-system self-test: odd-sized reads to the end of a file, two processes writing a file each at once, read-back.
;
; It drives kernel/fs.s and kernel/disk.s through the system calls (README "System calls")
; the way a test of the file system wants them driven: reads and writes that start and end
; inside sectors (read, modify, write), a read that ends at the end of the file (then 0),
; O_TRUNC, lseek, and two processes in the file system at once, one asleep in the disk
; driver while the other runs (the file system's lock and the driver's busy flag).
; The disk holds "fsin" (any contents) and "fsa", "fsb" with room for n * FST_CHUNK bytes.
;   in - "fsin" read FST_IN_CHUNK bytes at a time until a read returns 0: its length and
;        64-bit FNV-1a;
;   a  - fork; the parent opens "fsa" O_RDWR | O_TRUNC and writes n chunks of FST_CHUNK
;        bytes, byte j of chunk k being (seed + 3k + j) mod 256 with seed 'a'; lseek to 0 and
;        reads it back SECTOR_SIZE bytes at a time: length and FNV-1a;
;   b  - meanwhile the child does the same to "fsb" (O_WRONLY | O_TRUNC, seed 'b') and exits
;        0; after wait, the parent opens "fsb" O_RDONLY and reads it back the same way.
; Prints "fstest n=<n> in=<len>:<hash> a=<len>:<hash> b=<len>:<hash> child=<status>" (hashes
; in hex) and exits 0; on a failed call, "fstest: error <step>" and exit status 1.
; Stack: one sector-sized buffer and the results (user text is read-only: no data there).

.equ FST_CHUNK, 300                        ; not a divisor of SECTOR_SIZE: writes straddle sectors
.equ FST_IN_CHUNK, 100
.equ FST_FNV_OFFSET, 0xcbf29ce484222325    ; models.FNV_OFFSET, FNV_PRIME
.equ FST_FNV_PRIME, 0x100000001b3
.equ FST_BUF, 0                            ; frame: the buffer (SECTOR_SIZE bytes)
.equ FST_STATUS, 512                       ; the child's exit status (wait stores it)
.equ FST_LEN_IN, 520
.equ FST_H_IN, 528
.equ FST_LEN_A, 536
.equ FST_H_A, 544
.equ FST_LEN_B, 552
.equ FST_H_B, 560
.equ FST_FRAME, 568

fstest_main:                               ; fstest_main(r1 = n) -> r1 = exit status
        save_callee
        addi    sp, sp, -FST_FRAME
        mov     r8, r1                     ; r8 = n
        mov     r12, sp                    ; r12 = the frame
        li      r13, 'i'                   ; r13 = the step, for the error message
        la      r1, fst_s_fsin
        li      r2, O_RDONLY
        call    u_open
        blt     r1, r0, fst_fail
        mov     r9, r1
        mov     r2, r12
        li      r3, FST_IN_CHUNK
        call    fst_hash_fd
        blt     r2, r0, fst_fail
        sd      r1, [r12 + FST_H_IN]
        sd      r2, [r12 + FST_LEN_IN]
        mov     r1, r9
        call    u_close
        bnez    r1, fst_fail

        li      r13, 'f'
        call    u_fork
        blt     r1, r0, fst_fail
        beqz    r1, fst_child
        mov     r11, r1                    ; r11 = the child's pid
        li      r13, 'a'
        la      r1, fst_s_fsa
        li      r2, O_RDWR | O_TRUNC
        call    u_open
        blt     r1, r0, fst_fail
        mov     r9, r1
        li      r2, 'a'
        mov     r3, r8
        mov     r4, r12
        call    fst_write_file
        bnez    r1, fst_fail
        mov     r1, r9
        li      r2, 0
        call    u_lseek
        bnez    r1, fst_fail
        mov     r1, r9
        mov     r2, r12
        li      r3, SECTOR_SIZE
        call    fst_hash_fd
        blt     r2, r0, fst_fail
        sd      r1, [r12 + FST_H_A]
        sd      r2, [r12 + FST_LEN_A]
        mov     r1, r9
        call    u_close
        bnez    r1, fst_fail

        li      r13, 'w'
        sd      r0, [r12 + FST_STATUS]
        addi    r1, r12, FST_STATUS
        call    u_wait
        bne     r1, r11, fst_fail
        li      r13, 'b'
        la      r1, fst_s_fsb
        li      r2, O_RDONLY
        call    u_open
        blt     r1, r0, fst_fail
        mov     r9, r1
        mov     r2, r12
        li      r3, SECTOR_SIZE
        call    fst_hash_fd
        blt     r2, r0, fst_fail
        sd      r1, [r12 + FST_H_B]
        sd      r2, [r12 + FST_LEN_B]
        mov     r1, r9
        call    u_close
        bnez    r1, fst_fail

        la      r1, fst_s_n
        call    puts
        mov     r1, r8
        call    putdec
        la      r1, fst_s_in
        li      r2, FST_LEN_IN
        call    fst_put_result
        la      r1, fst_s_a
        li      r2, FST_LEN_A
        call    fst_put_result
        la      r1, fst_s_b
        li      r2, FST_LEN_B
        call    fst_put_result
        la      r1, fst_s_child
        call    puts
        ld      r1, [r12 + FST_STATUS]
        call    putdec
        li      r1, 10
        call    putc
        li      r1, 0
        jmp     fst_out
fst_fail:
        la      r1, fst_s_error
        call    puts
        mov     r1, r13
        call    putc
        li      r1, 10
        call    putc
        li      r1, 1
fst_out:
        addi    sp, sp, FST_FRAME
        restore_callee
        ret

fst_child:                                 ; the child: "fsb", then exit (never back to init)
        la      r1, fst_s_fsb
        li      r2, O_WRONLY | O_TRUNC
        call    u_open
        blt     r1, r0, fst_child_fail
        li      r2, 'b'
        mov     r3, r8
        mov     r4, r12
        call    fst_write_file
        bnez    r1, fst_child_fail
        li      r1, 0
        call    u_exit
fst_child_fail:
        li      r1, 1
        call    u_exit

; fst_put_result(r1 = label, r2 = frame offset of a length, its hash 8 bytes above):
; "<label><len>:<hash in hex>".  Uses the frame in r12 (fstest_main's).
fst_put_result:
        push    r8
        add     r8, r12, r2
        call    puts
        ld      r1, [r8]
        call    putdec
        li      r1, ':'
        call    putc
        ld      r1, [r8 + 8]
        call    puthex
        pop     r8
        ret

; fst_write_file(r1 = fd, r2 = seed, r3 = chunks, r4 = buffer) -> r1 = 0, or -1 if a write
; did not take the whole chunk.  Chunk k's byte j is (seed + 3k + j) mod 256.
fst_write_file:
        push    r8
        push    r9
        push    r10
        push    r11
        push    r12
        mov     r8, r1                     ; r8 = fd
        mov     r9, r2                     ; r9 = seed + 3k
        mov     r10, r3                    ; r10 = chunks left
        mov     r11, r4                    ; r11 = buffer
fst_wf_chunk:
        li      r1, 0
        beqz    r10, fst_wf_out
        li      r2, 0                      ; j
fst_wf_fill:
        add     r3, r9, r2
        add     r4, r11, r2
        sb      r3, [r4]
        addi    r2, r2, 1
        sltiu   r3, r2, FST_CHUNK
        bnez    r3, fst_wf_fill
        mov     r1, r8
        mov     r2, r11
        li      r3, FST_CHUNK
        call    u_write
        li      r2, FST_CHUNK
        li      r12, -1
        bne     r1, r2, fst_wf_fail
        addi    r9, r9, 3
        addi    r10, r10, -1
        jmp     fst_wf_chunk
fst_wf_fail:
        mov     r1, r12
fst_wf_out:
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

; fst_hash_fd(r1 = fd, r2 = buffer, r3 = bytes per read) -> r1 = FNV-1a of everything read
; until a read returns 0, r2 = the bytes read (or -1 if a read failed).
fst_hash_fd:
        push    r8
        push    r9
        push    r10
        push    r11
        push    r12
        mov     r8, r1                     ; r8 = fd
        mov     r9, r2                     ; r9 = buffer
        mov     r10, r3                    ; r10 = bytes per read
        li      r11, FST_FNV_OFFSET        ; r11 = hash
        li      r12, 0                     ; r12 = total
fst_hf_read:
        mov     r1, r8
        mov     r2, r9
        mov     r3, r10
        call    u_read
        blt     r1, r0, fst_hf_fail
        beqz    r1, fst_hf_out
        add     r12, r12, r1
        mov     r2, r9                     ; hash the r1 bytes read
        add     r3, r9, r1
        li      r5, FST_FNV_PRIME
fst_hf_byte:
        lbu     r4, [r2]
        xor     r11, r11, r4
        mul     r11, r11, r5
        addi    r2, r2, 1
        bltu    r2, r3, fst_hf_byte
        jmp     fst_hf_read
fst_hf_fail:
        li      r12, -1
fst_hf_out:
        mov     r1, r11
        mov     r2, r12
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

fst_s_fsin:
        .asciz  "fsin"
fst_s_fsa:
        .asciz  "fsa"
fst_s_fsb:
        .asciz  "fsb"
fst_s_n:
        .asciz  "fstest n="
fst_s_in:
        .asciz  " in="
fst_s_a:
        .asciz  " a="
fst_s_b:
        .asciz  " b="
fst_s_child:
        .asciz  " child="
fst_s_error:
        .asciz  "fstest: error "
        .align  4
