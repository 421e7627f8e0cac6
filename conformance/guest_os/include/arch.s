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
