; The user library of p64os: one stub per system call, and printing, string and memory helpers.
;
; Every user program (init, ktest and the workloads) calls these.  They follow the calling
; convention of the README: arguments in r1-r6, the result in r1, r1-r7 clobbered, r8-r14
; preserved.  User text is read-only and shared by every process (README, memory map), so
; nothing here keeps writable data in the text: scratch buffers live on the caller's stack.
;
; System call stubs (README "System calls": `int SYSCALL_VEC`, number in r7, args in r1-r5,
; result in r1, a negative result is an error):
;   u_exit(status)               never returns
;   u_write(fd, buf, n)    -> bytes written or -1
;   u_read(fd, buf, n)     -> bytes read (0 at end of a disk file) or -1
;   u_fork()               -> child pid in the parent, 0 in the child, -1 if none is free
;   u_wait(status_ptr or 0)-> pid of a child that exited (its status stored there as a
;                             quadword), -1 if no child
;   u_getpid()             -> pid
;   u_yield()              -> 0
;   u_brk(addr)            -> the new break (addr 0: the current one); -1 if refused
;   u_mprotect(addr, len, prot) -> 0 or -1 (prot: PROT_WRITE or 0; PROT_READ is implied)
;   u_open(name, flags)    -> fd or -1 (flags O_RDONLY, O_WRONLY, O_RDWR, | O_TRUNC)
;   u_close(fd)            -> 0 or -1
;   u_lseek(fd, offset)    -> offset or -1
; Helpers:
;   putc(r1 = byte)                 one byte on fd 1
;   puts(r1 = NUL-terminated string) the string on fd 1 (no newline added) -> r1 = bytes
;   fputs(r1 = fd, r2 = string)     the string on fd r1 -> r1 = bytes
;   putdec(r1 = signed value)       decimal on fd 1 ("-" for negatives)
;   puthex(r1 = value)              lowercase hex on fd 1, no "0x", no leading zeros
;   strlen(r1 = string) -> r1
;   strcmp(r1 = a, r2 = b) -> r1 = 0 if equal, <0 or >0 as the first differing byte
;   memcpy(r1 = dst, r2 = src, r3 = n) -> r1 = dst
;   memset(r1 = dst, r2 = byte, r3 = n) -> r1 = dst
;   parse_dec(r1 = string) -> r1 = value, r2 = address of the first byte after the number
;                            (leading spaces skipped, an optional '-')

.equ SYSCALL_VEC, 0x80                 ; the DPL 3 interrupt gate of system calls (README)
.equ SYS_EXIT, 1
.equ SYS_WRITE, 2
.equ SYS_READ, 3
.equ SYS_FORK, 4
.equ SYS_WAIT, 5
.equ SYS_GETPID, 6
.equ SYS_YIELD, 7
.equ SYS_BRK, 8
.equ SYS_MPROTECT, 9
.equ SYS_OPEN, 10
.equ SYS_CLOSE, 11
.equ SYS_LSEEK, 12
.equ PROT_WRITE, 2                     ; mprotect: bit 1 = writable (README)
.equ STDIN, 0
.equ STDOUT, 1
.equ STDERR, 2

; syscall num: trap into the kernel for system call `num` (r7 is scratch by the convention).
.macro syscall num
        li      r7, \num
        int     SYSCALL_VEC
.endm

; ---- system call stubs ----
u_exit:
        syscall SYS_EXIT
        ud                             ; exit never returns: a #UD here would be a kernel bug
u_write:
        syscall SYS_WRITE
        ret
u_read:
        syscall SYS_READ
        ret
u_fork:
        syscall SYS_FORK
        ret
u_wait:
        syscall SYS_WAIT
        ret
u_getpid:
        syscall SYS_GETPID
        ret
u_yield:
        syscall SYS_YIELD
        ret
u_brk:
        syscall SYS_BRK
        ret
u_mprotect:
        syscall SYS_MPROTECT
        ret
u_open:
        syscall SYS_OPEN
        ret
u_close:
        syscall SYS_CLOSE
        ret
u_lseek:
        syscall SYS_LSEEK
        ret

; ---- strings and memory ----
; strlen(r1 = string) -> r1 = bytes before the NUL
strlen:
        mov     r2, r1
ul_strlen_loop:
        lbu     r3, [r2]
        beqz    r3, ul_strlen_done
        addi    r2, r2, 1
        jmp     ul_strlen_loop
ul_strlen_done:
        sub     r1, r2, r1
        ret

; strcmp(r1 = a, r2 = b) -> r1 = a[i] - b[i] at the first difference, or 0
strcmp:
        lbu     r3, [r1]
        lbu     r4, [r2]
        bne     r3, r4, ul_strcmp_diff
        beqz    r3, ul_strcmp_diff     ; both NUL: equal (r3 - r4 = 0)
        addi    r1, r1, 1
        addi    r2, r2, 1
        jmp     strcmp
ul_strcmp_diff:
        sub     r1, r3, r4
        ret

; memcpy(r1 = dst, r2 = src, r3 = n) -> r1 = dst.  Quadwords while both addresses are
; 8-byte aligned (architecture.md §5.2: wider accesses must be aligned), bytes otherwise.
memcpy:
        mov     r6, r1
        or      r4, r1, r2
        andi    r4, r4, 7
        bnez    r4, ul_memcpy_bytes
ul_memcpy_quads:
        sltiu   r4, r3, 8
        bnez    r4, ul_memcpy_bytes
        ld      r5, [r2]
        sd      r5, [r1]
        addi    r1, r1, 8
        addi    r2, r2, 8
        addi    r3, r3, -8
        jmp     ul_memcpy_quads
ul_memcpy_bytes:
        beqz    r3, ul_memcpy_done
        lbu     r5, [r2]
        sb      r5, [r1]
        addi    r1, r1, 1
        addi    r2, r2, 1
        addi    r3, r3, -1
        jmp     ul_memcpy_bytes
ul_memcpy_done:
        mov     r1, r6
        ret

; memset(r1 = dst, r2 = byte, r3 = n) -> r1 = dst.  Quadwords of the replicated byte while
; dst is aligned.
memset:
        mov     r6, r1
        andi    r2, r2, 0xff
        shli    r4, r2, 8
        or      r2, r2, r4
        shli    r4, r2, 16
        or      r2, r2, r4
        shli    r4, r2, 32
        or      r2, r2, r4
        andi    r4, r1, 7
        bnez    r4, ul_memset_bytes
ul_memset_quads:
        sltiu   r4, r3, 8
        bnez    r4, ul_memset_bytes
        sd      r2, [r1]
        addi    r1, r1, 8
        addi    r3, r3, -8
        jmp     ul_memset_quads
ul_memset_bytes:
        beqz    r3, ul_memset_done
        sb      r2, [r1]
        addi    r1, r1, 1
        addi    r3, r3, -1
        jmp     ul_memset_bytes
ul_memset_done:
        mov     r1, r6
        ret

; parse_dec(r1 = string) -> r1 = value, r2 = the first byte after the digits
parse_dec:
        li      r3, 0                  ; value
        li      r4, 0                  ; 1 if negative
ul_pd_space:
        lbu     r5, [r1]
        li      r6, 32
        bne     r5, r6, ul_pd_sign
        addi    r1, r1, 1
        jmp     ul_pd_space
ul_pd_sign:
        li      r6, 45                 ; '-'
        bne     r5, r6, ul_pd_digit
        li      r4, 1
        addi    r1, r1, 1
ul_pd_digit:
        lbu     r5, [r1]
        addi    r5, r5, -48            ; '0'
        sltiu   r6, r5, 10
        beqz    r6, ul_pd_done
        li      r6, 10
        mul     r3, r3, r6
        add     r3, r3, r5
        addi    r1, r1, 1
        jmp     ul_pd_digit
ul_pd_done:
        mov     r2, r1
        mov     r1, r3
        beqz    r4, ul_pd_ret
        neg     r1, r1
ul_pd_ret:
        ret

; ---- printing ----
; putc(r1 = byte): write one byte to fd 1 from a stack slot.
putc:
        addi    sp, sp, -8
        sb      r1, [sp]
        li      r1, STDOUT
        mov     r2, sp
        li      r3, 1
        call    u_write
        addi    sp, sp, 8
        ret

; puts(r1 = string) -> r1 = bytes written to fd 1
puts:
        mov     r2, r1
        li      r1, STDOUT
        ; fall through to fputs

; fputs(r1 = fd, r2 = string) -> r1 = bytes written
fputs:
        push    r8
        push    r9
        mov     r8, r1
        mov     r9, r2
        mov     r1, r2
        call    strlen
        mov     r3, r1
        mov     r1, r8
        mov     r2, r9
        call    u_write
        pop     r9
        pop     r8
        ret

; putdec(r1 = signed value): its decimal digits, built backwards in a 32-byte stack buffer.
putdec:
        addi    sp, sp, -32
        addi    r2, sp, 32             ; r2: one past the last digit written
        li      r4, 0                  ; 1 if negative
        bge     r1, r0, ul_pdec_loop
        li      r4, 1
        neg     r1, r1                 ; -2^63 stays itself: divu below treats it as 2^63
ul_pdec_loop:
        li      r5, 10
        remu    r3, r1, r5
        divu    r1, r1, r5
        addi    r3, r3, 48
        addi    r2, r2, -1
        sb      r3, [r2]
        bnez    r1, ul_pdec_loop
        beqz    r4, ul_pdec_out
        li      r3, 45                 ; '-'
        addi    r2, r2, -1
        sb      r3, [r2]
ul_pdec_out:
        addi    r3, sp, 32
        sub     r3, r3, r2
        li      r1, STDOUT
        call    u_write
        addi    sp, sp, 32
        ret

; puthex(r1 = value): lowercase hex digits, no prefix, no leading zeros.
puthex:
        addi    sp, sp, -32
        addi    r2, sp, 32
ul_phex_loop:
        andi    r3, r1, 15
        shri    r1, r1, 4
        sltiu   r4, r3, 10
        bnez    r4, ul_phex_digit
        addi    r3, r3, 39             ; 'a' - '0' - 10
ul_phex_digit:
        addi    r3, r3, 48
        addi    r2, r2, -1
        sb      r3, [r2]
        bnez    r1, ul_phex_loop
        addi    r3, sp, 32
        sub     r3, r3, r2
        li      r1, STDOUT
        call    u_write
        addi    sp, sp, 32
        ret
