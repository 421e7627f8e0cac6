"""``EmulateVMM``: full emulation, Fisher-Ogden (2006) §2.1 — the guest never touches the host CPU.

§2.1 describes the simplest way to give a guest a whole machine: *emulate* it.  Every guest
instruction is decoded and executed by software, every guest memory access lands in a data
structure of the monitor, every device is a software model.  Nothing is ever run directly, so
nothing can escape: the technique needs no help from the hardware and works on *any* profile,
x86-like or classically virtualizable alike (Popek & Goldberg's theorem does not even apply —
there is no "directly executed" subset to reason about).  The price is speed: every guest
instruction costs many host instructions (here, a Python function call or ten per tick).

In popek the emulator is the executable spec (``cffi_core.spec``), the readable pure-Python
reading of docs/architecture.md.  The monitor supplies what the spec leaves to "the host"
(architecture §10, §11):

- *memory*: a ``ByteMemory`` — a bytearray holding guest-physical RAM;
- *devices*: the standard set (PIC, timer, console, disk, result port) built by
  ``standard_devices`` over a DMA accessor into that bytearray and a clock that reads the
  guest's own tick count.  The same classes are the platform's devices in a native run, which
  is why the guest cannot tell the difference (docs/devices.md §1);
- *the run loop*: ``spec.run`` returns at every port access, ``hlt``, shutdown or budget, and
  ``cffi_core.devices.host.DeviceHost`` answers it — the very loop the native platform runs
  over the C core, given a different CPU.

The host ``Machine`` is not used at all — a full emulator could run on a host with no
privileged architecture whatsoever.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from cffi_core import spec
from cffi_core.counters import flatten
from cffi_core.devices import BufferDMA, standard_devices
from cffi_core.devices.host import DeviceHost
from cffi_core.image import GuestImage
from conformance.api import COUNTER_DIRECT, COUNTER_EMULATED, COUNTER_INTERVENTIONS, VMM, VMConfig
from reference_vmm.standard_vm import StandardDevicesVM


class _GuestClock:
    """The ``Clock`` the virtual devices see: the guest's own tick count (architecture §9).

    Under emulation guest time and host time are unrelated — a guest tick may cost the host
    microseconds — so devices must count in guest ticks, or a timer would fire at a different
    guest instruction than on real hardware and equivalence would be lost.
    """

    def __init__(self, cpu: spec.State) -> None:
        self._cpu = cpu

    def now(self) -> int:
        return self._cpu.clock


class EmulatedVM(StandardDevicesVM):
    """One emulated machine: a spec ``State`` (the virtual CPU), its RAM and its devices."""

    def __init__(self, image: GuestImage, config: VMConfig, features: frozenset[str]) -> None:
        self.config = config
        self.memory = spec.ByteMemory(config.memory)
        for seg in image.segments:
            if seg.end > config.memory:
                raise ValueError(
                    f"image {image.name}: segment at {seg.address:#x}..{seg.end:#x} does not fit in "
                    f"{config.memory:#x} bytes of guest RAM"
                )
            self.memory.write_bytes(seg.address, seg.data)
        # The virtual CPU has the *host's* features: an emulator could model any machine, but
        # the guest must see the one the native oracle runs on (classic or x86-like, §12).
        self.cpu = spec.State.reset(entry=image.entry, features=features)
        # DMA straight into the guest's bytearray.  Unlike the platform's MachineDMA there is
        # no decoded-code cache to keep coherent: the spec fetches every instruction afresh.
        self.bus, self.devices = standard_devices(
            _GuestClock(self.cpu),
            BufferDMA(self.memory.data),
            disk=config.disk,
            console_input=config.console_input,
            disk2=config.disk2,
        )
        self._stop: str | None = None
        self._host = DeviceHost(
            self.cpu,
            self.bus,
            self.devices,
            clock=lambda: self.cpu.clock,
            run=lambda ticks: spec.run(self.cpu, self.memory, ticks),
            advance_clock=lambda ticks: spec.advance_clock(self.cpu, ticks),
        )

    # -- the outside ----------------------------------------------------------------------
    @property
    def counters(self) -> Mapping[str, int]:
        counters = _flat_counters(self.cpu.counters)
        # Efficiency (docs/vmm-api.md §8): nothing runs directly; the monitor's software
        # carries out, and so intervenes at, every single guest instruction (§2.1).
        counters[COUNTER_DIRECT] = 0
        counters[COUNTER_EMULATED] = counters["instructions"]
        counters[COUNTER_INTERVENTIONS] = counters["instructions"]
        return counters

    @property
    def ticks(self) -> int:
        """The guest's clock (docs/vmm-api.md §3), halted time included: the virtual CPU's own,
        read after every slice without building the counters."""
        return self.cpu.clock

    # -- the run loop ----------------------------------------------------------------------
    def run_slice(self, budget: int) -> None:
        """Emulate at most ``budget`` ticks, never past ``config.budget``; set ``stop`` when the
        guest can go no further.  The loop that answers the virtual CPU's exits is the one the
        native platform runs over the C core (``DeviceHost``): same devices, different CPU."""
        if self._stop is not None:
            return
        end = min(self.cpu.clock + budget, self.config.budget)
        self._stop = self._host.run_until(end)
        if self._stop is None and self.cpu.clock >= self.config.budget:
            self._stop = "budget"


class EmulateVMM(VMM):
    """Full emulation (Fisher-Ogden §2.1): each VM's every instruction runs in the spec.

    Needs no host feature and ignores the host Machine; correct on every profile, and the
    slowest of the reference VMMs by two orders of magnitude.
    """

    name = "emulate"
    technique = "full emulation (Fisher-Ogden 2006 §2.1)"
    requires = frozenset()
    vm_class: ClassVar[type[EmulatedVM]] = EmulatedVM
    """The class of this VMM's VMs, built as ``vm_class(image, config, features)``: a subclass
    names its own."""

    def create_vm(self, image: GuestImage, config: VMConfig) -> EmulatedVM:
        vm = self.vm_class(image, config, self.host.profile.features)
        self.vms.append(vm)
        return vm

    def run(self, budget: int) -> None:
        # The VMs share nothing (each has its own CPU, RAM and devices), so emulating them one
        # after the other gives each the same observation as running it alone.
        for vm in self.vms:
            vm.run_slice(budget)


def _flat_counters(counters: spec.Counters) -> dict[str, int]:
    """The spec's counters under the names ``Machine.counters`` uses (architecture §13), so
    that reports can put the two side by side."""
    scalars = {k: v for k, v in counters.as_dict().items() if isinstance(v, int)}
    return flatten(scalars, counters.insn, counters.exceptions, counters.interrupts)
