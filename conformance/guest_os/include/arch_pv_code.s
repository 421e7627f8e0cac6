; The code and data of the paravirtual arch layer (include/arch_pv.s), assembled into the kernel by arch_code.
;
; Every function here preserves every register but the result r1 where it has one: the
; macros of arch_pv.s stand where a single instruction stood natively.

        .align  8
pv_start_info:  .quad 0                ; start info (docs/paravirt-abi.md §3)
pv_shared:      .quad 0                ; shared info (§5)
pv_mem_base:    .quad 0                ; machine address of pseudo-physical 0
pv_start:       .quad 0                ; the PV area: the kernel's frames end below it
pv_cons:        .quad 0                ; the console ring (§9)
pv_blk:         .quad 0                ; the block ring (§9)
pv_quantum:     .quad 0                ; the timer's period (TIMER_COUNT)
pv_disk_regs:   .quad 0, 0, 0          ; DISK_SECTOR, DISK_COUNT, DISK_ADDR as written
pv_disk_status: .quad 0                ; DISK_CMD as it reads (devices.md §6)
pv_rsp_cons:    .quad 0                ; block responses consumed
pv_up_vec:      .quad 0                ; the vector pv_upcall hands to trap_common
pv_kl1:         .quad 0, 0, 0, 0, 0, 0, 0, 0  ; the bootstrap L1 of each 2 MiB (pseudo-physical)
pv_batch:       .quad 0                ; batches open (arch_batch_begin), nested
pv_nreq:        .quad 0                ; requests queued at pv_reqs, not sent yet
pv_reqs:        .space MMU_REQ_SIZE * MMU_UPDATE_MAX  ; the queue of mmu_update requests
.equ PV_HELD_MAX, 512
pv_nheld:       .quad 0                ; tables unpinned in the open batch, held from the allocator
pv_held:        .space 8 * PV_HELD_MAX ; their frames (pv_unpin, pv_release)
pv_out_prod:    .quad 0                ; console output bytes produced (published or not)
pv_msg_refused: .asciz "pv: hypercall refused "
pv_msg_base:    .asciz "mem_base inside the guest's memory"
pv_msg_twin:    .asciz "no memory for a user table"
        .align  8

; pv_boot(r1 = start info): keep what the kernel needs from it.  Clobbers nothing.
pv_boot:
        push    r2
        push    r3
        la      r2, pv_start_info
        sd      r1, [r2]
        ld      r3, [r1 + START_SHARED_INFO]
        la      r2, pv_shared
        sd      r3, [r2]
        ld      r3, [r1 + START_MEM_BASE]
        la      r2, pv_mem_base
        sd      r3, [r2]
        ld      r3, [r1 + START_PV_START]
        la      r2, pv_start
        sd      r3, [r2]
        ld      r3, [r1 + START_CONSOLE_RING]
        la      r2, pv_cons
        sd      r3, [r2]
        ld      r3, [r3 + CONS_OUT_PROD]
        la      r2, pv_out_prod
        sd      r3, [r2]
        ld      r3, [r1 + START_BLOCK_RING]
        la      r2, pv_blk
        sd      r3, [r2]
        ld      r3, [r1 + START_MEM_BASE]  ; pte_write's rule needs mem_base = 0 or >= mem_size
        beqz    r3, pv_boot_ok
        ld      r2, [r1 + START_MEM_SIZE]
        bgeu    r3, r2, pv_boot_ok
        la      r1, pv_msg_base
        call    panic
pv_boot_ok:
        pop     r3
        pop     r2
        ret

; pv_refused(r1 = -code): a hypercall the kernel needs was refused: say so and stop.
pv_refused:
        push    r1
        la      r1, pv_msg_refused
        call    kprint
        pop     r1
        sub     r1, r0, r1
        call    kprint_dec
        li      r1, 10
        call    kputc
        la      r1, kl_panic_msg
        call    panic

; pv_machine(r1 = pseudo-physical) -> r1 = machine address.
pv_machine:
        push    r2
        la      r2, pv_mem_base
        ld      r2, [r2]
        add     r1, r1, r2
        pop     r2
        ret

; pv_mmu(r1 = count): mmu_update of the first r1 requests at pv_reqs; a refusal stops the VM.
pv_mmu:
        push    r2
        push    r7
        mov     r2, r1
        la      r1, pv_reqs
        pv_call HYPERCALL_MMU_UPDATE
        blt     r1, r0, pv_refused
        pop     r7
        pop     r2
        ret

; pv_append(r2 = ptr, r3 = val): queue one request; a full queue is sent at once (§4.5: at
; most MMU_UPDATE_MAX a call).  Requests are applied in the order queued (§7.3).
pv_append:
        push    r1
        push    r4
        push    r5
        la      r5, pv_nreq
        ld      r1, [r5]
        shli    r4, r1, 4              ; MMU_REQ_SIZE = 16
        la      r5, pv_reqs
        add     r4, r4, r5
        sd      r2, [r4 + MMU_REQ_PTR]
        sd      r3, [r4 + MMU_REQ_VAL]
        addi    r1, r1, 1
        la      r5, pv_nreq
        sd      r1, [r5]
        li      r4, MMU_UPDATE_MAX
        bltu    r1, r4, pv_append_done
        call    pv_flush
pv_append_done:
        pop     r5
        pop     r4
        pop     r1
        ret

; pv_flush(): the queued requests in one mmu_update (nothing queued: no hypercall); a refusal
; stops the VM, as pv_mmu does.  Called before whatever must see them: set_cr3, invlpg.
pv_flush:
        push    r1
        push    r2
        la      r2, pv_nreq
        ld      r1, [r2]
        beqz    r1, pv_flush_done
        sd      r0, [r2]
        call    pv_mmu
pv_flush_done:
        pop     r2
        pop     r1
        ret

; pv_settle(): outside a batch, the queue goes now; inside one it waits for pv_batch_end.
pv_settle:
        push    r1
        la      r1, pv_batch
        ld      r1, [r1]
        bnez    r1, pv_settle_done
        call    pv_flush
pv_settle_done:
        pop     r1
        ret

; pv_batch_begin() / pv_batch_end(): open a batch; close it and send the queue (arch_batch_*).
; Batches nest (a fault's batch inside a system call's): the outermost end sends the queue.
pv_batch_begin:
        push    r1
        push    r2
        la      r1, pv_batch
        ld      r2, [r1]
        addi    r2, r2, 1
        sd      r2, [r1]
        pop     r2
        pop     r1
        ret
pv_batch_end:
        push    r1
        push    r2
        la      r1, pv_batch
        ld      r2, [r1]
        addi    r2, r2, -1
        sd      r2, [r1]
        bnez    r2, pv_batch_inner
        pop     r2
        pop     r1
        call    pv_flush
        jmp     pv_release
pv_batch_inner:
        pop     r2
        pop     r1
        ret

; pv_release(): the queue is sent: the tables it unpinned and mapped writable again go back to
; the allocator, each by the kfree its reference from pv_unpin was waiting for.  This is
; Linux's mmu_gather, which frees page-table pages only after the batch that unhooked them.
pv_release:
        push    r1
        push    r2
        push    r3
        push    r8
        push    r9
        la      r8, pv_nheld
        ld      r9, [r8]
        sd      r0, [r8]
        la      r8, pv_held
pv_release_loop:
        beqz    r9, pv_release_done
        ld      r1, [r8]
        call    kfree
        addi    r8, r8, 8
        addi    r9, r9, -1
        jmp     pv_release_loop
pv_release_done:
        pop     r9
        pop     r8
        pop     r3
        pop     r2
        pop     r1
        ret

; pv_invlpg(r1 = va): the page's translations dropped after the queued updates: an
; MMU_CMD_INVLPG request inside a batch (§7.3), else the queue then the invlpg hypercall (§4.7).
pv_invlpg:
        push    r1
        push    r2
        push    r3
        push    r7
        la      r2, pv_batch
        ld      r2, [r2]
        beqz    r2, pv_invlpg_now
        shri    r2, r1, 12
        shli    r2, r2, 12
        ori     r2, r2, MMU_CMD_INVLPG
        li      r3, 0
        call    pv_append
        jmp     pv_invlpg_done
pv_invlpg_now:
        call    pv_flush
        pv_call HYPERCALL_INVLPG
pv_invlpg_done:
        pop     r7
        pop     r3
        pop     r2
        pop     r1
        ret

; pv_pte(r2 = present entry or 0) -> r2 with a pseudo-physical frame made machine (the file header).
pv_pte:
        push    r3
        push    r4
        andi    r3, r2, PTE_P
        beqz    r3, pv_pte_done
        la      r3, pv_mem_base
        ld      r3, [r3]
        shli    r4, r2, 12             ; the frame
        shri    r4, r4, 24
        shli    r4, r4, 12
        bgeu    r4, r3, pv_pte_done    ; machine already (an entry read back from a table)
        add     r2, r2, r3
pv_pte_done:
        pop     r4
        pop     r3
        ret

; pv_pte_write(r1 = entry address, r2 = value): MMU_CMD_UPDATE of one entry (§7.3), queued.
pv_pte_write:
        push    r1
        push    r2
        push    r3
        push    r4
        call    pv_pte
        mov     r3, r2
        mov     r4, r1
        call    pv_machine
        mov     r2, r1                 ; ptr: MMU_CMD_UPDATE = 0 in bits 2:0
        call    pv_append
        mov     r1, r4
        call    pv_twin_entry          ; an L4's private slot: the same entry in its user table
        beqz    r1, pv_pte_write_done
        call    pv_machine
        mov     r2, r1
        call    pv_append
pv_pte_write_done:
        call    pv_settle
        pop     r4
        pop     r3
        pop     r2
        pop     r1
        ret

; The user table (docs/paravirt-abi.md §7.4).  Where the kernel runs at ring 3 the VMM runs
; user mode on a second top-level table, which set_cr3 names beside the kernel's: it must map
; only what user mode may reach, since every present entry has PTE_U there (§7.2).  Every L4
; of this kernel has one ("its twin"), built with it and pinned, passed at every set_cr3, on
; every host (elsewhere it is validated and unused, §4.6).  A twin maps the user text through
; tables shared by every twin (slot 0 -> pv_updpt -> pv_upd, whose entry 1 is the kernel's
; UTEXT_PT: the L1 is the kernel's own) and the process's private part through the kernel
; L4's own PDPT (slot 1, kept equal by pv_pte_write): the kernel's 2 MiB, the free frames and
; the tables are in none of them.  The kernel L4 keeps its twin's address in slot
; PV_TWIN_SLOT as a not-present entry, whose bits are the guest's (§7.2), so no table of the
; kernel's needs a field for it; pv_level says which frames are pinned L4s.
.equ PV_TWIN_SLOT, 255                 ; the last slot below the VMM's (§7.2 rule 4)

; pv_twin_entry(r1 = entry address, pseudo-physical) -> r1 = the address of the same entry in
; the user table, if the entry is a private slot (1 to PV_TWIN_SLOT - 1) of an L4 with one;
; else 0.
pv_twin_entry:
        push    r2
        push    r3
        shri    r2, r1, 12
        la      r3, pv_level
        add     r2, r2, r3
        lbu     r2, [r2]
        li      r3, 4
        bne     r2, r3, pv_twin_none
        andi    r2, r1, PAGE_SIZE - 1  ; the slot's offset
        beqz    r2, pv_twin_none       ; slot 0: the kernel's half, different in the twin
        li      r3, PV_TWIN_SLOT * 8
        bgeu    r2, r3, pv_twin_none
        sub     r1, r1, r2
        ld      r1, [r1 + PV_TWIN_SLOT * 8]
        beqz    r1, pv_twin_done
        add     r1, r1, r2
        jmp     pv_twin_done
pv_twin_none:
        li      r1, 0
pv_twin_done:
        pop     r3
        pop     r2
        ret

; pv_new_l4(r1 = frame): a fresh zeroed frame becomes an address space's L4 (arch_new_l4):
; its twin allocated, given the user text (slot 0) and pinned, its address stored in the L4's
; PV_TWIN_SLOT while the L4 is an ordinary page, then the L4 pinned.  No memory for the twin
; is a panic: the native kernel has no failure here to report.
pv_new_l4:
        push    r1
        push    r2
        push    r3
        push    r4
        push    r5
        mov     r4, r1
        call    kalloc
        beqz    r1, pv_new_l4_nomem
        mov     r5, r1
        la      r1, pv_updpt
        call    pv_machine
        ori     r1, r1, PTE_TABLE
        sd      r1, [r5]               ; plain stores: neither page is pinned yet
        sd      r5, [r4 + PV_TWIN_SLOT * 8]
        mov     r1, r5
        li      r2, 4
        call    pv_pin
        mov     r1, r4
        li      r2, 4
        call    pv_pin
        pop     r5
        pop     r4
        pop     r3
        pop     r2
        pop     r1
        ret
pv_new_l4_nomem:
        la      r1, pv_msg_twin
        call    panic

; pv_kmap(r1 = frame) -> r1 = the pseudo-physical address of the kernel's L1 entry mapping it.
pv_kmap:
        push    r2
        push    r3
        shri    r2, r1, 21
        shli    r2, r2, 3
        la      r3, pv_kl1
        add     r2, r2, r3
        ld      r2, [r2]
        shri    r1, r1, 12
        andi    r1, r1, 511
        shli    r1, r1, 3
        add     r1, r1, r2
        pop     r3
        pop     r2
        ret

; pv_pin(r1 = frame, r2 = level): the kernel's mapping of the frame read-only, its TLB entry
; dropped, then the pin (§7.3: a pinned page is never mapped writable), queued in that order.
pv_pin:
        push    r1
        push    r2
        push    r3
        push    r4
        push    r5
        mov     r4, r1
        mov     r5, r2
        shri    r1, r4, 12             ; pv_level: a table of this level from now
        la      r3, pv_level
        add     r1, r1, r3
        sb      r5, [r1]
        mov     r1, r4
        call    pv_kmap
        call    pv_machine
        mov     r2, r1
        mov     r1, r4
        call    pv_machine
        ori     r3, r1, PTE_P          ; supervisor, read-only
        call    pv_append
        ori     r2, r4, MMU_CMD_INVLPG
        li      r3, 0
        call    pv_append
        mov     r1, r4
        call    pv_machine
        ori     r2, r1, MMU_CMD_PIN
        mov     r3, r5
        call    pv_append
        call    pv_settle
        pop     r5
        pop     r4
        pop     r3
        pop     r2
        pop     r1
        ret

; pv_unpin(r1 = frame): unpin the table, then map the frame writable again (the allocator
; writes its free list into it).  Inside a batch these requests wait in the queue while the
; kernel goes on to kfree the frame: so the frame gets one reference more here, and keeps it
; until pv_release, after the queue is sent (a full list of held frames sends it early).
pv_unpin:
        push    r1
        push    r2
        push    r3
        push    r4
        mov     r4, r1
        shri    r1, r4, 12             ; pv_level: an ordinary page from now
        la      r3, pv_level
        add     r1, r1, r3
        sb      r0, [r1]
        mov     r1, r4
        call    pv_machine
        ori     r2, r1, MMU_CMD_UNPIN
        li      r3, 0
        call    pv_append
        mov     r1, r4
        call    pv_kmap
        call    pv_machine
        mov     r2, r1
        mov     r1, r4
        call    pv_machine
        ori     r3, r1, PTE_P | PTE_W
        call    pv_append
        ori     r2, r4, MMU_CMD_INVLPG
        li      r3, 0
        call    pv_append
        la      r2, pv_batch
        ld      r2, [r2]
        beqz    r2, pv_unpin_now
        mov     r1, r4                 ; hold the frame until the queue is sent
        call    kref_inc               ; clobbers r1, r2
        la      r1, pv_nheld
        ld      r2, [r1]
        shli    r3, r2, 3
        addi    r2, r2, 1
        sd      r2, [r1]
        la      r1, pv_held
        add     r1, r1, r3
        sd      r4, [r1]
        li      r1, PV_HELD_MAX
        bltu    r2, r1, pv_unpin_done
        call    pv_flush               ; the list is full: send, then release what it holds
        call    pv_release
        jmp     pv_unpin_done
pv_unpin_now:
        call    pv_flush
pv_unpin_done:
        pop     r4
        pop     r3
        pop     r2
        pop     r1
        ret

; pv_free_uvm(r1 = process): unpin its user table and PML4, then the PDPT, then the page
; directory: top down, so that no pinned table refers to the one unpinned (§7.3 PV_EINUSE).
; The user table is the layer's to free (pv_new_l4); the kernel frees the others.
pv_free_uvm:
        push    r1
        push    r2
        push    r3
        ld      r2, [r1 + P_PML4]
        ld      r1, [r2 + PV_TWIN_SLOT * 8]
        beqz    r1, pv_free_uvm_l4
        call    pv_unpin               ; the user table first: it refers to the PDPT
        ld      r1, [r2 + PV_TWIN_SLOT * 8]
        push    r2
        call    kfree                  ; the layer's own reference: freed after the batch
        pop     r2
pv_free_uvm_l4:
        mov     r1, r2
        call    pv_unpin
        ld      r3, [r2 + 8]           ; PML4[1]: the PDPT
        andi    r1, r3, PTE_P
        beqz    r1, pv_free_uvm_done
        pte_frame r2, r3
        mov     r1, r2
        call    pv_unpin
        ld      r3, [r2]               ; PDPT[0]: the page directory
        andi    r1, r3, PTE_P
        beqz    r1, pv_free_uvm_done
        pte_frame r1, r3
        call    pv_unpin
pv_free_uvm_done:
        pop     r3
        pop     r2
        pop     r1
        ret

; pv_set_cr3(r1 = pml4, pseudo-physical): set_cr3 (§4.6) with its user table as the user base,
; after the queue.
pv_set_cr3:
        call    pv_flush
        push    r1
        push    r2
        push    r7
        ld      r2, [r1 + PV_TWIN_SLOT * 8]   ; its user table (pv_new_l4, pv_kvm_init)
        beqz    r2, pv_set_cr3_go
        push    r1
        mov     r1, r2
        call    pv_machine
        mov     r2, r1
        pop     r1
pv_set_cr3_go:
        call    pv_machine
        pv_call HYPERCALL_SET_CR3
        blt     r1, r0, pv_refused
        pop     r7
        pop     r2
        pop     r1
        ret

; pv_kvm_init(): the kernel's tables (arch_kvm_init), pinned bottom up, and set_cr3.
pv_kvm_init:
        save_callee
        la      r8, pv_mem_base
        ld      r8, [r8]
        la      r1, pv_start_info      ; the bootstrap tables: L4[0] -> L3[0] -> L2[i] -> L1 (§3)
        ld      r1, [r1]
        ld      r1, [r1 + START_PT_BASE]
        ld      r2, [r1]
        pte_frame r1, r2
        ld      r2, [r1]
        pte_frame r1, r2               ; the L2
        la      r3, pv_kl1
        li      r4, 0
        li      r5, OS_MEMORY >> 21
        li      r9, KPD
pv_kvm_l2:
        ld      r2, [r1]
        pte_frame r6, r2
        sd      r6, [r3]
        add     r6, r6, r8
        ori     r6, r6, PTE_TABLE
        sd      r6, [r9]               ; KPD[i]: plain stores while it is an ordinary page
        addi    r1, r1, 8
        addi    r3, r3, 8
        addi    r9, r9, 8
        addi    r4, r4, 1
        bltu    r4, r5, pv_kvm_l2
        li      r1, KPD + 8            ; KPD[1]: the user text, as natively
        li      r2, UTEXT_PT | PTE_TABLE
        add     r2, r2, r8
        sd      r2, [r1]
        li      r1, UTEXT_PT
        li      r3, USER_TEXT
        li      r4, USER_TEXT_END
pv_kvm_utext:
        add     r2, r3, r8
        ori     r2, r2, PTE_UTEXT
        sd      r2, [r1]
        addi    r1, r1, 8
        addi    r3, r3, PAGE_SIZE
        bltu    r3, r4, pv_kvm_utext
        li      r1, KPDPT | PTE_TABLE
        add     r1, r1, r8
        li      r2, KPML4
        sd      r1, [r2]
        li      r1, KPD | PTE_TABLE
        add     r1, r1, r8
        li      r2, KPDPT
        sd      r1, [r2]
        li      r1, UTEXT_PT | PTE_TABLE   ; the user tables' shared part: the user text only
        add     r1, r1, r8
        la      r2, pv_upd
        sd      r1, [r2 + 8]
        la      r1, pv_upd
        add     r1, r1, r8
        ori     r1, r1, PTE_TABLE
        la      r2, pv_updpt
        sd      r1, [r2]
        la      r1, pv_updpt
        add     r1, r1, r8
        ori     r1, r1, PTE_TABLE
        la      r2, pv_kul4
        sd      r1, [r2]
        li      r1, KPML4              ; the kernel's address space has a user table too
        la      r2, pv_kul4
        sd      r2, [r1 + PV_TWIN_SLOT * 8]
        call    pv_batch_begin         ; the pins bottom up, in one batch
        li      r1, UTEXT_PT
        li      r2, 1
        call    pv_pin
        li      r1, KPD
        li      r2, 2
        call    pv_pin
        la      r1, pv_upd
        li      r2, 2
        call    pv_pin
        li      r1, KPDPT
        li      r2, 3
        call    pv_pin
        la      r1, pv_updpt
        li      r2, 3
        call    pv_pin
        li      r1, KPML4
        li      r2, 4
        call    pv_pin
        la      r1, pv_kul4
        li      r2, 4
        call    pv_pin
        call    pv_batch_end
        li      r1, KPML4
        call    pv_set_cr3
        la      r2, cur_cr3
        sd      r1, [r2]
        restore_callee
        ret

; pv_set_trap_table(r1 = table): add the upcall's interrupt gate (§5.3), make the system call's
; gate the fast one (§6.3), then set_trap_table.
pv_set_trap_table:
        push    r1
        push    r2
        push    r7
        la      r2, pv_upcall
        sd      r2, [r1 + GATE_SIZE * PV_UPCALL_VECTOR]
        li      r2, GATE_P
        sd      r2, [r1 + GATE_SIZE * PV_UPCALL_VECTOR + 8]
        la      r2, pv_syscall
        sd      r2, [r1 + GATE_SIZE * SYSCALL_VEC]
        li      r2, GATE_P | GATE_TRAP | GATE_DPL3 | PV_GATE_FAST
        sd      r2, [r1 + GATE_SIZE * SYSCALL_VEC + 8]
        pv_call HYPERCALL_SET_TRAP_TABLE
        blt     r1, r0, pv_refused
        pop     r7
        pop     r2
        pop     r1
        ret

; pv_syscall: the system call's entry through the fast gate (§6.3): Barham et al.'s "fast
; exception handler", which user mode reaches without entering the VMM where the host allows
; (a real trap gate to ring 1 on x86-2005, the guest-mode IDT under VT-x).  The ABI makes it a
; trap gate, so it arrives with events enabled: the mask goes up first, and then it is the
; native entry (tv_syscall), whose kernel runs with interrupts off.  An upcall the VMM
; delivers before that store finds nothing begun: it is served as an interrupt of the kernel
; at the gate (trap.s never preempts the kernel), and its iret comes back here.
pv_syscall:
        call    pv_cli
        jmp     tv_syscall

; pv_cli / pv_sti: the event mask (§5.1).
pv_cli:
        push    r1
        push    r2
        la      r1, pv_shared
        ld      r1, [r1]
        li      r2, 1
        sb      r2, [r1 + SHARED_EVENT_MASK]
        pop     r2
        pop     r1
        ret
pv_sti:
        push    r1
        push    r2
        push    r7
        la      r1, pv_shared
        ld      r1, [r1]
        sb      r0, [r1 + SHARED_EVENT_MASK]
        lbu     r2, [r1 + SHARED_UPCALL_PENDING]
        beqz    r2, pv_sti_done
        pv_call HYPERCALL_VERSION      ; take the pending upcall (§2.5)
pv_sti_done:
        pop     r7
        pop     r2
        pop     r1
        ret

; pv_idle(): sched_op block (§4.8), after sending the console output waiting in the ring; the
; upcall comes on its return; then events off again.
pv_idle:
        call    pv_cons_push           ; output waiting in the ring goes out before the wait
        push    r1
        push    r2
        push    r7
        li      r1, SCHEDOP_BLOCK
        li      r2, 0
        pv_call HYPERCALL_SCHED_OP
        call    pv_cli
        pop     r7
        pop     r2
        pop     r1
        ret

; pv_timer_arm(): set_timer(now + quantum) (§4.9), the periodic tick re-armed by the guest.
; Clobbers r1, r7.
pv_timer_arm:
        push    r2
        la      r1, pv_shared
        ld      r1, [r1]
        ld      r1, [r1 + SHARED_TIME]
        la      r2, pv_quantum
        ld      r2, [r2]
        add     r1, r1, r2
        pv_call HYPERCALL_SET_TIMER
        pop     r2
        ret

; pv_upcall: the trap table's upcall entry (§5.3).  It serves one port, as the device's
; interrupt: the disk's, then the console's, then the timer's (re-armed here); a port still
; pending is raised again with evtchn_unmask (§4.11) for the next upcall.
pv_upcall:
        push    r0                     ; the error code's place in trap.s's frame
        push    r7
        push    r1
        push    r2
        push    r3
        la      r3, pv_shared
        ld      r3, [r3]
        sb      r0, [r3 + SHARED_UPCALL_PENDING]
        lbu     r1, [r3 + SHARED_EVTCHN_PENDING + PORT_BLOCK]
        li      r2, VEC_DISK
        beqz    r1, pv_up_console
        sb      r0, [r3 + SHARED_EVTCHN_PENDING + PORT_BLOCK]
        jmp     pv_up_go
pv_up_console:
        lbu     r1, [r3 + SHARED_EVTCHN_PENDING + PORT_CONSOLE]
        li      r2, VEC_CONSOLE
        beqz    r1, pv_up_timer
        sb      r0, [r3 + SHARED_EVTCHN_PENDING + PORT_CONSOLE]
        jmp     pv_up_go
pv_up_timer:
        lbu     r1, [r3 + SHARED_EVTCHN_PENDING + PORT_TIMER]
        beqz    r1, pv_up_none
        sb      r0, [r3 + SHARED_EVTCHN_PENDING + PORT_TIMER]
        call    pv_timer_arm
        li      r2, VEC_TIMER
pv_up_go:
        la      r1, pv_up_vec
        sd      r2, [r1]
        li      r2, 0                  ; another port pending: raise it again
pv_up_more:
        add     r1, r3, r2
        lbu     r1, [r1 + SHARED_EVTCHN_PENDING]
        bnez    r1, pv_up_again
        addi    r2, r2, 1
        sltiu   r1, r2, PORT_BLOCK + 1
        bnez    r1, pv_up_more
        jmp     pv_up_enter
pv_up_again:
        mov     r1, r2
        pv_call HYPERCALL_EVTCHN_UNMASK
pv_up_enter:
        pop     r3
        pop     r2
        pop     r1
        la      r7, pv_up_vec
        ld      r7, [r7]
        jmp     trap_common
pv_up_none:
        pop     r3
        pop     r2
        pop     r1
        pop     r7
        addi    sp, sp, 8
        arch_iret

; pv_io_out(r1 = port, r2 = value): a port write, served by hypercalls and rings.
pv_io_out:
        push    r1
        push    r2
        push    r3
        push    r4
        push    r7
        li      r3, CONSOLE_DATA
        bne     r1, r3, pv_out_exit
        call    pv_cons_put
        jmp     pv_out_done
pv_out_exit:
        li      r3, RESULT_EXIT
        bne     r1, r3, pv_out_tcount
        li      r1, SCHEDOP_SHUTDOWN
        pv_call HYPERCALL_SCHED_OP     ; never returns
pv_out_tcount:
        li      r3, TIMER_COUNT
        bne     r1, r3, pv_out_tctrl
        la      r1, pv_quantum
        sd      r2, [r1]
        jmp     pv_out_done
pv_out_tctrl:
        li      r3, TIMER_CTRL
        bne     r1, r3, pv_out_dregs
        andi    r2, r2, TIMER_ENABLE
        beqz    r2, pv_out_toff
        call    pv_timer_arm
        jmp     pv_out_done
pv_out_toff:
        li      r1, 0
        pv_call HYPERCALL_SET_TIMER
        jmp     pv_out_done
pv_out_dregs:
        li      r3, DISK_SECTOR        ; DISK_SECTOR, DISK_COUNT, DISK_ADDR: kept for the command
        bltu    r1, r3, pv_out_done
        li      r4, DISK_CMD
        bgeu    r1, r4, pv_out_dcmd
        sub     r1, r1, r3
        shli    r1, r1, 3
        la      r3, pv_disk_regs
        add     r1, r1, r3
        sd      r2, [r1]
        jmp     pv_out_done
pv_out_dcmd:
        bne     r1, r4, pv_out_done
        la      r3, pv_disk_status
        bnez    r2, pv_out_request
        sd      r0, [r3]               ; DISK_CMD_ACK: idle
        jmp     pv_out_done
pv_out_request:
        li      r1, DISK_STATUS_BUSY
        sd      r1, [r3]
        call    pv_blk_request
pv_out_done:
        pop     r7
        pop     r4
        pop     r3
        pop     r2
        pop     r1
        ret

; Console output goes through the console ring's output direction (§9): each byte is stored
; in the ring, and the bytes produced are published (out_prod stored) and announced with one
; evtchn_send on PORT_CONSOLE per batch: at a newline, when the ring is full, before the
; kernel blocks (pv_idle) and whenever it sends on the port for input.  At shutdown the VMM
; writes what is left (§4.8).  One stream of bytes in the kernel's order, so echo and output
; keep their order; no byte goes by console_write.

; pv_cons_put(r2 = byte): one byte into the ring; a newline sends the batch.
pv_cons_put:
        push    r3
        push    r4
        push    r5
        push    r6
        la      r3, pv_cons
        ld      r3, [r3]
        la      r4, pv_out_prod
        ld      r4, [r4]
        ld      r5, [r3 + CONS_OUT_CONS]
        sub     r5, r4, r5
        li      r6, CONS_OUT_SIZE
        bltu    r5, r6, pv_cons_room
        call    pv_cons_wait           ; full: send, and wait for the VMM to consume
pv_cons_room:
        andi    r5, r4, CONS_OUT_SIZE - 1
        add     r5, r5, r3
        sb      r2, [r5 + CONS_OUT]
        addi    r4, r4, 1
        la      r5, pv_out_prod
        sd      r4, [r5]
        li      r5, 10
        bne     r2, r5, pv_cons_put_done
        call    pv_cons_push
pv_cons_put_done:
        pop     r6
        pop     r5
        pop     r4
        pop     r3
        ret

; pv_cons_publish() -> r1 = 1 if out_prod moved (bytes to announce), else 0: store out_prod.
pv_cons_publish:
        push    r2
        push    r3
        la      r2, pv_cons
        ld      r2, [r2]
        la      r3, pv_out_prod
        ld      r3, [r3]
        ld      r1, [r2 + CONS_OUT_PROD]
        sd      r3, [r2 + CONS_OUT_PROD]
        sub     r1, r3, r1
        sltu    r1, r0, r1
        pop     r3
        pop     r2
        ret

; pv_cons_push(): publish the bytes produced and, if there were any, send on PORT_CONSOLE.
pv_cons_push:
        push    r1
        push    r7
        call    pv_cons_publish
        beqz    r1, pv_cons_push_done
        li      r1, PORT_CONSOLE
        pv_call HYPERCALL_EVTCHN_SEND
pv_cons_push_done:
        pop     r7
        pop     r1
        ret

; pv_cons_wait(): the ring is full: publish and send until the VMM has consumed some of it,
; yielding between tries (the reference VMM consumes during the send, so never twice).
pv_cons_wait:
        push    r1
        push    r2
        push    r3
        push    r7
pv_cons_wait_loop:
        call    pv_cons_publish
        li      r1, PORT_CONSOLE
        pv_call HYPERCALL_EVTCHN_SEND
        la      r1, pv_cons
        ld      r1, [r1]
        ld      r2, [r1 + CONS_OUT_CONS]
        la      r3, pv_out_prod
        ld      r3, [r3]
        sub     r2, r3, r2
        li      r3, CONS_OUT_SIZE
        bltu    r2, r3, pv_cons_wait_done
        li      r1, SCHEDOP_YIELD
        li      r2, 0
        pv_call HYPERCALL_SCHED_OP
        jmp     pv_cons_wait_loop
pv_cons_wait_done:
        pop     r7
        pop     r3
        pop     r2
        pop     r1
        ret

; pv_blk_request(r2 = DISK_CMD_READ/WRITE = BLK_OP_READ/WRITE): one request on the block
; ring from the registers written, then evtchn_send (§9).  Clobbers r1, r3, r4, r7.
pv_blk_request:
        push    r5
        la      r5, pv_blk
        ld      r5, [r5]
        ld      r3, [r5 + BLK_REQ_PROD]
        andi    r4, r3, BLK_RING_SIZE - 1
        shli    r4, r4, 5              ; BLK_REQ_SIZE = 32
        add     r4, r4, r5
        addi    r4, r4, BLK_REQUESTS
        sd      r3, [r4 + BLK_REQ_ID]
        sw      r2, [r4 + BLK_REQ_OP]
        la      r1, pv_disk_regs
        ld      r2, [r1 + 8]
        sw      r2, [r4 + BLK_REQ_COUNT]
        ld      r2, [r1]
        sd      r2, [r4 + BLK_REQ_SECTOR]
        ld      r1, [r1 + 16]
        call    pv_machine
        sd      r1, [r4 + BLK_REQ_BUFFER]
        addi    r3, r3, 1
        sd      r3, [r5 + BLK_REQ_PROD]
        li      r1, PORT_BLOCK
        pv_call HYPERCALL_EVTCHN_SEND
        pop     r5
        ret

; pv_io_in(r1 = port) -> r1 = the value the port reads.  DISK_CMD reads busy only natively:
; here a read while the request has no response blocks until it has one, so the boot-time
; polling of disk_rw_poll waits in sched_op block, never spinning on the status.
pv_io_in:
        push    r2
        push    r3
        push    r4
        push    r7
        li      r2, CONSOLE_STATUS
        bne     r1, r2, pv_in_cdata
        la      r2, pv_cons
        ld      r2, [r2]
        ld      r3, [r2 + CONS_IN_PROD]
        ld      r4, [r2 + CONS_IN_CONS]
        sltu    r1, r4, r3             ; 1 while input waits
        jmp     pv_in_done
pv_in_cdata:
        li      r2, CONSOLE_DATA
        bne     r1, r2, pv_in_dsize
        la      r2, pv_cons
        ld      r2, [r2]
        ld      r3, [r2 + CONS_IN_CONS]
        andi    r4, r3, CONS_IN_SIZE - 1
        add     r4, r4, r2
        lbu     r4, [r4 + CONS_IN]
        addi    r3, r3, 1
        sd      r3, [r2 + CONS_IN_CONS]
        ld      r1, [r2 + CONS_IN_PROD]
        bne     r1, r3, pv_in_cbyte
        call    pv_cons_publish        ; the send takes the output produced so far too
        li      r1, PORT_CONSOLE       ; the ring is empty: the VMM may bring more (§9)
        pv_call HYPERCALL_EVTCHN_SEND
pv_in_cbyte:
        mov     r1, r4
        jmp     pv_in_done
pv_in_dsize:
        li      r2, DISK_SIZE
        bne     r1, r2, pv_in_dcmd
        la      r1, pv_start_info
        ld      r1, [r1]
        ld      r1, [r1 + START_BLOCK_SECTORS]
        bnez    r1, pv_in_done
        li      r1, -1                 ; no disk: the port is unclaimed
        jmp     pv_in_done
pv_in_dcmd:
        li      r2, DISK_CMD
        bne     r1, r2, pv_in_other
pv_in_dpoll:
        la      r3, pv_disk_status
        ld      r1, [r3]
        li      r2, DISK_STATUS_BUSY
        bne     r1, r2, pv_in_done
        la      r2, pv_blk             ; busy: has the response come?
        ld      r2, [r2]
        ld      r4, [r2 + BLK_RSP_PROD]
        la      r7, pv_rsp_cons
        ld      r1, [r7]
        beq     r1, r4, pv_in_busy
        andi    r4, r1, BLK_RING_SIZE - 1
        addi    r1, r1, 1
        sd      r1, [r7]
        shli    r4, r4, 4              ; BLK_RSP_SIZE = 16
        add     r4, r4, r2
        ld      r4, [r4 + BLK_RESPONSES + BLK_RSP_STATUS]
        li      r1, DISK_STATUS_DONE
        beqz    r4, pv_in_dstatus
        li      r1, DISK_STATUS_ERROR
pv_in_dstatus:
        sd      r1, [r3]
        jmp     pv_in_done
pv_in_busy:
        call    pv_idle                ; no response yet: block until PORT_BLOCK's event (§4.8),
        jmp     pv_in_dpoll            ; whose upcall may consume the response, then look again
pv_in_other:
        li      r1, 0                  ; the PIC and the rest: nothing to read
pv_in_done:
        pop     r7
        pop     r4
        pop     r3
        pop     r2
        ret

; The level each frame is pinned at, one byte per frame (0: an ordinary page; pv_pin, pv_unpin).
pv_level:       .space  OS_MEMORY >> 12

; The user tables' shared part and the kernel address space's user table (pv_kvm_init).
        .align  4096
pv_upd:         .space  4096           ; page directory: entry 1 the user text's L1 (UTEXT_PT)
pv_updpt:       .space  4096           ; PDPT: entry 0 pv_upd
pv_kul4:        .space  4096           ; KPML4's user table: slot 0 pv_updpt, nothing private

; The page the VMM fills with the hypercall stubs (§2.2).
        .align  4096
hypercall_page:
        .space  4096
