; The diskio workload: sequential and random sector I/O on one file through the kernel's disk driver (Adams & Agesen 2006 §6).
;
; Every sector moved is a disk command: port writes to program it, a DMA, a completion
; interrupt 1000 ticks later (devices.md §6) - the I/O path that a VMM emulates (trap,
; decode, device model, virtual interrupt) and that hardware assistance does not remove.
; The file "data" exists on the disk with room for n sectors (models.diskio_model):
;   write  - n sectors written in order, the 64 quadwords of each the next LCG values from
;            x = n, mixed as written;
;   read   - back to offset 0, the n sectors read and mixed;
;   random - n operations: x = lcg(x), sector s = (x >> 33) mod n (mixed in); bit 32 of x
;            clear: read s and mix its quadwords, set: write s with quadwords x + j.
; Heap: one 512-byte sector buffer.

.equ DISKIO_SECTOR, 512
.equ DISKIO_LCG_A, 6364136223846793005     ; models.LCG_A, LCG_C
.equ DISKIO_LCG_C, 1442695040888963407
.equ DISKIO_FNV_OFFSET, 0xcbf29ce484222325
.equ DISKIO_FNV_PRIME, 0x100000001b3

diskio_main:                               ; diskio_main(r1 = n) -> r1 = exit status
        save_callee
        mov     r8, r1                     ; r8 = n
        li      r1, 0
        call    u_brk
        blt     r1, r0, diskio_nomem
        addi    r13, r1, 7                 ; r13 = the sector buffer, 8-byte aligned
        shri    r13, r13, 3
        shli    r13, r13, 3
        addi    r1, r13, DISKIO_SECTOR
        mov     r12, r1
        call    u_brk
        blt     r1, r0, diskio_nomem
        bltu    r1, r12, diskio_nomem
        la      r1, diskio_s_file
        li      r2, O_RDWR
        call    u_open
        blt     r1, r0, diskio_nofile
        mov     r9, r1                     ; r9 = fd

        mov     r10, r8                    ; r10 = x
        li      r11, DISKIO_FNV_OFFSET     ; r11 = the write checksum
        li      r12, 0                     ; r12 = sector
diskio_seq_write:
        bgeu    r12, r8, diskio_seq_written
        mov     r1, r13
        mov     r2, r10
        mov     r3, r11
        call    diskio_fill_lcg
        mov     r10, r1
        mov     r11, r2
        mov     r1, r9
        mov     r2, r13
        li      r3, DISKIO_SECTOR
        call    u_write
        li      r2, DISKIO_SECTOR
        bne     r1, r2, diskio_ioerr
        addi    r12, r12, 1
        jmp     diskio_seq_write
diskio_seq_written:
        mov     r1, r9
        li      r2, 0
        call    u_lseek
        bne     r1, r0, diskio_ioerr
        li      r14, DISKIO_FNV_OFFSET     ; r14 = the read checksum
        li      r12, 0
diskio_seq_read:
        bgeu    r12, r8, diskio_seq_done
        mov     r1, r9
        mov     r2, r13
        li      r3, DISKIO_SECTOR
        call    u_read
        li      r2, DISKIO_SECTOR
        bne     r1, r2, diskio_ioerr
        mov     r1, r13
        mov     r2, r14
        call    diskio_mix_sector
        mov     r14, r1
        addi    r12, r12, 1
        jmp     diskio_seq_read
diskio_seq_done:
        la      r1, diskio_s_n
        call    puts
        mov     r1, r8
        call    putdec
        la      r1, diskio_s_write
        call    puts
        mov     r1, r11
        call    puthex
        la      r1, diskio_s_read
        call    puts
        mov     r1, r14
        call    puthex

        li      r11, DISKIO_FNV_OFFSET     ; r11 = the random checksum
        li      r12, 0                     ; r12 = operations done
diskio_random:
        bgeu    r12, r8, diskio_random_done
        li      r1, DISKIO_LCG_A
        mul     r10, r10, r1
        li      r1, DISKIO_LCG_C
        add     r10, r10, r1
        shri    r14, r10, 33
        remu    r14, r14, r8               ; r14 = the sector
        xor     r11, r11, r14
        li      r1, DISKIO_FNV_PRIME
        mul     r11, r11, r1
        mov     r1, r9
        shli    r2, r14, 9
        call    u_lseek
        shli    r2, r14, 9
        bne     r1, r2, diskio_ioerr
        shri    r1, r10, 32
        andi    r1, r1, 1
        bnez    r1, diskio_random_write
        mov     r1, r9
        mov     r2, r13
        li      r3, DISKIO_SECTOR
        call    u_read
        li      r2, DISKIO_SECTOR
        bne     r1, r2, diskio_ioerr
        mov     r1, r13
        mov     r2, r11
        call    diskio_mix_sector
        mov     r11, r1
        jmp     diskio_random_next
diskio_random_write:
        mov     r1, r13                    ; quadword j = x + j
        li      r2, DISKIO_SECTOR
        add     r2, r2, r13
        mov     r3, r10
diskio_fill_x:
        sd      r3, [r1]
        addi    r3, r3, 1
        addi    r1, r1, 8
        bltu    r1, r2, diskio_fill_x
        mov     r1, r9
        mov     r2, r13
        li      r3, DISKIO_SECTOR
        call    u_write
        li      r2, DISKIO_SECTOR
        bne     r1, r2, diskio_ioerr
diskio_random_next:
        addi    r12, r12, 1
        jmp     diskio_random
diskio_random_done:
        la      r1, diskio_s_random
        call    puts
        mov     r1, r11
        call    puthex
        li      r1, 10
        call    putc
        mov     r1, r9
        call    u_close
        li      r1, 0
        jmp     diskio_out
diskio_nomem:
        li      r1, 2                      ; the heap could not grow
        jmp     diskio_out
diskio_nofile:
        li      r1, 3                      ; no file "data"
        jmp     diskio_out
diskio_ioerr:
        li      r1, 4                      ; a read, write or lseek fell short
diskio_out:
        restore_callee
        ret

; diskio_fill_lcg(r1 = buffer, r2 = x, r3 = checksum) -> r1 = x, r2 = checksum: the
; sector's 64 quadwords are the next 64 LCG values, each mixed into the checksum.
diskio_fill_lcg:
        li      r4, DISKIO_LCG_A
        li      r5, DISKIO_LCG_C
        li      r6, DISKIO_FNV_PRIME
        li      r7, DISKIO_SECTOR
        add     r7, r7, r1
diskio_fill_lcg_q:
        mul     r2, r2, r4
        add     r2, r2, r5
        sd      r2, [r1]
        xor     r3, r3, r2
        mul     r3, r3, r6
        addi    r1, r1, 8
        bltu    r1, r7, diskio_fill_lcg_q
        mov     r1, r2
        mov     r2, r3
        ret

; diskio_mix_sector(r1 = buffer, r2 = checksum) -> r1 = the checksum with the sector's 64
; quadwords mixed in.
diskio_mix_sector:
        li      r6, DISKIO_FNV_PRIME
        li      r7, DISKIO_SECTOR
        add     r7, r7, r1
diskio_mix_q:
        ld      r3, [r1]
        xor     r2, r2, r3
        mul     r2, r2, r6
        addi    r1, r1, 8
        bltu    r1, r7, diskio_mix_q
        mov     r1, r2
        ret

diskio_s_file:
        .asciz  "data"
diskio_s_n:
        .asciz  "diskio n="
diskio_s_write:
        .asciz  " write="
diskio_s_read:
        .asciz  " read="
diskio_s_random:
        .asciz  " random="
        .align  4
