"""The paravirtual VMM's three host sides (docs/paravirt-abi.md §1, §2.3): how a guest kernel meets each transport's host.

``ParavirtVM`` is one monitor for every profile: its hypercall handlers, page-table validation,
events, trap table and rings are the same everywhere.  What differs per transport
(``transport_for(profile)``) is small and lives here, one class each:

- the real ring of the kernel and how the virtual CPL is known;
- the IDT the CPU reads (host gates, or the guest-mode IDT) and where the fast gate goes;
- how the guest is entered (``run`` or ``vmrun``) and what an exit means (a hypercall, an
  exception of the guest, an ``int n``);
- what an access of the kernel's checks before the walk (the segment limit, or canonical form);
- on ring-3 hosts, the switch between the kernel's and the user's page tables (§7.4).

Between two exits the guest's registers live in the real CPU (``host.cpu``) on every host — on
``vmx`` hosts too, where the CPU is only the VMM's register file while the guest is in the VMCS
(copied in at each entry, out at each exit, as KVM's software register cache) — so that the
handlers read and write one set of registers whatever the transport.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cffi_core.exits import EventKind, ExitReason
from cffi_core.machine import Exit
from cffi_core.spec.state import (
    FLAGS_TF,
    GATE_DPL_SHIFT,
    GATE_P,
    GATE_RING_SHIFT,
    GATE_TRAP,
    GATE_TYPE_SHIFT,
    GP,
    MASK64,
    PF,
    PF_U,
)
from cffi_core.vmx import EventInfo, IntrType, ProcControl, VmExitReason
from cffi_core.vmx import VmcsField as F
from conformance.paravirt import PV_HYPERCALL_VECTOR, PV_VIRT_LIMIT, Transport
from reference_vmm.trap_emulate.monitor import host_gate_idt

if TYPE_CHECKING:
    from reference_vmm.paravirt.monitor import Gate, ParavirtVM

__all__ = ["HcallHost", "HostSide", "IntHost", "VmcallHost", "host_side"]

SEGLIMIT = PV_VIRT_LIMIT - 1
"""``MSR_SEGLIMIT`` and ``MSR_CSLIMIT`` at ring 1-3 on ``x86-2005``: the last byte below the VMM's half."""
_GATE_SIZE = 16
_UD, _DB = 6, 1
_INSN = 4  # every P64 instruction is one word (architecture.md §3)
_CANONICAL = PV_VIRT_LIMIT  # 4-level paging: bits 63:47 all equal (architecture.md §5.3 step 3)


def _fast_gate(handler: int, ring: int) -> bytes:
    """A real trap gate of DPL 3 to ``ring``: the fast system-call gate (§6.3)."""
    attrs = GATE_P | (GATE_TRAP << GATE_TYPE_SHIFT) | (3 << GATE_DPL_SHIFT) | (ring << GATE_RING_SHIFT)
    return handler.to_bytes(8, "little") + attrs.to_bytes(8, "little")


def _canonical(va: int, size: int) -> bool:
    last = (va + max(size, 1) - 1) & MASK64
    return all(a < _CANONICAL or a >= (1 << 64) - _CANONICAL for a in (va, last))


class HostSide:
    """What one transport's host does for one VM; the base class is ``x86-2005``'s except where
    a subclass says otherwise."""

    transport: Transport
    kernel_ring: int
    """The real ring (in guest mode, the guest ring) the guest kernel runs at."""
    direct_fast_gate = True
    """The fast system-call gate is a real gate of the IDT the CPU reads (§6.3): no VMM entry."""

    def __init__(self, vm: ParavirtVM) -> None:
        self.vm = vm
        self.host = vm.host
        self.cpu = vm.host.cpu

    # -- the virtual CPL --------------------------------------------------------------------------
    def user(self) -> bool:
        """The virtual CPL is 3.  Where the kernel has a ring of its own, the real CPL says it
        (the fast gate changes it without the VMM)."""
        return self.cpu.cpl == 3

    def kernel_tables(self) -> None:
        """Before an event from user mode writes its frame: the kernel's page tables (§7.4), where
        user mode has its own; the frame is written through them."""

    def enter_kernel(self) -> None:
        """An event's delivery enters the kernel (§6.2), its frame written."""
        self.cpu.cpl = self.kernel_ring

    def enter_user(self) -> None:
        """The ``iret`` hypercall returns to user mode (§4.4)."""
        self.cpu.cpl = 3

    # -- the IDT the CPU reads --------------------------------------------------------------------
    def real_idt(self, trap_table: list[Gate | None] | None) -> bytes:
        """Host gates everywhere (every event comes to the VMM), but the fast gate a real trap gate
        to the kernel's ring, with ``MSR_RSP1`` the ``stack_switch`` value."""
        idt = bytearray(host_gate_idt())
        for vector, gate in enumerate(trap_table or ()):
            if gate is not None and gate.fast and self.direct_fast_gate:
                idt[_GATE_SIZE * vector : _GATE_SIZE * (vector + 1)] = _fast_gate(gate.handler, self.kernel_ring)
        return bytes(idt)

    # -- the kernel's accesses --------------------------------------------------------------------
    def beyond(self, va: int, size: int) -> bool:
        """The access fails before the walk with #GP(0): beyond the segment limit (§5.3 step 2)."""
        return bool(size) and (va > SEGLIMIT or size - 1 > SEGLIMIT - va)

    def kernel_error(self, error: int) -> int:
        """A #PF error code of the kernel's own access, as the ABI gives it (§6.2: PF_U exactly
        when the virtual CPL was 3)."""
        return error

    # -- entering the guest and its exits ----------------------------------------------------------
    def enter(self, ticks: int) -> tuple[Exit, int]:
        """Run the guest for at most ``ticks``: the exit and the instructions it retired."""
        host = self.host
        retired = host.retired()
        ex = host.run(ticks)
        return ex, host.retired() - retired

    def answer(self, ex: Exit) -> None:
        """An exit of the real CPU: ``hcall n`` is hypercall n; a host gate, an event of the guest."""
        vm = self.vm
        if ex.reason is ExitReason.HCALL:
            vm.hypercall(ex.number)
        elif ex.reason is ExitReason.HOST_GATE:
            self.host_gate(ex)
        elif ex.reason is ExitReason.SHUTDOWN:
            vm.shut_down("the real CPU shut down")
        else:
            # Port I/O and hlt raise #GP at ring 1 and 3 with IOPL 0: they never exit.
            raise RuntimeError(f"paravirt: unexpected exit {ex.reason.name} at pc {self.cpu.pc:#x}")

    def host_gate(self, ex: Exit) -> None:
        """An event that reached a host gate of the VM's IDT: the guest's fault, trap or ``int n``,
        pc the pushed pc of architecture.md §6.1."""
        if ex.kind is EventKind.EXTERNAL:
            raise RuntimeError("paravirt: an external interrupt reached the VMM, but none is ever presented")
        error = None if ex.kind is EventKind.SOFTWARE else ex.error_code
        if ex.vector == PF and error is not None and not self.user():
            error = self.kernel_error(error)
        cr2 = ex.address if ex.vector == PF and ex.kind is EventKind.FAULT else None
        self.vm.event(ex.vector, error, self.cpu.pc, ex.kind, cr2)

    def flush(self) -> None:
        """Drop the cached translations (the host can drop only all of them)."""
        self.host.tlb_flush()


class HcallHost(HostSide):
    """``x86-2005`` (``seglimit``): the kernel at ring 1 behind the segment limits, ``hcall n``."""

    transport = Transport.HCALL
    kernel_ring = 1


class IntHost(HostSide):
    """``x86-64-2005``, ``classic-1974``: no segment limits, so the kernel runs at ring 3, where
    paging alone keeps it from the VMM's supervisor pages (architecture.md §4.1: ring
    compression), and hypercalls are ``int 0x82`` through a DPL 3 host gate (§2.3).  Kernel and
    user share CPL 3, so the VMM keeps the virtual CPL itself and gives each its own top-level
    table, switching at every event from user mode and every ``iret`` to it (§7.4, as Xen's
    64-bit port); the fast gate therefore goes through the VMM."""

    transport = Transport.INT
    kernel_ring = 3
    direct_fast_gate = False

    def __init__(self, vm: ParavirtVM) -> None:
        super().__init__(vm)
        self.in_user = False

    def user(self) -> bool:
        return self.in_user

    def kernel_tables(self) -> None:
        self.cpu.cr3 = self.vm.tables.bases[0]

    def enter_kernel(self) -> None:
        self.in_user = False
        self.cpu.cr3 = self.vm.tables.bases[0]

    def enter_user(self) -> None:
        base, user_base = self.vm.tables.bases
        self.in_user = True
        self.cpu.cr3 = user_base or base  # user base 0 is base itself (§4.6)

    def beyond(self, va: int, size: int) -> bool:
        """No segment limit: only the canonical check fails before the walk (§5.3 step 3); the
        VMM's half is supervisor, which the walk at CPL 3 refuses."""
        return bool(size) and not _canonical(va, size)

    def kernel_error(self, error: int) -> int:
        return error & ~PF_U  # the kernel's access, made at CPL 3: virtual CPL 0

    def host_gate(self, ex: Exit) -> None:
        """``int 0x82`` from the kernel is a hypercall, its number in r7; from user mode it is an
        ``int`` to a vector no trap table holds (§2.4)."""
        if ex.vector == PV_HYPERCALL_VECTOR and ex.kind is EventKind.SOFTWARE and not self.in_user:
            self.vm.hypercall(self.cpu.r[7])
        else:
            super().host_gate(ex)


class VmcallHost(HostSide):
    """``vtx-2006``, ``vtx-2009``: the guest in guest mode (docs/vmx.md), its kernel at guest
    ring 1 with IOPL 0 — so every privileged instruction raises #GP(0) by privilege before any
    VM exit could (V.3: privilege first), and no control needs to make one exit — and its user
    at guest ring 3.  Hypercalls are ``vmcall n`` (a VM exit whose qualification is n; the VMM
    advances GUEST_PC).  The CPU reads the guest-mode IDT the VMM keeps in its slot: every
    entry not present but the fast gate, a real trap gate to ring 1, so a system call needs no
    exit; an ``int n`` to any other vector raises #GP(8n + 2), which exits with the ``int`` in
    IDT_VECTORING_INFO, and every exception exits by the exception bitmap.

    Memory: no shadow tables and no nested paging.  Without ``ept`` guest-physical addresses are
    host-physical (V.3), so GUEST_CR3 is the guest's own validated L4 and its entries' machine
    frames are what the walker uses — exactly the software hosts' direct paging (§7.1).  Nested
    paging would add a second dimension to every walk for no protection validation does not
    already give, so ``vtx-2009`` leaves its ``ept`` unused and gives ``mem_base`` the
    host-physical address as the other hosts do; its ``vpid`` tags the guest's translations so
    that entries and exits keep the TLB (V.7)."""

    transport = Transport.VMCALL
    kernel_ring = 1

    _IN = (int(F.GUEST_PC), int(F.GUEST_CPL), int(F.GUEST_FLAGS), int(F.GUEST_CR3), int(F.GUEST_RSP1),
           int(F.GUEST_PENDING_DB))  # fmt: skip
    _OUT = (int(F.GUEST_PC), int(F.GUEST_CPL), int(F.GUEST_FLAGS), int(F.GUEST_PENDING_DB))
    _EXCEPTION = (int(F.EXIT_INTR_INFO), int(F.EXIT_INTR_ERROR_CODE), int(F.IDT_VECTORING_INFO))

    def __init__(self, vm: ParavirtVM) -> None:
        super().__init__(vm)
        from reference_vmm.paravirt.monitor import _REAL_CR0, _REAL_CR4, IDT_VA

        v = self.vmcs = self.host.vmcs()
        proc = 0
        if "vpid" in self.host.profile.features:
            proc |= ProcControl.ENABLE_VPID
            v[F.VPID] = len(vm.monitor.vms) + 1
        v[F.PROC_CONTROLS] = int(proc)
        v[F.EXCEPTION_BITMAP] = 0xFFFF_FFFF  # every exception comes to the VMM (#PF: mask = match = 0)
        v[F.GUEST_CR0] = _REAL_CR0
        v[F.GUEST_CR4] = _REAL_CR4
        v[F.GUEST_IDTR] = IDT_VA

    def real_idt(self, trap_table: list[Gate | None] | None) -> bytes:
        """The guest-mode IDT: not present (an ``int n`` raises #GP and exits), but the fast gate.
        A host gate is a reserved type in guest mode (V.2)."""
        idt = bytearray(_GATE_SIZE * 256)
        for vector, gate in enumerate(trap_table or ()):
            if gate is not None and gate.fast:
                idt[_GATE_SIZE * vector : _GATE_SIZE * (vector + 1)] = _fast_gate(gate.handler, self.kernel_ring)
        return bytes(idt)

    # ``beyond`` is x86-2005's: guest mode without ``seglimit`` has no limit in force
    # (architecture.md §5.3), so the kernel could read the VMM's read-only page of its guest-mode
    # IDT itself; the VMM never accesses anything from PV_VIRT_LIMIT on the guest's behalf (§1: the
    # guest maps below it), and refuses such an access as the limit would, #GP(0).

    def enter(self, ticks: int) -> tuple[Exit, int]:
        """Copy the registers into the VMCS, ``vmrun``, copy them back out (VMREADs and VMWRITEs
        the host counts: this VMM's cost of an exit)."""
        host, cpu, v = self.host, self.cpu, self.vmcs
        v.regs.set_values(cpu.r.values())
        v.write_many(self._IN, (cpu.pc, cpu.cpl, cpu.flags, cpu.cr3, cpu.rsp[1], cpu.pending_db))
        retired = host.retired(guest=True)
        ex = host.vmrun(v, ticks)
        done = host.retired(guest=True) - retired
        cpu.r.load(v.regs.values())
        cpu.pc, cpu.cpl, cpu.flags, cpu.pending_db = v.read_many(self._OUT)
        return ex, done

    def answer(self, ex: Exit) -> None:
        if ex.reason is not ExitReason.VM:
            # hlt and port I/O raise #GP at guest ring 1 and 3 with IOPL 0: never a host exit.
            raise RuntimeError(f"paravirt: unexpected exit {ex.reason.name} at pc {self.cpu.pc:#x}")
        vm, cpu, v = self.vm, self.cpu, self.vmcs
        if ex.number == VmExitReason.VMCALL:
            if cpu.cpl == 3:
                vm.event(_UD, None, cpu.pc, EventKind.FAULT)  # vmcall from user mode: #UD (§2.4)
                return
            # The exit is fault-like (V.3): the VMM completes the instruction, as KVM's skip does.
            cpu.pc = (cpu.pc + _INSN) & MASK64
            if cpu.flags & FLAGS_TF:
                cpu.pending_db = 1
            vm.hypercall(v[F.EXIT_QUALIFICATION])
        elif ex.number == VmExitReason.EXCEPTION:
            info, error, vectoring = v.read_many(self._EXCEPTION)
            event, during = EventInfo.decode(info), EventInfo.decode(vectoring)
            if (
                during.valid
                and during.kind == IntrType.SOFTWARE_INTERRUPT
                and event.vector == GP
                and error == 8 * during.vector + 2
            ):
                # `int n` at a not-present gate: the guest's int n, pc after it (V.5: GUEST_PC is the int).
                vm.event(during.vector, None, (cpu.pc + _INSN) & MASK64, EventKind.SOFTWARE)
                return
            code = error if event.has_error else None
            cr2 = v[F.EXIT_QUALIFICATION] if event.vector == PF else None
            # Every exception exits before its delivery, so a fault during a delivery is only ever
            # one of the fast gate's, which is the `int`'s own fault at GUEST_PC (§6.6).
            kind = EventKind.TRAP if event.vector == _DB else EventKind.FAULT
            vm.event(event.vector, code, cpu.pc, kind, cr2)
        elif ex.number == VmExitReason.TRIPLE_FAULT:
            vm.shut_down("the guest shut down in guest mode")
        else:
            raise RuntimeError(f"paravirt: unexpected VM exit {ex.number} at pc {cpu.pc:#x}")


_SIDES: dict[Transport, type[HostSide]] = {
    Transport.HCALL: HcallHost,
    Transport.INT: IntHost,
    Transport.VMCALL: VmcallHost,
}


def host_side(transport: Transport) -> type[HostSide]:
    """The host side of a transport."""
    return _SIDES[transport]
