"""The catalog entries: each mutant's record for the runner, its witness, and what is known of its base on that witness."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.api import CONTROL_LATENCY, HOST_TIMER_PERIOD, VMConfig
from conformance.mutation import Mutant
from reference_vmm.binary_translation.translator import GS_SMSW, GS_VA
from tests.mutants import binary_translation, compression, facts, paravirt
from tests.mutants.witness import Fact, OsWorkload, ParavirtProgram, Port, Program, Witness, kernel

__all__ = ["ENTRIES", "Entry"]


@dataclass(frozen=True)
class Entry:
    """A mutant and the evidence that it is a bug (its base VMM passes the same witness)."""

    mutant: Mutant
    witness: Witness


def _m(name: str, cls: str, base: str, prop: str, profiles: tuple[str, ...], bug: str) -> Mutant:
    module = {"hardware": "hardware", "hardware-ept": "hardware_ept", "trap-and-emulate": "trap_emulate",
              "emulate": "emulate", "binary-translation": "binary_translation", "paravirt": "paravirt"}[base]  # fmt: skip
    return Mutant(name, f"tests.mutants.{module}:{cls}", base, prop, profiles, bug)


HW = ("vtx-2006",)
EPT = ("vtx-2009",)
CLASSIC = ("classic-1974",)
X86 = ("x86-2005",)
X86_64 = ("x86-64-2005",)

# ---- witness programs ------------------------------------------------------------------------------

# TF set by popf: every instruction traps (#DB, counted in r2) until popf clears it, the `out`
# that exits to the VMM included (architecture §6.4).
SINGLE_STEP_OVER_OUT = kernel(
    """
        gate    1, h_db1, GATE_P
        li      r3, 0x100              ; FLAGS_TF
        push    r3
        popf
        nop
        li      r4, 'x'
        out     CONSOLE_DATA, r4
        addi    r1, r1, 1
        push    r0
        popf
""",
    """
h_db1:  addi    r2, r2, 1
        iret
""",
)

# A timer interrupt is pending while IF = 0; `sti` then an instruction whose first try is a
# hidden page fault (a fresh mapping under shadow paging): natively that load runs in sti's
# shadow, before the interrupt (§6.5), so the handler sees r1 = the loaded value.
_ARM_TIMER_AND_WAIT = """
        gate    32, h_t, GATE_P
        li      r3, 0xfffe
        out     PIC_MASK, r3
        li      r3, 20
        out     TIMER_COUNT, r3
        li      r3, 1                  ; enable, one-shot
        out     TIMER_CTRL, r3
        li      r4, 200
spin:   addi    r4, r4, -1
        bnez    r4, spin               ; IF = 0: the interrupt is pending by now
"""
_TIMER_HANDLER = """
h_t:    mov     r2, r1
        addi    r5, r5, 1
        li      r13, PIC_EOI
        out     PIC_CMD, r13
        iret
"""
STI_SHADOW_OVER_HIDDEN_FAULT = kernel(
    """
        li      r13, DATA
        li      r14, 0x77
        sd      r14, [r13]
        li      r13, PT
        li      r14, DATA | PTE_PWU
        sd      r14, [r13]             ; PAGED_VA -> DATA, never used yet
"""
    + _ARM_TIMER_AND_WAIT
    + """
        li      r6, PAGED_VA
        sti
        ld      r1, [r6]
        nop
        nop
        cli
""",
    _TIMER_HANDLER,
    paging=True,
)

# CR8 = 15 holds every PIC vector back (§6.5); the spin runs with IF = 1 and the interrupt
# pending; only after CR8 = 0 may it come: the handler copies r1 = 1 then.
TPR_HOLDS_THE_INTERRUPT = kernel(
    """
        li      r3, 15
        mtcr    cr8, r3
"""
    + _ARM_TIMER_AND_WAIT.replace(
        "bnez    r4, spin               ; IF = 0: the interrupt is pending by now", "bnez    r4, spin"
    )
    + """
        sti
        li      r4, 300
wait:   addi    r4, r4, -1
        bnez    r4, wait
        li      r1, 1
        mtcr    cr8, r0
        nop
        cli
""",
    _TIMER_HANDLER,
)

CR8_READS_BACK = kernel(
    """
        li      r3, 5
        mtcr    cr8, r3
        mfcr    r1, cr8
        mtcr    cr8, r0
"""
)

# wrmsr TSC then rdtsc: the TSC reads the value written plus the ticks since (architecture §9).
TSC_AFTER_WRMSR = kernel(
    """
        li      r3, 0x10               ; MSR_TSC
        li      r4, 0x100000
        wrmsr   r3, r4
        rdtsc   r1
        sub     r1, r1, r4
"""
)

# rdtsc around port output and a reflected fault: exits the guest must not see in its clock.
TSC_ACROSS_EXITS = kernel(
    """
        rdtsc   r1
        li      r3, 'x'
        out     CONSOLE_DATA, r3
        out     CONSOLE_DATA, r3
        ud
        rdtsc   r2
        sub     r1, r2, r1
        li      r2, 0
"""
)

VMCALL_IS_UD = kernel(
    """
        vmcall  0
        li      r1, 1
"""
)

# Loads a privileged register with an invalid operand: each is #GP(0) at CPL 0 (§2).
CR3_RESERVED_BITS = kernel(
    """
        li      r3, 1 << 60
        mtcr    cr3, r3
        mfcr    r1, cr3
"""
)
CR8_ABOVE_15 = kernel(
    """
        li      r3, 16
        mtcr    cr8, r3
        mfcr    r1, cr8
        mtcr    cr8, r0
"""
)
MSR_ABOVE_BITMAP = kernel(
    """
        li      r3, 0x4000
        rdmsr   r1, r3
"""
)

# Two live address spaces (lib/paging.s paging_spaces): PAGED_VA + 8 reads 0 in A and 7 in B.
CR3_SWITCH = kernel(
    """
        call    paging_spaces
        li      r6, PAGED_VA
        ld      r1, [r6 + 8]
        li      r3, PML4_B
        mtcr    cr3, r3
        ld      r2, [r6 + 8]
        li      r3, PML4
        mtcr    cr3, r3
        ld      r3, [r6 + 8]
""",
    paging=True,
)

# The one-shot timer wakes `sti; hlt`: halted time must pass for it to fire (architecture §9).
TIMER_WAKES_HLT = kernel(
    """
        gate    32, h_t, GATE_P
        li      r3, 0xfffe
        out     PIC_MASK, r3
        li      r3, 500
        out     TIMER_COUNT, r3
        li      r3, 1
        out     TIMER_CTRL, r3
        sti
        hlt
        cli
""",
    _TIMER_HANDLER,
)

# rdtsc before and after a hlt that waits for the timer: halted time counts (architecture §9).
TSC_ACROSS_HLT = TIMER_WAKES_HLT.replace(
    "        sti\n        hlt\n        cli\n",
    "        rdtsc   r7\n        sti\n        hlt\n        cli\n        rdtsc   r1\n        sub     r1, r1, r7\n"
    "        li      r7, 0\n",
)

LOAD_PAST_RAM = kernel(
    """
        li      r3, RAM_END
        ld      r1, [r3]
        li      r2, 1
"""
)

# The kernel irets to ring 1 (frame cs = 1), where mfcr is privileged: #GP(0) natively (§4.2).
RING1_PRIVILEGED = kernel(
    """
        la      r13, back1
        la      r14, resume
        sd      r13, [r14]
        li      r13, USTACK_TOP
        push    r13
        push    r0                     ; FLAGS 0
        li      r13, 1
        push    r13                    ; cs = 1
        la      r13, ring1
        push    r13
        iret
ring1:  mfcr    r1, cr0
        li      r2, 7
        int     VEC_BACK
back1:  li      sp, KSTACK_TOP
"""
)

# invlpg names the top page (never faults, §3); an exception after it still reaches the guest.
INVLPG_TOP_PAGE = kernel(
    """
        li      r3, -4096
        invlpg  [r3]
        ud
        li      r1, 1
"""
)

# Ring 3 reads PAGED_VA (-> DATA), the kernel remaps it to DATA + 4 KiB and invlpg's it, ring 3
# reads again: the new frame natively (§8.1).
REMAP_AFTER_USER_READ = kernel(
    """
        li      r13, DATA
        li      r14, 0x11
        sd      r14, [r13]
        li      r14, 0x22
        sd      r14, [r13 + 4096]
        li      r13, PT
        li      r14, DATA | PTE_PWU
        sd      r14, [r13]
        enter_user 0, back_a
        li      r6, PAGED_VA
        ld      r1, [r6]
        int     VEC_BACK
back_a: li      r13, PT
        li      r14, (DATA + 4096) | PTE_PWU
        sd      r14, [r13]
        li      r6, PAGED_VA
        invlpg  [r6]
        enter_user 0, back_b
        li      r6, PAGED_VA
        ld      r2, [r6]
        int     VEC_BACK
back_b: li      sp, KSTACK_TOP
""",
    paging=True,
)

# PAGED_VA mapped to a frame past RAM: the walk completes (A set in every entry, §7.5), then the
# access is #MC (§5.3 step 5), logged and skipped here; r1 = the PTE, r2 = the PD entry after.
ACCESSED_BITS_ON_MC = kernel(
    """
        gate    18, h_mc_skip1, GATE_P
        li      r13, PT
        li      r14, RAM_END | PTE_PWU
        sd      r14, [r13]
        li      r6, PAGED_VA
        ld      r3, [r6]
        li      r13, PT
        ld      r1, [r13]
        li      r13, PD
        ld      r2, [r13 + 8]
""",
    """
log_stub h_mc_skip1, 18, skip_noerr
""",
    paging=True,
)

# A timer interrupt pending while IF = 0, then `sti; hlt`: natively the interrupt is delivered
# after the hlt and wakes it (§6.5); the handler counts it in r5.
STI_HLT_WITH_PENDING_IRQ = kernel(
    _ARM_TIMER_AND_WAIT
    + """
        sti
        hlt
        cli
        li      r1, 1
""",
    _TIMER_HANDLER,
)

# A 16-bit port value: the PIC mask of both chips (docs/devices.md).
PORT_VALUE_WIDTH = kernel(
    """
        li      r3, 0x1ff
        out     PIC_MASK, r3
        in      r1, PIC_MASK
        li      r3, 0xffff
        out     PIC_MASK, r3
"""
)

SAR_NEGATIVE = kernel(
    """
        li      r3, -16
        sari    r1, r3, 2
        li      r4, 1
        sar     r2, r3, r4
"""
)

CONSOLE_INPUT = kernel(
    """
        in      r1, CONSOLE_STATUS
        in      r2, CONSOLE_DATA
        in      r3, CONSOLE_DATA
"""
)

# ---- witnesses of binary translation's in-TC sequences (reference_vmm/binary_translation) --------

# Calls, returns and rdtsc in one loop: from the second round on, everything runs in the TC
# without an exit, so r1 (the TSC after the last round) counts every sequence's ledger (§9).
TSC_AFTER_CALLS = kernel(
    """
        li      r4, 3
loop:   call    w_f
        rdtsc   r1
        addi    r4, r4, -1
        bnez    r4, loop
""",
    """
w_f:    addi    r3, r3, 1
        ret
""",
)

# A call whose push is the first touch of a fresh stack page: a hidden page fault inside the
# call's in-TC sequence, after it spilled r1 and sp; natively r1 = 0 and w_g sees sp - 8.
CALL_PUSH_FAULTS = kernel(
    """
        li      sp, 0x70000
        call    w_g
        li      sp, KSTACK_TOP
""",
    """
w_g:    mov     r2, sp
        ret
""",
)

# The virtual CPU's state that translated kernel code may change without an exit: cli (then
# pushf: IF = 0 natively, §6.5) and a TPR load (then lidt, a callout, and mfcr cr8: 5).
VCPU_WRITES_THEN_READS = kernel(
    """
        sti
        cli
        pushf
        pop     r1
        andi    r1, r1, FLAGS_IF
        li      r3, 5
        mtcr    cr8, r3
        li      r3, IDT
        lidt    r3
        mfcr    r2, cr8
        mtcr    cr8, r0
"""
)

# callr to two functions 16 KiB apart, whose guest pcs share bits 13:2 (one entry of the TC
# hash): natively r1 = r2 = 2.
CALLR_SAME_HASH_ENTRY = kernel(
    """
        li      r4, 2
loop:   la      r5, w_a
        callr   r5
        la      r5, w_b
        callr   r5
        addi    r4, r4, -1
        bnez    r4, loop
""",
    """
.org 0x8000
w_a:    addi    r1, r1, 1
        ret
.org 0xc000
w_b:    addi    r2, r2, 1
        ret
""",
)

# Ring 3 loads from the VMM's data (the virtual CR0 that smsw reads in GS), which the guest never mapped: #PF
# natively (fatal in lib/prelude.s: exit code 0xff).
USER_READS_GS = kernel(
    f"""
        enter_user 0, back_u
        li      r6, {GS_VA + GS_SMSW:#x}
        ld      r1, [r6]
        int     VEC_BACK
back_u: li      sp, KSTACK_TOP
""",
    paging=True,
)

# ---- the catalog ---------------------------------------------------------------------------------

# fmt: off
ENTRIES: tuple[Entry, ...] = (
    Entry(
        _m("hw-tf-lost-after-exit", "TfLostAfterExit", "hardware", "equivalence", HW,
           "clears TF when it completes an exiting instruction: the single-step #DB after it is lost"),
        Program(SINGLE_STEP_OVER_OUT),
    ),
    Entry(
        _m("hw-sti-shadow-ignored", "StiShadowIgnored", "hardware", "equivalence", HW,
           "injects an interrupt at an entry inside the sti shadow"),
        Program(STI_SHADOW_OVER_HIDDEN_FAULT),
    ),
    Entry(
        _m("hw-irq-dropped-in-sti-shadow", "LostInterruptStiHlt", "hardware", "equivalence", HW,
           "acknowledges at the PIC an interrupt the sti shadow holds back, and never injects it"),
        Program(STI_SHADOW_OVER_HIDDEN_FAULT),
    ),
    Entry(
        _m("hw-tpr-ignored", "TprIgnored", "hardware", "equivalence", HW,
           "injects external interrupts whatever the guest's TPR (CR8)"),
        Program(TPR_HOLDS_THE_INTERRUPT),
    ),
    Entry(
        _m("hw-cr8-write-dropped", "Cr8WriteDropped", "hardware", "equivalence", HW,
           "skips a CR8 load exit without storing the value: CR8 reads back 0"),
        Program(CR8_READS_BACK),
    ),
    Entry(
        _m("hw-tsc-wrmsr-off-by-one", "TscOffByOneAfterWrmsr", "hardware", "equivalence", HW,
           "takes the TSC offset of wrmsr TSC against the clock after the instruction: one tick late"),
        Program(TSC_AFTER_WRMSR),
    ),
    Entry(
        _m("hw-tick-per-exit", "TickPerExit", "hardware", "equivalence", HW,
           "charges one tick of the guest's clock per VM exit"),
        Program(TSC_ACROSS_EXITS),
    ),
    Entry(
        _m("hw-vmcall-raises", "VmcallRaises", "hardware", "equivalence", HW,
           "raises in the VMM on vmcall instead of giving the guest #UD"),
        Program(VMCALL_IS_UD),
    ),
    Entry(
        _m("hw-vmcall-skipped", "VmcallSkipped", "hardware", "equivalence", HW,
           "skips vmcall as a no-op instead of giving the guest #UD"),
        Program(VMCALL_IS_UD),
    ),
    Entry(
        _m("hw-cr-reserved-accepted", "CrReservedBitsAccepted", "hardware", "equivalence", HW,
           "takes a CR3 (or owned CR0/CR4) load with reserved bits instead of #GP(0)"),
        Program(CR3_RESERVED_BITS),
    ),
    Entry(
        _m("hw-cr8-above-15-truncated", "Cr8Above15Truncated", "hardware", "equivalence", HW,
           "truncates mtcr cr8 of a value above 15 instead of #GP(0)"),
        Program(CR8_ABOVE_15),
    ),
    Entry(
        _m("hw-msr-above-bitmap-ud", "MsrAboveBitmapUd", "hardware", "equivalence", HW,
           "gives #UD for rdmsr/wrmsr of an MSR above 16383, where P64 raises #GP(0)"),
        Program(MSR_ABOVE_BITMAP),
    ),
    Entry(
        _m("hw-cr3-switch-keeps-shadow", "Cr3SwitchKeepsShadow", "hardware", "equivalence", HW,
           "keeps the first address space's shadow across a CR3 switch to another"),
        Program(CR3_SWITCH),
    ),
    Entry(
        _m("hw-busy-idle", "BusyIdle", "hardware", "safety", HW,
           "idles a halted guest by re-entering it without advancing its clock: the timer never fires"),
        Program(TIMER_WAKES_HLT),
    ),
    Entry(
        _m("hw-host-run-per-instruction", "HostRunPerInstruction", "hardware", "efficiency", HW,
           "enters guest mode for one tick at a time: a host run per guest instruction"),
        Fact("host entries per 1,000 guest instructions of the compute guest", facts.host_entries_per_mille(50)),
    ),
    Entry(
        _m("hw-tpr-shadow-unused", "TprShadowUnused", "hardware", "efficiency", EPT,
           "leaves the host's TPR shadow unused: every CR8 load exits, as on a host without one"),
        # shadow paging takes one CR-access exit of its own there: the guest kernel's CR3 load
        Fact("VM exits on CR8 loads", facts.counter_above("vm_exit_cr_access", 1, CR8_READS_BACK)),
    ),
    Entry(
        _m("hw-dma-unbounded", "UnboundedDma", "hardware", "safety", HW,
           "does not bound the disk's DMA by the guest's RAM: a transfer past it lands in host memory"),
        Fact("host memory written outside every VM and the VMM's own pages", facts.dma_past_ram_writes_host),
    ),
    Entry(
        _m("hw-scratch-page", "ScratchPageInHostRam", "hardware", "safety", HW,
           "writes a scratch page at a fixed host address outside every region it owns"),
        Fact("host memory written outside every VM and the VMM's own pages", facts.quiet_guest_writes_host),
    ),
    # -- hardware-ept --
    Entry(
        _m("ept-gp-instead-of-mc", "GpInsteadOfMc", "hardware-ept", "equivalence", EPT,
           "reflects an access past the guest's RAM as #GP(0) instead of #MC"),
        Program(LOAD_PAST_RAM),
    ),
    Entry(
        _m("ept-nested-map-rounded-up", "NestedMapRoundedUp", "hardware-ept", "safety", EPT,
           "maps the guest's RAM rounded up to 2 MiB pages: its stores past RAM land in host memory"),
        Fact("host memory written outside every VM and the VMM's own pages", facts.store_past_ram_writes_host),
    ),
    Entry(
        _m("ept-tpr-shadow-ignored", "TprShadowIgnored", "hardware-ept", "equivalence", EPT,
           "injects interrupts whatever the guest's virtual TPR"),
        Program(TPR_HOLDS_THE_INTERRUPT),
    ),
    Entry(
        _m("ept-tsc-offset-stale", "TscOffsetStale", "hardware-ept", "equivalence", EPT,
           "writes TSC_OFFSET at the first entry only: halted time and TSC writes are lost to the guest's TSC"),
        Program(TSC_ACROSS_HLT),
    ),
    Entry(
        _m("ept-rdtsc-exiting", "RdtscExiting", "hardware-ept", "efficiency", EPT,
           "sets RDTSC exiting though TSC offsetting makes it needless"),
        Fact("VM exits on rdtsc", facts.counter_positive("vm_exit_rdtsc", TSC_ACROSS_EXITS)),
    ),
    Entry(
        _m("ept-cr8-exiting", "Cr8ExitingDespiteTprShadow", "hardware-ept", "efficiency", EPT,
           "sets CR8 load exiting though the TPR shadow handles CR8 loads"),
        Fact("VM exits on CR8 loads", facts.counter_positive("vm_exit_cr_access", CR8_READS_BACK)),
    ),
    Entry(
        _m("ept-passthrough-not-confined", "PassthroughNotConfined", "hardware-ept", "safety", ("vtx-2009+iommu",),
           "passes the second disk through without attaching it to the guest's IOMMU domain"),
        Fact("host memory written outside every VM and the VMM's own pages",
             facts.passthrough_dma_past_ram_writes_host),
    ),
    # -- trap-and-emulate --
    Entry(compression.MUTANT, compression.WITNESS),
    Entry(
        _m("te-ring1-keeps-kernel-rights", "Ring1KeepsKernelRights", "trap-and-emulate", "equivalence", CLASSIC,
           "takes guest CPL 1-2 back as CPL 0 after direct execution: ring 1 runs privileged instructions"),
        Program(RING1_PRIVILEGED),
    ),
    Entry(
        _m("te-guest-kernel-at-ring0", "GuestKernelAtRing0", "trap-and-emulate", "safety", X86,
           "runs the guest kernel at real ring 0: no deprivileging"),
        Fact("instructions retired at real CPL 0 in host mode", facts.kernel_runs_at_host_cpl0),
    ),
    Entry(
        _m("te-invlpg-drops-reserved-page", "InvlpgDropsReservedPage", "trap-and-emulate", "equivalence", X86,
           "lets invlpg of the top page unmap the VMM's IDT from the shadow"),
        Program(INVLPG_TOP_PAGE),
    ),
    Entry(
        _m("te-stale-user-shadow", "StaleUserShadow", "trap-and-emulate", "equivalence", CLASSIC,
           "drops a changed page-table entry's shadows in the current shadow only: ring 3 keeps the old mapping"),
        Program(REMAP_AFTER_USER_READ),
    ),
    Entry(
        _m("te-cr3-switch-keeps-shadow", "Cr3SwitchKeepsShadow", "trap-and-emulate", "equivalence", CLASSIC,
           "keeps the first address space's shadow across a CR3 switch to another"),
        Program(CR3_SWITCH),
    ),
    Entry(
        _m("te-no-accessed-bits-on-mc-walk", "NoAccessedBitsOnMcWalk", "trap-and-emulate", "equivalence", CLASSIC,
           "reflects the #MC of a completed walk by hand, without setting the walk's A bits"),
        Program(ACCESSED_BITS_ON_MC),
    ),
    Entry(
        _m("te-lost-interrupt-sti-hlt", "LostInterruptStiHlt", "trap-and-emulate", "equivalence", CLASSIC,
           "wakes a trapped hlt with the pending interrupt but never delivers it: after `sti; hlt` it is lost"),
        Program(STI_HLT_WITH_PENDING_IRQ),
    ),
    Entry(
        _m("te-tsc-ignores-guest-wrmsr", "TscIgnoresGuestWrmsr", "trap-and-emulate", "equivalence", X86,
           "loads the real TSC offset without the guest's own: rdtsc ignores the guest's wrmsr TSC"),
        Program(TSC_AFTER_WRMSR),
    ),
    Entry(
        _m("te-out-truncated-to-byte", "OutTruncatedToByte", "trap-and-emulate", "equivalence", X86,
           "truncates the guest kernel's port output to 8 bits (not a sensitive instruction: no deviation hides it)"),
        Program(PORT_VALUE_WIDTH),
    ),
    Entry(
        _m("te-slice-ignored", "SliceIgnored", "trap-and-emulate", "safety", X86,
           "runs each VM to its whole budget per turn: a `cli; jmp .` guest keeps the host"),
        Fact("the longest single host run", facts.host_run_longer_than(3_000)),
    ),
    # -- what only a multi-process guest shows: the witness is a p64os workload (conformance/test_os.py) --
    Entry(
        _m("hw-interrupt-lost-in-hidden-fault", "InterruptLostInHiddenFault", "hardware", "equivalence", HW,
           "ignores IDT_VECTORING_INFO at a hidden #PF: an external interrupt whose delivery faulted is lost"),
        OsWorkload("diskio", 1),
    ),
    Entry(
        _m("hw-freed-shadow-table-not-cleared", "FreedShadowTableNotCleared", "hardware", "equivalence", HW,
           "reuses a shadow page table freed by a dropped directory entry without clearing its old entries"),
        OsWorkload("forkwait", 2),
    ),
    Entry(
        _m("hw-write-protect-current-shadow-only", "WriteProtectCurrentShadowOnly", "hardware", "equivalence", HW,
           "write-protects a page that became a page table in the current shadow only, not in other CR3s' shadows"),
        OsWorkload("forkwait", 2),
    ),
    Entry(
        _m("hw-untraced-fast-store", "UntracedFastStore", "hardware", "equivalence", HW,
           "writes an emulated plain store without telling the shadow pager: only invlpg drops a changed entry"),
        OsWorkload("forkwait", 2),
    ),
    Entry(
        _m("te-lazy-write-protect", "LazyWriteProtect", "trap-and-emulate", "equivalence", X86,
           "leaves a PTE's write protection (fork's copy-on-write) to the guest's invlpg: a CR3 reload drops nothing"),
        OsWorkload("forkwait", 2),
    ),
    # -- emulate --
    Entry(
        _m("emu-sar-as-shr", "SarAsShr", "emulate", "equivalence", X86,
           "emulates sar/sari as a logical shift"),
        Program(SAR_NEGATIVE),
    ),
    Entry(
        _m("emu-console-input-dropped", "ConsoleInputDropped", "emulate", "equivalence", X86,
           "never gives the console's input to the guest"),
        Program(CONSOLE_INPUT, VMConfig(memory=1 << 20, budget=200_000, console_input=b"hi")),
    ),
    # -- binary-translation --
    Entry(
        _m("bt-ledger-off-by-one", "LedgerOffByOne", "binary-translation", "equivalence", X86,
           "adds every word of an in-TC sequence to its ledger, its guest tick too: the guest's clock loses a tick a run"),
        Program(TSC_AFTER_CALLS),
    ),
    Entry(
        _m("bt-rdtsc-ignores-ledgers", "RdtscIgnoresLedgers", "binary-translation", "equivalence", X86,
           "takes only its own words off the real TSC in rdtsc's sequence, not the ledgers of the sequences before it"),
        Program(TSC_AFTER_CALLS),
    ),
    Entry(
        _m("bt-spills-not-restored", "SpillsNotRestored", "binary-translation", "equivalence", X86,
           "settles a stop inside an in-TC sequence without restoring the registers it spilled to GS"),
        Program(CALL_PUSH_FAULTS),
    ),
    Entry(
        _m("bt-vcpu-not-read-back", "VcpuNotReadBack", "binary-translation", "equivalence", X86,
           "reads the ledgers back from GS at an exit, not the virtual IF or TPR that translated code wrote there"),
        Program(VCPU_WRITES_THEN_READS),
    ),
    Entry(
        _m("bt-hash-key-unchecked", "HashKeyUnchecked", "binary-translation", "equivalence", X86,
           "jumps to the fragment of the TC-hash entry without comparing its key: targets 16 KiB apart collide"),
        Program(CALLR_SAME_HASH_ENTRY),
    ),
    Entry(
        _m("bt-transfers-as-callouts", "TransfersAsCallouts", "binary-translation", "efficiency", X86_64,
           "translates call, callr, jr and ret as callouts: one VMM exit per transfer instead of an in-TC sequence"),
        Fact("host entries per 1,000 guest instructions of a kernel loop of calls and returns",
             binary_translation.host_entries_on_transfers(50)),
    ),
    Entry(
        _m("bt-sequences-spill-everything", "SequencesSpillEverything", "binary-translation", "efficiency", X86,
           "saves and reloads the whole register file in every transfer's in-TC sequence: 30 words longer each"),
        Fact("the thresholds of eff_calls.s the efficiency suite grades (the VMM's own instructions per 1,000)",
             binary_translation.eff_calls_shortfalls()),
    ),
    Entry(
        _m("bt-sequences-not-charged", "SequencesNotCharged", "binary-translation", "safety", X86,
           "does not charge the in-TC sequences' host ticks to the slice's share: a call-dense guest keeps the host"),
        Fact("host ticks of one VMM.run(HOST_TIMER_PERIOD) on a kernel loop of calls and returns",
             binary_translation.host_ticks_per_run_above(HOST_TIMER_PERIOD + CONTROL_LATENCY)),
    ),
    Entry(
        _m("bt-gs-user-accessible", "GsUserAccessible", "binary-translation", "safety", X86_64,
           "maps the VMM's data (GS) user-accessible: without a segment limit guest ring 3 reads and writes it"),
        Program(USER_READS_GS),
    ),
    # -- paravirt: the guest is ported to docs/paravirt-abi.md; its witnesses are paravirtual guests --
    Entry(
        _m("pv-pinned-table-writable", "PinnedTableWritable", "paravirt", "safety", X86,
           "checks rule 2 at pins only: an mmu_update maps a pinned page table writable, and through it any frame"),
        Fact("host memory written outside every VM and the VMM's own pages", paravirt.own_l1_writable_writes_host),
    ),
    Entry(
        _m("pv-owned-off-by-one-page", "OwnedOffByOnePage", "paravirt", "safety", X86,
           "compares a frame's last page with the end of the guest's memory by <=: the next VM's first frame is its own"),
        Fact("host memory written outside every VM and the VMM's own pages", paravirt.frame_past_end_writes_host),
    ),
    Entry(
        _m("pv-block-buffer-first-sector", "BlockBufferFirstSectorOnly", "paravirt", "safety", X86,
           "checks a block request's buffer for its first sector only: a long read runs past the guest's memory"),
        Fact("host memory written outside every VM and the VMM's own pages", paravirt.long_read_writes_host),
    ),
    Entry(
        _m("pv-upcall-while-masked", "UpcallWhileMasked", "paravirt", "equivalence", X86,
           "delivers an upcall while the guest's event mask (its virtual IF) is set"),
        Port("timer"),
    ),
    Entry(
        _m("pv-console-wrap-dropped", "ConsoleWrapDropped", "paravirt", "equivalence", X86,
           "copies the console ring's output as one run up to the ring's end: the bytes that wrapped are lost"),
        ParavirtProgram(paravirt.CONSOLE_WRAP, (), paravirt.CONSOLE_TEXT),
    ),
    Entry(
        _m("pv-invlpg-ignored", "InvlpgIgnored", "paravirt", "equivalence", X86,
           "ignores the invlpg hypercall, as if the host's TLB were flushed at every entry"),
        Port("spaces"),
    ),
    Entry(
        _m("pv-invlpg-request-ignored", "InvlpgRequestIgnored", "paravirt", "equivalence", X86,
           "validates an mmu_update batch's MMU_CMD_INVLPG and drops it: a changed entry's old translation stays"),
        OsWorkload("ktest", 1),
    ),
    Entry(
        _m("pv-set-timer-one-tick-late", "TimerOneTickLate", "paravirt", "equivalence", X86,
           "arms set_timer's one-shot at the deadline plus one: PORT_TIMER is raised a tick late"),
        ParavirtProgram(paravirt.TIMER_DEADLINE, ((1, 1),)),
    ),
    Entry(
        _m("pv-segment-limit-off", "SegmentLimitOff", "paravirt", "safety", X86,
           "loads no segment limit on x86-2005: the ring-1 kernel reads the VMM's pages above PV_VIRT_LIMIT"),
        ParavirtProgram(paravirt.READ_VMM_IDT, ((1, 0),)),
    ),
    Entry(
        _m("pv-user-on-kernel-table", "UserOnKernelTable", "paravirt", "equivalence", X86_64,
           "runs user mode on the kernel's table (every entry PTE_U) on the ring-3 hosts, not the user table"),
        OsWorkload("ktest", 1),
    ),
    Entry(
        _m("pv-vmcall-from-user", "VmcallFromUser", "paravirt", "equivalence", HW,
           "takes a vmcall from user mode as a hypercall instead of #UD"),
        ParavirtProgram(paravirt.USER_VMCALL, ((1, 0x55),)),
    ),
    Entry(
        _m("pv-fast-gate-through-vmm", "FastGateThroughVmm", "paravirt", "efficiency", X86 + HW,
           "keeps the fast system-call gate out of the real IDT: every system call enters the VMM"),
        Fact("host exits that are no hypercall while user mode makes fast system calls",
             paravirt.syscalls_enter_the_vmm),
    ),
    Entry(
        _m("pv-short-turns", "ShortTurns", "paravirt", "efficiency", X86,
           "enters the guest for at most 32 ticks at a time, to keep the shared info page's time current"),
        Fact("host entries per 1,000 guest instructions of a paravirtual kernel loop",
             paravirt.host_entries_per_mille_of_loop(20)),
    ),
)
# fmt: on
