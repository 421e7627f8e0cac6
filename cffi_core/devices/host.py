"""The host half of docs/architecture.md §10 for a CPU wired to the standard devices.

``DeviceHost`` answers a CPU's exits with the devices of §11: it presents the PIC's vector,
acknowledges what the CPU took, answers port I/O, lets time pass while the CPU is halted
(§9), and says when the guest has stopped.  The CPU may be the C core (``Machine``, in a
native run) or the executable spec (a full-emulation VMM's virtual CPU), or any later VMM's
virtual CPU: the loop is written once, here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from cffi_core.devices.bus import PortBus
from cffi_core.exits import ExitReason

FLAGS_IF = 1 << 9  # architecture §2
_BUDGET = ExitReason.BUDGET


class MachineError(RuntimeError):
    """The guest did something a bare machine cannot answer (a host gate, ``hcall``)."""


class _CPU(Protocol):
    """What the loop needs of a CPU: the interrupt fields of §6.5, FLAGS, CR8 (the TPR), the
    pending single-step #DB (§6.4), pc and r."""

    intr_vector: int
    intr_acked: int
    flags: int
    cr8: int
    pending_db: int
    pc: int
    r: Any


class DeviceHost:
    """Runs a CPU against a bus of standard devices until the guest stops or time runs out.

    ``run(ticks)`` runs the CPU for at most ``ticks`` ticks and returns its exit;
    ``clock()`` reads its clock; ``advance_clock(ticks)`` lets halted time pass.
    """

    def __init__(
        self,
        cpu: _CPU,
        bus: PortBus,
        devices: Any,
        *,
        clock: Callable[[], int],
        run: Callable[[int], Any],
        advance_clock: Callable[[int], None],
    ) -> None:
        self.cpu, self.bus, self.devices = cpu, bus, devices
        self._clock, self._run, self._advance = clock, run, advance_clock

    def run_until(self, end: int) -> str | None:
        """Run until the clock reaches ``end`` (None) or the guest stops: "exit" (it wrote the
        result port), "halted" (nothing can ever wake it) or "shutdown" (triple fault)."""
        cpu, bus, pic = self.cpu, self.bus, self.devices.pic
        clock, run = self._clock, self._run
        while True:
            now = clock()
            deadline = bus.next_deadline()  # kept by the bus while no device was called
            if deadline is not None and deadline <= now:
                bus.update(now)  # a device's moment has come: it may raise an IRQ
                continue
            if now >= end:
                return None
            # Present the PIC's choice (§6.5); the CPU delivers it when IF and CR8 allow and
            # reports the vector it took in intr_acked.
            cpu.intr_vector = pic.pending_vector()
            # Never run past the next device deadline, so that a device acts at the exact tick
            # it would on hardware.
            try:
                ex = run((end if deadline is None else min(end, deadline)) - now)
            finally:
                # Even when the run is interrupted (Ctrl-C between two slices of a long run):
                # a vector the CPU took is acknowledged once, never delivered again.
                if cpu.intr_acked >= 0:
                    pic.acknowledge(cpu.intr_acked)
                    cpu.intr_acked = -1
            if ex.reason == _BUDGET:
                continue  # the run's time is up (every host-timer slice ends so): nothing to answer
            stop = self._answer(ex, end)
            if stop is not None:
                return stop

    def _answer(self, ex: Any, end: int) -> str | None:
        reason = ex.reason
        if reason == _BUDGET:
            return None
        if reason == ExitReason.IO_IN:
            value = self.bus.read(ex.port)
            if ex.reg:
                self.cpu.r[ex.reg] = value
            return None
        if reason == ExitReason.IO_OUT:
            self.bus.write(ex.port, ex.value)
            return "exit" if self.devices.result.stopped else None
        if reason == ExitReason.HLT:
            return None if self._idle_until(end) else "halted"
        if reason == ExitReason.SHUTDOWN:
            return "shutdown"
        raise MachineError(self._describe(ex))

    def _idle_until(self, end: int) -> bool:
        """Let time pass while halted (§9); False when nothing can ever wake the CPU.

        A halted CPU with an event to deliver now is not idle (§6.5): a pending single-step #DB
        (the trap of the ``hlt`` itself) or an interrupt it can take — the PIC presents a vector,
        IF = 1 and the TPR lets the vector's class in (``sti; hlt`` with the IRQ already raised).
        The next run delivers it at once, with no halted tick."""
        cpu = self.cpu
        if cpu.pending_db:
            return True
        vector = self.devices.pic.pending_vector()
        if not cpu.flags & FLAGS_IF:
            return False  # hlt with interrupts off: halted for good
        if vector >= 0 and vector >> 4 > cpu.cr8:
            return True
        deadline = self.bus.next_deadline()
        if deadline is None:
            return False
        self._advance(max(0, min(deadline, end) - self._clock()))
        self.bus.update(self._clock())
        return True

    def _describe(self, ex: Any) -> str:
        pc = self.cpu.pc
        if ex.reason == ExitReason.HOST_GATE:
            return (
                f"the guest reached a host gate (vector {ex.vector}, pc {pc:#x}) on a bare machine: "
                "host gates belong to VMMs (docs/architecture.md §10)"
            )
        return f"the guest executed hcall {ex.number} at pc {pc:#x}: a bare machine has no host software to call"
