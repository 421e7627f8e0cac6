; The disk driver: one request at a time, interrupt-driven, the caller asleep while the disk works.
;
; The disk (docs/devices.md §6) takes a sector, a count (1..DISK_MAX_COUNT) and a physical
; buffer, works for DISK_LATENCY ticks, moves the data by DMA at completion and raises IRQ 14
; (vector VEC_DISK = 46 with the PIC base of 32).  It refuses a second command while busy, so
; the driver serializes requests: `disk_busy` is set from the command to its completion, and
; a caller that finds it set sleeps on it.  The caller of a request sleeps on `disk_done`
; until `disk_intr` (called by the trap dispatcher for vector 46, after the EOI) has read and
; acknowledged the status.  Kernel addresses are physical addresses (README, memory map), so
; any kernel buffer can be the DMA buffer.
;
; Interrupts are off whenever the kernel runs (README), so testing a flag and going to sleep
; cannot miss a wakeup: the interrupt that sets the flag is only taken once the CPU has left
; this code for the scheduler's idle loop or a user process.
;
; Public:
;   disk_init()                          probe DISK_SIZE (all ones: no disk), unmask IRQ 14
;   disk_rw(r1 = sector, r2 = count, r3 = buffer, r4 = DISK_CMD_READ or DISK_CMD_WRITE)
;                                        -> r1 = 0, or -1 (no disk, bad range, device error)
;   disk_rw_poll(same)                   the same, waiting by polling the status: for boot
;                                        (fs_init), before there is a process to put to sleep
;   disk_intr()                          the interrupt's work: status, acknowledge, wakeup
;   disk_sectors()                       -> r1 = the disk's size in sectors (0: no disk)

; The driver's variables, in the area boot.s leaves to the disk and the file system (it is
; not cleared at boot: disk_init sets every field).
.equ DISK_VARS, FS_AREA
.equ DV_SECTORS, 0                     ; DISK_SIZE, or 0 when no disk answers
.equ DV_BUSY, 8                        ; 1 from a command to its completion (channel of waiters)
.equ DV_DONE, 16                       ; 1 once disk_intr has seen the completion (channel)
.equ DV_STATUS, 24                     ; the status disk_intr read: DISK_STATUS_DONE or _ERROR
.equ DV_SIZE, 32

; disk_init(): probe the disk.  An unclaimed port reads as all ones (devices.md §2, §8), so
; DISK_SIZE = -1 means there is no disk and every request will fail.
disk_init:
        la      r2, DISK_VARS
        sd      r0, [r2 + DV_BUSY]
        sd      r0, [r2 + DV_DONE]
        sd      r0, [r2 + DV_STATUS]
        io_in   r1, DISK_SIZE
        li      r3, -1
        bne     r1, r3, disk_init_present
        li      r1, 0
disk_init_present:
        sd      r1, [r2 + DV_SECTORS]
        beqz    r1, disk_init_done
        io_in   r3, PIC_MASK           ; let IRQ 14 through, keeping the other lines' bits (§3)
        li      r4, ~(1 << DISK_IRQ) & 0xffff
        and     r3, r3, r4
        io_out  PIC_MASK, r3
disk_init_done:
        ret

; disk_sectors() -> r1 = the disk's size in sectors, 0 without a disk
disk_sectors:
        la      r1, DISK_VARS
        ld      r1, [r1 + DV_SECTORS]
        ret

; disk_check(r1 = sector, r2 = count, r4 = command) -> r5 = 0 if the request can be issued,
; else -1.  Refusing here what the disk would refuse (§6 "Completion") saves a command's
; latency and keeps a bad request from looking like a device error.  Clobbers r5-r7.
disk_check:
        li      r5, -1
        la      r6, DISK_VARS
        ld      r6, [r6 + DV_SECTORS]
        beqz    r6, disk_check_done    ; no disk
        beqz    r2, disk_check_done
        sltiu   r7, r2, DISK_MAX_COUNT + 1
        beqz    r7, disk_check_done
        bgeu    r1, r6, disk_check_done
        sub     r6, r6, r1             ; sectors from `sector` to the end
        bltu    r6, r2, disk_check_done
        li      r7, DISK_CMD_READ
        beq     r4, r7, disk_check_ok
        li      r7, DISK_CMD_WRITE
        bne     r4, r7, disk_check_done
disk_check_ok:
        li      r5, 0
disk_check_done:
        ret

; disk_issue(r1 = sector, r2 = count, r3 = buffer, r4 = command): program the registers and
; start the command (the disk latches them when it accepts it, §6 "Commands").
disk_issue:
        io_out  DISK_SECTOR, r1
        io_out  DISK_COUNT, r2
        io_out  DISK_ADDR, r3
        io_out  DISK_CMD, r4
        ret

; disk_rw(r1 = sector, r2 = count, r3 = buffer, r4 = DISK_CMD_READ/WRITE) -> r1 = 0 or -1
disk_rw:
        call    disk_check
        bnez    r5, disk_rw_refused
        push    r8
        push    r9
        push    r10
        push    r11
        push    r12
        mov     r8, r1
        mov     r9, r2
        mov     r10, r3
        mov     r11, r4
        la      r12, DISK_VARS
disk_rw_wait_free:                     ; one request at a time: wait for the one in flight
        ld      r1, [r12 + DV_BUSY]
        beqz    r1, disk_rw_free
        addi    r1, r12, DV_BUSY
        call    sleep
        jmp     disk_rw_wait_free
disk_rw_free:
        li      r1, 1
        sd      r1, [r12 + DV_BUSY]
        sd      r0, [r12 + DV_DONE]
        mov     r1, r8
        mov     r2, r9
        mov     r3, r10
        mov     r4, r11
        call    disk_issue
disk_rw_wait_done:                     ; disk_intr sets DV_DONE and wakes us
        ld      r1, [r12 + DV_DONE]
        bnez    r1, disk_rw_done
        addi    r1, r12, DV_DONE
        call    sleep
        jmp     disk_rw_wait_done
disk_rw_done:
        ld      r8, [r12 + DV_STATUS]
        sd      r0, [r12 + DV_BUSY]
        addi    r1, r12, DV_BUSY       ; the next request may start
        call    wakeup
        li      r1, 0
        li      r2, DISK_STATUS_DONE
        beq     r8, r2, disk_rw_out
        li      r1, -1
disk_rw_out:
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        ret
disk_rw_refused:
        li      r1, -1
        ret

; disk_rw_poll(r1 = sector, r2 = count, r3 = buffer, r4 = command) -> r1 = 0 or -1.
; Waits by reading the status until it leaves busy (§6: the transfer happens at completion,
; before the status says done).  Only for boot, when no request can be in flight and no
; process exists to sleep; the interrupt it raises stays requested at the PIC and reaches
; disk_intr later, which finds the disk idle and ignores it.
disk_rw_poll:
        call    disk_check
        bnez    r5, disk_rw_refused
        call    disk_issue
disk_poll_loop:
        io_in   r1, DISK_CMD
        li      r2, DISK_STATUS_BUSY
        beq     r1, r2, disk_poll_loop
        io_out  DISK_CMD, r0           ; DISK_CMD_ACK: done or error back to idle
        li      r2, DISK_STATUS_DONE
        li      r3, 0
        beq     r1, r2, disk_poll_out
        li      r3, -1
disk_poll_out:
        mov     r1, r3
        ret

; disk_intr(): the completion of the command in flight.  The status is read and acknowledged
; here, in the interrupt, so the disk is idle again before the waiter runs.  A status other
; than done or error means no command of disk_rw has completed (the leftover request of a
; polled command at boot): nothing to do.
disk_intr:
        io_in   r1, DISK_CMD
        li      r2, DISK_STATUS_DONE
        beq     r1, r2, disk_intr_complete
        li      r2, DISK_STATUS_ERROR
        bne     r1, r2, disk_intr_out
disk_intr_complete:
        la      r2, DISK_VARS
        ld      r3, [r2 + DV_BUSY]
        beqz    r3, disk_intr_out      ; not ours (cannot happen once boot is over)
        sd      r1, [r2 + DV_STATUS]
        io_out  DISK_CMD, r0           ; DISK_CMD_ACK
        li      r1, 1
        sd      r1, [r2 + DV_DONE]
        addi    r1, r2, DV_DONE
        call    wakeup
disk_intr_out:
        ret
