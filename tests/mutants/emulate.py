"""Mutants of ``emulate`` (full emulation by the executable spec): one realistic bug each; they keep the name "emulate"."""

from __future__ import annotations

from dataclasses import replace

from cffi_core import spec
from cffi_core.devices.host import DeviceHost
from cffi_core.spec.events import interrupt_deliverable
from cffi_core.spec.machine import boundary, tick
from cffi_core.spec.state import MASK64
from reference_vmm.emulate import EmulateVMM
from reference_vmm.emulate.monitor import EmulatedVM


def _vmm(name: str, vm_class: type[EmulatedVM], doc: str) -> type[EmulateVMM]:
    """An ``EmulateVMM`` whose VMs are ``vm_class`` (the name "emulate" kept: its deviation applies)."""
    return type(name, (EmulateVMM,), {"vm_class": vm_class, "__doc__": doc, "__module__": __name__})


def _sar_as_shr(cpu: spec.State, memory, ticks: int) -> spec.Exit:
    """``spec.run`` with one instruction mis-emulated: ``sar``/``sari`` shift in zeros (the
    bug: Python's ``>>`` on the unsigned register value)."""
    start = cpu.clock
    while True:
        ex = boundary(cpu, memory)
        if ex is not None:
            return ex
        if cpu.clock - start >= ticks:
            return spec.Exit(spec.EXIT_BUDGET)
        d = None
        if not cpu.halted and (cpu.int_shadow or not interrupt_deliverable(cpu)):
            try:
                entry = spec.decode_word(spec.fetch(cpu, memory, cpu.pc))
                d = entry[0] if entry is not None and entry[0].insn.mnemonic in ("sar", "sari") else None
            except spec.Fault:
                d = None
        if d is not None:
            value = cpu.r[d.rs1]
            count = (d.imm if d.insn.mnemonic == "sari" else cpu.r[d.rs2]) & 63
        pc = cpu.pc
        ex = tick(cpu, memory)
        if d is not None and cpu.pc == (pc + 4) & MASK64 and d.rd:
            cpu.r[d.rd] = value >> count
        if ex is not None:
            return ex


class _SarVM(EmulatedVM):
    def __init__(self, image, config, features) -> None:
        super().__init__(image, config, features)
        self._host = DeviceHost(
            self.cpu, self.bus, self.devices, clock=lambda: self.cpu.clock,
            run=lambda ticks: _sar_as_shr(self.cpu, self.memory, ticks),
            advance_clock=lambda ticks: spec.advance_clock(self.cpu, ticks),
        )  # fmt: skip


SarAsShr = _vmm("SarAsShr", _SarVM, "Emulates sar as a logical shift.")


class _NoInputVM(EmulatedVM):
    def __init__(self, image, config, features) -> None:
        # The bug: the VM's console is built from a config without its input.
        super().__init__(image, replace(config, console_input=b""), features)
        self.config = config


ConsoleInputDropped = _vmm("ConsoleInputDropped", _NoInputVM, "The console's input never reaches the guest.")
