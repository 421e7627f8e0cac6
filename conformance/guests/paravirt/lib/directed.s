; The start of every paravirtual directed guest: the native prelude's memory map, trap table and macros, ported to the ABI.
;
; A port of conformance/guests/<name>.s includes this file where the native guest includes
; lib/prelude.s, defines `main` (the kernel, virtual CPL 0) the same way, and ends with
; `.include "lib/end.s"` where the native one includes lib/signature.s.  What changes is what
; paravirtualization changes (docs/paravirt-abi.md §8): `lidt` and the IDT become the trap
; table and `set_trap_table` (§4.2), `iret` the `iret` hypercall (§4.4), the PIC's lines event
; channels (§5.2), `cli`/`sti` stores to the event mask (§5.1), `sti; hlt` the `block`
; hypercall (§4.8), port I/O the console and block rings (§9), CR3 and page-table stores
; `set_cr3` and `mmu_update` (§7).  The guest's own code, registers and results stay its own.
; Where the guest's body is the native one but for such operations, the two include one file,
; conformance/guests/lib/body_<name>.s, written with the names both libraries define —
; SYSCALL_GATE, user_mode, trap_return, read_cr2, write_bytes, pte_store, pte_load, flush_page,
; load_cr3 (natively in lib/prelude.s and lib/paging.s, here with the ABI's operations).
; Registers r13 and r14 belong to this library, as in the native prelude; every routine of it
; keeps r1-r12 (the guests' results) unless it says otherwise.
.include "pv.s"

.equ RAM_END, 0x100000                 ; the guests' memory: GUEST_MEMORY in conformance/guests
.equ PML4, 0x10000                     ; the native prelude's memory map (conformance/guests/lib/prelude.s)
.equ PDPT, 0x11000
.equ PD, 0x12000
.equ PT, 0x13000
.equ PML4_B, 0x14000                   ; lib/paging.s's second address space
.equ PDPT_B, 0x15000
.equ PD_B, 0x16000
.equ PT_B, 0x17000
.equ PT_LOW, 0x18000                   ; the L1 of the first 2 MiB: no large pages under the ABI (§7.2)
.equ IDT, 0x20000                      ; the trap table, where the native IDT is
.equ REQUESTS, 0x21000                 ; mmu_update batches (§7.3): 256 requests
.equ SIGBUF, 0x22000                   ; the signature's text, written with one console_write
.equ KSTACK_TOP, 0x30000
.equ USTACK_TOP, 0x40000
.equ DATA, 0x50000
.equ PAGED_VA, 0x200000
.equ PTE_PWU, PTE_P | PTE_W | PTE_U
.equ VEC_BACK, 0x80                    ; int 0x80 from user mode: back to the kernel
.equ EXLOG_MAX, 16
.equ MAX_REQUESTS, 256

; gate vec, handler, attrs: trap-table entry `vec` (§6.1, the native gate format) and the table
; installed again: the VMM copies it at set_trap_table (§4.2), so a later store alone changes nothing.
.macro gate vec, handler, attrs
        li      r13, IDT + 16 * \vec
        la      r14, \handler
        sd      r14, [r13]
        li      r14, \attrs
        sd      r14, [r13 + 8]
        call    install_traps
.endm

; enter_user back: the iret hypercall to user mode at the code that follows (§4.4), which
; returns with `int VEC_BACK` to the kernel at `back` with a fresh kernel stack.  User mode
; always runs with events enabled under the ABI (§4.4), so there is no FLAGS argument: the
; native guests' user FLAGS (IF = 0) are a machine state a paravirtual kernel does not choose.
.macro enter_user back
        la      r13, \back
        la      r14, resume
        sd      r13, [r14]
        li      r13, USTACK_TOP
        push    r13
        li      r13, FLAGS_IF
        push    r13
        li      r13, 3
        push    r13
        la      r13, ring\@
        push    r13
        push    r7
        pv_iret
ring\@:
.endm

; log_stub name, vector, tail: a handler that loads its vector into r13 and joins `tail`.
.macro log_stub name, vec, tail
\name:  push    r13
        li      r13, \vec
        jmp     \tail
.endm

; bind_irq port, handler: the routine `handler` serves event-channel `port` at each upcall
; (lib/end.s `upcall`), as the native guest's IRQ handler serves its PIC line: the binding of
; ports to the kernel's own interrupt numbers, as XenoLinux binds event channels to IRQs.  A
; handler is called with r1-r12 saved and restored around it: it reports through memory.
.macro bind_irq port, handler
        la      r13, \handler
        la      r14, irq_handlers + 8 * \port
        sd      r13, [r14]
.endm

; ev_cli / ev_sti: cli and sti — the event mask is the virtual IF (§5.1): a store, and for sti the `version`
; hypercall when an upcall is pending, to take it (§2.5).
.macro ev_cli
        li      r13, 1
        la      r14, shared_info
        ld      r14, [r14]
        sb      r13, [r14 + SHARED_EVENT_MASK]
.endm
.macro ev_sti
        call    pv_sti
.endm

; block: `sti; hlt` — the block hypercall sets the event mask to 0 and returns when an unmasked
; port is pending; the upcall is taken on its return (§4.8, §2.5).
.macro block
        call    pv_block
.endm

; unmask port / mask port: the port's mask byte (§5.2), the PIC mask bit of the native guests.
.macro unmask port
        li      r13, \port
        call    pv_unmask
.endm
.macro mask_all
        li      r13, 0x0101010101010101
        la      r14, shared_info
        ld      r14, [r14]
        sd      r13, [r14 + SHARED_EVTCHN_MASK]
.endm

; disk_set var, reg: a disk register (disk_sector, disk_count, disk_addr): the native
; `out DISK_SECTOR, reg` and its kind, kept for the next request (lib/end.s disk_start).
.macro disk_set var, reg
        la      r14, \var
        sd      \reg, [r14]
.endm

; The native library's names for what a port does otherwise (lib/prelude.s and lib/paging.s
; define them with the native instructions), used by the bodies the two share
; (conformance/guests/lib/body_<name>.s), as the guest OS's include/arch_pv.s beside arch.s.
.equ SYSCALL_GATE, FAST_GATE           ; §6.3: system calls reach the kernel without the VMM

; user_mode back: enter_user (user mode always runs with events enabled, §4.4).
.macro user_mode back
        enter_user \back
.endm

; trap_return: the iret hypercall from an event frame (§4.4), r7 pushed on top of it.
.macro trap_return
        push    r7
        pv_iret
.endm

; write_bytes: console_write of the r5 bytes at r4 (§4.12); r1 = bytes written, r4 past them,
; r2 and r7 kept (r7 is the event frame's, trap_return pushes it).
.macro write_bytes
        push    r7
        push    r2
        mov     r1, r4
        mov     r2, r5
        hypercall HYPERCALL_CONSOLE_WRITE
        pop     r2
        pop     r7
        add     r4, r4, r5
.endm

; read_cr2 reg: reg = SHARED_CR2, the address of the last page fault delivered (§6.2).
.macro read_cr2 reg
        la      \reg, shared_info
        ld      \reg, [\reg]
        ld      \reg, [\reg + SHARED_CR2]
.endm

; pte_store val, base, off: the entry at base + off = val by mmu_update (lib/end.s pte_set, §7.3);
; flush_page reg: invlpg of the page at reg (§4.7); load_cr3 reg: set_cr3 (§4.6); pte_load reg,
; base: the entry at base with its frame pseudo-physical again (lib/end.s pte_pseudo).  r13, r14
; clobbered.
.macro pte_store val, base, off
        push    \val
        addi    r13, \base, \off
        pop     r14
        call    pte_set
.endm
.macro flush_page reg
        mov     r13, \reg
        call    pv_invlpg
.endm
.macro load_cr3 reg
        mov     r13, \reg
        call    pv_set_cr3
.endm
.macro pte_load reg, base
        ld      r13, [\base]
        call    pte_pseudo
        mov     \reg, r13
.endm

; lib/disk.s's macros (docs/devices.md §6): checksum_sector, the native guests' own (its
; disk_driver, port I/O and `sti; hlt`, is lib/end.s wait_disk and disk_irq here).
.include "../../lib/disk.s"

; int_gate vec, handler: trap-table entry `vec` an interrupt gate of DPL 0 to `handler`, not yet
; installed (_start installs the table once, after its last entry).
.macro int_gate vec, handler
        li      r13, IDT + 16 * \vec
        la      r14, \handler
        call    set_gate_int
.endm

.org 0x1000
_start:
        li      sp, KSTACK_TOP
        la      r13, start_info        ; r1: start info (§3)
        sd      r1, [r13]
        ld      r14, [r1 + START_SHARED_INFO]
        la      r13, shared_info
        sd      r14, [r13]
        ld      r14, [r1 + START_MEM_BASE]
        la      r13, mem_base
        sd      r14, [r13]
        mask_all                       ; every line masked, as the PIC at reset
        int_gate 0, h_de
        int_gate 6, h_ud
        int_gate 8, h_df
        int_gate 13, h_gp
        int_gate 14, h_pf_fatal
        int_gate 17, h_ac
        int_gate 18, h_mc
        int_gate PV_UPCALL_VECTOR, upcall
        li      r13, IDT + 16 * VEC_BACK
        la      r14, h_back
        sd      r14, [r13]
        li      r14, INTERRUPT_GATE | GATE_DPL3
        sd      r14, [r13 + 8]
        call    install_traps
        li      r1, KSTACK_TOP         ; the stack of events from user mode: MSR_RSP0's (§4.3)
        hypercall HYPERCALL_STACK_SWITCH
        li      r1, 0                  ; every register as the native prelude leaves it
        li      r2, 0
        li      r7, 0
        jmp     main

