; The paravirtual arch layer of p64os: include/arch.s's macros as hypercalls and shared-page accesses (docs/paravirt-abi.md).
;
; The image builder (`os_image(paravirt=True)`, conformance/guest_os/__init__.py) assembles
; the same os.s with this file in place of include/arch.s: every other line of the kernel is
; the native one.  Nothing here is a privileged or sensitive instruction (architecture.md
; §4.2, §4.3; the ABI's §8): the kernel asks the VMM by hypercall (its `hypercall_page`, §2),
; `cli`/`sti` are stores to the shared info page (§5.1), traps arrive through a trap table
; (§6), and page tables are pinned and changed by `mmu_update` (§7).
;
; Devices: the kernel's drivers keep their port-level shape, and `io_in`/`io_out` call
; pv_io_in/pv_io_out (arch_code below), which serve each port from the rings and hypercalls:
; the console's output and input by the console ring (§9, a send per line of output), the
; disk by one block-ring request per command (§9), the timer by `set_timer` re-armed at
; each tick (§4.9), the PIC by nothing, RESULT_EXIT by `sched_op` shutdown (§4.8).  Events
; arrive as the upcall (§5.3), which pv_upcall turns into the interrupt vector of the port's
; device (the timer's, the console's, the disk's), so trap.s dispatches them unchanged.
;
; Addresses: the kernel's virtual addresses are pseudo-physical ones (§3), as they are
; physical ones natively; page-table entries hold machine addresses (pseudo-physical +
; mem_base).  pte_write adds mem_base to the frame of a present entry whose frame is below
; it, and pte_frame subtracts it: so the kernel computes with pseudo-physical frames as it
; does natively.  That rule needs mem_base = 0 or mem_base >= the memory's size (pv_boot
; checks it).
;
; Registers named by the caller are the only ones a macro touches, as in include/arch.s.
.include "pv.s"

; pv_call n: call hypercall stub n (§2.1): arguments in r1..r6, result in r1, r7 clobbered.
.macro pv_call n
        call    hypercall_page + PV_STUB_SIZE * \n
.endm

; pte_write ptr, val: one validated MMU_CMD_UPDATE (§4.5, §7.3) of the entry at ptr, sent at
; once, or queued while a batch is open (arch_batch_begin).
.macro pte_write ptr, val
        push    r1
        push    r2
        push    \val
        push    \ptr
        pop     r1
        pop     r2
        call    pv_pte_write
        pop     r2
        pop     r1
.endm

; pte_frame rd, rs: the pseudo-physical frame of entry rs (its machine frame - mem_base).
.macro pte_frame rd, rs
        shli    \rd, \rs, 12
        shri    \rd, \rd, 24
        shli    \rd, \rd, 12
        push    r7
        la      r7, pv_mem_base
        ld      r7, [r7]
        sub     \rd, \rd, r7
        pop     r7
.endm

; arch_set_cr3 reg: set_cr3 (§4.6) with the machine address of the PML4 at reg.
.macro arch_set_cr3 reg
        push    r1
        mov     r1, \reg
        call    pv_set_cr3
        pop     r1
.endm

; arch_reload_cr3 tmp: set_cr3 with the current base: the same flush (§4.6).
.macro arch_reload_cr3 tmp
        push    r1
        la      r1, cur_cr3
        ld      r1, [r1]
        call    pv_set_cr3
        pop     r1
.endm

; arch_get_cr2 reg: the virtual CR2 in shared info (§5.1, §6.2).
.macro arch_get_cr2 reg
        la      \reg, pv_shared
        ld      \reg, [\reg]
        ld      \reg, [\reg + SHARED_CR2]
.endm

; arch_set_cr0 / arch_set_cr4: paging is on from the first instruction (§3): nothing to do.
.macro arch_set_cr0 reg
.endm
.macro arch_set_cr4 reg
.endm

; arch_invlpg reg: the invlpg hypercall (§4.7) after the queued updates it must see; inside a
; batch, an MMU_CMD_INVLPG request in its place in the queue (§7.3).
.macro arch_invlpg reg
        push    r1
        mov     r1, \reg
        call    pv_invlpg
        pop     r1
.endm

; arch_set_kstack reg, tmp: stack_switch (§4.3).  Clobbers tmp.
.macro arch_set_kstack reg, tmp
        push    r1
        push    r7
        mov     r1, \reg
        pv_call HYPERCALL_STACK_SWITCH
        pop     r7
        pop     r1
.endm

; arch_lidt reg: the table at reg, with the upcall's entry added, becomes the trap table (§4.2, §6.1).
.macro arch_lidt reg
        push    r1
        mov     r1, \reg
        call    pv_set_trap_table
        pop     r1
.endm

; arch_cli / arch_sti: the event mask is a byte of shared info (§5.1); after sti a pending
; upcall is taken by the cheapest hypercall, version (§2.5).
.macro arch_cli
        call    pv_cli
.endm
.macro arch_sti
        call    pv_sti
.endm

; arch_idle: sched_op block (§4.8): events on, wait for one, take the upcall; then events off.
.macro arch_idle
        call    pv_idle
.endm

; arch_halt: unreachable here (the RESULT_EXIT before it is sched_op shutdown): ud stops the VM.
.macro arch_halt
        ud
.endm

; arch_iret: the iret hypercall, jumped to with r7 on top of the frame (§4.4).
.macro arch_iret
        push    r7
        jmp     hypercall_page + PV_STUB_SIZE * HYPERCALL_IRET
.endm

; io_in rd, port / io_out port, reg: the port served by pv_io_in / pv_io_out (arch_code).
.macro io_in rd, port
        push    r1
        li      r1, \port
        call    pv_io_in
        push    r1
        ld      r1, [sp + 8]
        ld      \rd, [sp]
        addi    sp, sp, 16
.endm
.macro io_out port, reg
        push    r1
        push    r2
        push    \reg
        pop     r2
        li      r1, \port
        call    pv_io_out
        pop     r2
        pop     r1
.endm

; arch_kvm_init: the kernel's tables at KPML4..UTEXT_PT, as natively, but with 4 KiB pages only
; (§7.2 refuses large ones): the page directory points to the bootstrap L1s (§3).
.macro arch_kvm_init
        call    pv_kvm_init
.endm

; arch_boot: keep start info (r1, §3) and the addresses the kernel needs from it.
.macro arch_boot
        call    pv_boot
.endm

; arch_mem_top reg: the frames below the PV area (§3) only.
.macro arch_mem_top reg
        la      \reg, pv_start
        ld      \reg, [\reg]
        addi    \reg, \reg, -PAGE_SIZE
.endm

; arch_new_table frame, shift / arch_new_l4 frame: pin the fresh table (§7.3); an L4 gets its
; user table too (§7.4, pv_new_l4).
.macro arch_new_table frame, shift
        push    r1
        push    r2
        push    r7
        push    \shift
        push    \frame
        pop     r1
        pop     r2
        addi    r2, r2, -12            ; the level below shift's: (shift - 12) / 9
        li      r7, 9
        divu    r2, r2, r7
        call    pv_pin
        pop     r7
        pop     r2
        pop     r1
.endm
.macro arch_new_l4 frame
        push    r1
        mov     r1, \frame
        call    pv_new_l4
        pop     r1
.endm

; arch_free_table frame / arch_free_uvm proc: unpin (§7.3) before the frame is an ordinary page.
; Inside a batch the frame is held back from the allocator (one reference more) until the
; batch has been sent, because the kfree that follows writes into it (pv_unpin).
.macro arch_free_table frame
        push    r1
        mov     r1, \frame
        call    pv_unpin
        pop     r1
.endm
.macro arch_free_uvm proc
        push    r1
        mov     r1, \proc
        call    pv_free_uvm
        pop     r1
.endm

; arch_batch_begin / arch_batch_end / arch_batch_sync: open a batch (pte_write, invlpg, the pins
; and unpins queue their requests), close it (the queue goes in one mmu_update, then the tables
; it unpinned go back to the allocator), send the queue now.
.macro arch_batch_begin
        call    pv_batch_begin
.endm
.macro arch_batch_end
        call    pv_batch_end
.endm
.macro arch_batch_sync
        call    pv_flush
.endm

; arch_code: the functions and data of this layer, and the hypercall page (§2.2).
.macro arch_code
        .include "arch_pv_code.s"
.endm
