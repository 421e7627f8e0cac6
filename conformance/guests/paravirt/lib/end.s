; The end of every paravirtual directed guest: handlers, drivers, the paravirtual signature, and the hypercall page.
;
; `finish` (jumped to in the kernel) is the native signature's port (conformance/guests/lib/
; signature.s): "rN=<hex>" for r1-r8, "exceptions=<count>" and one "  event=<hex>" line per
; logged event, then the exit code — by shutdown (§4.8) where the native guest writes
; RESULT_EXIT.  It leaves out the native signature's machine state, which a paravirtual kernel
; does not have (docs/paravirt-abi.md §8): CR0, CR3, CR4 and CR8 (mfcr is privileged; a
; paravirtual kernel runs paged from its first instruction, has no TPR and no CR0 to read), the
; real FLAGS user mode ran with (user mode always runs with events enabled, §4.4), and the
; clock (rdtsc is undefined under the ABI and TIMER_NOW is port I/O; its time, SHARED_TIME,
; counts the port's own instructions, which are not the native guest's).
; conformance.guests.paravirt.native_expectation removes exactly those lines from the native
; run's console; everything else must be byte for byte the native guest's.

; ---- the trap table ----
; set_gate_int: an interrupt gate of DPL 0 at r13 (an entry's address) to the handler r14.
set_gate_int:
        sd      r14, [r13]
        li      r14, INTERRUPT_GATE
        sd      r14, [r13 + 8]
        ret

; install_traps: set_trap_table(IDT) (§4.2); a refusal is the library's bug.
install_traps:
        push    r1
        push    r2
        push    r7
        li      r1, IDT
        hypercall HYPERCALL_SET_TRAP_TABLE
        bnez    r1, pv_bug
        pop     r7
        pop     r2
        pop     r1
        ret

; Faults a guest provokes on purpose are logged and skipped, as the native prelude does: the
; frame (§6.2: [error], pc, cs, FLAGS, sp) holds the faulting pc, and 4 resumes after it.
log_stub h_de, 0, skip_noerr
log_stub h_ud, 6, skip_noerr
log_stub h_gp, 13, skip_err
log_stub h_df, 8, fatal_err
log_stub h_pf_fatal, 14, fatal_err
log_stub h_ac, 17, fatal_err
log_stub h_mc, 18, fatal_err

skip_noerr:                            ; stack: r13, pc, cs, FLAGS, sp
        call    log_event
        ld      r13, [sp + 8]
        addi    r13, r13, 4
        sd      r13, [sp + 8]
        pop     r13
        push    r7
        pv_iret

skip_err:                              ; stack: r13, error code, pc, cs, FLAGS, sp
        push    r14
        ld      r14, [sp + 16]
        shli    r14, r14, 8
        or      r13, r13, r14          ; a log entry is vector | error code << 8
        call    log_event
        ld      r13, [sp + 24]
        addi    r13, r13, 4
        sd      r13, [sp + 24]
        pop     r14
        pop     r13
        addi    sp, sp, 8              ; the error code
        push    r7
        pv_iret

fatal_err:
        call    log_event
        li      r13, 0xff
        la      r14, exit_code
        sd      r13, [r14]
        jmp     finish

; log_event: append r13 to the exception log (count every event, keep the first EXLOG_MAX).
log_event:
        push    r12
        push    r14
        la      r14, exlog_n
        ld      r12, [r14]
        addi    r12, r12, 1
        sd      r12, [r14]
        li      r14, EXLOG_MAX
        bltu    r14, r12, log_full
        shli    r12, r12, 3
        la      r14, exlog - 8
        add     r14, r14, r12
        sd      r13, [r14]
log_full:
        pop     r14
        pop     r12
        ret

h_back:                                ; int VEC_BACK from user mode; frame: pc, cs, FLAGS, sp
        la      r14, resume
        ld      r14, [r14]
        li      sp, KSTACK_TOP
        jr      r14

; ---- events (§5) ----
; upcall: the trap table's PV_UPCALL_VECTOR entry (§5.3): clear upcall_pending first, then for
; each port pending and unmasked clear its byte and call the routine bound to it (bind_irq),
; with r1-r12 saved; back with the iret hypercall.
upcall:
        push    r1
        push    r2
        push    r3
        push    r4
        push    r5
        push    r6
        push    r7
        push    r8
        push    r9
        push    r10
        push    r11
        push    r12
        la      r9, shared_info
        ld      r9, [r9]
        sb      r0, [r9 + SHARED_UPCALL_PENDING]
        li      r10, 0
up_port:
        add     r11, r9, r10
        lbu     r12, [r11 + SHARED_EVTCHN_PENDING]
        beqz    r12, up_next
        lbu     r12, [r11 + SHARED_EVTCHN_MASK]
        bnez    r12, up_next
        sb      r0, [r11 + SHARED_EVTCHN_PENDING]
        bnez    r10, up_bound
        call    timer_rearm            ; PORT_TIMER: the periodic timer's next deadline
up_bound:
        shli    r11, r10, 3
        la      r12, irq_handlers
        add     r12, r12, r11
        ld      r12, [r12]
        beqz    r12, up_next
        push    r9
        push    r10
        callr   r12
        pop     r10
        pop     r9
up_next:
        addi    r10, r10, 1
        li      r11, PV_NR_PORTS
        bltu    r10, r11, up_port
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r8
        pop     r7
        pop     r6
        pop     r5
        pop     r4
        pop     r3
        pop     r2
        pop     r1
        push    r7
        pv_iret

; pv_sti: the event mask to 0, and the pending upcall taken (§5.1's arch_sti).
pv_sti:
        push    r1
        push    r7
        la      r14, shared_info
        ld      r14, [r14]
        sb      r0, [r14 + SHARED_EVENT_MASK]
        lbu     r13, [r14 + SHARED_UPCALL_PENDING]
        beqz    r13, sti_done
        hypercall HYPERCALL_VERSION
sti_done:
        pop     r7
        pop     r1
        ret

; pv_block: sched_op(SCHEDOP_BLOCK) (§4.8), registers kept.
pv_block:
        push    r1
        push    r2
        push    r7
        li      r1, SCHEDOP_BLOCK
        li      r2, 0
        hypercall HYPERCALL_SCHED_OP
        bnez    r1, pv_bug
        pop     r7
        pop     r2
        pop     r1
        ret

; pv_unmask: evtchn_unmask(r13) (§4.11): what arrived while masked is raised again.
pv_unmask:
        push    r1
        push    r7
        mov     r1, r13
        hypercall HYPERCALL_EVTCHN_UNMASK
        bnez    r1, pv_bug
        pop     r7
        pop     r1
        ret

; timer_periodic: the native timer's periodic mode (devices.md §4) from the one-shot
; set_timer (§4.9): the first deadline `r13` ticks from now, then every r13 (timer_rearm at
; each PORT_TIMER event); r13 = 0 stops it.
timer_periodic:
        push    r1
        push    r2
        push    r7
        la      r14, timer_period
        sd      r13, [r14]
        li      r1, 0
        beqz    r13, tp_set
        hypercall HYPERCALL_VERSION    ; SHARED_TIME is written on every hypercall's return (§5.1)
        la      r14, shared_info
        ld      r14, [r14]
        ld      r1, [r14 + SHARED_TIME]
        add     r1, r1, r13
tp_set: la      r14, timer_deadline
        sd      r1, [r14]
        hypercall HYPERCALL_SET_TIMER
        pop     r7
        pop     r2
        pop     r1
        ret

; timer_rearm (in the upcall, registers free): the next deadline of a periodic timer.
timer_rearm:
        la      r14, timer_period
        ld      r13, [r14]
        beqz    r13, tr_done
        la      r14, timer_deadline
        ld      r1, [r14]
        add     r1, r1, r13
        sd      r1, [r14]
        hypercall HYPERCALL_SET_TIMER
tr_done:
        ret

; ---- page tables (§7) ----
; mmu_queue: append the request (r13 = ptr | command, r14 = val) to the batch at REQUESTS.
mmu_queue:
        push    r12
        push    r11
        la      r12, mmu_count
        ld      r11, [r12]
        addi    r11, r11, 1
        sd      r11, [r12]
        shli    r11, r11, 4
        li      r12, REQUESTS - MMU_REQ_SIZE
        add     r12, r12, r11
        sd      r13, [r12 + MMU_REQ_PTR]
        sd      r14, [r12 + MMU_REQ_VAL]
        pop     r11
        pop     r12
        ret

; mmu_submit: mmu_update of the batch (§4.5); a refusal is the library's bug.
mmu_submit:
        push    r1
        push    r2
        push    r7
        li      r1, REQUESTS
        la      r14, mmu_count
        ld      r2, [r14]
        sd      r0, [r14]
        hypercall HYPERCALL_MMU_UPDATE
        bnez    r1, pv_bug
        pop     r7
        pop     r2
        pop     r1
        ret

; pte_set: the entry at r13 (the pseudo-physical address of an entry of a pinned table) := r14,
; whose frame, if present, is pseudo-physical and made machine (+ mem_base, §1): the native
; `sd r14, [r13]` into a live table, as one mmu_update request (§7.3), submitted at once.
pte_set:
        push    r12
        push    r11
        la      r12, mem_base
        ld      r12, [r12]
        add     r13, r13, r12          ; the entry's machine address; command 0, MMU_CMD_UPDATE
        andi    r11, r14, PTE_P
        beqz    r11, pte_q
        add     r14, r14, r12
pte_q:  call    mmu_queue
        call    mmu_submit
        pop     r11
        pop     r12
        ret

; pte_pseudo: r13 (an entry read from a table) with its frame made pseudo-physical again when
; present — the entry as the native guest reads it (XenoLinux's machine-to-physical lookup).
pte_pseudo:
        andi    r14, r13, PTE_P
        beqz    r14, pp_done
        la      r14, mem_base
        ld      r14, [r14]
        sub     r13, r13, r14
pp_done:
        ret

; paging_on: lib/paging.s's address space A (PML4 -> PDPT -> PD; PD[1] -> PT, empty, for the
; pages a guest maps at PAGED_VA) built as a paravirtual kernel builds it (§7.3's fork): the
; first 2 MiB by the L1 PT_LOW instead of a 2 MiB page (no large pages, §7.2), user-writable
; as the native large page is, but for the table pages, mapped read-only (§7.1); the tables
; filled with plain stores while they are ordinary pages, then one batch that makes them
; read-only in the bootstrap mapping and pins them bottom-up, set_cr3, and the bootstrap
; tables unpinned.
paging_on:
        push    r1
        push    r2
        push    r3
        push    r9
        push    r10
        push    r11
        push    r12
        la      r9, mem_base
        ld      r9, [r9]
        la      r10, start_info
        ld      r10, [r10]
        ld      r11, [r10 + START_MEM_SIZE]
        ld      r12, [r10 + START_PT_BASE]
        ld      r3, [r10 + START_PT_PAGES]
        shli    r3, r3, 12
        add     r3, r3, r12            ; [r12, r3): the bootstrap tables, pinned
        li      r1, 0                  ; the page
po_fill:
        add     r2, r1, r9
        bltu    r1, r12, po_a
        bltu    r1, r3, po_ro
po_a:   li      r14, PML4
        bltu    r1, r14, po_rw
        li      r14, PML4_B
        bltu    r1, r14, po_ro
        li      r14, PT_LOW
        bltu    r1, r14, po_rw
        li      r14, PT_LOW + 4096
        bltu    r1, r14, po_ro
po_rw:  ori     r2, r2, PTE_PWU
        jmp     po_store
po_ro:  ori     r2, r2, PTE_P | PTE_U
po_store:
        shri    r14, r1, 9
        li      r13, PT_LOW
        add     r13, r13, r14
        sd      r2, [r13]
        li      r14, 4096
        add     r1, r1, r14
        bltu    r1, r11, po_fill
        li      r13, PML4
        li      r14, PDPT | PTE_PWU
        add     r14, r14, r9
        sd      r14, [r13]
        li      r13, PDPT
        li      r14, PD | PTE_PWU
        add     r14, r14, r9
        sd      r14, [r13]
        li      r13, PD
        li      r14, PT_LOW | PTE_PWU
        add     r14, r14, r9
        sd      r14, [r13]
        li      r14, PT | PTE_PWU
        add     r14, r14, r9
        sd      r14, [r13 + 8]
        li      r1, 3 * 4096           ; the bootstrap L1 of the first 2 MiB: after the L4, L3, L2
        add     r12, r12, r1
        li      r13, PT_LOW
        li      r14, 1
        call    ro_and_pin
        li      r13, PT
        li      r14, 1
        call    ro_and_pin
        li      r13, PD
        li      r14, 2
        call    ro_and_pin
        li      r13, PDPT
        li      r14, 3
        call    ro_and_pin
        li      r13, PML4
        li      r14, 4
        call    ro_and_pin
        call    mmu_submit
        li      r13, PML4
        call    pv_set_cr3
        la      r10, start_info        ; the bootstrap tables unpinned, L4 first (§7.3): ordinary
        ld      r10, [r10]             ; pages again, so that only PT_LOW maps what is pinned later
        ld      r12, [r10 + START_PT_BASE]
        ld      r3, [r10 + START_PT_PAGES]
        add     r12, r12, r9
po_unpin:
        ori     r13, r12, MMU_CMD_UNPIN
        li      r14, 0
        call    mmu_queue
        li      r14, 4096
        add     r12, r12, r14
        addi    r3, r3, -1
        bnez    r3, po_unpin
        call    mmu_submit
        pop     r12
        pop     r11
        pop     r10
        pop     r9
        pop     r3
        pop     r2
        pop     r1
        ret

; pv_set_cr3: set_cr3 to the L4 at pseudo-physical r13 (§4.6): `mtcr cr3`; registers kept.
pv_set_cr3:
        push    r1
        push    r2
        push    r7
        la      r14, mem_base
        ld      r14, [r14]
        add     r1, r13, r14
        li      r2, 0
        hypercall HYPERCALL_SET_CR3
        bnez    r1, pv_bug
        pop     r7
        pop     r2
        pop     r1
        ret

; pv_invlpg: invlpg of the page at r13 (§4.7); registers kept.
pv_invlpg:
        push    r1
        push    r7
        mov     r1, r13
        hypercall HYPERCALL_INVLPG
        pop     r7
        pop     r1
        ret

; ro_and_pin: the batch that makes the table page r13 (pseudo-physical) read-only in the L1 r12
; maps it with (its pseudo-physical address), flushes it, and pins it at level r14.  The native
; kernel's tables are plain memory; a paravirtual kernel's are typed and read-only (§7.1).
ro_and_pin:
        push    r11
        push    r10
        push    r9
        la      r9, mem_base
        ld      r9, [r9]
        mov     r10, r14               ; the level
        mov     r11, r13               ; the page
        shri    r13, r11, 9            ; its L1 entry: 8 * (page >> 12)
        add     r13, r13, r12
        add     r13, r13, r9           ; machine; MMU_CMD_UPDATE
        add     r14, r11, r9
        ori     r14, r14, PTE_P | PTE_U
        call    mmu_queue
        ori     r13, r11, MMU_CMD_INVLPG
        li      r14, 0
        call    mmu_queue
        add     r13, r11, r9
        ori     r13, r13, MMU_CMD_PIN
        mov     r14, r10
        call    mmu_queue
        pop     r9
        pop     r10
        pop     r11
        ret

; pv_bug: a hypercall the library relies on was refused (r1 = -code): said, exit code 0xfe.
pv_bug:
        la      r14, pv_bug_code
        sd      r1, [r14]
        print   s_bug, s_bug_end - s_bug
        li      r13, 0xfe
        shutdown r13

; ---- the console ring (§9) ----
; con_ring: r12 = the console ring's address (start info).
con_ring:
        la      r12, start_info
        ld      r12, [r12]
        ld      r12, [r12 + START_CONSOLE_RING]
        ret

; con_putc: the byte r13 onto the output ring (the native `out CONSOLE_DATA`), sent by
; con_flush (one event for many bytes, §9) or when the ring is full.
con_putc:
        push    r12
        push    r11
        push    r10
        call    con_ring
cp_room:
        ld      r11, [r12 + CONS_OUT_PROD]
        ld      r10, [r12 + CONS_OUT_CONS]
        sub     r10, r11, r10
        li      r14, CONS_OUT_SIZE
        bltu    r10, r14, cp_put
        call    con_flush
        jmp     cp_room
cp_put: andi    r10, r11, CONS_OUT_SIZE - 1
        add     r10, r10, r12
        sb      r13, [r10 + CONS_OUT]
        addi    r11, r11, 1
        sd      r11, [r12 + CONS_OUT_PROD]
        li      r14, 1
        la      r10, con_unsent
        sd      r14, [r10]
        pop     r10
        pop     r11
        pop     r12
        ret

; con_status: r13 = input bytes waiting on the ring (the native CONSOLE_STATUS); when none,
; first a send, so that the VMM moves input still waiting into the ring (§9).
con_status:
        push    r12
        call    con_ring
        ld      r13, [r12 + CONS_IN_PROD]
        ld      r14, [r12 + CONS_IN_CONS]
        sub     r13, r13, r14
        bnez    r13, cs_done
        la      r14, con_unsent
        sd      r0, [r14]
        push    r1
        push    r7
        li      r1, PORT_CONSOLE
        hypercall HYPERCALL_EVTCHN_SEND
        bnez    r1, pv_bug
        pop     r7
        pop     r1
        ld      r13, [r12 + CONS_IN_PROD]
        ld      r14, [r12 + CONS_IN_CONS]
        sub     r13, r13, r14
cs_done:
        pop     r12
        ret

; con_getc: r13 = the next input byte, or all ones when none waits (the native CONSOLE_DATA).
con_getc:
        call    con_status
        beqz    r13, cg_none
        push    r12
        call    con_ring
        ld      r14, [r12 + CONS_IN_CONS]
        andi    r13, r14, CONS_IN_SIZE - 1
        add     r13, r13, r12
        lbu     r13, [r13 + CONS_IN]
        addi    r14, r14, 1
        sd      r14, [r12 + CONS_IN_CONS]
        pop     r12
        ret
cg_none:
        li      r13, -1
        ret

; ---- the block ring (§9): the native disk's registers and driver (conformance/guests/lib/disk.s) ----
; disk_start: a request of op r13 (BLK_OP_READ 1, BLK_OP_WRITE 2: the native DISK_CMD's) for
; the registers disk_sector, disk_count and disk_addr (a pseudo-physical buffer, made
; machine), then the send (§4.10).  Its response comes as an event on PORT_BLOCK.
disk_start:
        push    r1
        push    r7
        push    r12
        push    r11
        push    r10
        la      r12, start_info
        ld      r12, [r12]
        ld      r12, [r12 + START_BLOCK_RING]
        ld      r11, [r12 + BLK_REQ_PROD]
        andi    r10, r11, BLK_RING_SIZE - 1
        shli    r10, r10, 5            ; BLK_REQ_SIZE = 32
        add     r10, r10, r12
        sd      r11, [r10 + BLK_REQUESTS + BLK_REQ_ID]
        sw      r13, [r10 + BLK_REQUESTS + BLK_REQ_OP]
        la      r14, disk_count
        ld      r14, [r14]
        sw      r14, [r10 + BLK_REQUESTS + BLK_REQ_COUNT]
        la      r14, disk_sector
        ld      r14, [r14]
        sd      r14, [r10 + BLK_REQUESTS + BLK_REQ_SECTOR]
        la      r14, disk_addr
        ld      r14, [r14]
        la      r13, mem_base
        ld      r13, [r13]
        add     r14, r14, r13
        sd      r14, [r10 + BLK_REQUESTS + BLK_REQ_BUFFER]
        addi    r11, r11, 1
        sd      r11, [r12 + BLK_REQ_PROD]
        li      r1, PORT_BLOCK
        hypercall HYPERCALL_EVTCHN_SEND
        bnez    r1, pv_bug
        pop     r10
        pop     r11
        pop     r12
        pop     r7
        pop     r1
        ret

; disk_irq (bound to PORT_BLOCK, in the upcall): log vector 46 (IRQ 14's, the native guests'),
; take the responses: disk_status = DISK_STATUS_DONE for status 0, DISK_STATUS_ERROR for a
; refusal (the native disk's status codes), disk_flag = 1.
disk_irq:
        li      r13, 46
        call    log_event
        la      r12, start_info
        ld      r12, [r12]
        ld      r12, [r12 + START_BLOCK_RING]
        la      r9, disk_rsp_cons
        ld      r10, [r9]
di_next:
        ld      r11, [r12 + BLK_RSP_PROD]
        bgeu    r10, r11, di_done
        andi    r11, r10, BLK_RING_SIZE - 1
        shli    r11, r11, 4            ; BLK_RSP_SIZE = 16
        add     r11, r11, r12
        ld      r11, [r11 + BLK_RESPONSES + BLK_RSP_STATUS]
        li      r13, DISK_STATUS_DONE
        beqz    r11, di_status
        li      r13, DISK_STATUS_ERROR
di_status:
        la      r14, disk_status
        sd      r13, [r14]
        addi    r10, r10, 1
        jmp     di_next
di_done:
        sd      r10, [r9]
        la      r14, disk_flag
        li      r13, 1
        sd      r13, [r14]
        ret

; wait_disk: sleep until the disk's event has come, then r3 = its status; events masked on
; return (the native disk_driver's `wait`: cli; sti; hlt becomes the block hypercall).
wait_disk:
        ev_cli
        la      r3, disk_flag
        ld      r3, [r3]
        bnez    r3, wd_got
        block
        jmp     wait_disk
wd_got: la      r3, disk_flag
        sd      r0, [r3]
        la      r3, disk_status
        ld      r3, [r3]
        ret

; ---- the signature ----
finish:
        la      r13, sig_regs
        sd      r1, [r13]
        sd      r2, [r13 + 8]
        sd      r3, [r13 + 16]
        sd      r4, [r13 + 24]
        sd      r5, [r13 + 32]
        sd      r6, [r13 + 40]
        sd      r7, [r13 + 48]
        sd      r8, [r13 + 56]
        li      sp, KSTACK_TOP
        call    con_flush              ; the console ring's output first: it came first
        li      r11, SIGBUF            ; the text's cursor
        li      r9, 0
sig_reg:                               ; "rN=<hex>\n" for N = 1..8
        li      r12, 'r'
        sb      r12, [r11]
        addi    r12, r9, '1'
        sb      r12, [r11 + 1]
        li      r12, '='
        sb      r12, [r11 + 2]
        addi    r11, r11, 3
        shli    r12, r9, 3
        la      r10, sig_regs
        add     r12, r12, r10
        ld      r10, [r12]
        call    put_hex_nl
        addi    r9, r9, 1
        li      r12, 8
        bltu    r9, r12, sig_reg
        la      r10, s_exc             ; "exceptions=<count>\n" then one entry a line
        call    put_str
        la      r10, exlog_n
        ld      r9, [r10]
        mov     r10, r9
        call    put_hex_nl
        li      r12, EXLOG_MAX
        bgeu    r12, r9, sig_log
        mov     r9, r12
sig_log:
        la      r13, exlog
        shli    r9, r9, 3
        add     r9, r9, r13
sig_log_next:
        bgeu    r13, r9, sig_exit
        la      r10, s_event
        call    put_str
        ld      r10, [r13]
        call    put_hex_nl
        addi    r13, r13, 8
        jmp     sig_log_next
sig_exit:
        li      r1, SIGBUF
        sub     r2, r11, r1
        hypercall HYPERCALL_CONSOLE_WRITE
        la      r10, exit_code
        ld      r10, [r10]
        shutdown r10

; put_str: the zero-terminated string at r10 to the text at r11 (clobbers r10, r12).
put_str:
        lbu     r12, [r10]
        beqz    r12, pstr_done
        sb      r12, [r11]
        addi    r11, r11, 1
        addi    r10, r10, 1
        jmp     put_str
pstr_done:
        ret

; put_hex_nl: r10 as 16 hex digits and a newline to the text at r11 (clobbers r10, r12, r14).
put_hex_nl:
        li      r14, 60
phx_digit:
        shr     r12, r10, r14
        andi    r12, r12, 15
        addi    r12, r12, '0'
        push    r9
        li      r9, '9' + 1
        bltu    r12, r9, phx_out
        addi    r12, r12, 'a' - '9' - 1
phx_out:
        pop     r9
        sb      r12, [r11]
        addi    r11, r11, 1
        addi    r14, r14, -4
        bge     r14, r0, phx_digit
        li      r12, 10
        sb      r12, [r11]
        addi    r11, r11, 1
        ret

; con_flush: tell the VMM about console-ring output not yet sent (§9); registers kept.
con_flush:
        push    r1
        push    r7
        la      r14, con_unsent
        ld      r13, [r14]
        beqz    r13, cf_done
        sd      r0, [r14]
        li      r1, PORT_CONSOLE
        hypercall HYPERCALL_EVTCHN_SEND
        bnez    r1, pv_bug
cf_done:
        pop     r7
        pop     r1
        ret

s_exc:    .asciz "exceptions="
s_event:  .asciz "  event="
s_bug:    .ascii "paravirtual library: a hypercall it relies on was refused\n"
s_bug_end:

.align 8
start_info:     .quad 0
shared_info:    .quad 0
mem_base:       .quad 0
exit_code:      .quad 0
resume:         .quad 0
exlog_n:        .quad 0
exlog:          .space 8 * EXLOG_MAX
sig_regs:       .space 8 * 8
irq_handlers:   .space 8 * PV_NR_PORTS
timer_period:   .quad 0
timer_deadline: .quad 0
mmu_count:      .quad 0
con_unsent:     .quad 0
pv_bug_code:    .quad 0
disk_sector:    .quad 0
disk_count:     .quad 0
disk_addr:      .quad 0
disk_status:    .quad 0
disk_flag:      .quad 0
disk_rsp_cons:  .quad 0

        .align  4096
hypercall_page:                        ; filled by the VMM with its transport's stubs (§2.2)
        .space  4096
