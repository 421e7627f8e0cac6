"""What the suite reads of a VM beyond its observation: its clock, its RAM, its host regions (docs/vmm-api.md §5, §9).

The contract's optional members — ``VM.ticks``, ``VM.ram()``, ``VM.host_regions`` and
``VMM.host_regions`` — are read here, through one function each.  A VM that leaves them at
their defaults (None) is read through what the reference VMMs are built on, when it is built on
them: ``reference_vmm.shadow.GuestMemory`` (guest RAM as a region of host RAM),
``reference_vmm.shadow.HostMap`` (the VMM's pages from the top of host RAM down), a spec
``ByteMemory`` (the full emulator), a ``Platform`` (the native oracle, a machine of its own).
The mixins at the end give a VMM built on those pieces the members themselves, for a VMM to
adopt; the functions prefer what a VM says over the fallback.

None of these reads is a verdict: ``ticks`` only names a VM that stops making progress, and
``host_regions`` only says which host memory is not checked for the canary pattern — a VMM
that claims all of it checks nothing there, which is the contract's safe default anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from conformance.api import VM, VMM, host_canary

__all__ = ["HostMapVMMMixin", "SharedRAMVMMixin", "guest_ram", "guest_ticks", "vm_host_regions", "vmm_host_regions"]

Region = tuple[int, int]


def guest_ticks(vm: VM) -> int | None:
    """The guest's clock (halted time included): ``VM.ticks``, else what its counters say
    (``guest_ticks``, or ``ticks + halted_ticks`` as ``Machine.counters`` names them), else None."""
    ticks = vm.ticks
    if isinstance(ticks, int):
        return ticks
    counters = vm.counters
    if isinstance(counters.get("guest_ticks"), int):
        return counters["guest_ticks"]
    if isinstance(counters.get("ticks"), int) and isinstance(counters.get("halted_ticks"), int):
        return counters["ticks"] + counters["halted_ticks"]
    return None


def guest_ram(vm: VM) -> bytes | None:
    """The VM's guest-physical RAM now: ``VM.ram()``, else read through the reference pieces it
    is built on, else None (not checkable)."""
    ram = vm.ram()
    if ram is not None:
        return bytes(ram)
    memory = getattr(vm, "memory", None)
    if memory is not None:
        from cffi_core.spec import ByteMemory
        from reference_vmm.shadow import GuestMemory

        if isinstance(memory, GuestMemory):
            return memory.host.read(memory.base, memory.size)
        if isinstance(memory, ByteMemory):
            return bytes(memory.data)
    platform = getattr(vm, "platform", None)
    if platform is not None:
        from cffi_core.platform import Platform

        if isinstance(platform, Platform):
            machine = platform.machine
            return machine.read(0, machine.memory_size)
    return None


def vm_host_regions(vm: VM) -> Sequence[Region] | None:
    """``VM.host_regions``, else the host region of its ``GuestMemory``, else ``()`` for a VM
    whose RAM is not in host RAM at all, else None."""
    regions = vm.host_regions
    if regions is not None:
        return [(int(a), int(n)) for a, n in regions]
    memory = getattr(vm, "memory", None)
    if memory is not None:
        from reference_vmm.shadow import GuestMemory

        if isinstance(memory, GuestMemory):
            return [(memory.base, memory.size)]
    if _outside_the_host(vm):
        return ()
    return None


def _outside_the_host(vm: VM) -> bool:
    """A VM whose RAM is a spec ``ByteMemory`` or a ``Platform`` of its own keeps nothing in
    host RAM (the emulator, the oracle)."""
    from cffi_core.platform import Platform
    from cffi_core.spec import ByteMemory

    return isinstance(getattr(vm, "memory", None), ByteMemory) or isinstance(getattr(vm, "platform", None), Platform)


def vmm_host_regions(vmm: VMM) -> Sequence[Region] | None:
    """``VMM.host_regions``, else, for a VMM with a ``HostMap`` (``map``), every page it gave
    itself from the top of host RAM down (its tables, bitmaps and per-VM pools alike), else
    ``()`` for a VMM that never uses its host (the emulator and the oracle), else None."""
    regions = vmm.host_regions
    if regions is not None:
        return [(int(a), int(n)) for a, n in regions]
    host_map = getattr(vmm, "map", None)
    if host_map is not None:
        from reference_vmm.shadow import HostMap

        if isinstance(host_map, HostMap):
            return HostMapVMMMixin.host_regions.fget(vmm)  # type: ignore[attr-defined]
    from reference_vmm.emulate import EmulateVMM
    from reference_vmm.native import NativeVMM

    if type(vmm) in (EmulateVMM, NativeVMM):  # they never touch the host Machine (their docstrings)
        return ()
    return None


# ---- mixins a VMM built on the reference pieces may adopt --------------------------------------


class SharedRAMVMMixin:
    """For a VM whose RAM is a ``GuestMemory`` in ``self.memory``: ``ram()`` and ``host_regions``."""

    memory: Any

    def ram(self) -> bytes | None:
        return self.memory.host.read(self.memory.base, self.memory.size)

    @property
    def host_regions(self) -> Sequence[Region] | None:
        return [(self.memory.base, self.memory.size)]


class HostMapVMMMixin:
    """For a VMM with a ``HostMap`` in ``self.map``: its own pages, from ``map.high`` up to the
    canary region, are its shared structures (the per-VM pools among them)."""

    map: Any
    host: Any

    @property
    def host_regions(self) -> Sequence[Region] | None:
        top = host_canary(self.host)[0]
        return [(self.map.high, top - self.map.high)] if top > self.map.high else []
