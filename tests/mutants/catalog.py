"""The catalog entries: each mutant's record for the runner, its witness, and what is known of its base on that witness."""

from __future__ import annotations

from dataclasses import dataclass

from conformance.mutation import Mutant
from tests.mutants import facts
from tests.mutants.witness import Fact, Program, Witness, kernel

__all__ = ["ENTRIES", "Entry"]


@dataclass(frozen=True)
class Entry:
    """A mutant, the evidence that it is a bug, and a note when its base VMM is known to fail
    the same witness today (a bug of the base being fixed: the base check is then xfail)."""

    mutant: Mutant
    witness: Witness
    base_known_bug: str | None = None


def _m(name: str, cls: str, base: str, prop: str, profiles: tuple[str, ...], bug: str) -> Mutant:
    module = {"hardware": "hardware", "hardware-ept": "hardware_ept", "trap-and-emulate": "trap_emulate",
              "emulate": "emulate"}[base]  # fmt: skip
    return Mutant(name, f"tests.mutants.{module}:{cls}", base, prop, profiles, bug)


HW = ("vtx-2006",)
EPT = ("vtx-2009",)
CLASSIC = ("classic-1974",)
X86 = ("x86-2005",)

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
    + _ARM_TIMER_AND_WAIT.replace("bnez    r4, spin               ; IF = 0: the interrupt is pending by now", "bnez    r4, spin")
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

# ---- the catalog ---------------------------------------------------------------------------------

ENTRIES: tuple[Entry, ...] = (
    Entry(
        _m("hw-tf-lost-after-exit", "TfLostAfterExit", "hardware", "equivalence", HW,
           "clears TF when it completes an exiting instruction: the single-step #DB after it is lost"),
        Program(SINGLE_STEP_OVER_OUT),
        base_known_bug="hardware gives no #DB after an instruction it completed for the guest (skip)",
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
        _m("hw-hlt-exiting", "HltExiting", "hardware", "efficiency", HW,
           "sets HLT exiting: every guest hlt is a VM exit"),
        Fact("VM exits on hlt in a guest that waits for its timer", facts.counter_positive("vm_exit_hlt")),
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
)
