; Files: the open-file table, the per-process descriptors, and read/write/open/close/lseek.
;
; As in Unix, a descriptor (a slot of P_OFILE) points to an open file in the global table, and
; fork shares it (one offset for both, counted by F_REF).  An open file is either the console
; (console.s) or a disk file of the file system (kernel/fs.s: fs_open, fs_read, fs_write,
; which take user buffer addresses and do their own copyin/copyout).

.equ O_RDONLY, 0                       ; open flags, shared with fs_open
.equ O_WRONLY, 1
.equ O_RDWR, 2
.equ O_ACCMODE, 3
.equ O_TRUNC, 0x10

.equ NFILE, 64
.equ FILE_SIZE, 48
.equ F_TYPE, 0                         ; FD_NONE (a free entry), FD_CONSOLE, FD_DISK
.equ F_REF, 8                          ; descriptors pointing here
.equ F_INDEX, 16                       ; the file system's file index
.equ F_OFF, 24                         ; offset of the next read or write
.equ F_READ, 32                        ; 1 if open for reading
.equ F_WRITE, 40                       ; 1 if open for writing
.equ FD_NONE, 0
.equ FD_CONSOLE, 1
.equ FD_DISK, 2
.equ NAME_MAX, 64                      ; a file name with its NUL

; file_alloc() -> r1 = a cleared file with one reference, or 0
file_alloc:
        li      r1, FILES
        li      r2, FILES + NFILE * FILE_SIZE
fl_alloc_loop:
        ld      r3, [r1 + F_REF]
        beqz    r3, fl_alloc_found
        addi    r1, r1, FILE_SIZE
        bltu    r1, r2, fl_alloc_loop
        li      r1, 0
        ret
fl_alloc_found:
        sd      r0, [r1 + F_TYPE]
        li      r3, 1
        sd      r3, [r1 + F_REF]
        sd      r0, [r1 + F_INDEX]
        sd      r0, [r1 + F_OFF]
        sd      r0, [r1 + F_READ]
        sd      r0, [r1 + F_WRITE]
        ret

; file_close(r1 = file): drop one reference; the entry is free at zero.
file_close:
        ld      r2, [r1 + F_REF]
        addi    r2, r2, -1
        sd      r2, [r1 + F_REF]
        bnez    r2, fl_close_done
        sd      r0, [r1 + F_TYPE]
fl_close_done:
        ret

; fd_get(r1 = fd) -> r1 = the current process's open file of fd, or 0
fd_get:
        li      r2, NOFILE
        bgeu    r1, r2, fl_get_none
        shli    r1, r1, 3
        la      r2, cur
        ld      r2, [r2]
        add     r1, r1, r2
        ld      r1, [r1 + P_OFILE]
        ret
fl_get_none:
        li      r1, 0
        ret

; fd_alloc(r1 = file) -> r1 = the lowest free descriptor of the current process, now
; pointing to the file, or -1
fd_alloc:
        la      r2, cur
        ld      r2, [r2]
        addi    r2, r2, P_OFILE
        li      r3, 0
fl_fd_loop:
        ld      r4, [r2]
        beqz    r4, fl_fd_found
        addi    r2, r2, 8
        addi    r3, r3, 1
        li      r4, NOFILE
        bltu    r3, r4, fl_fd_loop
        li      r1, -1
        ret
fl_fd_found:
        sd      r1, [r2]
        mov     r1, r3
        ret

; file_init_console(r1 = process): fds 0, 1, 2 on one console file (process 1 only; the
; others inherit them through fork).
file_init_console:
        push    r8
        mov     r8, r1
        call    file_alloc
        li      r2, FD_CONSOLE
        sd      r2, [r1 + F_TYPE]
        li      r2, 3
        sd      r2, [r1 + F_REF]
        li      r2, 1
        sd      r2, [r1 + F_READ]
        sd      r2, [r1 + F_WRITE]
        sd      r1, [r8 + P_OFILE]
        sd      r1, [r8 + P_OFILE + 8]
        sd      r1, [r8 + P_OFILE + 16]
        pop     r8
        ret

; file_fork(r1 = parent, r2 = child): the child shares every open file of the parent.
file_fork:
        li      r3, 0
fl_fork_loop:
        ld      r4, [r1 + P_OFILE]
        sd      r4, [r2 + P_OFILE]
        beqz    r4, fl_fork_next
        ld      r5, [r4 + F_REF]
        addi    r5, r5, 1
        sd      r5, [r4 + F_REF]
fl_fork_next:
        addi    r1, r1, 8
        addi    r2, r2, 8
        addi    r3, r3, 1
        li      r4, NOFILE
        bltu    r3, r4, fl_fork_loop
        ret

; file_exit(r1 = process): close every descriptor.
file_exit:
        push    r8
        push    r9
        addi    r8, r1, P_OFILE
        addi    r9, r8, NOFILE * 8
fl_exit_loop:
        ld      r1, [r8]
        beqz    r1, fl_exit_next
        sd      r0, [r8]
        call    file_close
fl_exit_next:
        addi    r8, r8, 8
        bltu    r8, r9, fl_exit_loop
        pop     r9
        pop     r8
        ret

; sys_read(r1 = fd, r2 = user buffer, r3 = n) -> bytes read, 0 at the end of a disk file, -1
sys_read:
        li      r4, F_READ
        jmp     fl_rw

; sys_write(r1 = fd, r2 = user buffer, r3 = n) -> bytes written, or -1
sys_write:
        li      r4, F_WRITE

; fl_rw: the body of both; r4 = F_READ or F_WRITE says which.
fl_rw:
        push    r8
        push    r9
        push    r10
        push    r11
        push    r12
        mov     r9, r2
        mov     r10, r3
        mov     r11, r4
        blt     r10, r0, fl_rw_fail
        call    fd_get
        beqz    r1, fl_rw_fail
        mov     r8, r1
        add     r2, r8, r11
        ld      r2, [r2]
        beqz    r2, fl_rw_fail         ; not open for this direction
        ld      r2, [r8 + F_TYPE]
        li      r3, FD_CONSOLE
        bne     r2, r3, fl_rw_disk
        mov     r1, r9
        mov     r2, r10
        li      r3, F_READ
        bne     r11, r3, fl_rw_cwrite
        call    console_read
        jmp     fl_rw_ret
fl_rw_cwrite:
        call    console_write
        jmp     fl_rw_ret
fl_rw_disk:
        ld      r1, [r8 + F_INDEX]
        ld      r2, [r8 + F_OFF]
        mov     r3, r9
        mov     r4, r10
        li      r5, F_READ
        bne     r11, r5, fl_rw_dwrite
        call    fs_read
        jmp     fl_rw_advance
fl_rw_dwrite:
        call    fs_write
fl_rw_advance:
        blt     r1, r0, fl_rw_fail
        ld      r2, [r8 + F_OFF]
        add     r2, r2, r1
        sd      r2, [r8 + F_OFF]
        jmp     fl_rw_ret
fl_rw_fail:
        li      r1, -1
fl_rw_ret:
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

; sys_open(r1 = user name, r2 = flags) -> fd, or -1 (no such file, a bad name or flags, no
; free file or descriptor)
sys_open:
        push    r8
        push    r9
        push    r10
        addi    sp, sp, -NAME_MAX
        mov     r8, r1
        mov     r9, r2
        andi    r2, r9, O_ACCMODE
        li      r3, O_ACCMODE
        beq     r2, r3, fl_open_fail
        li      r10, 0
fl_open_name:                          ; the name, one byte at a time up to its NUL
        add     r1, sp, r10
        add     r2, r8, r10
        li      r3, 1
        call    copyin
        bnez    r1, fl_open_fail
        add     r1, sp, r10
        lbu     r1, [r1]
        beqz    r1, fl_open_named
        addi    r10, r10, 1
        li      r2, NAME_MAX
        bltu    r10, r2, fl_open_name
        jmp     fl_open_fail           ; too long
fl_open_named:
        mov     r1, sp
        mov     r2, r9
        call    fs_open
        blt     r1, r0, fl_open_fail
        mov     r10, r1
        call    file_alloc
        beqz    r1, fl_open_fail
        mov     r8, r1
        li      r2, FD_DISK
        sd      r2, [r8 + F_TYPE]
        sd      r10, [r8 + F_INDEX]
        andi    r2, r9, O_ACCMODE
        li      r3, O_WRONLY
        beq     r2, r3, fl_open_w
        li      r3, 1
        sd      r3, [r8 + F_READ]
        li      r3, O_RDONLY
        beq     r2, r3, fl_open_fd
fl_open_w:
        li      r3, 1
        sd      r3, [r8 + F_WRITE]
fl_open_fd:
        mov     r1, r8
        call    fd_alloc
        bge     r1, r0, fl_open_ret
        mov     r1, r8
        call    file_close
fl_open_fail:
        li      r1, -1
fl_open_ret:
        addi    sp, sp, NAME_MAX
        pop     r10
        pop     r9
        pop     r8
        ret

; sys_close(r1 = fd) -> 0, or -1 if fd is not open
sys_close:
        push    r8
        mov     r8, r1
        call    fd_get
        beqz    r1, fl_close_fail
        shli    r2, r8, 3
        la      r3, cur
        ld      r3, [r3]
        add     r2, r2, r3
        sd      r0, [r2 + P_OFILE]
        call    file_close
        li      r1, 0
        pop     r8
        ret
fl_close_fail:
        li      r1, -1
        pop     r8
        ret

; sys_lseek(r1 = fd, r2 = offset) -> the offset, or -1 (not a disk file, a negative offset)
sys_lseek:
        push    r8
        mov     r8, r2
        blt     r8, r0, fl_seek_fail
        call    fd_get
        beqz    r1, fl_seek_fail
        ld      r2, [r1 + F_TYPE]
        li      r3, FD_DISK
        bne     r2, r3, fl_seek_fail
        sd      r8, [r1 + F_OFF]
        mov     r1, r8
        pop     r8
        ret
fl_seek_fail:
        li      r1, -1
        pop     r8
        ret
