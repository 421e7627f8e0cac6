; The flat file system: one directory of fixed entries, each file one contiguous extent (mkfs.py).
;
; The format is mkfs.py's (its docstring, "The format"): sector 0 the superblock, sectors
; 1-4 the directory of FS_MAX_FILES 32-byte entries (name, first sector, capacity in
; sectors, size in bytes), then the extents.  fs_init reads those five sectors once into
; FS_META and keeps them; a file is named by its index in the directory.  A file never moves
; and never outgrows its extent, so there is no allocator: a write past the end grows the
; size inside the extent and writes the directory sector back.
;
; Data moves through FS_BOUNCE, a kernel buffer of FS_BOUNCE_SECTORS sectors: the disk DMAs
; into physical memory (devices.md §6), while the user's buffer is virtual and may not be
; mapped yet, so copyin/copyout move bytes between the two.  A sector only partly written
; is read first when it holds file bytes the write keeps (read, modify, write); a partial
; last sector past the end of the file is zero-filled instead, so an append costs no read
; and the extent's slack never holds another file's stale bytes from the bounce buffer.
; Each chunk is one disk command, whatever its sector count: the latency is per command
; (devices.md §6).  One process sleeps in disk_rw while another runs,
; so the bounce buffer and the directory are guarded by one lock (a flag, sleep/wakeup on
; its address); fs_open's name search and fs_size only read what never changes under them
; or a single quadword.
;
; Public (r1-r7 clobbered, r8-r14 kept, README's convention):
;   fs_init()                                  superblock + directory into memory; no disk, a
;                                              short disk, a bad magic/version or a bad entry:
;                                              no files
;   fs_open(r1 = name, r2 = flags)             -> r1 = file index or -1 (no such file, bad flags)
;   fs_size(r1 = index)                        -> r1 = size in bytes, or -1 (bad index)
;   fs_read(r1 = index, r2 = offset, r3 = user buffer, r4 = n)
;                                              -> r1 = bytes read (0 at or past the end) or -1
;   fs_write(r1 = index, r2 = offset, r3 = user buffer, r4 = n)
;                                              -> r1 = bytes written (cut at the capacity: 0 at
;                                              or past it) or -1
; A write that starts past the end fills the gap with zeros, so a file never shows stale
; bytes of its extent (those O_TRUNC left behind).  An error (disk or copy) returns -1; the
; size grows only when the whole write reached the disk.

; The layout, mkfs.py's constants under the kernel's prefix (tests compare the two).
.equ FS_MAGIC, 0x5346534f343650        ; "P64OSFS\0" as a little-endian quadword
.equ FS_VERSION, 1
.equ FS_SB_MAGIC, 0
.equ FS_SB_VERSION, 8
.equ FS_SB_NFILES, 16
.equ FS_SB_TOTAL, 24
.equ FS_SB_DIR_SECTORS, 32
.equ FS_SB_DATA_START, 40
.equ FS_DIR_SECTORS, 4
.equ FS_DATA_START, 5
.equ FS_ENTRY_SIZE, 32
.equ FS_ENTRY_SHIFT, 5
.equ FS_MAX_FILES, 64
.equ FS_DE_NAME, 0
.equ FS_DE_START, 16                   ; 32 bits
.equ FS_DE_CAPACITY, 20                ; 32 bits, sectors
.equ FS_DE_SIZE, 24                    ; 64 bits, bytes
.equ FS_SECTOR_SHIFT, 9                ; SECTOR_SIZE = 1 << 9

; open flags: the values of the system call ABI's O_RDONLY 0, O_WRONLY 1, O_RDWR 2, O_TRUNC 0x10
.equ FS_O_ACCMODE, 3
.equ FS_O_TRUNC, 0x10

; Memory, in FS_AREA (boot.s) above the driver's variables (disk.s: DISK_VARS).
.equ FS_META, FS_AREA + 0x1000         ; sectors 0-4: superblock, then the directory
.equ FS_DIR, FS_META + SECTOR_SIZE
.equ FS_BOUNCE_SECTORS, 8
.equ FS_BOUNCE_BYTES, FS_BOUNCE_SECTORS * SECTOR_SIZE
.equ FS_BOUNCE, FS_AREA + 0x2000
.equ FS_VARS, FS_AREA + 0x3000
.equ FV_NFILES, 0                      ; entries in use (0: no file system)
.equ FV_LOCK, 8                        ; 1 while a process uses the bounce buffer or directory

; fs_init(): read and check the superblock and directory; on any doubt, no files.  Runs at
; boot, before the first process, so it waits for the disk by polling (disk_rw_poll).
fs_init:
        push    r8
        push    r9
        la      r8, FS_VARS
        sd      r0, [r8 + FV_NFILES]
        sd      r0, [r8 + FV_LOCK]
        call    disk_sectors
        mov     r9, r1                 ; r9 = the disk's size in sectors
        sltiu   r2, r9, FS_DATA_START
        bnez    r2, fs_init_out        ; no disk, or too small for superblock and directory
        li      r1, 0
        li      r2, FS_DATA_START
        la      r3, FS_META
        li      r4, DISK_CMD_READ
        call    disk_rw_poll
        bnez    r1, fs_init_out
        la      r2, FS_META
        ld      r3, [r2 + FS_SB_MAGIC]
        li      r4, FS_MAGIC
        bne     r3, r4, fs_init_out
        ld      r3, [r2 + FS_SB_VERSION]
        li      r4, FS_VERSION
        bne     r3, r4, fs_init_out
        ld      r3, [r2 + FS_SB_DIR_SECTORS]
        li      r4, FS_DIR_SECTORS
        bne     r3, r4, fs_init_out
        ld      r3, [r2 + FS_SB_DATA_START]
        li      r4, FS_DATA_START
        bne     r3, r4, fs_init_out
        ld      r5, [r2 + FS_SB_TOTAL]  ; r5 = the file system's sectors: not beyond the disk
        bltu    r9, r5, fs_init_out
        ld      r6, [r2 + FS_SB_NFILES] ; r6 = files
        sltiu   r4, r6, FS_MAX_FILES + 1
        beqz    r4, fs_init_out
        la      r1, FS_DIR
        li      r2, 0
fs_init_entry:                         ; every extent inside the data area, every size inside
        beq     r2, r6, fs_init_ok     ; its extent: the kernel trusts the directory afterwards
        lwu     r3, [r1 + FS_DE_START]
        lwu     r4, [r1 + FS_DE_CAPACITY]
        sltiu   r7, r3, FS_DATA_START
        bnez    r7, fs_init_out
        beqz    r4, fs_init_out
        add     r7, r3, r4
        bltu    r5, r7, fs_init_out
        ld      r7, [r1 + FS_DE_SIZE]
        shli    r4, r4, FS_SECTOR_SHIFT
        bltu    r4, r7, fs_init_out
        addi    r1, r1, FS_ENTRY_SIZE
        addi    r2, r2, 1
        jmp     fs_init_entry
fs_init_ok:
        sd      r6, [r8 + FV_NFILES]
fs_init_out:
        pop     r9
        pop     r8
        ret

; fs_lock(): take the file system's lock, sleeping while another process holds it.
; Interrupts are off in the kernel, so the test and the set cannot be split (README).
fs_lock:
        la      r1, FS_VARS
        ld      r2, [r1 + FV_LOCK]
        beqz    r2, fs_lock_take
        addi    r1, r1, FV_LOCK
        call    sleep
        jmp     fs_lock
fs_lock_take:
        li      r2, 1
        sd      r2, [r1 + FV_LOCK]
        ret

; fs_unlock(): release it and wake the processes waiting for it.
fs_unlock:
        la      r1, FS_VARS
        sd      r0, [r1 + FV_LOCK]
        addi    r1, r1, FV_LOCK
        call    wakeup
        ret

; fs_entry(r1 = index) -> r1 = the address of its directory entry, or 0 if there is no such
; file (the index is compared unsigned, so a negative one is refused too).
fs_entry:
        la      r2, FS_VARS
        ld      r2, [r2 + FV_NFILES]
        bgeu    r1, r2, fs_entry_none
        shli    r1, r1, FS_ENTRY_SHIFT
        la      r2, FS_DIR
        add     r1, r1, r2
        ret
fs_entry_none:
        li      r1, 0
        ret

; fs_put_entry(r1 = entry address) -> r1 = 0 or -1: write back the directory sector that
; holds the entry (the in-memory copy is the DMA buffer).  The caller holds the lock.
fs_put_entry:
        la      r2, FS_META
        sub     r1, r1, r2
        shri    r1, r1, FS_SECTOR_SHIFT        ; r1 = the sector (1..FS_DIR_SECTORS)
        shli    r3, r1, FS_SECTOR_SHIFT
        add     r3, r3, r2
        li      r2, 1
        li      r4, DISK_CMD_WRITE
        call    disk_rw
        ret

; fs_xfer(r1 = entry, r2 = file offset, r3 = bytes from the offset's sector start, r4 =
; command) -> r1 = 0 or -1: move the sectors covering them between the extent and FS_BOUNCE.
; One command whatever the count: the disk's latency is per command (devices.md §6).
fs_xfer:
        lwu     r1, [r1 + FS_DE_START]
        shri    r2, r2, FS_SECTOR_SHIFT
        add     r1, r1, r2
        addi    r2, r3, SECTOR_SIZE - 1
        shri    r2, r2, FS_SECTOR_SHIFT
        la      r3, FS_BOUNCE
        call    disk_rw
        ret

; fs_open(r1 = kernel address of a NUL-terminated name, r2 = flags) -> r1 = index or -1.
; O_TRUNC empties a file opened for writing and writes its entry back; with O_RDONLY it
; changes nothing.  Flags other than the access mode and O_TRUNC, or access mode 3, are refused.
fs_open:
        push    r8
        push    r9
        push    r10
        push    r11
        mov     r8, r1                 ; r8 = name
        mov     r9, r2                 ; r9 = flags
        li      r3, ~(FS_O_ACCMODE | FS_O_TRUNC)
        and     r3, r9, r3
        bnez    r3, fs_open_fail
        andi    r3, r9, FS_O_ACCMODE
        li      r4, FS_O_ACCMODE
        beq     r3, r4, fs_open_fail
        la      r10, FS_DIR            ; r10 = entry
        li      r11, 0                 ; r11 = index
fs_open_search:
        la      r1, FS_VARS
        ld      r1, [r1 + FV_NFILES]
        bgeu    r11, r1, fs_open_fail
        mov     r1, r8
        mov     r2, r10                ; the name field always holds a NUL (mkfs.py)
        call    kstrcmp
        beqz    r1, fs_open_found
        addi    r10, r10, FS_ENTRY_SIZE
        addi    r11, r11, 1
        jmp     fs_open_search
fs_open_found:
        andi    r3, r9, FS_O_TRUNC
        beqz    r3, fs_open_ok
        andi    r3, r9, FS_O_ACCMODE
        beqz    r3, fs_open_ok         ; O_RDONLY | O_TRUNC: nothing to truncate for a reader
        call    fs_lock
        ld      r1, [r10 + FS_DE_SIZE]
        beqz    r1, fs_open_unlock     ; already empty: no directory write
        sd      r0, [r10 + FS_DE_SIZE]
        mov     r1, r10
        call    fs_put_entry
        mov     r8, r1                 ; the name is no longer needed: r8 = the write's result
        call    fs_unlock
        bnez    r8, fs_open_fail
        jmp     fs_open_ok
fs_open_unlock:
        call    fs_unlock
fs_open_ok:
        mov     r1, r11
        jmp     fs_open_out
fs_open_fail:
        li      r1, -1
fs_open_out:
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret

; fs_size(r1 = index) -> r1 = the file's size in bytes, or -1
fs_size:
        call    fs_entry
        beqz    r1, fs_size_none
        ld      r1, [r1 + FS_DE_SIZE]
        ret
fs_size_none:
        li      r1, -1
        ret

; fs_read(r1 = index, r2 = offset, r3 = user buffer, r4 = n) -> r1 = bytes read or -1.
; Reads min(n, size - offset) bytes, FS_BOUNCE_BYTES (less the offset in the first sector)
; per disk command.
fs_read:
        save_callee
        mov     r9, r2                 ; r9 = the file offset of the next byte
        mov     r10, r3                ; r10 = user buffer
        mov     r11, r4                ; r11 = bytes to read
        call    fs_entry
        li      r12, -1
        beqz    r1, fs_read_out
        mov     r8, r1                 ; r8 = entry
        call    fs_lock
        li      r12, 0                 ; r12 = bytes read so far
        ld      r1, [r8 + FS_DE_SIZE]
        bgeu    r9, r1, fs_read_done   ; at or past the end: 0
        sub     r1, r1, r9
        bgeu    r1, r11, fs_read_loop
        mov     r11, r1                ; cut at the end of the file
fs_read_loop:
        beq     r12, r11, fs_read_done
        andi    r14, r9, SECTOR_SIZE - 1        ; r14 = offset in the first sector
        sub     r13, r11, r12                   ; r13 = this chunk's bytes: what is left,
        li      r1, FS_BOUNCE_BYTES             ; at most what the bounce buffer holds
        sub     r1, r1, r14                     ; from r14 on
        bgeu    r1, r13, fs_read_sized
        mov     r13, r1
fs_read_sized:
        mov     r1, r8
        mov     r2, r9
        add     r3, r14, r13
        li      r4, DISK_CMD_READ
        call    fs_xfer
        bnez    r1, fs_read_error
        add     r1, r10, r12
        la      r2, FS_BOUNCE
        add     r2, r2, r14
        mov     r3, r13
        call    copyout
        bnez    r1, fs_read_error
        add     r12, r12, r13
        add     r9, r9, r13
        jmp     fs_read_loop
fs_read_error:
        li      r12, -1
fs_read_done:
        call    fs_unlock
fs_read_out:
        mov     r1, r12
        restore_callee
        ret

; fs_write(r1 = index, r2 = offset, r3 = user buffer, r4 = n) -> r1 = bytes written or -1.
; Writes [offset, offset + n) cut at the capacity; the bytes from the old size up to the
; offset, if the offset is past the end, become zeros.  Chunk by chunk from
; pos = min(offset, size): a chunk's bytes below the offset are zeros, the rest the user's.
fs_write:
        save_callee
        addi    sp, sp, -8             ; [sp] = the zeros at the start of this chunk
        mov     r9, r2                 ; r9 = offset
        mov     r10, r3                ; r10 = user buffer
        mov     r11, r4                ; r11 = n, then the end of the write
        call    fs_entry
        li      r12, -1
        beqz    r1, fs_write_out
        mov     r8, r1                 ; r8 = entry
        call    fs_lock
        li      r12, 0
        lwu     r1, [r8 + FS_DE_CAPACITY]
        shli    r1, r1, FS_SECTOR_SHIFT
        bgeu    r9, r1, fs_write_done  ; at or past the capacity: 0 bytes
        sub     r1, r1, r9
        bgeu    r1, r11, fs_write_cut
        mov     r11, r1                ; cut at the capacity
fs_write_cut:
        beqz    r11, fs_write_done     ; writing nothing does not extend the file
        add     r11, r9, r11           ; r11 = end of the write
        ld      r12, [r8 + FS_DE_SIZE] ; r12 = pos = min(offset, size)
        bgeu    r9, r12, fs_write_loop
        mov     r12, r9
fs_write_loop:
        bgeu    r12, r11, fs_write_written
        andi    r14, r12, SECTOR_SIZE - 1       ; r14 = offset in the first sector
        sub     r13, r11, r12                   ; r13 = this chunk's bytes
        li      r1, FS_BOUNCE_BYTES
        sub     r1, r1, r14
        bgeu    r1, r13, fs_write_sized
        mov     r13, r1
fs_write_sized:
        bnez    r14, fs_write_read     ; the first sector holds file bytes before pos: read it
        add     r1, r14, r13
        andi    r1, r1, SECTOR_SIZE - 1
        beqz    r1, fs_write_fill      ; whole sectors: nothing to keep
        add     r2, r12, r13           ; the last sector is partial: read it if file bytes
        ld      r3, [r8 + FS_DE_SIZE]  ; follow the chunk, else zero its tail (appending
        bltu    r2, r3, fs_write_read  ; needs no read, and no stale bytes reach the disk)
        li      r3, SECTOR_SIZE
        sub     r3, r3, r1
        la      r1, FS_BOUNCE
        add     r1, r1, r14
        add     r1, r1, r13
        li      r2, 0
        call    kmemset
        jmp     fs_write_fill
fs_write_read:
        mov     r1, r8
        mov     r2, r12
        add     r3, r14, r13
        li      r4, DISK_CMD_READ
        call    fs_xfer
        bnez    r1, fs_write_error
fs_write_fill:
        li      r1, 0                  ; zeros = min(len, offset - pos) when pos < offset
        bgeu    r12, r9, fs_write_zeros
        sub     r1, r9, r12
        bgeu    r13, r1, fs_write_zeros
        mov     r1, r13
fs_write_zeros:
        sd      r1, [sp]
        beqz    r1, fs_write_copy
        mov     r3, r1
        la      r1, FS_BOUNCE
        add     r1, r1, r14
        li      r2, 0
        call    kmemset
fs_write_copy:
        ld      r1, [sp]
        sub     r3, r13, r1            ; the user's bytes in this chunk
        beqz    r3, fs_write_put
        add     r2, r12, r1            ; from user buffer + (pos + zeros - offset)
        sub     r2, r2, r9
        add     r2, r2, r10
        la      r4, FS_BOUNCE          ; to bounce + in-sector offset + zeros
        add     r4, r4, r14
        add     r1, r4, r1
        call    copyin
        bnez    r1, fs_write_error
fs_write_put:
        mov     r1, r8
        mov     r2, r12
        add     r3, r14, r13
        li      r4, DISK_CMD_WRITE
        call    fs_xfer
        bnez    r1, fs_write_error
        add     r12, r12, r13
        jmp     fs_write_loop
fs_write_written:
        ld      r1, [r8 + FS_DE_SIZE]
        bgeu    r1, r11, fs_write_count
        sd      r11, [r8 + FS_DE_SIZE] ; the file grew: its entry goes back to the disk
        mov     r1, r8
        call    fs_put_entry
        bnez    r1, fs_write_error
fs_write_count:
        sub     r12, r11, r9
        jmp     fs_write_done
fs_write_error:
        li      r12, -1
fs_write_done:
        call    fs_unlock
fs_write_out:
        mov     r1, r12
        addi    sp, sp, 8
        restore_callee
        ret
