"""Round robin of a VMM's VMs on the one real CPU, in slices of guest ticks: one home for every reference VMM that shares it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from conformance.api import VM

__all__ = ["run_round_robin"]

_V = TypeVar("_V", bound=VM)


def run_round_robin(vms: Sequence[_V], budget: int, slice_ticks: int, clock: Callable[[_V], int]) -> None:
    """Give every VM of ``vms`` that has not stopped up to ``budget`` more ticks of its own
    clock (``clock(vm)``), in turns of at most ``slice_ticks`` (``VM.run_slice``).  Each VM's
    clock is its own, so the interleaving changes no observation (docs/vmm-api.md §3)."""
    if len(vms) == 1:  # one VM alone, the usual case: the same turns without the bookkeeping
        vm = vms[0]
        end = clock(vm) + budget
        while vm.stop is None and (now := clock(vm)) < end:
            vm.run_slice(min(slice_ticks, end - now))
        return
    ends = {id(vm): clock(vm) + budget for vm in vms}
    while True:
        running = [vm for vm in vms if vm.stop is None and clock(vm) < ends[id(vm)]]
        if not running:
            return
        for vm in running:
            vm.run_slice(min(slice_ticks, ends[id(vm)] - clock(vm)))
