; Every privileged operation p64os makes, one macro each: the one file a paravirtual build changes.
;
; The kernel never writes a privileged instruction itself (architecture.md §4.3 lists them):
; it calls these macros.  A Xen-style paravirtual build (Fisher-Ogden 2006 §2.2) replaces
; this file only: `pte_write` becomes a queued, batched page-table update hypercall, the
; CR3/RSP0/IDT writes become hypercalls, and cli/sti become stores to a virtual IF in a page
; shared with the monitor.  Page-table stores go through `pte_write` even where the table is
; not live yet, because a shadow-paging monitor traces them (Adams & Agesen 2006, "traced
; PTEs"): the kernel must not have a second, untraced way of writing one.
;
; Registers named by the caller are the only ones a macro touches.

; pte_write ptr, val: store the page-table entry `val` at `ptr` (a register, or `reg + off`).
; The caller invalidates the TLB afterwards when the old entry may be cached (§8.1).
.macro pte_write ptr, val
        sd      \val, [\ptr]
.endm

; arch_set_cr3 reg: switch address spaces (CR3 = reg); drops non-global TLB entries (§2, §8.1).
.macro arch_set_cr3 reg
        mtcr    cr3, \reg
.endm

; arch_reload_cr3 tmp: write CR3 with its own value, flushing every non-global translation:
; cheaper than one invlpg per entry when many PTEs changed at once (fork's write protection).
.macro arch_reload_cr3 tmp
        mfcr    \tmp, cr3
        mtcr    cr3, \tmp
.endm

; arch_get_cr2 reg: the linear address of the last page fault (§2, §7.5).
.macro arch_get_cr2 reg
        mfcr    \reg, cr2
.endm

; arch_set_cr0 reg / arch_set_cr4 reg: machine status and paging mode (§2).
.macro arch_set_cr0 reg
        mtcr    cr0, \reg
.endm
.macro arch_set_cr4 reg
        mtcr    cr4, \reg
.endm

; arch_invlpg reg: drop the cached translations of the page containing the address in reg (§8.1).
.macro arch_invlpg reg
        invlpg  [\reg]
.endm

; arch_set_kstack reg, tmp: the stack the CPU switches to when an event enters ring 0 from
; user mode (MSR_RSP0, §6.3 step 6).  Clobbers tmp.
.macro arch_set_kstack reg, tmp
        li      \tmp, MSR_RSP0
        wrmsr   \tmp, \reg
.endm

; arch_lidt reg: load the IDT's linear address (§6.2).
.macro arch_lidt reg
        lidt    \reg
.endm

; arch_cli / arch_sti: interrupts off / on (FLAGS.IF, §6.5).
.macro arch_cli
        cli
.endm
.macro arch_sti
        sti
.endm

; arch_idle: wait for an interrupt with interrupts enabled, then disable them again.  `sti`
; holds interrupts off for one instruction, so an interrupt that is already pending is taken
; at the `hlt`, never lost between the two (§6.5).
.macro arch_idle
        sti
        hlt
        cli
.endm

; arch_halt: stop for good (interrupts off, so nothing wakes the CPU; §6.5).
.macro arch_halt
        cli
        hlt
.endm

; arch_iret: return from a trap frame (pc, cs, FLAGS, sp at sp; §6.4).
.macro arch_iret
        iret
.endm

; io_in rd, port / io_out port, reg: port I/O (§3: the port is an immediate or `reg + imm`).
.macro io_in rd, port
        in      \rd, \port
.endm
.macro io_out port, reg
        out     \port, \reg
.endm

; arch_kvm_init: build the kernel's tables and turn paging on (4 levels, global pages; kernel/vm.s
; kvm_init, README memory map): PML4[0] -> KPDPT -> KPD, whose entry 0 maps the kernel's 2 MiB,
; entry 1 the user text's page table, and the rest the free frames as 2 MiB pages (§7).
.macro arch_kvm_init
        li      r1, KPML4
        li      r2, KPDPT | PTE_TABLE
        pte_write r1, r2
        li      r1, KPDPT
        li      r2, KPD | PTE_TABLE
        pte_write r1, r2
        li      r1, KPD                ; PD[0]: the kernel's 2 MiB, supervisor only
        li      r2, PTE_KLARGE
        pte_write r1, r2
        li      r2, UTEXT_PT | PTE_TABLE   ; PD[1]: the user text, 4 KiB pages
        pte_write r1 + 8, r2
        addi    r1, r1, 16             ; PD[2..]: the free frames, 2 MiB pages
        li      r3, FREE_START
        li      r4, OS_MEMORY
        li      r5, 0x200000
vm_kpd_loop:
        ori     r2, r3, PTE_KLARGE
        pte_write r1, r2
        addi    r1, r1, 8
        add     r3, r3, r5
        bltu    r3, r4, vm_kpd_loop
        li      r1, UTEXT_PT
        li      r3, USER_TEXT
        li      r4, USER_TEXT_END
vm_utext_loop:
        ori     r2, r3, PTE_UTEXT
        pte_write r1, r2
        addi    r1, r1, 8
        addi    r3, r3, PAGE_SIZE
        bltu    r3, r4, vm_utext_loop
        li      r1, CR4_PL4 | CR4_PGE
        arch_set_cr4 r1
        li      r1, KPML4
        arch_set_cr3 r1
        la      r2, cur_cr3
        sd      r1, [r2]
        li      r1, CR0_PE | CR0_PG
        arch_set_cr0 r1
.endm

; arch_boot: the first thing `boot` does after setting its stack (nothing natively: the reset
; state is all it needs, §2).
.macro arch_boot
.endm

; arch_code: the functions and data the arch layer needs in the kernel image (none natively).
.macro arch_code
.endm

; pte_frame rd, rs: the frame address of entry rs (bits 51:12; bits 63:52 and 11:0 cleared).
.macro pte_frame rd, rs
        shli    \rd, \rs, 12
        shri    \rd, \rd, 24
        shli    \rd, \rd, 12
.endm

; arch_mem_top reg: reg holds the last frame of RAM (OS_MEMORY - PAGE_SIZE); lower it if the
; platform keeps memory at the top (nothing natively).
.macro arch_mem_top reg
.endm

; arch_new_table frame, shift / arch_new_l4 frame: a fresh zeroed frame becomes a page table of
; the level below the one whose index shift is in register `shift` (39, 30, 21), or a PML4;
; called before its first entry is written (nothing natively: any frame may be a table, §7.1).
.macro arch_new_table frame, shift
.endm
.macro arch_new_l4 frame
.endm

; arch_batch_begin / arch_batch_end: the page-table writes and invalidations between them may
; be queued and applied together at the end, and a table freed between them (arch_free_table,
; arch_free_uvm) is reused only after it (nothing natively: a store takes effect at once).
; The paravirtual build sends them as one mmu_update batch, as XenoLinux did to "amortize
; each hypercall across 2048 updates" (Barham et al. 2003; docs/paravirt-abi.md §4.5, §7.3).
; Batches may nest.  arch_batch_sync: inside a batch, before the kernel reads back entries it
; wrote in it.
.macro arch_batch_begin
.endm
.macro arch_batch_end
.endm
.macro arch_batch_sync
.endm

; arch_free_table frame: a page table no present entry refers to any more goes back to the
; allocator; arch_free_uvm proc: the same for a dead process's PML4, PDPT and page directory
; (nothing natively).
.macro arch_free_table frame
.endm
.macro arch_free_uvm proc
.endm
