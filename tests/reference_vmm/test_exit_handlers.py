"""The exit handlers of the hardware-assisted reference VMMs, one by one, on real VM exits of tiny guests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cffi_core.asm import assemble
from cffi_core.exits import ExitReason
from cffi_core.machine import Machine
from cffi_core.pagetables import EPT_W
from cffi_core.vmx import EventInfo, IntrType, PinControl, ProcControl, Vmcs, VmcsField, VmExitReason, intr_info
from conformance.api import COUNTER_EMULATED, VMConfig, default_host_memory
from reference_vmm.hardware import HardwareVMM, guest_mode
from reference_vmm.hardware import monitor as shadow_monitor
from reference_vmm.hardware.guest_mode import SHUTDOWN, GuestModeVM, GuestModeVMM
from reference_vmm.hardware_ept import HardwareEptVMM
from reference_vmm.hardware_ept import monitor as nested_monitor

F = VmcsField
R = VmExitReason
HW = IntrType.HARDWARE_EXCEPTION
SHADOW, NESTED = "hardware", "hardware-ept"
VMMS: dict[str, tuple[type[GuestModeVMM], str]] = {
    SHADOW: (HardwareVMM, "vtx-2006"),
    NESTED: (HardwareEptVMM, "vtx-2009"),
}
BOTH = pytest.mark.parametrize("kind", [SHADOW, NESTED])
MEMORY = 1 << 20  # guest RAM: an access at or above it is beyond RAM (architecture §5.1)
V_UD, V_DF, V_GP, V_PF, V_MC = 6, 8, 13, 14, 18  # architecture §6.1
PF_P, PF_W, PF_U, PF_I = 1, 2, 4, 16  # architecture §7.5
CR0_PE, CR0_TS, CR0_WP, CR0_PG = 1, 1 << 3, 1 << 4, 1 << 15  # architecture §2
CR4_TSD, CR4_PGE = 1 << 2, 1 << 7
MSR_TSC = 0x10
ENTRY_BUDGET = 10_000
FRAME = ((1 << 52) - 1) & ~0xFFF  # bits 51:12 of an entry (architecture §7.2)

# The start of every guest: an IDT, a kernel stack, and the names the programs use.  A guest
# signals the test with an `out` to MARK (every port exits to the VMM, docs/vmx.md V.3).
PRELUDE = """
.equ IDT, 0x20000
.equ KSTACK, 0x30000
.equ FRESH_STACK, 0x38000       ; a stack page nothing has touched yet
.equ MSR_TSC, 0x10
.equ MSR_RSP0, 0x100
.equ MARK, 0xe9
.equ GATE, 1                    ; present interrupt gate, ring 0, DPL 0 (architecture §6.2)
.equ GATE_DPL3, 1 | 3 << 4
.equ CR0_PE, 1
.equ CR0_TS, 1 << 3
.equ CR0_WP, 1 << 4
.equ CR0_PG, 1 << 15
.equ CR4_TSD, 1 << 2
.equ PTE_P, 1
.equ PTE_W, 2
.equ PTE_U, 4
.equ PTE_PS, 1 << 7
.equ PTE_NX, 1 << 63
.equ PML4, 0x10000
.equ PDPT, 0x11000
.equ PD, 0x12000
.equ PT, 0x13000                ; the 4 KiB pages of VA 0x200000..0x3fffff
.equ WINDOW, 0x200000
.macro gate vec, handler, attrs
        li      r13, IDT + 16 * \\vec
        la      r14, \\handler
        sd      r14, [r13]
        li      r14, \\attrs
        sd      r14, [r13 + 8]
.endm
.macro map va, entry
        li      r13, PT + 8 * ((\\va - WINDOW) >> 12)
        li      r14, \\entry
        sd      r14, [r13]
.endm
.org 0x1000
_start: li      sp, KSTACK
        li      r13, IDT
        lidt    r13
        li      r13, MSR_RSP0
        li      r14, KSTACK
        wrmsr   r13, r14
        jmp     main
; paging_on: 4 levels; the first 2 MiB identity-mapped by one supervisor 2 MiB page, the
; next 2 MiB (WINDOW) by PT, empty until the guest maps pages there (`map`).
paging_on:
        li      r13, PML4
        li      r14, PDPT | PTE_P | PTE_W | PTE_U
        sd      r14, [r13]
        li      r13, PDPT
        li      r14, PD | PTE_P | PTE_W | PTE_U
        sd      r14, [r13]
        li      r13, PD
        li      r14, PTE_PS | PTE_P | PTE_W | PTE_U
        sd      r14, [r13]
        li      r14, PT | PTE_P | PTE_W | PTE_U
        sd      r14, [r13 + 8]
        li      r13, PML4
        mtcr    cr3, r13
        li      r13, CR0_PE | CR0_PG
        mtcr    cr0, r13
        ret
"""


@dataclass
class Guest:
    """One VM of a VMM on its own host, and the symbols of its program."""

    monitor: GuestModeVMM
    vm: GuestModeVM
    sym: dict[str, int]

    @property
    def v(self) -> Vmcs:
        return self.vm.vmcs

    @property
    def pc(self) -> int:
        return self.v[F.GUEST_PC]

    def run_to(self, reason: R, until: Callable[[], bool] | None = None) -> None:
        """Run the guest as the VMM's loop does (``GuestModeVM._run_guest``: offer the virtual
        interrupt, enter, answer the exit with the VMM's own handler) until a VM exit of
        ``reason`` (for which ``until()`` holds), which is left unanswered for the test."""
        vm = self.vm
        for _ in range(200):
            vm._offer_interrupt()
            ex = vm._enter(ENTRY_BUDGET)
            assert ex.reason is ExitReason.VM, f"the guest left guest mode with {ex} before a {reason.name} exit"
            assert self.v[F.EXIT_REASON] == ex.number
            if ex.number == reason and (until is None or until()):
                return
            out = vm.handlers[ex.number](vm)
            assert out is None, f"{ex.number.name} at {self.pc:#x} ended the run ({out}) before a {reason.name} exit"
        raise AssertionError(f"no {reason.name} exit")

    def mark(self) -> int:
        """Run to the guest's next `out MARK, rN` and return rN (the exit is left unanswered)."""
        self.run_to(R.IO_INSTRUCTION)
        q = self.v[F.EXIT_QUALIFICATION]
        assert q >> 16 == self.sym["MARK"] and not q & 8, f"an unexpected port access, qualification {q:#x}"
        return self.v.regs[q >> 8 & 15]

    def handle(self):
        """Answer the current exit with the VMM's handler for it."""
        return self.vm.handlers[self.v[F.EXIT_REASON]](self.vm)

    def injected(self) -> int:
        """ENTRY_INTR_INFO: the event the next entry delivers (docs/vmx.md V.9)."""
        return self.v[F.ENTRY_INTR_INFO]


def guest(kind: str, body: str) -> Guest:
    """A new host, the VMM ``kind`` on it, and one VM running ``body`` (after PRELUDE)."""
    vmm, profile = VMMS[kind]
    cfg = VMConfig(memory=MEMORY, budget=1_000_000)
    monitor = vmm(Machine(profile, default_host_memory(cfg.memory)))
    image = assemble(PRELUDE + body)
    return Guest(monitor, monitor.create_vm(image, cfg), dict(image.symbols))


def qualification_cr(crn: int, access: int, reg: int) -> int:
    """docs/vmx.md V.5, CR_ACCESS: bits 3:0 the CR, 5:4 the access (0 mtcr, 1 mfcr), 11:8 the register."""
    return crn | access << 4 | reg << 8


# ---- guest_mode.COMMON_HANDLERS, on both VMMs --------------------------------------------------


@BOTH
def test_on_io_returns_an_out_to_the_device_loop_and_steps_over_it(kind):
    """docs/vmx.md V.5 IO_INSTRUCTION: the port (rs1 + imm), the value of rs2; the VMM emulates the out."""
    g = guest(kind, "main: li r1, 0x3f0\n li r2, 0x41\nat: out r1 + 8, r2\n out MARK, r0\n")
    g.run_to(R.IO_INSTRUCTION)
    assert g.pc == g.sym["at"]
    out = g.handle()
    assert (out.reason, out.port, out.value) == (ExitReason.IO_OUT, 0x3F8, 0x41)
    assert g.pc == g.sym["at"] + 4


@BOTH
def test_on_io_returns_an_in_naming_the_guest_register_and_steps_over_it(kind):
    """docs/vmx.md V.5 IO_INSTRUCTION: bit 3 in, bits 11:8 the register the device loop fills."""
    g = guest(kind, "main: nop\nat: in r7, 0x3f9\n out MARK, r7\n")
    g.run_to(R.IO_INSTRUCTION)
    assert g.pc == g.sym["at"]
    out = g.handle()
    assert (out.reason, out.port, out.reg) == (ExitReason.IO_IN, 0x3F9, 7)
    assert g.pc == g.sym["at"] + 4


@BOTH
def test_on_msr_sets_the_tsc_the_guest_reads_next(kind):
    """Architecture §9 (a wrmsr MSR_TSC of v reads back v + 1 at the next rdtsc), docs/vmx.md V.3 TSC."""
    g = guest(
        kind,
        """
main:   li      r1, MSR_TSC
        li      r2, 1 << 40
at:     wrmsr   r1, r2
        rdtsc   r3
        rdtsc   r4
        out     MARK, r3
""",
    )
    g.run_to(R.WRMSR)
    assert g.pc == g.sym["at"] and g.v[F.EXIT_QUALIFICATION] == MSR_TSC
    assert g.handle() is None
    assert g.pc == g.sym["at"] + 4
    assert g.mark() == (1 << 40) + 1
    assert g.v.regs[4] == (1 << 40) + 2


@BOTH
def test_on_vmcall_injects_ud_at_the_vmcall(kind):
    """docs/vmx.md V.4 VMCALL (always exits): no hypercalls, so #UD as on a bare machine, at the vmcall (V.9)."""
    g = guest(
        kind,
        """
main:   gate    6, on_ud, GATE
        li      r1, 7
at:     vmcall  0x1234
        out     MARK, r1
on_ud:  ld      r5, [sp]
        out     MARK, r5
""",
    )
    g.run_to(R.VMCALL)
    assert g.v[F.EXIT_QUALIFICATION] == 0x1234
    clock = g.vm.clock
    assert g.handle() is None
    assert g.injected() == intr_info(V_UD, HW)
    assert g.pc == g.sym["at"], "a fault: the guest does not resume past the vmcall"
    assert g.vm.clock == clock - 1, "the injection's tick is not the guest's (guest_mode.reflect)"
    assert g.mark() == g.sym["at"], "the guest's #UD handler sees the vmcall as the faulting instruction"


@BOTH
def test_on_interrupt_window_leaves_the_injection_to_the_loop(kind):
    """docs/vmx.md V.3 interrupt window: the exit comes after the instruction that follows sti; V.9 injection."""
    g = guest(
        kind,
        """
main:   gate    0x20, on_irq, GATE
        li      r1, 0
        sti
        addi    r1, r1, 1
window: addi    r1, r1, 1
        out     MARK, r1
on_irq: ld      r5, [sp]
        out     MARK, r5
""",
    )
    g.vm.cpu.intr_vector = 0x20  # the PIC offers a vector while the guest's IF is 0
    g.run_to(R.INTERRUPT_WINDOW)
    assert g.pc == g.sym["window"] and g.v.regs[1] == 1
    assert g.handle() is None
    assert g.pc == g.sym["window"] and not g.injected() >> 31, "the handler itself changes nothing"
    assert g.vm.cpu.intr_vector == 0x20, "the vector is still the loop's to offer"
    assert g.mark() == g.sym["window"], "the loop injects it at the window"
    assert g.vm.cpu.intr_acked == 0x20


@BOTH
def test_on_external_interrupt_leaves_the_guest_untouched(kind):
    """docs/vmx.md V.3 interrupts: with PIN_EXTERNAL_INTERRUPT_EXITING the host's vector is never the guest's."""
    g = guest(
        kind,
        """
main:   gate    0x40, on_irq, GATE
        out     MARK, r0              ; the test raises the host's interrupt line here
tail:   sti
        li      r1, 1
        li      r2, 2
        out     MARK, r1
on_irq: li      r1, 0x40
        out     MARK, r1
""",
    )
    g.mark()
    assert g.handle().reason is ExitReason.IO_OUT
    g.vm.host.cpu.intr_vector = 0x40
    g.run_to(R.EXTERNAL_INTERRUPT)
    assert g.pc == g.sym["tail"]
    info = EventInfo.decode(g.v[F.EXIT_INTR_INFO])
    assert (info.vector, info.kind) == (0x40, IntrType.EXTERNAL)
    fields = [f for f in VmcsField if f.name.startswith(("GUEST_", "ENTRY_"))]
    before = ({f: g.v[f] for f in fields}, list(g.v.regs))
    assert g.handle() is None
    assert ({f: g.v[f] for f in fields}, list(g.v.regs)) == before
    assert g.mark() == 1 and g.v.regs[2] == 2, "the guest went on; its gate 0x40 never ran"
    assert g.vm.host.cpu.intr_acked == 0x40


@BOTH
def test_on_triple_fault_shuts_the_guest_down(kind):
    """docs/vmx.md V.4 TRIPLE_FAULT; architecture §6.6: #UD, its IDT read misaligned (#AC) -> #DF, the same ->
    shutdown.  (Not a gate's #GP: with the guest's paging off HardwareVMM intercepts #GP, on_general_protection.)"""
    body = "main: li r1, 0x80004\n lidt r1\n ud\n"
    g = guest(kind, body)
    g.run_to(R.TRIPLE_FAULT)
    assert g.v[F.GUEST_ACTIVITY] == 2
    assert g.handle() is SHUTDOWN
    loop = guest(kind, body)
    loop.monitor.run(10_000)
    assert loop.vm.stop == "shutdown"
    assert loop.vm.counters["vm_exit_triple_fault"] == 1


def test_on_tpr_below_threshold_clears_the_threshold():
    """docs/vmx.md V.3 TPR shadow: a CR8 write below TPR_THRESHOLD exits after it retires; the vector then goes in."""
    g = guest(
        NESTED,
        """
main:   gate    0x20, on_irq, GATE
        li      r1, 15
        mtcr    cr8, r1
        sti
        out     MARK, r0
        li      r1, 1
        mtcr    cr8, r1
after:  out     MARK, r1
on_irq: ld      r5, [sp]
        out     MARK, r5
""",
    )
    g.mark()
    assert g.handle().reason is ExitReason.IO_OUT
    g.vm.cpu.intr_vector = 0x20  # class 2, held off by TPR 15: the loop sets the threshold
    g.run_to(R.TPR_BELOW_THRESHOLD)
    assert g.pc == g.sym["after"] and g.v[F.VIRTUAL_TPR] == 1
    assert g.v[F.TPR_THRESHOLD] == 2
    assert g.handle() is None
    assert g.v[F.TPR_THRESHOLD] == 0
    assert g.pc == g.sym["after"], "a trap-like exit: nothing to step over"
    assert g.mark() == g.sym["after"], "the interrupt is taken right after the mtcr"


# ---- MSRs beyond the MSR bitmap (docs/vmx.md V.3: "MSRs above 16383 always exit") ---------------

MSR_BEYOND = """
main:   gate    13, on_gp, GATE
        li      r1, 0x10000
        li      r2, 1234
at:     {insn}
        li      r6, 1
        out     MARK, r6
on_gp:  ld      r5, [sp + 8]
        out     MARK, r5
"""


@BOTH
def test_rdmsr_of_an_msr_beyond_the_bitmap_raises_gp_in_the_guest(kind):
    """Architecture §2 MSRs (any other index raises #GP(0)); docs/vmx.md V.3: MSRs above 16383 always exit."""
    g = guest(kind, MSR_BEYOND.format(insn="rdmsr r3, r1"))
    assert g.mark() == g.sym["at"], "the guest's #GP handler sees the rdmsr"


@BOTH
def test_wrmsr_of_an_msr_beyond_the_bitmap_raises_gp_and_leaves_the_tsc(kind):
    """Architecture §2 MSRs (any other index raises #GP(0)); docs/vmx.md V.3: MSRs above 16383 always exit."""
    g = guest(kind, MSR_BEYOND.format(insn="wrmsr r1, r2"))
    g.run_to(R.WRMSR)
    assert g.v[F.EXIT_QUALIFICATION] == 0x10000
    offset = g.vm.tsc_offset
    g.handle()
    assert g.vm.tsc_offset == offset, "the TSC is not MSR 0x10000"
    assert g.mark() == g.sym["at"], "the guest's #GP handler sees the wrmsr"


# ---- every exit the controls enable has a handler -------------------------------------------------


def enabled_exits(vm: GuestModeVM) -> set[R]:
    """The VM exits a VM's VMCS lets happen (docs/vmx.md V.2-V.4), read from its controls and bitmaps."""
    v, host = vm.vmcs, vm.host
    # Interrupt-window exiting is the one control the loop sets and clears as it goes (guest_mode).
    proc = ProcControl(v[F.PROC_CONTROLS]) | ProcControl.INTERRUPT_WINDOW_EXITING
    reasons = {R.VMCALL, R.TRIPLE_FAULT}  # always (V.2, V.4)
    by_control = {
        ProcControl.INTERRUPT_WINDOW_EXITING: {R.INTERRUPT_WINDOW},
        ProcControl.HLT_EXITING: {R.HLT},
        ProcControl.INVLPG_EXITING: {R.INVLPG},
        ProcControl.RDTSC_EXITING: {R.RDTSC},
        ProcControl.CR3_LOAD_EXITING: {R.CR_ACCESS},
        ProcControl.CR3_STORE_EXITING: {R.CR_ACCESS},
        ProcControl.CR8_LOAD_EXITING: {R.CR_ACCESS},
        ProcControl.CR8_STORE_EXITING: {R.CR_ACCESS},
        ProcControl.USE_TPR_SHADOW: {R.TPR_BELOW_THRESHOLD},
        ProcControl.UNCONDITIONAL_IO_EXITING: {R.IO_INSTRUCTION},
        ProcControl.DESCRIPTOR_TABLE_EXITING: {R.DESCRIPTOR_TABLE},
        ProcControl.ENABLE_EPT: {R.EPT_VIOLATION, R.EPT_MISCONFIG},
    }
    for control, exits in by_control.items():
        if proc & control:
            reasons |= exits
    if proc & ProcControl.USE_IO_BITMAPS and any(host.read(v[F.IO_BITMAP], 8192)):
        reasons.add(R.IO_INSTRUCTION)
    if proc & ProcControl.USE_MSR_BITMAPS:
        bitmap = host.read(v[F.MSR_BITMAP], 4096)
        if any(bitmap[:2048]):
            reasons.add(R.RDMSR)
        if any(bitmap[2048:]):
            reasons.add(R.WRMSR)
    else:
        reasons |= {R.RDMSR, R.WRMSR}
    if v[F.PIN_CONTROLS] & PinControl.EXTERNAL_INTERRUPT_EXITING:
        reasons.add(R.EXTERNAL_INTERRUPT)
    if v[F.EXCEPTION_BITMAP]:
        reasons.add(R.EXCEPTION)
    if v[F.CR0_GUEST_HOST_MASK] or v[F.CR4_GUEST_HOST_MASK]:
        reasons.add(R.CR_ACCESS)
    return reasons


@BOTH
def test_every_exit_the_controls_enable_has_a_handler(kind):
    """docs/vmx.md V.2-V.4: the exits a VMCS's controls, bitmaps and masks can cause, against the VMM's HANDLERS."""
    g = guest(kind, "main: hlt\n")
    enabled = enabled_exits(g.vm)
    assert R.IO_INSTRUCTION in enabled and R.EXTERNAL_INTERRUPT in enabled  # the reading is not vacuous
    missing = enabled - set(g.vm.handlers)
    assert not missing, sorted(r.name for r in missing)


# A load just beyond the guest's RAM (architecture §5.1), for the #PF and the EPT-violation handlers.
BEYOND_RAM = f"""
main:   gate    18, on_mc, GATE
        li      r1, {MEMORY:#x}
at:     ld      r2, [r1]
        out     MARK, r0
on_mc:  ld      r5, [sp]
        out     MARK, r5
"""


# ---- HardwareVMM: shadow paging's exits (Adams & Agesen 2006) ------------------------------------


def test_on_page_fault_fixes_a_hidden_fault_in_the_shadow():
    """Adams & Agesen 2006 (hidden faults); reference_vmm.shadow: the guest's MMU allows it, the shadow now maps it."""
    g = guest(
        SHADOW,
        """
main:   call    paging_on
        map     WINDOW + 0x5000, 0x50000 | PTE_P | PTE_W
        li      r1, 0x50000 + 8
        li      r2, 0x5eed
        sd      r2, [r1]
        li      r1, WINDOW + 0x5008
at:     ld      r3, [r1]
        out     MARK, r3
""",
    )
    # The guest's stores to its own tables fault too (hidden, or traced once paging is on).
    g.run_to(R.EXCEPTION, until=lambda: g.pc == g.sym["at"])
    assert g.v[F.EXIT_QUALIFICATION] == 0x205008 and g.v[F.EXIT_INTR_ERROR_CODE] == 0
    shadow = g.vm.shadow
    assert shadow.lookup(0x205000) == 0
    hidden, clock = shadow.counters["hidden_page_faults"], g.vm.clock
    assert g.handle() is None
    assert shadow.lookup(0x205000) & FRAME == g.vm.memory.hpa(0x50000), "the guest's frame, in host RAM"
    assert shadow.counters["hidden_page_faults"] == hidden + 1
    assert g.pc == g.sym["at"] and not g.injected() >> 31, "the guest sees no fault"
    assert g.vm.clock == clock - 1, "the guest never saw the faulting tick"
    assert g.mark() == 0x5EED


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("int 0x40", (0x40, IntrType.SOFTWARE_INTERRUPT, None)),
        ("int 0x41", (V_GP, HW, 8 * 0x41 + 2)),  # gate 0x41 not present: #GP(8v + 2), §6.3 step 2
    ],
    ids=["int-n", "gp-with-error-code"],
)
def test_on_page_fault_hidden_in_an_events_delivery_delivers_it_again(event, expected):
    """docs/vmx.md V.5 IDT_VECTORING_INFO: an exit that cut a delivery short; the VMM re-injects the event (V.9)."""
    g = guest(
        SHADOW,
        f"""
main:   gate    0x40, on_event, GATE
        gate    13, on_gp, GATE
        li      sp, FRESH_STACK
at:     {event}
        out     MARK, r0
on_event:
        ld      r5, [sp]
        out     MARK, r5
on_gp:  ld      r6, [sp]              ; the error code
        ld      r5, [sp + 8]
        out     MARK, r5
""",
    )
    # The first push onto the fresh stack.
    g.run_to(R.EXCEPTION, until=lambda: g.v[F.EXIT_QUALIFICATION] >> 12 == (0x38000 - 8) >> 12)
    vector, kind, code = expected
    vectoring = EventInfo.decode(g.v[F.IDT_VECTORING_INFO])
    assert (vectoring.vector, vectoring.kind) == (vector, kind)
    assert g.pc == g.sym["at"]
    assert g.handle() is None
    assert g.injected() == intr_info(vector, kind, code is not None)
    if code is not None:
        assert g.v[F.ENTRY_ERROR_CODE] == code
    assert g.vm.shadow.lookup(0x37000) != 0
    pushed = g.mark()
    assert pushed == (g.sym["at"] + 4 if kind == IntrType.SOFTWARE_INTERRUPT else g.sym["at"]), "delivered once"
    if code is not None:
        assert g.v.regs[6] == code


@pytest.mark.parametrize(
    ("access", "code"),
    [
        ("li r1, WINDOW + 0x7000\nat: ld r2, [r1]", 0),
        ("li r1, WINDOW + 0x7000\nat: sd r1, [r1]", PF_W),
        ("map WINDOW + 0x6000, 0x60000 | PTE_P\n li r1, CR0_PE | CR0_PG | CR0_WP\n mtcr cr0, r1\n"
         " li r1, WINDOW + 0x6000\nat: sd r1, [r1]", PF_P | PF_W),
        ("map WINDOW + 0x6000, 0x60000 | PTE_P | PTE_NX\n li r1, WINDOW + 0x6000\n jr r1\n.equ at, WINDOW + 0x6000",
         PF_P | PF_I),
    ],
    ids=["read-not-present", "write-not-present", "write-read-only-with-wp", "fetch-no-execute"],
)  # fmt: skip
def test_on_page_fault_injects_a_true_fault_with_cr2_and_error_code(access, code):
    """Adams & Agesen 2006 (true faults); architecture §7.5: CR2 = the address, the guest's own error code."""
    g = guest(
        SHADOW,
        f"""
main:   gate    14, on_pf, GATE
        call    paging_on
        {access}
        out     MARK, r0
on_pf:  mfcr    r5, cr2
        ld      r7, [sp]              ; the error code
        ld      r6, [sp + 8]
        out     MARK, r6
""",
    )
    at = g.sym["at"]
    # The guest's first access to WINDOW is the one.
    g.run_to(R.EXCEPTION, until=lambda: g.v[F.EXIT_QUALIFICATION] >= 0x200000)
    va = g.v[F.EXIT_QUALIFICATION]
    true_faults = g.vm.shadow.counters["true_page_faults"]
    assert g.handle() is None
    assert g.vm.shadow.counters["true_page_faults"] == true_faults + 1
    assert g.injected() == intr_info(V_PF, HW, True)
    assert g.v[F.ENTRY_ERROR_CODE] == code
    assert g.v[F.GUEST_CR2] == va
    assert g.mark() == at, "the guest's #PF handler sees the faulting instruction"
    assert (g.v.regs[5], g.v.regs[7]) == (va, code), "and reads CR2 and the error code"


@pytest.mark.parametrize(
    ("event", "vectoring", "injected"),
    [
        ("ud", (V_UD, HW), V_DF),
        ("int 0x40", (0x40, IntrType.SOFTWARE_INTERRUPT), V_PF),
        ("external", (0x40, IntrType.EXTERNAL), V_PF),
    ],
    ids=["exception-becomes-df", "int-n-gets-the-pf", "external-gets-the-pf"],
)
def test_on_page_fault_true_in_an_events_delivery_follows_nested_fault_rules(event, vectoring, injected):
    """docs/vmx.md V.5 IDT_VECTORING_INFO, architecture §6.6: a true fault delivering an exception is #DF, else itself."""
    g = guest(
        SHADOW,
        f"""
main:   call    paging_on
        li      r1, WINDOW + 0x10000    ; an IDT where the guest maps nothing
        lidt    r1
        sti
at:     {"nop" if event == "external" else event}
        out     MARK, r0
""",
    )
    if event == "external":
        g.vm.cpu.intr_vector = 0x40  # injected once the guest's IF is 1 (guest_mode._offer_interrupt)
    g.run_to(R.EXCEPTION, until=lambda: g.v[F.EXIT_QUALIFICATION] >> 12 == 0x210)
    info = EventInfo.decode(g.v[F.IDT_VECTORING_INFO])
    assert (info.vector, info.kind) == vectoring
    assert g.handle() is None
    # #DF's error code is 0; so is the #PF's of a supervisor read of a page not present (§7.5).
    assert g.injected() == intr_info(injected, HW, True) and g.v[F.ENTRY_ERROR_CODE] == 0
    assert g.v[F.GUEST_CR2] == g.v[F.EXIT_QUALIFICATION], "a nested #PF still writes CR2 (§6.6)"


def test_on_page_fault_true_in_a_double_faults_delivery_shuts_down():
    """docs/vmx.md V.5 IDT_VECTORING_INFO, architecture §6.6: a true fault delivering #DF is a triple fault."""
    g = guest(SHADOW, "main: call paging_on\n li r1, WINDOW + 0x10000\n lidt r1\n ud\n")
    g.run_to(R.EXCEPTION, until=lambda: EventInfo.decode(g.v[F.IDT_VECTORING_INFO]).valid)
    assert g.handle() is None and g.injected() == intr_info(V_DF, HW, True)
    g.run_to(R.EXCEPTION)
    assert EventInfo.decode(g.v[F.IDT_VECTORING_INFO]).vector == V_DF
    assert g.handle() is SHUTDOWN


def test_on_page_fault_true_beyond_ram_reflects_a_machine_check():
    """Adams & Agesen 2006 (true faults); architecture §5.1: an access beyond RAM is #MC, no error code, no CR2."""
    g = guest(SHADOW, BEYOND_RAM)
    g.run_to(R.EXCEPTION, until=lambda: g.v[F.EXIT_QUALIFICATION] == MEMORY)
    assert g.handle() is None
    assert g.injected() == intr_info(V_MC, HW)
    assert g.pc == g.sym["at"] and g.v[F.GUEST_CR2] == 0, "a fault, and not a #PF: CR2 is left alone"
    assert g.mark() == g.sym["at"], "the guest's #MC handler sees the load"


def test_on_page_fault_emulates_a_store_to_a_traced_page_table():
    """Adams & Agesen 2006 (traced guest page tables): the store is emulated, the shadow entry made from it dropped."""
    g = guest(
        SHADOW,
        """
main:   call    paging_on
        map     WINDOW, 0x50000 | PTE_P | PTE_W
        li      r1, 0x51000
        li      r2, 0x51
        sd      r2, [r1]
        li      r1, WINDOW
        ld      r3, [r1]              ; the shadow maps WINDOW: PT is traced
        li      r1, PT
        li      r2, 0x51000 | PTE_P | PTE_W
at:     sd      r2, [r1]              ; remap WINDOW
        li      r1, WINDOW
        invlpg  [r1]
        ld      r4, [r1]
        out     MARK, r4
""",
    )
    g.run_to(R.EXCEPTION, until=lambda: g.pc == g.sym["at"])
    assert g.v[F.EXIT_QUALIFICATION] == 0x13000 and g.v[F.EXIT_INTR_ERROR_CODE] & PF_W
    shadow = g.vm.shadow
    assert shadow.lookup(0x200000) != 0
    traced, emulated = shadow.counters["traced_writes"], g.vm.counters[COUNTER_EMULATED]
    assert g.handle() is None
    assert g.vm.memory.read(0x13000, 8) == 0x51000 | 3, "the store happened"
    assert shadow.lookup(0x200000) == 0, "the shadow entry made from the old entry is gone"
    assert shadow.counters["traced_writes"] == traced + 1
    assert g.vm.counters[COUNTER_EMULATED] == emulated + 1
    assert g.pc == g.sym["at"] + 4 and not g.injected() >> 31
    assert g.mark() == 0x51


def test_on_page_fault_emulates_a_supervisor_store_to_a_read_only_page_without_wp():
    """Adams & Agesen 2006 (emulated accesses); architecture §7.4: without CR0.WP a supervisor write ignores W."""
    g = guest(
        SHADOW,
        """
main:   call    paging_on
        map     WINDOW + 0x6000, 0x60000 | PTE_P
        li      r1, WINDOW + 0x6000
        li      r2, 0x77
at:     sd      r2, [r1]
        ld      r3, [r1]
        out     MARK, r3
""",
    )
    g.run_to(R.EXCEPTION, until=lambda: g.pc == g.sym["at"] and g.v[F.EXIT_QUALIFICATION] == 0x206000)
    assert g.handle() is None
    assert g.pc == g.sym["at"] + 4 and not g.injected() >> 31
    assert g.vm.memory.read(0x60000, 8) == 0x77
    assert g.mark() == 0x77


@pytest.mark.parametrize(
    ("event", "handler", "pushed"),
    [
        ("ud", "on_fault", "at"),
        ("int 0x40", "on_fault", "next"),
        ("int 0x41", "on_gp", "at"),
        ("external", "on_fault", "next"),
    ],
    ids=["exception", "int-n", "gp-with-error-code", "external"],
)
def test_on_page_fault_emulates_the_rest_of_a_delivery_onto_a_traced_page(event, handler, pushed):
    """docs/vmx.md V.5 IDT_VECTORING_INFO: a delivery cut short by a push onto a traced page is finished by emulation."""
    g = guest(
        SHADOW,
        f"""
main:   gate    6, on_fault, GATE
        gate    0x40, on_fault, GATE
        gate    13, on_gp, GATE
        call    paging_on
        map     WINDOW, 0x50000 | PTE_P | PTE_W
        li      r1, WINDOW
        ld      r2, [r1]              ; PT (0x13000) is traced from now on
        li      sp, 0x14000           ; the stack shares PT's page: natively harmless
        sti
at:     {"nop" if event == "external" else event}
next:   out     MARK, r0
on_fault:
        ld      r5, [sp]
        out     MARK, r5
on_gp:  ld      r6, [sp]
        ld      r5, [sp + 8]
        out     MARK, r5
""",
    )
    if event == "external":
        g.vm.cpu.intr_vector = 0x40  # injected at the window: after the instruction after sti
    # The delivery's first push.
    g.run_to(R.EXCEPTION, until=lambda: g.v[F.EXIT_QUALIFICATION] == 0x13FF8)
    assert EventInfo.decode(g.v[F.IDT_VECTORING_INFO]).valid
    assert g.pc == g.sym["next" if event == "external" else "at"]
    emulated = g.vm.counters[COUNTER_EMULATED]
    assert g.handle() is None
    assert g.pc == g.sym[handler], "the delivery is complete: the guest resumes in its handler"
    assert g.vm.counters[COUNTER_EMULATED] == emulated + 1
    assert not g.injected() >> 31, "nothing is left to inject"
    assert g.mark() == g.sym[pushed]
    if handler == "on_gp":
        assert g.v.regs[6] == 8 * 0x41 + 2


def test_on_page_fault_rejects_an_exception_other_than_pf():
    """docs/vmx.md V.4 EXCEPTION: HardwareVMM sets only bit 14 of the bitmap; another vector's exit is an error."""
    g = guest(SHADOW, "main: ud\n")
    g.v[F.EXCEPTION_BITMAP] |= 1 << V_UD
    g.run_to(R.EXCEPTION, until=lambda: EventInfo.decode(g.v[F.EXIT_INTR_INFO]).vector != V_PF)
    with pytest.raises(RuntimeError, match="vector 6"):
        g.handle()


def test_the_exception_bitmap_has_gp_exactly_while_the_guests_paging_is_off():
    """HardwareVMM: with the guest's paging off the real CPU pages on identity shadows and checks canonical
    addresses, which a bare machine does not (architecture §5.3 step 3), so #GP exits then; #PF always (V.4)."""
    g = guest(SHADOW, "main: call paging_on\n out MARK, r0\n")
    assert g.v[F.EXCEPTION_BITMAP] == 1 << V_PF | 1 << V_GP
    g.run_to(R.CR_ACCESS, until=lambda: g.v[F.EXIT_QUALIFICATION] & 15 == 0)
    assert g.handle() is None and g.vm.vcpu.cr0 & CR0_PG
    assert g.v[F.EXCEPTION_BITMAP] == 1 << V_PF


def test_on_general_protection_makes_a_non_canonical_access_with_paging_off_a_machine_check():
    """Architecture §5.1, §5.3: with paging off the address is physical, beyond RAM: #MC, as the spec emulates it."""
    g = guest(SHADOW, BEYOND_RAM.replace(f"li      r1, {MEMORY:#x}", "li      r1, 1 << 63"))
    g.run_to(R.EXCEPTION, until=lambda: EventInfo.decode(g.v[F.EXIT_INTR_INFO]).vector == V_GP)
    assert g.pc == g.sym["at"] and g.v[F.EXIT_INTR_ERROR_CODE] == 0
    assert g.handle() is None
    assert g.pc == g.sym["on_mc"], "delivered by the emulation: the guest is at its #MC handler"
    assert g.mark() == g.sym["at"]


def test_on_general_protection_reflects_a_gates_gp_by_the_nested_fault_rules():
    """Architecture §6.3 step 2 (#GP(8v + 2) for int n through a gate not present), §6.6: the int's own fault."""
    g = guest(SHADOW, "main: gate 13, on_gp, GATE\nat: int 0x41\n out MARK, r0\non_gp: ld r5, [sp + 8]\n out MARK, r5\n")
    g.run_to(R.EXCEPTION, until=lambda: EventInfo.decode(g.v[F.EXIT_INTR_INFO]).vector == V_GP)
    assert EventInfo.decode(g.v[F.IDT_VECTORING_INFO]).vector == 0x41
    assert g.handle() is None
    assert g.injected() == intr_info(V_GP, HW, True) and g.v[F.ENTRY_ERROR_CODE] == 8 * 0x41 + 2
    assert g.mark() == g.sym["at"]


def test_on_page_fault_judges_a_supervisor_access_from_cpl3_as_supervisor():
    """Architecture §6.3 step 1 (IDT reads are supervisor reads), §7.4; V.5 EXIT_INTR_ERROR_CODE (PF_U clear)."""
    g = guest(
        SHADOW,
        """
main:   li      r1, 0x70000 + 16 * 0x80   ; gate 0x80 of an IDT in frame 0x70000
        la      r2, on_int
        sd      r2, [r1]
        li      r2, GATE_DPL3
        sd      r2, [r1 + 8]
        call    paging_on
        map     WINDOW + 0x10000, 0x70000 | PTE_P | PTE_W   ; the IDT's page: supervisor only
        li      r1, WINDOW + 0x10000
        lidt    r1
        li      r1, 0x40000
        push    r1                    ; sp
        li      r1, 0
        push    r1                    ; FLAGS
        li      r1, 3
        push    r1                    ; cs: ring 3
        la      r1, user
        push    r1
        iret
.org 0x3000
user:   int     0x80
on_int: ld      r5, [sp]
        out     MARK, r5
""",
    )
    # The read of gate 0x80, from ring 3.
    g.run_to(R.EXCEPTION, until=lambda: g.v[F.EXIT_QUALIFICATION] == 0x210800)
    assert g.v[F.GUEST_CPL] == 3
    assert EventInfo.decode(g.v[F.IDT_VECTORING_INFO]).vector == 0x80
    assert not g.v[F.EXIT_INTR_ERROR_CODE] & PF_U, "the hardware reports a supervisor access"
    assert g.handle() is None
    assert g.injected() == intr_info(0x80, IntrType.SOFTWARE_INTERRUPT), "the int is delivered again, no #PF"
    assert g.mark() == g.sym["user"] + 4


def test_on_cr_access_mov_to_cr3_switches_the_shadow_root():
    """Adams & Agesen 2006 (CR3 loads exit); docs/vmx.md V.5 CR_ACCESS: the real CR3 becomes a shadow root."""
    g = guest(
        SHADOW,
        """
main:   call    paging_on
        li      r1, 0x14000           ; a second address space, the same mappings
        li      r2, PDPT | PTE_P | PTE_W | PTE_U
        sd      r2, [r1]
at:     mtcr    cr3, r1
        li      r1, 0x5eed
        out     MARK, r1
""",
    )
    g.run_to(R.CR_ACCESS, until=lambda: g.pc == g.sym["at"])
    assert g.v[F.EXIT_QUALIFICATION] == qualification_cr(3, 0, 1)
    old_root = g.v[F.GUEST_CR3]
    assert g.handle() is None
    assert g.vm.vcpu.cr3 == 0x14000
    start, end = g.vm.shadow.pool
    assert start <= g.v[F.GUEST_CR3] < end and g.v[F.GUEST_CR3] != old_root
    assert g.pc == g.sym["at"] + 4
    assert g.mark() == 0x5EED


def test_on_cr_access_mov_from_cr3_reads_the_guests_own_cr3():
    """Adams & Agesen 2006 (CR3 stores exit); docs/vmx.md V.5 CR_ACCESS bits 5:4 = 1 (mfcr), 11:8 the register."""
    g = guest(SHADOW, "main: li r1, 0x10000\n mtcr cr3, r1\nat: mfcr r2, cr3\n out MARK, r2\n")
    g.run_to(R.CR_ACCESS)
    assert g.handle() is None
    g.run_to(R.CR_ACCESS)
    assert g.pc == g.sym["at"] and g.v[F.EXIT_QUALIFICATION] == qualification_cr(3, 1, 2)
    assert g.v[F.GUEST_CR3] != 0x10000, "the real CR3 is a shadow root"
    assert g.handle() is None
    assert g.v.regs[2] == 0x10000
    assert g.pc == g.sym["at"] + 4
    assert g.mark() == 0x10000


@pytest.mark.parametrize(
    ("crn", "value"),
    [(3, 0x10001), (0, 1 << 15), (0, (1 << 15) | 1 | 2), (4, 3), (8, 16)],
    ids=["cr3-low-bits", "cr0-pg-without-pe", "cr0-reserved-bit", "cr4-pl-3", "cr8-above-15"],
)
def test_on_cr_access_a_bad_value_is_the_guests_gp(crn, value):
    """docs/vmx.md V.3 (the write exits without effect); architecture §2: a bad CR value is the guest's #GP(0)."""
    g = guest(SHADOW, f"main: li r1, {value:#x}\nat: mtcr cr{crn}, r1\n out MARK, r0\n")
    g.run_to(R.CR_ACCESS)
    assert g.pc == g.sym["at"] and g.v[F.EXIT_QUALIFICATION] == qualification_cr(crn, 0, 1)
    fields = (F.GUEST_CR0, F.GUEST_CR3, F.GUEST_CR4, F.GUEST_CR8, F.CR0_READ_SHADOW, F.CR4_READ_SHADOW)
    before = [g.v[f] for f in fields], (g.vm.vcpu.cr0, g.vm.vcpu.cr3, g.vm.vcpu.cr4)
    assert g.handle() is None
    assert g.injected() == intr_info(V_GP, HW, True) and g.v[F.ENTRY_ERROR_CODE] == 0
    assert g.pc == g.sym["at"]
    assert ([g.v[f] for f in fields], (g.vm.vcpu.cr0, g.vm.vcpu.cr3, g.vm.vcpu.cr4)) == before


def test_on_cr_access_mov_to_cr0_turning_paging_on_updates_shadow_and_real_cr0():
    """docs/vmx.md V.3 (CR0 guest/host mask, read shadow); Fisher-Ogden 2006 §3.1.1: the guest reads its own CR0."""
    g = guest(SHADOW, "main: call paging_on\n mfcr r3, cr0\n out MARK, r3\n")
    g.run_to(R.CR_ACCESS, until=lambda: g.v[F.EXIT_QUALIFICATION] & 15 == 0)
    assert g.v[F.EXIT_QUALIFICATION] == qualification_cr(0, 0, 13)
    pc = g.pc
    assert g.handle() is None
    assert g.vm.vcpu.cr0 == CR0_PE | CR0_PG
    assert g.v[F.CR0_READ_SHADOW] == CR0_PE | CR0_PG
    assert g.v[F.GUEST_CR0] == CR0_PE | CR0_PG | CR0_WP, "the real CR0 runs the shadow tables with WP"
    assert g.v[F.GUEST_CR4] & 3 == 2, "four levels, as the guest's"
    assert g.pc == pc + 4
    assert g.mark() == CR0_PE | CR0_PG, "mfcr reads the read shadow, without an exit"


def test_on_cr_access_mov_to_cr4_keeps_owned_bits_in_the_read_shadow():
    """docs/vmx.md V.3 (CR4 guest/host mask): PGE is the host's; TSD, not owned, takes effect for real."""
    g = guest(SHADOW, "main: li r1, 2 | 1 << 7 | CR4_TSD\nat: mtcr cr4, r1\n mfcr r3, cr4\n out MARK, r3\n")
    g.run_to(R.CR_ACCESS)
    assert g.pc == g.sym["at"] and g.v[F.EXIT_QUALIFICATION] == qualification_cr(4, 0, 1)
    assert g.handle() is None
    assert g.vm.vcpu.cr4 == 2 | CR4_PGE | CR4_TSD
    assert g.v[F.CR4_READ_SHADOW] == 2 | CR4_PGE | CR4_TSD
    assert g.v[F.GUEST_CR4] == 2 | CR4_TSD
    assert g.pc == g.sym["at"] + 4
    assert g.mark() == 2 | CR4_PGE | CR4_TSD


def test_on_cr_access_mov_to_cr8_sets_the_guests_tpr():
    """On a host without the TPR shadow every CR8 load exits (vtx-2006); architecture §6.5."""
    g = guest(SHADOW, "main: li r1, 5\nat: mtcr cr8, r1\n mfcr r2, cr8\n out MARK, r2\n")
    g.run_to(R.CR_ACCESS)
    assert g.pc == g.sym["at"] and g.v[F.EXIT_QUALIFICATION] == qualification_cr(8, 0, 1)
    assert g.handle() is None
    assert g.v[F.GUEST_CR8] == 5 and g.vm.tpr() == 5
    assert g.pc == g.sym["at"] + 4
    assert g.mark() == 5, "mfcr cr8 reads it without an exit"


def test_on_cr_access_mov_to_cr3_keeps_the_guests_unowned_cr0_and_cr4_bits():
    """docs/vmx.md V.3: bits not owned read and write the guest's real register — a CR3 load must not undo them."""
    g = guest(
        SHADOW,
        """
main:   li      r1, CR0_PE | CR0_TS
        mtcr    cr0, r1               ; TS is not owned: no exit
        li      r1, 2 | CR4_TSD
        mtcr    cr4, r1               ; nor TSD
        li      r1, 0x10000
at:     mtcr    cr3, r1
        mfcr    r2, cr0
        mfcr    r3, cr4
        out     MARK, r2
""",
    )
    g.run_to(R.CR_ACCESS)
    assert g.pc == g.sym["at"]
    assert g.v[F.GUEST_CR0] & CR0_TS and g.v[F.GUEST_CR4] & CR4_TSD, "the guest set them without an exit"
    assert g.handle() is None
    assert g.v[F.GUEST_CR0] & CR0_TS and g.v[F.GUEST_CR4] & CR4_TSD
    assert g.mark() == CR0_PE | CR0_TS and g.v.regs[3] == 2 | CR4_TSD


def test_on_invlpg_drops_the_pages_shadow_entry():
    """Adams & Agesen 2006 (invlpg exits); docs/vmx.md V.5 INVLPG: the qualification is the linear address."""
    g = guest(
        SHADOW,
        """
main:   call    paging_on
        map     WINDOW + 0x5000, 0x50000 | PTE_P | PTE_W
        li      r1, WINDOW + 0x5000
        ld      r2, [r1]
at:     invlpg  [r1 + 8]
        li      r2, 0x77
        sd      r2, [r1]
        ld      r3, [r1]
        out     MARK, r3
""",
    )
    g.run_to(R.INVLPG)
    assert g.pc == g.sym["at"] and g.v[F.EXIT_QUALIFICATION] == 0x205008
    shadow = g.vm.shadow
    assert shadow.lookup(0x205000) != 0
    invlpgs = shadow.counters["shadow_invlpgs"]
    assert g.handle() is None
    assert shadow.lookup(0x205000) == 0
    assert shadow.counters["shadow_invlpgs"] == invlpgs + 1
    assert g.pc == g.sym["at"] + 4
    assert g.mark() == 0x77


@pytest.mark.parametrize("reason", [R.EPT_VIOLATION, R.EPT_MISCONFIG])
def test_on_ept_is_an_error_of_a_vmm_without_ept(reason):
    """docs/vmx.md V.4: EPT exits need PROC_ENABLE_EPT, never set here (driven directly: no guest can cause one)."""
    g = guest(SHADOW, "main: hlt\n")
    assert not g.v[F.PROC_CONTROLS] & ProcControl.ENABLE_EPT
    with pytest.raises(RuntimeError, match="does not enable ept"):
        g.vm.handlers[reason](g.vm)


# ---- HardwareEptVMM: nested paging leaves only violations (Fisher-Ogden 2006 §3.1.2) -------------


def nested_leaf(vm: GuestModeVM, gpa: int) -> int:
    """The host address of the nested entry that maps guest-physical ``gpa`` (docs/vmx.md V.6)."""
    eptp = vm.vmcs[F.EPT_POINTER]
    table = eptp & FRAME
    for level in range((eptp & 3) + 2, 0, -1):
        addr = table + 8 * (gpa >> (12 + 9 * (level - 1)) & 511)
        entry = vm.host.read_u64(addr)
        assert entry & 1, f"no nested entry at level {level} for {gpa:#x}"
        if level == 1 or entry & (1 << 7):
            return addr
        table = entry & FRAME
    raise AssertionError("unreachable")


def test_on_ept_violation_beyond_ram_reflects_a_machine_check():
    """docs/vmx.md V.6 (a violation beyond the guest's RAM); architecture §5.1: natively #MC, no error code."""
    g = guest(NESTED, BEYOND_RAM)
    g.run_to(R.EPT_VIOLATION)
    assert g.pc == g.sym["at"] and g.v[F.GUEST_PHYSICAL_ADDRESS] == MEMORY
    assert g.handle() is None
    assert g.injected() == intr_info(V_MC, HW)
    assert g.pc == g.sym["at"]
    assert g.mark() == g.sym["at"], "the guest's #MC handler sees the load"


@pytest.mark.parametrize(
    ("event", "injected", "vectoring"),
    [("ud", (V_DF, True), (V_UD, HW)), ("int 0x40", (V_MC, False), (0x40, IntrType.SOFTWARE_INTERRUPT))],
    ids=["exception-becomes-df", "int-n-gets-the-mc"],
)
def test_on_ept_violation_in_an_events_delivery_follows_nested_fault_rules(event, injected, vectoring):
    """docs/vmx.md V.5 IDT_VECTORING_INFO, architecture §6.6: an IDT beyond RAM; #DF delivering an exception, else #MC."""
    g = guest(NESTED, f"main: li r1, {MEMORY:#x}\n lidt r1\nat: {event}\n out MARK, r0\n")
    g.run_to(R.EPT_VIOLATION)
    info = EventInfo.decode(g.v[F.IDT_VECTORING_INFO])
    assert (info.vector, info.kind) == vectoring
    assert g.handle() is None
    vector, has_error = injected
    assert g.injected() == intr_info(vector, HW, has_error)
    if has_error:
        assert g.v[F.ENTRY_ERROR_CODE] == 0
    assert g.pc == g.sym["at"]


def test_on_ept_violation_in_a_double_faults_delivery_shuts_down():
    """docs/vmx.md V.5 IDT_VECTORING_INFO, architecture §6.6: a violation delivering #DF is a triple fault."""
    g = guest(NESTED, f"main: li r1, {MEMORY:#x}\n lidt r1\n ud\n")
    g.run_to(R.EPT_VIOLATION)
    assert g.handle() is None and g.injected() == intr_info(V_DF, HW, True)
    g.run_to(R.EPT_VIOLATION)
    assert EventInfo.decode(g.v[F.IDT_VECTORING_INFO]).vector == V_DF
    assert g.handle() is SHUTDOWN


def test_on_ept_violation_inside_ram_is_the_vmms_error_naming_the_address():
    """docs/vmx.md V.6: the VMM's nested tables map all of the guest's RAM; a violation inside it is the VMM's error."""
    g = guest(NESTED, "main: li r1, 0x50008\n ld r2, [r1]\n out MARK, r2\n")
    g.vm.host.write_u64(nested_leaf(g.vm, 0x50000), 0)  # break them
    g.vm.host.invept()
    g.run_to(R.EPT_VIOLATION)
    assert g.v[F.GUEST_PHYSICAL_ADDRESS] == 0x50008
    with pytest.raises(RuntimeError, match="0x50008"):
        g.handle()


@pytest.mark.parametrize("reason", [R.EXCEPTION, R.EPT_MISCONFIG])
def test_on_unexpected_raises_naming_the_reason(reason):
    """docs/vmx.md V.4: HardwareEptVMM expects neither exception exits nor misconfigurations; the test forces each."""
    g = guest(NESTED, "main: li r1, 0x50000\n ld r2, [r1]\n ud\n")
    if reason == R.EXCEPTION:
        g.v[F.EXCEPTION_BITMAP] = 1 << V_UD
    else:
        leaf = nested_leaf(g.vm, 0x50000)
        g.vm.host.write_u64(leaf, g.vm.host.read_u64(leaf) & FRAME | EPT_W)  # W without R (V.6)
        g.vm.host.invept()
    g.run_to(reason)
    with pytest.raises(RuntimeError, match=f"unexpected VM exit {reason.name} at guest pc {g.pc:#x}"):
        g.handle()


# ---- the tables this file covers ----------------------------------------------------------------

COMMON_NAMES = {
    R.IO_INSTRUCTION: "on_io", R.RDMSR: "on_msr", R.WRMSR: "on_msr", R.VMCALL: "on_vmcall", R.INTERRUPT_WINDOW: "on_interrupt_window",
    R.TPR_BELOW_THRESHOLD: "on_tpr_below_threshold", R.EXTERNAL_INTERRUPT: "on_external_interrupt",
    R.TRIPLE_FAULT: "on_triple_fault",
}  # fmt: skip
OWN_NAMES = {
    SHADOW: {
        R.EXCEPTION: "on_exception", R.CR_ACCESS: "on_cr_access", R.INVLPG: "on_invlpg",
        R.EPT_VIOLATION: "on_ept", R.EPT_MISCONFIG: "on_ept",
    },
    NESTED: {R.EPT_VIOLATION: "on_ept_violation", R.EPT_MISCONFIG: "on_unexpected", R.EXCEPTION: "on_unexpected"},
}  # fmt: skip


@pytest.mark.parametrize(("kind", "table"), [(SHADOW, shadow_monitor.HANDLERS), (NESTED, nested_monitor.HANDLERS)])
def test_the_handler_tables_are_the_ones_tested_here(kind, table):
    """docs/vmx.md V.4 reasons -> handlers: COMMON_HANDLERS plus the VMM's own; a new entry needs tests in this file."""
    assert {r: f.__name__ for r, f in guest_mode.COMMON_HANDLERS.items()} == COMMON_NAMES
    assert {r: f.__name__ for r, f in table.items()} == {**COMMON_NAMES, **OWN_NAMES[kind]}
    assert all(table[r] is guest_mode.COMMON_HANDLERS[r] for r in COMMON_NAMES)
    assert guest(kind, "main: hlt\n").vm.handlers is table, "the table the VMs dispatch by"
