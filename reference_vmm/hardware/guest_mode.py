"""What the hardware-assisted VMMs share (Fisher-Ogden 2006 §3.1): a guest in guest mode.

With ``vmx`` the guest runs at its own CPL in guest mode (docs/vmx.md); the VMM is the code
that answers VM exits.  This module holds what both reference VMMs of the technique need,
whatever they do about memory:

- ``GuestModeVM``: one guest — its VMCS, its region of host RAM (``reference_vmm.shadow``'s
  ``GuestMemory``, shared with trap-and-emulate), the standard devices over its own clock,
  driven by ``DeviceHost`` exactly as a native run drives them, with ``vmrun`` as the CPU;
- **virtual interrupts** by event injection (V.9): the PIC's vector is injected at the first
  entry where the guest's IF, interrupt shadow and TPR let it in, interrupt-window exiting
  (V.3) and the TPR threshold (or CR8-load exits) say when that is;
- **time**: the guest's clock counts the ticks it would spend natively — every guest-mode tick
  (an exiting instruction's included: it is the tick the emulated instruction takes), minus the
  tick of an injected *exception*, whose delivery natively belongs to the faulting tick; its
  TSC is that clock plus its own offset (``TSC_OFFSET``, written again at an entry where the
  guest's clock moved against the host's);
- the **exit handlers** every such VMM needs, one function per exit reason (``COMMON_HANDLERS``);
  a VMM's ``monitor.py`` adds its own and dispatches by the table.

Ports: every port exits (an all-ones I/O bitmap, V.3) and reaches the virtual devices — the
second disk too, emulated like the first, unless the VMM passes it through (``disk2_dma``,
``hardware-ept`` with an IOMMU): then its ports are clear in the VM's I/O bitmap and the run
returns them without a VM exit, as a bare machine's port I/O (V.3), counted in
``passthrough_io``. MSRs: only writes of the TSC exit (the MSR bitmap); the stack MSRs are guest
state, an unknown MSR raises #GP in the guest as natively — by the CPU, or by the VMM for an
index above the bitmap.  ``vmcall`` raises #UD in the guest, as on a bare machine (a
paravirtual VMM would answer it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import ClassVar

from cffi_core.devices import DMA, standard_devices
from cffi_core.devices.host import DeviceHost
from cffi_core.exits import ExitReason
from cffi_core.image import GuestImage
from cffi_core.isa.encoding import Decoded, decode
from cffi_core.machine import Exit, Machine
from cffi_core.vmx import EventInfo, IntrType, ProcControl, VmcsField, VmExitReason, intr_info
from conformance.api import (
    COUNTER_DIRECT,
    COUNTER_EMULATED,
    COUNTER_INTERVENTIONS,
    HOST_TIMER_PERIOD,
    VMM,
    VMConfig,
)
from reference_vmm.round_robin import run_round_robin
from reference_vmm.shadow import GuestMemory, HostMap
from reference_vmm.standard_vm import StandardDevicesVM

__all__ = [
    "COMMON_HANDLERS",
    "MSR_TSC",
    "SHUTDOWN",
    "SLICE",
    "GuestModeVM",
    "GuestModeVMM",
    "Handler",
    "io_bitmap",
    "msr_bitmap",
]

F = VmcsField
FLAGS_TF, FLAGS_IF = 1 << 8, 1 << 9  # architecture §2
V_UD, V_DF, V_GP, V_MC = 6, 8, 13, 18  # architecture §6.1
MSR_TSC = 0x10
_MSR_BITMAP_LAST = 16383  # V.3: MSRs above it always exit
_MSR_BITMAP_HALF = (_MSR_BITMAP_LAST + 1) // 8  # bytes of read bits, then as many of write bits
_BUDGET = Exit(ExitReason.BUDGET)
_BUDGET_REASON = ExitReason.BUDGET
SHUTDOWN = Exit(ExitReason.SHUTDOWN)
_INSN = 4  # every P64 instruction is one word
SLICE = HOST_TIMER_PERIOD
"""Guest ticks a VM runs per turn when several share the host: vmrun's budget is the host's
timer, so the VMM is back within a slice whatever the guest does (docs/vmm-api.md §9)."""

Handler = Callable[["GuestModeVM"], "Exit | None"]
"""An exit handler: None resumes the guest; an Exit goes to the device loop (port I/O,
shutdown)."""


_EXIT_KEYS: dict[int, str] = {}
_INTERRUPT_WINDOW_EXITING = int(ProcControl.INTERRUPT_WINDOW_EXITING)


def _exit_key(number: VmExitReason) -> str:
    """The counter of one exit reason, ``vm_exit_<name>`` (remembered: it is needed at every exit)."""
    key = _EXIT_KEYS[number] = f"vm_exit_{number.name.lower()}"
    return key


def io_bitmap(passthrough: Iterable[int] = ()) -> bytes:
    """Every port exits — the guest's devices are the VMM's (docs/vmx.md V.3) — but the ports of
    a device passed through to the guest."""
    bitmap = bytearray(b"\xff" * 8192)
    for port in passthrough:
        bitmap[port // 8] &= ~(1 << port % 8)
    return bytes(bitmap)


def msr_bitmap() -> bytes:
    """Only writes of the TSC exit: reads of it see the offset TSC, the rest is guest state."""
    bitmap = bytearray(2 * _MSR_BITMAP_HALF)
    bitmap[_MSR_BITMAP_HALF + MSR_TSC // 8] |= 1 << (MSR_TSC % 8)
    return bytes(bitmap)


class _Clock:
    """The devices' clock: the guest's own ticks (architecture §9)."""

    def __init__(self, vm: GuestModeVM) -> None:
        self._vm = vm

    def now(self) -> int:
        return self._vm.clock


class _DeviceCPU:
    """The CPU as ``DeviceHost`` sees it: the PIC's vector to offer, the one taken, FLAGS and pc
    (read from the VMCS), and the guest's registers (``vmcs.regs``, where ``in`` lands)."""

    def __init__(self, vm: GuestModeVM) -> None:
        self._vm = vm
        self.intr_vector = -1
        self.intr_acked = -1
        self.r = vm.vmcs.regs

    @property
    def flags(self) -> int:
        return self._vm.vmcs[F.GUEST_FLAGS]

    @property
    def pc(self) -> int:
        return self._vm.vmcs[F.GUEST_PC]

    @property
    def cr8(self) -> int:
        return self._vm.tpr()

    @property
    def pending_db(self) -> int:
        return self._vm.vmcs[F.GUEST_PENDING_DB]


class GuestModeVM(StandardDevicesVM):
    """One guest in guest mode: a VMCS, a region of host RAM, devices, a clock."""

    handlers: ClassVar[dict[int, Handler]]
    """Exit reason -> handler: ``COMMON_HANDLERS`` plus the VMM's own (its ``monitor.py``).  Each
    class has its own table: a subclass that does not define one gets a copy of its parent's
    (``__init_subclass__``), so ``MyVM.handlers[reason] = my_handler`` changes ``MyVM`` alone."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "handlers" not in cls.__dict__:
            cls.handlers = dict(cls.handlers)

    def __init__(self, monitor: GuestModeVMM, image: GuestImage, config: VMConfig, base: int) -> None:
        host = monitor.host
        self.monitor = monitor
        self.host: Machine = host
        self.config = config
        for seg in image.segments:
            if seg.end > config.memory:
                raise ValueError(
                    f"image {image.name}: segment at {seg.address:#x}..{seg.end:#x} does not fit in "
                    f"{config.memory:#x} bytes of guest RAM"
                )
        self.memory = GuestMemory(host, base, config.memory)
        host.memory[base : base + config.memory] = bytes(config.memory)
        host.code_written(base, config.memory)
        for seg in image.segments:
            self.memory.write_bytes(seg.address, seg.data)
        self.vmcs = host.vmcs()  # the reset state of architecture §2
        self.vmcs[F.GUEST_PC] = image.entry
        self.clock = 0
        self.tsc_offset = 0  # the guest's own: what its TSC writes set
        self.bus, self.devices = standard_devices(
            _Clock(self), self.memory.dma(), disk=config.disk, console_input=config.console_input,
            disk2=config.disk2, dma2=self.disk2_dma() if config.disk2 is not None else None,
        )  # fmt: skip
        self.cpu = _DeviceCPU(self)
        self._loop = DeviceHost(
            self.cpu, self.bus, self.devices, clock=lambda: self.clock, run=self._run_guest,
            advance_clock=self._idle,
        )  # fmt: skip
        self._stop: str | None = None
        self._proc = 0
        self._tsc_written: int | None = None
        self._tsc_key: int | None = None  # the guest's TSC less the host's clock at the last entry
        self._stats = dict.fromkeys(
            (COUNTER_DIRECT, COUNTER_EMULATED, COUNTER_INTERVENTIONS, "injections", "passthrough_io"), 0
        )

    def disk2_dma(self) -> DMA:
        """The second disk's DMA: into the guest's memory by the VMM, like the first disk's.  A
        VMM that passes the disk through gives the device's own remapped DMA instead."""
        return self.memory.dma()

    # -- the outside ----------------------------------------------------------------------------
    @property
    def counters(self) -> Mapping[str, int]:
        """The efficiency keys (guest-mode retirements; instructions the VMM emulated; VM exits
        and injections), VM exits by reason name, and the guest's ticks."""
        if self.monitor.direct_owner is self:
            self.monitor.count_direct()
        out = dict(self._stats)
        out["guest_ticks"] = self.clock
        return out

    @property
    def ticks(self) -> int:
        """The guest's clock (docs/vmm-api.md §3): what the suite reads after every slice."""
        return self.clock

    # -- controls -------------------------------------------------------------------------------
    def set_controls(self, proc: int) -> None:
        """PROC_CONTROLS, written only when they change (each VMCS write is counted)."""
        if proc != self._proc:
            self._proc = int(proc)  # kept a plain int: it is masked at every entry
            self.vmcs[F.PROC_CONTROLS] = proc

    # -- the run loop ---------------------------------------------------------------------------
    def run_slice(self, budget: int) -> None:
        """Run at most ``budget`` guest ticks, never past ``config.budget``."""
        if self._stop is not None:
            return
        end = min(self.clock + budget, self.config.budget)
        self._stop = self._loop.run_until(end)
        if self._stop is None and self.clock >= self.config.budget:
            self._stop = "budget"

    def _idle(self, ticks: int) -> None:
        self.clock += ticks

    def _run_guest(self, ticks: int) -> Exit:
        """The CPU of the device loop: enter the guest until ``ticks`` guest ticks have passed,
        answering VM exits; port I/O, a halt and a shutdown go back to the loop."""
        end = self.clock + ticks
        cpu = self.cpu
        while True:
            if self.clock >= end:
                return _BUDGET
            # Nothing to offer and no interrupt window open: the controls stay as they are
            # (what ``_offer_interrupt`` would find), and a compute-bound slice enters at once.
            if cpu.intr_vector >= 0 or self._proc & _INTERRUPT_WINDOW_EXITING:
                self._offer_interrupt()
            ex = self._enter(end - self.clock)
            if ex.reason is _BUDGET_REASON:
                continue
            if ex.reason is ExitReason.VM:
                stats = self._stats
                stats[COUNTER_INTERVENTIONS] += 1
                key = _EXIT_KEYS.get(ex.number) or _exit_key(ex.number)
                stats[key] = stats.get(key, 0) + 1
                out = self.handlers[ex.number](self)
                if out is not None:
                    return out
            else:
                # Port I/O the I/O bitmap lets through reaches the device assigned to the guest
                # with no VM exit (V.3); a hlt without HLT exiting halts the guest as natively.
                if ex.reason in (ExitReason.IO_IN, ExitReason.IO_OUT):
                    self._stats["passthrough_io"] += 1
                return ex

    def _enter(self, ticks: int) -> Exit:
        """Enter the guest for at most ``ticks`` ticks; its clock counts the ticks it ran."""
        host, monitor = self.host, self.monitor
        now = monitor.host_clock
        # The guest's TSC is its own clock plus its offset (V.3: TSC_OFFSET adds to the machine's
        # TSC, the host's clock plus the host CPU's own offset).  Guest mode moves both clocks
        # alike, so the offset changes only when the guest's clock moved against the host's
        # (halted time, an injected exception's tick, another VM's turn) or the guest wrote its
        # TSC: only then is it computed again.  The host CPU's offset is read then too; nothing
        # runs in host mode on a hardware VMM's host to change it between two entries.
        key = self.clock + self.tsc_offset - now
        if key != self._tsc_key:
            self._tsc_key = key
            offset = (key - host.cpu.tsc_offset) & ((1 << 64) - 1)
            if offset != self._tsc_written:
                self.vmcs[F.TSC_OFFSET] = self._tsc_written = offset
        if monitor.direct_owner is not self:
            monitor.count_direct(self)
        try:
            ex = host.vmrun(self.vmcs, ticks)
        except BaseException:
            monitor.host_clock = host.clock  # a run closed early (Ctrl-C), or none made
            raise
        if ex.reason is _BUDGET_REASON:
            # Its budget ran out: every tick of it ran (architecture §10), so the host's clock
            # need not be read, as at every end of a host-timer slice.
            monitor.host_clock = now + ticks
            self.clock += ticks
        else:
            monitor.host_clock = later = host.clock
            self.clock += later - now
        return ex

    # -- virtual interrupts (V.9) -----------------------------------------------------------------
    def tpr(self) -> int:
        """The guest's TPR (CR8): its VIRTUAL_TPR with the TPR shadow, else GUEST_CR8."""
        return self.vmcs[F.VIRTUAL_TPR if self._proc & ProcControl.USE_TPR_SHADOW else F.GUEST_CR8]

    def _offer_interrupt(self) -> None:
        """Inject the PIC's vector if the guest can take it now (architecture §6.5: IF, no sti
        shadow, vector >> 4 above the TPR); else ask for an exit when it can.  A pending #DB
        goes first (§6.5 step 2), and an injected event would go before it (V.9): the entry
        delivers the #DB itself, and the interrupt window says whether the interrupt may follow
        at the same boundary (a trap gate keeps IF) or later."""
        proc = self._proc & ~_INTERRUPT_WINDOW_EXITING  # a plain int: IntFlag arithmetic is slow
        vector = self.cpu.intr_vector
        if vector >= 0:
            v = self.vmcs
            if not v[F.GUEST_FLAGS] & FLAGS_IF or v[F.GUEST_INTERRUPTIBILITY] & 1 or v[F.GUEST_PENDING_DB]:
                proc |= _INTERRUPT_WINDOW_EXITING
            elif vector >> 4 <= self.tpr():
                self.wait_for_tpr(vector >> 4)
            else:
                v[F.ENTRY_INTR_INFO] = intr_info(vector, IntrType.EXTERNAL)
                self.cpu.intr_acked, self.cpu.intr_vector = vector, -1
                self._stats["injections"] += 1
                self._stats[COUNTER_INTERVENTIONS] += 1
        self.set_controls(proc)

    def wait_for_tpr(self, priority: int) -> None:
        """Arrange an exit when the guest lowers its TPR below ``priority``: the TPR threshold
        with the TPR shadow (V.3).  A VMM without it exits on every CR8 load instead."""
        if self._proc & ProcControl.USE_TPR_SHADOW:
            self.vmcs[F.TPR_THRESHOLD] = priority

    # -- helpers of the handlers ------------------------------------------------------------------
    def skip(self) -> None:
        """The exiting instruction is done (emulated): the guest resumes after it, as after an
        instruction that retired natively.  The exit was fault-like (V.3), so the guest state is
        the one the instruction started with: TF then makes the single-step #DB pending
        (architecture §6.4), and an sti shadow it ran in is spent (§6.5) — KVM's
        skip_emulated_instruction does both.  Every handler completes its instruction here."""
        v = self.vmcs
        v[F.GUEST_PC] = v[F.GUEST_PC] + _INSN
        if v[F.GUEST_FLAGS] & FLAGS_TF:
            v[F.GUEST_PENDING_DB] = 1
        if v[F.GUEST_INTERRUPTIBILITY]:
            v[F.GUEST_INTERRUPTIBILITY] = 0
        self._stats[COUNTER_EMULATED] += 1

    def instruction(self) -> Decoded | None:
        """The exiting instruction, decoded (``EXIT_INSTRUCTION_WORD``, docs/vmx.md V.2)."""
        return decode(self.vmcs[F.EXIT_INSTRUCTION_WORD])

    def reflect(self, vector: int, error_code: int | None = None) -> None:
        """Deliver an exception to the guest, raised by the instruction at GUEST_PC.  The
        injection's tick is not the guest's: natively the delivery is the faulting tick's."""
        v = self.vmcs
        v[F.ENTRY_INTR_INFO] = intr_info(vector, IntrType.HARDWARE_EXCEPTION, error_code is not None)
        if error_code is not None:
            v[F.ENTRY_ERROR_CODE] = error_code
        self.clock -= 1

    def reflect_delivery_fault(self, vector: int, error_code: int | None = None) -> Exit | None:
        """A fault raised by the guest's instruction at GUEST_PC, or while the guest was
        delivering the event of IDT_VECTORING_INFO: architecture §6.6 — a fault in an
        exception's delivery is #DF, in #DF's a shutdown; in an ``int n``'s or an external
        interrupt's, the fault itself."""
        info = EventInfo.decode(self.vmcs[F.IDT_VECTORING_INFO])
        if info.valid and info.kind == IntrType.HARDWARE_EXCEPTION:
            if info.vector == V_DF:
                return SHUTDOWN
            self.reflect(V_DF, 0)
            return None
        self.reflect(vector, error_code)
        return None


# -- the handlers every guest-mode VMM shares ---------------------------------------------------


def on_io(vm: GuestModeVM) -> Exit:
    """V.5: bit 3 in, bits 11:8 the register, bits 31:16 the port: the device loop answers it."""
    q = vm.vmcs[F.EXIT_QUALIFICATION]
    port, reg = q >> 16 & 0xFFFF, q >> 8 & 15
    vm.skip()
    if q & 8:
        return Exit(ExitReason.IO_IN, port=port, reg=reg)
    return Exit(ExitReason.IO_OUT, port=port, value=vm.vmcs.regs[reg])


def on_msr(vm: GuestModeVM) -> None:
    """What the MSR bitmap sends here (V.3): a TSC write — the only bit set: the guest's TSC
    reads ``value`` now, the ticks before this one (architecture §9) — or any access to an MSR
    above the bitmap's 16383, where P64 has none: #GP(0), as natively (architecture §2)."""
    insn = vm.instruction()
    assert insn is not None and insn.insn.mnemonic in ("rdmsr", "wrmsr"), insn
    index = vm.vmcs.regs[insn.rs1]
    if insn.insn.mnemonic == "wrmsr" and index == MSR_TSC:
        value = vm.vmcs.regs[insn.rs2]
        vm.tsc_offset = (value - (vm.clock - 1)) & ((1 << 64) - 1)
        vm.skip()
    elif index <= _MSR_BITMAP_LAST:
        raise RuntimeError(f"{insn.insn.mnemonic} of MSR {index:#x} exited, but the MSR bitmap lets it through")
    else:
        vm.reflect(V_GP, 0)


def on_vmcall(vm: GuestModeVM) -> None:
    """No hypercalls: #UD, as on a bare machine."""
    vm.reflect(V_UD)


def on_interrupt_window(vm: GuestModeVM) -> None:
    """The guest can take an interrupt now: the loop injects it (``_offer_interrupt``)."""


def on_tpr_below_threshold(vm: GuestModeVM) -> None:
    vm.vmcs[F.TPR_THRESHOLD] = 0


def on_external_interrupt(vm: GuestModeVM) -> None:
    """An interrupt of the host's own, not the guest's: nothing to give the guest."""


def on_triple_fault(vm: GuestModeVM) -> Exit:
    return SHUTDOWN


COMMON_HANDLERS: dict[int, Handler] = {
    VmExitReason.IO_INSTRUCTION: on_io,
    VmExitReason.RDMSR: on_msr,
    VmExitReason.WRMSR: on_msr,
    VmExitReason.VMCALL: on_vmcall,
    VmExitReason.INTERRUPT_WINDOW: on_interrupt_window,
    VmExitReason.TPR_BELOW_THRESHOLD: on_tpr_below_threshold,
    VmExitReason.EXTERNAL_INTERRUPT: on_external_interrupt,
    VmExitReason.TRIPLE_FAULT: on_triple_fault,
}
GuestModeVM.handlers = COMMON_HANDLERS


class GuestModeVMM(VMM):
    """The monitor half: host memory for guests and for its own pages (the I/O and MSR
    bitmaps), VPIDs, and the round robin of VMs in slices."""

    vm_class: ClassVar[type[GuestModeVM]]
    guest_alignment: ClassVar[int] = 4096

    def __init__(self, host: Machine) -> None:
        super().__init__(host)
        self.map = HostMap(host)
        self.io_bitmap = self.vmm_page_with(io_bitmap())
        self.msr_bitmap = self.vmm_page_with(msr_bitmap())
        self.host_clock = host.clock
        """The host's clock, kept by ``GuestModeVM._enter``: on this VMM's host only its entries
        move it (no code of its own runs in host mode), so it is read once a ``run`` call and
        after the entries that end before their budget, never at the end of a slice."""
        self.direct_owner: GuestModeVM | None = None
        """The VM whose guest-mode retirements since ``_direct_mark`` are not yet in its
        ``COUNTER_DIRECT`` (``count_direct``)."""
        self._direct_mark = 0

    def count_direct(self, owner: GuestModeVM | None = None) -> None:
        """Credit ``direct_owner`` with what the host retired in guest mode since it became the
        owner or was last credited, and make ``owner`` (default: the same VM) the owner.

        Only ``GuestModeVM._enter`` runs guest mode on this host, and only its owner's guest,
        so the host's count of guest-mode retirements, read when the owner changes or its
        counters are read, gives each VM exactly the sum of its entries' retirements, without
        reading the count around every entry (two reads a host-timer slice)."""
        retired = self.host.retired(True)
        if self.direct_owner is not None:
            self.direct_owner._stats[COUNTER_DIRECT] += retired - self._direct_mark
        self._direct_mark = retired
        if owner is not None:
            self.direct_owner = owner

    def vmm_page_with(self, data: bytes) -> int:
        """Host-physical address of new VMM pages holding ``data`` (a bitmap the VMCS names)."""
        address = self.map.vmm_pages(len(data))
        self.host.write(address, data)
        return address

    def create_vm(self, image: GuestImage, config: VMConfig) -> GuestModeVM:
        base = self.map.guest_region(config.memory, self.guest_alignment)
        vm = self.vm_class(self, image, config, base)
        self.vms.append(vm)
        return vm

    def run(self, budget: int) -> None:
        self.host_clock = self.host.clock  # whatever ran the host between two calls
        run_round_robin(self.vms, budget, SLICE, lambda vm: vm.clock)
