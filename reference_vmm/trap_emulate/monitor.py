"""``TrapEmulateVMM``: trap-and-emulate, Fisher-Ogden (2006) §2.1/§2.2 — the guest runs directly, deprivileged.

This is the classical VMM of Popek & Goldberg (1974), as VM/370 built it (§2.2.1): the guest's
instructions run *directly* on the host CPU (the C core's ``Machine``), at a less privileged
ring than the guest believes; every privileged instruction then traps to the VMM, which
performs it on the guest's *virtual* CPU and resumes.  Read ``reference_vmm/emulate`` first:
this VMM is that emulator plus one idea — run on the real CPU whatever does not trap.

The pieces, in the order a trap meets them:

- **Deprivileging** (``rings.py``): guest CPL 0 runs at real ring 1 (``x86-2005``, protected
  by the segment limit; ``x86-64-2005``, protected by paging) or at real ring 3 with a separate
  shadow address space for the guest kernel (ring compression, ``classic-1974``).  Every
  privileged instruction of the guest kernel traps; guest ring 3's ``cli``, ``sti``, ``in``,
  ``out`` trap unless the guest gave it IOPL 3.
- **Interrupts** (§2.3.1, "interrupt virtualization"): the VMM keeps the guest's IF, TPR and
  pending vector, and loads them into the real CPU while the guest runs, so the real CPU takes
  the guest's interrupt at the very boundary where the guest's IF, interrupt shadow and TPR
  allow it — and exits to the VMM through its host gate.  Under ``0/1/3`` the real IOPL is at
  least 1, so the guest kernel's ``cli``/``sti``/``popf``/``iret`` change that real IF
  directly (no trap: the frequent masking the survey worries about costs nothing) and its port
  I/O exits straight to the VMM's devices; IOPL itself stays the VMM's (a change at real ring
  1 is silently dropped — the obstacle).
- **The VMM's IDT** is a real table of 256 *host gates* (docs/architecture.md §6.2, §6.3 step
  4) in a host page no guest can write, mapped at ``RESERVED_VA`` in every shadow address space
  (address-space compression).  Every exception, fault and ``int n`` of the guest ends the real
  CPU's ``run`` there; nothing is pushed on the guest's stack.
- **The virtual CPU** is a ``cffi_core.spec.State``: virtual IF, IOPL, CPL, IDTR, CR0/2/3/4/8,
  the RSPn MSRs, the TSC offset.  While the guest runs directly, the real CPU holds its
  registers, pc, TF and IF; the rest is the VMM's.
- **Emulation** of a trapped instruction is the executable spec's (``spec.machine.tick``): it
  executes that one instruction on the virtual CPU over guest-physical memory — a privileged
  instruction does what it would at the guest's CPL, a guest fault is delivered through the
  *guest's* IDT with the guest's frame (§6.3, the spec's delivery logic).  There is no second
  emulator here.
- **Memory** (``reference_vmm.shadow``): guest-physical RAM is a region of host RAM; the real
  CR3 points at shadow page tables built on demand from the guest's own; hidden page faults
  are fixed and resumed, true ones reflected; traced page-table writes are emulated.
- **Devices** are the standard models over the guest's clock and a DMA accessor into its
  region, driven by ``DeviceHost`` exactly as in a native run — with this VMM's run loop in
  place of the core's.
- **Time** is the guest's own clock: every tick the guest would spend natively (an instruction
  run directly, an emulated one, an interrupt delivery), none for hidden faults or VMM work.
  Several VMs share the host CPU in slices of at most ``SLICE`` guest ticks (the host timer):
  whatever a guest does — ``cli; jmp .`` included — each real ``run`` lasts at most the slice's
  ticks, and hidden faults (host ticks that are no guest's) are bounded per slice.

On ``classic-1974`` every sensitive instruction traps, and the VMM is equivalent to the real
machine (Popek & Goldberg's Theorem 1).  On the x86-like profiles ``smsw``, ``sidt``, ``rdcs``
and ``pushf`` run directly and show the real machine, and ``popf``/``iret`` drop a change of
IOPL silently (Fisher-Ogden §2.3.1) — an ``iret`` that gives ring 3 IOPL 3 included: the
conformance suite shows this VMM failing exactly there.  Guest code at CPL 1 and 2 runs at
real ring 1 and 2 with the guest's own IOPL and has exactly its rights when the VMM saw it get
there (a gate to ring 1/2, delivered by the spec; an ``iret`` to ring 2); but the guest
kernel's ``iret`` to ring 1 is not seen (``rings.RingPlan.guest_cpl``: ring aliasing), and
ring 1 then keeps CPL 0's rights until the next emulated change of ring.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from cffi_core import spec
from cffi_core.devices import standard_devices
from cffi_core.devices.host import DeviceHost
from cffi_core.exits import EventKind, ExitReason
from cffi_core.image import GuestImage
from cffi_core.isa.table import INSTRUCTIONS
from cffi_core.machine import PAGE_SIZE, Machine
from cffi_core.spec.events import deliver_single_step, interrupt_deliverable
from cffi_core.spec.machine import tick
from cffi_core.spec.state import (
    CR0_PE,
    CR0_PG,
    CR0_WP,
    CR4_TSD,
    FLAGS_IF,
    FLAGS_IOPL_SHIFT,
    FLAGS_TF,
    MASK64,
    PF_I,
    PF_W,
)
from conformance.api import (
    COUNTER_DIRECT,
    COUNTER_EMULATED,
    COUNTER_INTERVENTIONS,
    HOST_TIMER_PERIOD,
    VMM,
    VMConfig,
)
from reference_vmm.round_robin import run_round_robin
from reference_vmm.shadow import GuestMemory, HostMap, Resolution, ShadowPager, pool_size
from reference_vmm.standard_vm import StandardDevicesVM
from reference_vmm.trap_emulate.rings import RESERVED_VA, SEGLIMIT_BELOW_RESERVED, RingPlan, ring_plan

__all__ = ["SLICE", "TrapEmulateVM", "TrapEmulateVMM", "host_gate_idt"]

SLICE = 10 * HOST_TIMER_PERIOD
"""Guest ticks a VM runs per turn when several share the host (the VMM's own host timer).  A
caller that wants control back sooner runs the VMM with a smaller budget (the safety tests use
``HOST_TIMER_PERIOD``); each slice costs a switch of the real CPU's state (only what changed
since the last budget exit, ``TrapEmulateVM._enter``), so a longer one runs a compute-bound
guest faster."""
HIDDEN_FAULT_SHARE = 4
"""Hidden page faults cost host ticks that are no guest's: a slice of n guest ticks may spend
at most n / HIDDEN_FAULT_SHARE of them, after which the rest of the slice runs in the spec.  So
the host runs at most 1.25 n ticks per slice, within docs/vmm-api.md §9's bound of
``HOST_TIMER_PERIOD + CONTROL_LATENCY`` for n = ``HOST_TIMER_PERIOD``."""

_HOST_GATE = spec.GATE_P | (spec.GATE_HOST << spec.GATE_TYPE_SHIFT) | (3 << spec.GATE_DPL_SHIFT)
# DPL 3: an `int n` from any guest ring reaches the VMM, which applies the *guest* gate's DPL.
_REAL_CR0 = CR0_PE | CR0_PG | CR0_WP  # paging always on (shadows), WP so that traced pages trap
_INVLPG = next(i for i in INSTRUCTIONS if i.mnemonic == "invlpg")
_BUDGET = spec.Exit(spec.EXIT_BUDGET)
_SHUTDOWN = spec.Exit(spec.EXIT_SHUTDOWN)


def host_gate_idt() -> bytes:
    """The VMM's IDT: 256 present host gates (handler 0, unused: a host gate exits to the VMM)."""
    gate = (0).to_bytes(8, "little") + _HOST_GATE.to_bytes(8, "little")
    return gate * 256


class _GuestClock:
    """The devices' clock: the guest's own ticks (architecture §9), never the host's."""

    def __init__(self, cpu: spec.State) -> None:
        self._cpu = cpu

    def now(self) -> int:
        return self._cpu.clock


class TrapEmulateVM(StandardDevicesVM):
    """One guest: its virtual CPU, its region of host RAM, its shadow pager and devices."""

    hidden_share: int = HIDDEN_FAULT_SHARE
    """A slice of n guest ticks may spend n // hidden_share host ticks that are no guest's."""

    def __init__(
        self,
        monitor: TrapEmulateVMM,
        image: GuestImage,
        config: VMConfig,
        base: int,
        pool: tuple[int, int],
    ) -> None:
        host = monitor.host
        self.monitor = monitor
        self.config = config
        self.plan: RingPlan = monitor.plan
        self.memory = GuestMemory(host, base, config.memory)
        for seg in image.segments:
            if seg.end > config.memory:
                raise ValueError(
                    f"image {image.name}: segment at {seg.address:#x}..{seg.end:#x} does not fit in "
                    f"{config.memory:#x} bytes of guest RAM"
                )
        host.memory[base : base + config.memory] = bytes(config.memory)
        host.code_written(base, config.memory)
        for seg in image.segments:
            self.memory.write_bytes(seg.address, seg.data)
        self.cpu = spec.State.reset(entry=image.entry, features=host.profile.features)
        self.pool = pool
        self.shadow = self.make_pager()
        self.bus, self.devices = standard_devices(
            _GuestClock(self.cpu), self.memory.dma(), disk=config.disk, console_input=config.console_input,
            disk2=config.disk2,
        )  # fmt: skip
        self._stop: str | None = None
        self._stats = dict.fromkeys((COUNTER_DIRECT, COUNTER_INTERVENTIONS, "virtual_interrupts", "host_ticks"), 0)
        self._hidden_left = 0
        self._repeat: tuple[int, int] | None = None  # the last hidden fault (pc, address)
        self._entered_at: int | None = None  # the host's clock at the last entry (``_enter``)
        self._loaded: tuple[int | None, ...] | None = None  # what that entry loaded (``_enter``)
        self._left: tuple[object, ...] = ()  # what the last exit took back (``_leave``)
        cls = type(self)
        self._load_changes = cls._enter is TrapEmulateVM._enter and cls._leave is TrapEmulateVM._leave
        """Whether ``_enter`` may write only what changed: the real CPU is loaded and read back
        by this class's own code alone."""
        self._host = DeviceHost(
            self.cpu,
            self.bus,
            self.devices,
            clock=lambda: self.cpu.clock,
            run=self._run_guest,
            advance_clock=lambda ticks: spec.advance_clock(self.cpu, ticks),
        )

    def make_pager(self) -> ShadowPager:
        """The shadow pager of this guest (a hook: a variant subclass returns its own): over the
        guest's RAM, in the VM's pool, with the VMM's IDT reserved in every shadow."""
        return ShadowPager(self.monitor.host, self.memory, self.pool, reserved={RESERVED_VA: self.monitor.idt})

    # -- the outside ----------------------------------------------------------------------
    @property
    def counters(self) -> Mapping[str, int]:
        """The efficiency keys of the contract (guest instructions retired directly by the core
        and by the spec, VMM interventions: every host exit and every tick the VMM ran in the
        spec), guest and host ticks, virtual interrupts delivered, and the shadow pager's
        counts (hidden and true page faults, traced writes, ...)."""
        out = dict(self._stats)
        out[COUNTER_EMULATED] = sum(self.cpu.counters.insn[0])
        out["guest_ticks"] = self.cpu.clock
        out.update(self.shadow.counters)
        return out

    @property
    def ticks(self) -> int:
        """The guest's clock (docs/vmm-api.md §3): what the suite reads after every slice."""
        return self.cpu.clock

    # -- the run loop ----------------------------------------------------------------------
    def run_slice(self, budget: int) -> None:
        """Run at most ``budget`` guest ticks, never past ``config.budget``; the device loop is
        the native platform's (``DeviceHost``), this VM's CPU is ``_run_guest``."""
        if self._stop is not None:
            return
        end = min(self.cpu.clock + budget, self.config.budget)
        self._hidden_left = max(1, (end - self.cpu.clock) // self.hidden_share)
        self._stop = self._host.run_until(end)
        if self._stop is None and self.cpu.clock >= self.config.budget:
            self._stop = "budget"

    def _run_guest(self, ticks: int) -> spec.Exit:
        """The virtual CPU's ``run`` (docs/architecture.md §10) for at most ``ticks`` guest
        ticks: boundaries on the virtual CPU, instructions directly on the host when possible."""
        v = self.cpu
        end = v.clock + ticks
        while True:
            # §6.5 at the virtual CPU's boundary: shutdown, then a pending single-step #DB.
            if v.shutdown:
                return _SHUTDOWN
            if v.pending_db:
                ex = deliver_single_step(v, self.memory)
                if ex is not None:
                    return ex
            if v.clock >= end:
                return _BUDGET
            interrupt = not v.int_shadow and interrupt_deliverable(v)
            if interrupt or v.halted or self._hidden_left <= 0:
                # An interrupt to deliver through the guest's IDT, or a halted CPU: one tick of
                # the spec.
                self._stats["virtual_interrupts"] += interrupt
                self._stats[COUNTER_INTERVENTIONS] += interrupt or not v.halted
                ex = self._emulate()
                if ex is not None:
                    return ex
                continue
            ex = self._direct(end - v.clock)
            if ex is not None:
                return ex

    def _emulate(self) -> spec.Exit | None:
        """One tick of the virtual CPU in the spec (an emulated instruction or an interrupt
        delivery); ``invlpg`` also reaches the shadow pager."""
        v = self.cpu
        address = self._invlpg_address(v)
        before = v.pc
        ex = tick(v, self.memory)
        if address is not None and v.pc == (before + 4) & MASK64:
            self.shadow.invlpg(address)
        return ex

    def _invlpg_address(self, v: spec.State) -> int | None:
        """The address of the ``invlpg`` at pc, if that is what will execute (a peek through
        the guest's tables; the spec fetches the same word again)."""
        if not (v.int_shadow or not (v.halted or interrupt_deliverable(v))):
            return None  # tick() will deliver an interrupt or find the CPU halted
        try:
            entry = spec.decode_word(spec.fetch(v, self.memory, v.pc))
        except spec.Fault:
            return None
        if entry is None or entry[0].insn is not _INVLPG:
            return None
        d = entry[0]
        return (v.r[d.rs1] + d.imm) & MASK64

    # -- direct execution --------------------------------------------------------------------
    def _direct(self, ticks: int) -> spec.Exit | None:
        """Run the guest on the host CPU for at most ``ticks`` host ticks and answer its exit."""
        monitor = self.monitor
        host = monitor.host
        v = self.cpu
        self._entered_at = None
        self._enter(host)
        start = self._entered_at  # the host's clock, read there (None if a subclass did not)
        if start is None:
            start = host.clock
        ex = host.run(ticks)
        reason = ex.reason
        # A budget exit ran every tick of its budget (docs/architecture.md §10): the host's
        # clock is read only after the other exits.
        elapsed = ticks if reason is ExitReason.BUDGET else host.clock - start
        self._leave(host)
        self._stats["host_ticks"] += elapsed
        if reason is ExitReason.BUDGET:
            self._repeat = None
            v.clock += elapsed
            self._stats[COUNTER_DIRECT] += elapsed
            if self._loaded is not None:
                # The real CPU now holds what the entry loaded, but for what the exit took
                # back: the next entry of this VM writes only what differs (``_enter``).
                monitor.real_direct = (self, *self._left, self._loaded)
            return None
        self._stats[COUNTER_INTERVENTIONS] += 1
        if reason is not ExitReason.HOST_GATE:
            # Port I/O the guest kernel ran directly (real IOPL lets ring 1 do it), answered by
            # the virtual devices; hcall at ring 1 (a bare machine has no host software for it
            # either).  hlt always traps, so it never gets here.
            v.clock += elapsed
            self._stats[COUNTER_DIRECT] += elapsed
            return spec.Exit(reason, number=ex.number, port=ex.port, value=ex.value, reg=ex.reg)
        if ex.kind is EventKind.TRAP:
            # The single-step #DB of an instruction the guest ran with TF: the guest's own trap,
            # delivered through its IDT at the next boundary (no tick of its own, §6.4).
            v.clock += elapsed
            self._stats[COUNTER_DIRECT] += elapsed
            v.pending_db = True
            return None
        # A fault or `int n` at pc: the ticks before it were the guest's; its own tick is the
        # emulated instruction's, or nobody's if the fault was hidden.
        v.clock += elapsed - 1
        self._stats[COUNTER_DIRECT] += elapsed - 1
        if ex.kind is not EventKind.EXTERNAL:
            self._restore_shadow(v)
        if ex.kind is EventKind.SOFTWARE:
            v.pc = (v.pc - 4) & MASK64  # back to the `int`: the spec executes it for the guest
        elif ex.kind is EventKind.FAULT and ex.vector == spec.PF:
            access = (
                spec.ACCESS_FETCH
                if ex.error_code & PF_I
                else (spec.ACCESS_WRITE if ex.error_code & PF_W else spec.ACCESS_READ)
            )
            if self.shadow.fault(v, ex.address, access) is Resolution.HIDDEN:
                self._hidden_left -= 1
                key = (v.pc, ex.address)
                if key != self._repeat:
                    self._repeat = key
                    return None
                # The same hidden fault twice in a row: whatever the host still caches, the
                # spec makes progress.
                self.shadow.needs_flush = True
        elif ex.kind is EventKind.EXTERNAL:
            # The vector the VMM presented, taken by the real CPU at the exact boundary where
            # the guest's IF, interrupt shadow and TPR allow it: the spec delivers it through
            # the guest's IDT (that tick is the delivery's).
            self._stats["virtual_interrupts"] += 1
        elif ex.kind is not EventKind.FAULT:
            raise RuntimeError(f"{self.monitor.name}: unexpected {ex.kind.name} event {ex.vector} at a host gate")
        self._repeat = None
        return self._emulate()

    @staticmethod
    def _restore_shadow(v: spec.State) -> None:
        """Give back the ``sti`` interrupt shadow (docs/architecture.md §6.5) of the boundary
        before an instruction that faulted or ran `int n` on the real CPU.

        The real CPU spent the shadow at that boundary (step 3) and a fault leaves no trace of
        it, yet the instruction has not executed: it is either retried directly (a hidden page
        fault) or executed by the spec, and both pass that boundary again.  Whether the shadow
        was there is known without a record: the real CPU held the guest's IF, TPR and pending
        vector, and a fault leaves them as they were before the instruction, so if the interrupt
        is deliverable now it was deliverable at that boundary, and only a shadow can have held
        it back.  Where it is not deliverable the shadow changes nothing."""
        v.int_shadow = interrupt_deliverable(v)

    def _enter(self, host: Machine) -> None:
        """Load the real CPU with this guest's state, deprivileged: the ring plan's ring and
        IOPL, the shadow CR3, the VMM's IDT; the guest's IF, TPR, interrupt shadow and pending
        vector, so that the real CPU takes the guest's interrupt exactly when the guest would.

        After a budget exit of this VM's own direct run, with nothing loaded since, only what
        differs is written: a budget exit leaves the real CPU as the entry loaded it but for what
        ``_leave`` took back (registers, pc, FLAGS, interrupt shadow, pending #DB, ring) — at a
        real ring above 0 nothing else can change without a trap — and a field written with the
        value it holds changes nothing (the core compares CR0, CR3 and CR4 with what it last
        ran, docs/architecture.md §10).  A subclass that loads more in its own ``_enter`` gets
        every field written every time (``_loaded`` stays None)."""
        v, cpu, plan, monitor = self.cpu, host.cpu, self.plan, self.monitor
        root = self.shadow.root(v, plan.space(v.cpl))
        if self.shadow.needs_flush:
            host.tlb_flush()
            self.shadow.needs_flush = False
        self._entered_at = now = host.clock
        real, monitor.real_direct = monitor.real_direct, None
        flags = (v.flags & (FLAGS_TF | FLAGS_IF)) | (plan.real_iopl(v.iopl, v.cpl) << FLAGS_IOPL_SHIFT)
        ring = plan.real_ring(v.cpl)
        if plan.seglimit:
            # Both limits (docs/architecture.md §5.3): data and fetch alike stop below the
            # reserved range, and at guest CPL 1-3 below the guest's own limits too.
            seglimit = SEGLIMIT_BELOW_RESERVED if v.cpl == 0 else min(v.seglimit, SEGLIMIT_BELOW_RESERVED)
            cslimit = SEGLIMIT_BELOW_RESERVED if v.cpl == 0 else min(v.cslimit, SEGLIMIT_BELOW_RESERVED)
        else:
            seglimit = cslimit = None
        # rdtsc runs directly (unless CR4.TSD): make the real TSC read the guest's clock.
        tsc_offset = (v.clock + v.tsc_offset - now) & MASK64
        cr4 = self.shadow.real_cr4_pl | (v.cr4 & CR4_TSD)
        loaded = (cr4, root, v.cr8, seglimit, cslimit, tsc_offset, v.intr_vector)
        shadow = int(v.int_shadow)
        self._loaded = loaded if self._load_changes and ring > 0 else None
        if real is not None and real[0] is self and self._loaded is not None:
            _, real_r, real_pc, real_flags, real_shadow, real_db, real_ring, real_loaded = real
            if v.r != real_r:
                cpu.r.load(v.r)
            if v.pc != real_pc:
                cpu.pc = v.pc
            if flags != real_flags:
                cpu.flags = flags
            if ring != real_ring:
                cpu.cpl = ring
            if shadow != real_shadow:
                cpu.int_shadow = shadow
            if real_db:
                cpu.pending_db = 0
            if loaded == real_loaded:
                return
            cpu.cr4, cpu.cr3, cpu.cr8 = cr4, root, v.cr8
            if plan.seglimit:
                cpu.seglimit, cpu.cslimit = seglimit, cslimit
            cpu.tsc_offset = tsc_offset
            cpu.intr_vector = v.intr_vector
            return
        cpu.r.load(v.r)
        cpu.pc = v.pc
        cpu.flags = flags
        cpu.cpl = ring
        cpu.cr0 = _REAL_CR0
        cpu.cr4 = cr4
        cpu.cr3 = root
        cpu.cr8 = v.cr8
        cpu.idtr = RESERVED_VA
        if plan.seglimit:
            cpu.seglimit = seglimit
            cpu.cslimit = cslimit
        cpu.tsc_offset = tsc_offset
        cpu.pending_db = 0
        cpu.halted = 0
        cpu.int_shadow = shadow
        cpu.intr_vector = v.intr_vector
        cpu.intr_acked = -1

    def _leave(self, host: Machine) -> None:
        """Take back what direct execution may have changed: registers, pc, TF and IF (the guest
        kernel's cli, sti, popf and iret run directly where real IOPL allows), the interrupt
        shadow, a pending single step, the ring; what the real CPU holds of them is kept in
        ``_left`` for the next entry."""
        v, cpu = self.cpu, host.cpu
        values = cpu.r.values()
        v.r[:] = values  # r0 reads 0 there, as the spec keeps it
        v.pc = pc = cpu.pc
        flags = cpu.flags
        v.flags = (v.flags & ~(FLAGS_TF | FLAGS_IF)) | (flags & (FLAGS_TF | FLAGS_IF))
        shadow, db, ring = cpu.int_shadow, cpu.pending_db, cpu.cpl
        v.int_shadow = bool(shadow)
        v.pending_db = bool(db)
        v.cpl = self.plan.guest_cpl(ring, v.cpl)
        self._left = (values, pc, flags, shadow, db, ring)


class TrapEmulateVMM(VMM):
    """Trap-and-emulate with shadow paging (Fisher-Ogden §2.1-§2.2): direct execution at a
    deprivileged ring, privileged instructions emulated by the spec on a virtual CPU.

    Needs no host feature: it runs on every profile, and is equivalent to the real machine
    exactly where Popek & Goldberg's theorem says (``classic-1974``)."""

    name = "trap-and-emulate"
    technique = "trap-and-emulate with shadow paging (Fisher-Ogden 2006 §2.1-§2.2)"
    requires = frozenset()
    reserved_range: ClassVar[tuple[int, int]] = (RESERVED_VA, 1 << 64)
    """The linear range kept mapped in every guest address space (the VMM's IDT page,
    ``rings.py``): what the suite's expected deviation may blame on address-space compression
    where no segment limit hides it (``conformance.checks.explained_by_deviation``)."""
    vm_class: ClassVar[type[TrapEmulateVM]] = TrapEmulateVM
    """The class of this VMM's VMs, built as ``vm_class(monitor, image, config, base, pool)``:
    a subclass (a one-bug variant, a student's extension) names its own."""

    def __init__(self, host: Machine, plan: RingPlan | None = None) -> None:
        """``plan`` overrides the ring plan of the host's profile (``rings.ring_plan``), e.g. to
        see ring compression fail on ``x86-64-2005`` (``rings.RING_COMPRESSION``)."""
        super().__init__(host)
        self.real_direct: tuple[object, ...] | None = None
        """(VM, what its last direct run left in the real CPU) after a budget exit, until the
        next entry of any VM (``TrapEmulateVM._enter``)."""
        self.plan = plan or ring_plan(host.profile.features)
        self.map = HostMap(host)
        self.idt = self.map.vmm_pages(PAGE_SIZE)
        host.write(self.idt, host_gate_idt())

    def create_vm(self, image: GuestImage, config: VMConfig) -> TrapEmulateVM:
        pool_bytes = pool_size(config.memory)
        base = self.map.guest_region(config.memory)
        pool = self.map.vmm_pages(pool_bytes)
        vm = self.vm_class(self, image, config, base, (pool, pool + pool_bytes))
        self.vms.append(vm)
        return vm

    def run(self, budget: int) -> None:
        run_round_robin(self.vms, budget, SLICE, lambda vm: vm.cpu.clock)
