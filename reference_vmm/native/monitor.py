"""``NativeVMM``: the oracle of equivalence — a guest on a bare platform, with no monitor at all.

Read this first (reference_vmm/READING_GUIDE.md).  It is not a virtual machine monitor: it never
stands between the guest and the hardware.  Each VM is a ``cffi_core.platform.Platform`` — a
fresh bare Machine of the *host's profile* with the standard devices — on which the guest runs
exactly as docs/architecture.md specifies.  Popek & Goldberg (1974) define equivalence against
"the original machine"; this is it, dressed in the VMM contract (conformance/api.py) so that
the suite can compare any VMM with it by the same calls.

What it shows a student is the *shape* every VMM has: ``create_vm`` builds the machine the guest
will believe it has (memory, devices, loaded image), ``run`` moves time forward, and the VM
answers the outside's questions (console, exit code, disk, why it stopped).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from cffi_core.devices import StandardDevices
from cffi_core.image import GuestImage
from cffi_core.platform import Platform
from conformance.api import COUNTER_DIRECT, COUNTER_EMULATED, COUNTER_INTERVENTIONS, VMM, VMConfig
from reference_vmm.standard_vm import StandardDevicesVM


class NativeVM(StandardDevicesVM):
    """A guest on its own bare platform; the platform's devices *are* its outside (read live
    from them, so it is right between ``run`` slices too)."""

    def __init__(self, platform: Platform, config: VMConfig) -> None:
        self.platform = platform
        self.config = config
        self._stop: str | None = None

    @property
    def devices(self) -> StandardDevices:
        return self.platform.devices

    @property
    def counters(self) -> Mapping[str, int]:
        counters = dict(self.platform.machine.counters)
        # No monitor: every instruction is retired by the core, and nothing intervenes.
        counters[COUNTER_DIRECT] = counters["instructions"]
        counters[COUNTER_EMULATED] = 0
        counters[COUNTER_INTERVENTIONS] = 0
        return counters

    @property
    def ticks(self) -> int:
        """The guest's clock (docs/vmm-api.md §3), halted time included: the platform's own, read
        after every slice without building the counters."""
        return self.platform.machine.clock

    def run_slice(self, budget: int) -> None:
        """Run at most ``budget`` more ticks, never past the VM's own ``config.budget``."""
        if self._stop is not None:
            return
        left = self.config.budget - self.platform.machine.clock
        result = self.platform.run(max(0, min(budget, left)))
        # "budget" from the platform only means *this slice* ended; the VM stops for good
        # when its whole allowance is spent, or for any other reason the platform gives.
        if result.stop != "budget" or result.clock >= self.config.budget:
            self._stop = result.stop


class NativeVMM(VMM):
    """No monitor: each VM is a bare platform of the host's profile (the equivalence oracle).

    The host Machine is only consulted for its profile and TLB geometry; the guest gets a
    machine of its own, so nothing a VMM might do to the host can leak into the oracle.
    """

    name = "native"
    technique = "none: a bare machine (the oracle of Popek & Goldberg's equivalence)"
    requires = frozenset()
    vm_class: ClassVar[type[NativeVM]] = NativeVM
    """The class of this VMM's VMs, built as ``vm_class(platform, config)``: a subclass names
    its own."""

    def create_vm(self, image: GuestImage, config: VMConfig) -> NativeVM:
        platform = Platform(
            self.host.profile,
            config.memory,
            disk=config.disk,
            console_input=config.console_input,
            tlb=self.host.tlb,
            disk2=config.disk2,
        )
        platform.load(image)
        vm = self.vm_class(platform, config)
        self.vms.append(vm)
        return vm

    def run(self, budget: int) -> None:
        # The VMs are independent machines: running them one after the other is as good as
        # interleaving them, and simpler.
        for vm in self.vms:
            vm.run_slice(budget)
