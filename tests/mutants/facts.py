"""The measured facts that witness the safety and efficiency mutants: host memory written outside the VMs, host entries, exit counts."""

from __future__ import annotations

from collections.abc import Callable

from conformance.api import VMM, VMConfig, host_canary
from conformance.guests import GUEST_DIR
from tests.mutants.witness import HostRun, host_run, kernel

__all__ = [
    "counter_positive",
    "dma_past_ram_writes_host",
    "host_entries_per_mille",
    "host_run_longer_than",
    "kernel_runs_at_host_cpl0",
    "outside_writes",
    "passthrough_dma_past_ram_writes_host",
    "quiet_guest_writes_host",
    "store_past_ram_writes_host",
]

Measure = Callable[[type[VMM], str], "str | None"]
SMALL = VMConfig(memory=1 << 20, budget=200_000)
_DISK = bytes((7 * i + 1) & 0xFF or 1 for i in range(2048))  # no zero byte: every DMA'd byte shows

# A disk read of one sector into the first bytes past the guest's RAM: on a bare machine the
# disk ends the command in error and moves nothing (docs/devices.md §6).
DMA_PAST_RAM = kernel(
    """
        li      r3, 1
        out     DISK_COUNT, r3
        li      r3, RAM_END
        out     DISK_ADDR, r3
        li      r3, 1
        out     DISK_CMD, r3
        li      r4, 3000
spin:   addi    r4, r4, -1
        bnez    r4, spin
        in      r1, DISK_CMD           ; the status: 3, error
"""
)
QUIET = kernel(
    """
        li      r1, 42
"""
)


def outside_writes(run: HostRun) -> list[str]:
    """The host memory ranges a run changed outside every VM's RAM and the VMM's own pages
    (the reference VMMs' ``HostMap``: guests from the bottom, VMM pages from the top down to
    ``map.high``, the canary above them)."""
    monitor = run.monitor
    now = bytes(run.host.memory)
    owned = [(vm.memory.base, vm.memory.base + vm.memory.size) for vm in monitor.vms if hasattr(vm, "memory")]
    hostmap = getattr(monitor, "map", None)
    if hostmap is not None:
        owned.append((hostmap.high, host_canary(run.host)[0]))
    changed = []
    page = 4096
    for start in range(0, len(now), page):
        if any(lo <= start < hi for lo, hi in owned):
            continue
        if now[start : start + page] != run.before[start : start + page]:
            changed.append(f"{start:#x}")
    return changed


def _writes_host(source: str, config: VMConfig) -> Measure:
    def measure(vmm: type[VMM], profile: str) -> str | None:
        run = host_run(vmm, [(source, config)], profile)
        if run.error is not None:
            return f"the VMM raised: {run.error}"
        pages = outside_writes(run)
        if pages:
            return f"{len(pages)} host pages outside every VM and the VMM's pages changed, the first at {pages[0]}"
        return None

    return measure


dma_past_ram_writes_host: Measure = _writes_host(DMA_PAST_RAM, VMConfig(memory=1 << 20, disk=_DISK, budget=50_000))
quiet_guest_writes_host: Measure = _writes_host(QUIET, SMALL)
store_past_ram_writes_host: Measure = _writes_host(
    kernel(
        """
        li      r3, RAM_END + 0x100
        li      r4, 0x1234
        sd      r4, [r3]
"""
    ),
    SMALL,
)
passthrough_dma_past_ram_writes_host: Measure = _writes_host(
    DMA_PAST_RAM.replace("DISK_", "DISK2_"), VMConfig(memory=1 << 20, disk2=_DISK, budget=50_000)
)


def kernel_runs_at_host_cpl0(vmm: type[VMM], profile: str) -> str | None:
    """Instructions retired at real CPL 0 in host mode while a quiet guest ran."""
    run = host_run(vmm, [(QUIET, SMALL)], profile)
    return f"insn_host_cpl0 = {run.host_cpl0}" if run.host_cpl0 else None


# `cli; jmp .`: a guest that never gives the CPU back on its own (docs/vmm-api.md §9).
HOG = """
_start: cli
spin:   jmp     spin
"""


def host_run_longer_than(limit: int) -> Measure:
    """A single host run longer than ``limit`` ticks while ``VMM.run`` is called in slices of
    2,000 ticks (the host timer) with a ``cli; jmp .`` guest."""

    def measure(vmm: type[VMM], profile: str) -> str | None:
        run = host_run(vmm, [(HOG, VMConfig(memory=1 << 16, budget=50_000))], profile, max_slices=30)
        if run.error is not None:
            return f"the VMM raised: {run.error}"
        return f"one host run lasted {run.longest} ticks" if run.longest > limit else None

    return measure


def host_entries_per_mille(limit: int) -> Measure:
    """More than ``limit`` host entries (``run``/``vmrun`` calls) per 1,000 guest instructions
    on the efficiency suite's compute guest."""
    source = (GUEST_DIR / "compute.s").read_text(encoding="utf-8")
    config = VMConfig(memory=1 << 20, budget=400_000)

    def measure(vmm: type[VMM], profile: str) -> str | None:
        run = host_run(vmm, [(source, config)], profile)
        if run.error is not None:
            return f"the VMM raised: {run.error}"
        counters = run.observations[0].counters
        instructions = counters.get("guest_insns_direct", 0) + counters.get("guest_insns_emulated", 0)
        per_mille = 1000 * run.entries / max(instructions, 1)
        if per_mille > limit:
            return f"{run.entries} host entries for {instructions} guest instructions ({per_mille:.0f} per 1,000)"
        return None

    return measure


def counter_positive(key: str, source: str) -> Measure:
    """The VM's counter ``key`` is above 0 after the guest ``source`` ran."""
    return counter_above(key, 0, source)


def counter_above(key: str, limit: int, source: str) -> Measure:
    """The VM's counter ``key`` is above ``limit`` after the guest ``source`` ran (``limit``: what
    a correct VMM counts there for another reason, e.g. the guest's own CR3 load)."""

    def measure(vmm: type[VMM], profile: str) -> str | None:
        run = host_run(vmm, [(source, SMALL)], profile)
        if run.error is not None:
            return f"the VMM raised: {run.error}"
        value = run.observations[0].counters.get(key, 0)
        return f"{key} = {value}" if value > limit else None

    return measure
