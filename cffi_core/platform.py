"""A bare P64 computer: a Machine wired to the standard devices, run natively to the end.

This is the oracle of the conformance suite — the machine as specified, with no monitor in
between — and what ``popek run`` executes.  The run loop is the host side of
docs/architecture.md §10: it answers port I/O with the devices of §11, presents the PIC's
vector to the CPU, and lets time pass while the CPU is halted (§9).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cffi_core._binding import RangeError
from cffi_core.devices import DMAError, standard_devices
from cffi_core.machine import DEFAULT_MEMORY, ExitReason, Machine, TLBConfig
from cffi_core.profiles import DEFAULT_PROFILE, Profile

DEFAULT_BUDGET = 100_000_000
FLAGS_IF = 1 << 9


class MachineError(RuntimeError):
    """The guest did something a bare machine cannot do (reach a host gate, ``hcall``)."""


@dataclass(frozen=True)
class RunResult:
    """What a native run shows to the outside: the raw material of an observation."""

    stop: str  # "exit" (result port), "halted" (nothing can wake it), "shutdown", "budget"
    exit_code: int | None
    console: bytes
    disk: bytes
    clock: int
    counters: dict[str, int] = field(default_factory=dict)
    console_truncated: bool = False


class MachineDMA:
    """DMA into the machine's physical memory, keeping decoded code coherent."""

    def __init__(self, machine: Machine) -> None:
        self._m = machine

    def read(self, addr: int, size: int) -> bytes:
        try:
            return self._m.read(addr, size)
        except (RangeError, ValueError) as e:
            raise DMAError(f"DMA read of {size} bytes at {addr:#x}: {e}") from None

    def write(self, addr: int, data: bytes) -> None:
        try:
            self._m.write(addr, data)
        except (RangeError, ValueError) as e:
            raise DMAError(f"DMA write of {len(data)} bytes at {addr:#x}: {e}") from None


class Platform:
    """A Machine plus PIC, timer, console, disk and result port, run until the guest stops."""

    def __init__(
        self,
        profile: str | Profile = DEFAULT_PROFILE,
        memory: int = DEFAULT_MEMORY,
        *,
        disk: bytes | None = None,
        console_input: bytes = b"",
        tlb: TLBConfig | None = None,
    ) -> None:
        self.machine = Machine(profile, memory, tlb)
        self.bus, self.devices = standard_devices(
            self.machine, MachineDMA(self.machine), disk=disk, console_input=console_input
        )

    def load(self, image) -> None:
        self.machine.load(image)

    def run(self, budget: int = DEFAULT_BUDGET) -> RunResult:
        """Run until the guest writes the result port, shuts down, halts for good, or
        ``budget`` ticks of the clock have passed (halted time included)."""
        m, cpu, pic = self.machine, self.machine.cpu, self.devices.pic
        end = m.clock + budget
        while True:
            now = m.clock
            deadline = self.bus.next_deadline()
            if deadline is not None and deadline <= now:
                self.bus.update(now)
                continue
            if now >= end:
                return self._result("budget")
            cpu.intr_vector = pic.pending_vector()
            chunk = end - now if deadline is None else min(end, deadline) - now
            ex = m.run(chunk)
            acked = cpu.intr_acked
            if acked >= 0:
                pic.acknowledge(acked)
                cpu.intr_acked = -1
            reason = ex.reason
            if reason is ExitReason.BUDGET:
                continue
            if reason is ExitReason.IO_IN:
                value = self.bus.read(ex.port)
                if ex.reg:
                    cpu.r[ex.reg] = value
            elif reason is ExitReason.IO_OUT:
                self.bus.write(ex.port, ex.value)
                if self.devices.result.stopped:
                    return self._result("exit")
            elif reason is ExitReason.HLT:
                if not self._idle_until(end):
                    return self._result("halted")
            elif reason is ExitReason.SHUTDOWN:
                return self._result("shutdown")
            else:
                raise MachineError(self._describe_error(ex))

    def _idle_until(self, end: int) -> bool:
        """Let time pass while halted; False when nothing can ever wake the CPU."""
        cpu, now = self.machine.cpu, self.machine.clock
        if not cpu.flags & FLAGS_IF:
            return False  # hlt with interrupts off: halted for good
        deadline = self.bus.next_deadline()
        if deadline is None:
            return False
        self.machine.advance_clock(max(0, min(deadline, end) - now))
        self.bus.update(self.machine.clock)
        return True

    def _describe_error(self, ex) -> str:
        pc = self.machine.cpu.pc
        if ex.reason is ExitReason.HOST_GATE:
            return (
                f"a native run reached a host gate (vector {ex.vector}, pc {pc:#x}): host gates "
                "belong to VMMs (docs/architecture.md §10)"
            )
        return f"a native run executed hcall {ex.number} at pc {pc:#x}: there is no host software to call"

    def _result(self, stop: str) -> RunResult:
        d = self.devices
        return RunResult(
            stop=stop,
            exit_code=d.result.exit_code if d.result.stopped else None,
            console=d.console.output,
            disk=bytes(d.disk.data) if d.disk is not None else b"",
            clock=self.machine.clock,
            counters=dict(self.machine.counters),
            console_truncated=d.console.truncated,
        )
