"""The MMU suite: 2D walk references (Bhargava et al. 2008), TLB-miss versus page-table-update guests under shadow and nested paging, and VPID on/off.

Three experiments, every one a set of records (counts only, docs/benchmarks.md §1):

(a) **Walk references per TLB miss** on the core itself, no VMM (``vmm = "core"``): a guest in
    guest mode (docs/vmx.md V.6) loads one quadword from each of 512 pages (2 MiB, eight times
    the 64-entry data TLB, so every load misses) for ``passes`` passes, with n guest levels and
    m nested levels (m = 0: no nested paging, a one-dimensional walk of n references), 4 KiB or
    2 MiB pages in both dimensions, without and with the page-walk caches (``pwc``, Bhargava's
    2D_PWC+NT).  Benchmark ``walk-g<n>-n<m>-<page>[-pwc]``; its ``n`` is the number of loads, so
    ``per_iteration("walk_refs_2d")`` is the references per TLB miss, to set beside the exact
    ``n·m + n + m`` (24 for 4 + 4) without caches — with 2 MiB pages each dimension reads one
    level fewer, so the exact count is ``n'·m' + n' + m'`` with ``n' = n − 1``, ``m' = m − 1``.
(b) **TLB-miss-heavy versus page-table-update-heavy** guests under every VMM of the options
    that runs native guests: ``tlb-miss-heavy`` loads from 512 pages per pass (TLB misses only:
    after the first pass a shadow-paging VMM has nothing to do), ``pt-update-heavy`` rewrites
    64 page-table entries per pass, each followed by ``invlpg`` and a load through it (every
    write a traced write for a shadow-paging VMM, nothing for nested paging).  Adams & Agesen
    2006 §7 (shadow paging's cost is in page-table updates) against Bhargava et al. 2008
    (nested paging's cost is in the walks).  A VMM whose machine has ``pwc`` also runs on the
    same machine without it (``-nopwc``): the walks' share of nested paging's cost.
(c) **VPID on and off** (docs/vmx.md V.7: without VPID every VM entry and exit flushes the TLB):
    the reference ``hardware-ept`` sets ``PROC_ENABLE_VPID`` always; ``HardwareEptNoVpidVMM``
    below is the same VMM with that control cleared (a subclass, not an edit), and both run
    p64os ``mmu`` and ``forkwait`` (``<workload>-vpid`` / ``<workload>-novpid``).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

from benchmarks.measure import NATIVE, Record, delta
from benchmarks.suites import Suite, SuiteOptions, register
from benchmarks.suites.forkwait import (
    P64osRun,
    left_out_note,
    note_left_out,
    p64os_records,
    place_native_guest,
)
from reference_vmm.hardware_ept.monitor import HardwareEptVM, HardwareEptVMM

__all__ = [
    "CORE",
    "GUEST_LEVELS",
    "MMU_SUITE",
    "NESTED_LEVELS",
    "PAGE_SIZES",
    "HardwareEptNoVpidVMM",
    "exact_walk_refs",
    "mmu_guest_source",
    "run_mmu",
    "walk_benchmark",
    "walk_counters",
]

CORE = "core"
"""The ``vmm`` of experiment (a)'s records: guest mode driven directly on the core, no VMM."""
GUEST_LEVELS = (2, 3, 4)
NESTED_LEVELS = (0, 2, 3, 4)
"""Nested levels of (a); 0 is guest mode without nested paging (a one-dimensional walk)."""
PAGE_SIZES = {"4k": 1 << 12, "2m": 1 << 21}
WALK_PASSES = 4
"""(a) passes per record at scale 1: 2,048 TLB misses per record (the walks are the core's
own, in C: the whole sweep of 42 configurations takes a few seconds)."""
GUEST_PASSES = {"tlb-miss-heavy": 8, "pt-update-heavy": 8}
"""(b) passes per record at scale 1: 4,096 loads, or 512 page-table updates (some 2,000 VM
exits under shadow paging)."""
VPID_N = {"mmu": 2048, "forkwait": 20}
"""(c) iterations of the p64os workloads per record at scale 1."""
PAGES = 512  # (a), (b): the loop's pages, 2 MiB: eight times the data TLB (architecture §8.2)
UPDATES = 64  # (b) pt-update-heavy: entries rewritten per pass

# (a) the guest-physical layout: code, the guest's tables, the 2 MiB of data; the guest's RAM is
# at HOST_BASE in host RAM (nested) or at 0 (no nested paging); nested tables in host pages.
_CODE = 0x1000
_GUEST_TABLES = (0x100000, 0x200000)
_DATA = 0x200000
_GUEST_MEMORY = 0x400000
_HOST_BASE = 0x800000
_NESTED_TABLES = (0x100000, 0x200000)
_HOST_MEMORY = 0xC00000


def exact_walk_refs(guest_levels: int, nested_levels: int, page: str = "4k") -> int:
    """References of one uncached walk (docs/vmx.md V.6; Bhargava et al. 2008): ``n·m + n + m``
    with the levels each dimension reads (one fewer with 2 MiB pages); ``n`` with no nested paging."""
    n = guest_levels - (page == "2m")
    if nested_levels == 0:
        return n
    m = nested_levels - (page == "2m")
    return n * m + n + m


def walk_benchmark(guest_levels: int, nested_levels: int, page: str, pwc: bool) -> str:
    """The benchmark name of one configuration of (a): ``walk-g4-n4-4k-pwc``."""
    return f"walk-g{guest_levels}-n{nested_levels}-{page}" + ("-pwc" if pwc else "")


def _walk_profile(nested_levels: int, pwc: bool) -> str:
    """The machine of (a): VT-x alone, with nested paging, with its walk caches (docs/vmx.md V.12:
    ``vtx-2006+ept`` gives the exact counts)."""
    if nested_levels == 0:
        return "vtx-2006"
    return "vtx-2006+ept+pwc" if pwc else "vtx-2006+ept"


def walk_counters(guest_levels: int, nested_levels: int, page: str, pwc: bool, passes: int) -> dict[str, int]:
    """The core's counters after ``passes`` passes of the loads of (a) on a fresh machine."""
    from cffi_core.asm import assemble
    from cffi_core.machine import Machine
    from cffi_core.pagetables import EPT_W, EPT_X, PTE_W, PageAllocator, PageTables, ept_pointer
    from cffi_core.vmx import ProcControl, VmcsField, VmExitReason

    size = PAGE_SIZES[page]
    m = Machine(_walk_profile(nested_levels, pwc), memory=_HOST_MEMORY)
    v = m.vmcs()
    base = _HOST_BASE if nested_levels else 0
    controls = 0
    if nested_levels:
        nested = PageTables(m.write_u64, PageAllocator(*_NESTED_TABLES), levels=nested_levels)
        nested.map(0, base, _GUEST_MEMORY, flags=EPT_W | EPT_X, page=size)
        v[VmcsField.EPT_POINTER] = ept_pointer(nested.root, nested_levels)
        controls |= ProcControl.ENABLE_EPT
    v[VmcsField.PROC_CONTROLS] = controls
    tables = PageTables(lambda a, x: m.write_u64(base + a, x), PageAllocator(*_GUEST_TABLES), levels=guest_levels)
    tables.map(0, 0, _GUEST_MEMORY, flags=PTE_W, page=size)
    v[VmcsField.GUEST_CR3] = tables.root
    v[VmcsField.GUEST_CR4] = guest_levels - 2  # CR4.PL: levels - 2 (architecture §7)
    v[VmcsField.GUEST_CR0] = 1 | 1 << 15  # PE | PG
    v[VmcsField.GUEST_PC] = _CODE
    source = f"""
outer:  li      r2, {_DATA}
        li      r3, {_DATA + PAGES * 4096}
inner:  ld      r4, [r2]
        addi    r2, r2, 4096
        bltu    r2, r3, inner
        addi    r1, r1, -1
        bnez    r1, outer
        vmcall  1
"""
    for seg in assemble(source, origin=_CODE).segments:
        m.write(base + seg.address, seg.data)
    v.regs[1] = passes
    before = dict(m.counters)
    ex = m.vmrun(v, 1000 * PAGES * passes + 10_000)
    if ex.number is not VmExitReason.VMCALL:
        raise RuntimeError(f"walk guest {walk_benchmark(guest_levels, nested_levels, page, pwc)}: exit {ex}")
    after = dict(m.counters)
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


def _walk_records(options: SuiteOptions) -> list[Record]:
    passes = WALK_PASSES * options.scale
    records = []
    configs = itertools.product(GUEST_LEVELS, NESTED_LEVELS, PAGE_SIZES, (False, True))
    for g, n, page, pwc in configs:
        if pwc and n == 0:
            continue  # the page-walk caches are nested paging's (pwc needs ept, docs/vmx.md V.12)
        name, machine = walk_benchmark(g, n, page, pwc), _walk_profile(n, pwc)
        options.progress(f"mmu {name}: {CORE} on {machine}")
        started = time.perf_counter()
        small = walk_counters(g, n, page, pwc, passes)
        big = walk_counters(g, n, page, pwc, 2 * passes)
        wall = time.perf_counter() - started
        counts = delta(big, small)
        walks = "walks_2d/walk_refs_2d" if n else "walks/walk_refs (guest mode without nested paging)"
        records.append(
            Record(
                suite="mmu",
                benchmark=name,
                vmm=CORE,
                machine=machine,
                n=passes * PAGES,
                delta=counts,
                wall_s=round(wall, 4),
                guest_instructions=counts.get("instructions", 0),
                notes=[
                    f"guest mode on the core, no VMM: {g} guest levels, {n or 'no'} nested levels, {page} pages "
                    f"in both dimensions, page-walk caches {'on' if pwc else 'off'}; one iteration = one load "
                    f"from a page not in the data TLB (512 pages a pass); counters {walks}",
                    f"exact references of an uncached walk: {exact_walk_refs(g, n, page)} "
                    "(n·m + n + m, Bhargava et al. 2008; docs/vmx.md V.6)",
                ],
            )
        )
    return records


def mmu_guest_source(kind: str, passes: int) -> str:
    """The P64 source of a guest of (b): ``kind`` ``tlb-miss-heavy`` or ``pt-update-heavy``,
    ``passes`` passes.  It maps 0–2 MiB with one 2 MiB page (code, tables, stack) and 2–4 MiB
    with 512 pages of 4 KiB (PT), turns on 4-level paging and exits with code 0 through the
    result port (docs/devices.md §7.1); ``pt-update-heavy`` toggles the accessed bit of the
    first 64 entries of PT, each followed by ``invlpg`` and a load of its page (architecture
    §8.1: a changed entry is used only after the invalidation)."""
    if kind == "tlb-miss-heavy":
        body = f"""
        li      r2, 0x200000
        li      r3, {0x200000 + PAGES * 4096}
inner:  ld      r4, [r2]
        addi    r2, r2, 4096
        bltu    r2, r3, inner
"""
    elif kind == "pt-update-heavy":
        body = f"""
        li      r2, 0x200000
        li      r5, PT
        li      r3, PT + {8 * UPDATES}
inner:  ld      r6, [r5]
        xori    r6, r6, PTE_A
        sd      r6, [r5]
        invlpg  [r2]
        ld      r4, [r2]
        addi    r2, r2, 4096
        addi    r5, r5, 8
        bltu    r5, r3, inner
"""
    else:
        raise ValueError(f"no MMU guest {kind!r}: tlb-miss-heavy or pt-update-heavy")
    return f"""; benchmarks/suites/mmu.py, experiment (b): {kind}, {passes} passes
.equ PML4, 0x10000
.equ PDPT, 0x11000
.equ PD, 0x12000
.equ PT, 0x13000
.equ PTE_PW, 3
.equ PTE_A, 1 << 5
.equ PTE_PS, 1 << 7
.org 0x1000
_start:
        li      sp, 0x8000
        li      r1, PML4
        li      r2, PDPT | PTE_PW
        sd      r2, [r1]
        li      r1, PDPT
        li      r2, PD | PTE_PW
        sd      r2, [r1]
        li      r1, PD
        li      r2, PTE_PS | PTE_PW
        sd      r2, [r1]
        li      r2, PT | PTE_PW
        sd      r2, [r1 + 8]
        li      r1, PT
        li      r2, 0x200000 | PTE_PW
        li      r3, PT + 4096
fill:   sd      r2, [r1]
        addi    r2, r2, 4096
        addi    r1, r1, 8
        bltu    r1, r3, fill
        li      r1, PML4
        mtcr    cr3, r1
        li      r1, 1 | 1 << 15
        mtcr    cr0, r1
        li      r9, {passes}
pass:
{body}
        addi    r9, r9, -1
        bnez    r9, pass
        li      r1, 0
        out     0x500, r1
halt:   jmp     halt
"""


def _guest_make(kind: str, passes_per_n: int):
    """``measure``'s ``make`` for a guest of (b): size s runs s passes."""
    from cffi_core.asm import assemble
    from conformance.api import VMConfig

    def make(size: int) -> tuple[object, object]:
        image = assemble(mmu_guest_source(kind, size), filename=f"mmu-{kind}.s")
        return image, VMConfig(memory=4 << 20, budget=50_000 + 200 * (PAGES + UPDATES) * size)

    return make


def _without_pwc(machine: str) -> str | None:
    """The machine ``machine`` less its page-walk caches, as a profile name (``vtx-2006`` plus
    the features), or None when it has none."""
    from cffi_core.profiles import get_profile

    features = get_profile(machine).features
    if "pwc" not in features:
        return None
    return "+".join(["vtx-2006", *sorted(features - {"vmx", "pwc"})])


def _guest_records(options: SuiteOptions) -> list[Record]:
    from benchmarks.measure import measure
    from conformance.api import VMMUnsupported

    records: list[Record] = []
    for kind, passes in GUEST_PASSES.items():
        per_pass = PAGES if kind == "tlb-miss-heavy" else UPDATES
        left_out: list[str] = []
        for vmm in options.vmms:
            machine = place_native_guest(vmm, f"mmu {kind}", left_out, options)
            if machine is None:
                continue
            plain = _without_pwc(machine) if vmm != NATIVE else None
            for where, name in ((machine, kind), (plain, f"{kind}-nopwc")):
                if where is None:
                    continue
                options.progress(f"mmu {name}: {vmm} on {where}")
                try:
                    record = measure("mmu", name, vmm, where, passes * options.scale, _guest_make(kind, 1))
                except VMMUnsupported as e:
                    left_out.append(left_out_note(vmm, where, str(e)))
                    continue
                what = (
                    f"one iteration = one pass of {PAGES} loads, each from a page not in the TLB"
                    if kind == "tlb-miss-heavy"
                    else f"one iteration = one pass of {UPDATES} page-table updates (write, invlpg, load)"
                )
                records.append(
                    replace(
                        record,
                        notes=[
                            *record.notes,
                            what,
                            f"runs of n and 2n passes; per pass: {per_pass} "
                            + ("TLB misses" if kind == "tlb-miss-heavy" else "PTE writes"),
                        ],
                    )
                )
        records = note_left_out(records, kind, left_out)
    return records


class HardwareEptNoVpidVM(HardwareEptVM):
    """A ``hardware-ept`` guest whose VMCS never enables VPID: every VM entry and exit flushes
    the TLB (docs/vmx.md V.7, first-generation VT-x)."""

    def set_controls(self, proc: int) -> None:
        from cffi_core.vmx import ProcControl

        super().set_controls(proc & ~ProcControl.ENABLE_VPID)


class HardwareEptNoVpidVMM(HardwareEptVMM):
    """The reference ``hardware-ept`` VMM with VPID off (experiment (c)); it still requires the
    ``vpid`` feature only because the VMM it extends does."""

    name = "hardware-ept-novpid"
    technique = "hardware-assisted, nested paging, no VPID: the TLB flushed at every VM transition"
    vm_class = HardwareEptNoVpidVM


NO_VPID = f"{__name__}:HardwareEptNoVpidVMM"
"""The ``module:Class`` name of the VMM of (c) without VPID, as ``measure`` loads it."""


def _vpid_records(options: SuiteOptions) -> list[Record]:
    if "hardware-ept" not in options.vmms:
        return []
    records = []
    for workload, n in VPID_N.items():
        for vmm, suffix in (("hardware-ept", "vpid"), (NO_VPID, "novpid")):
            note = (
                "docs/vmx.md V.7: with VPID nothing is flushed at VM entry and exit"
                if suffix == "vpid"
                else "hardware-ept with PROC_ENABLE_VPID cleared (benchmarks.suites.mmu.HardwareEptNoVpidVMM): "
                "every VM entry and exit flushes the TLB (vm_transition_flushes)"
            )
            run = P64osRun(f"{workload}-{suffix}", workload, n * options.scale, (note,))
            records += p64os_records("mmu", [run], [vmm], options)
    return records


def run_mmu(options: SuiteOptions) -> list[Record]:
    """Experiments (a), (b) and (c) (the module's docstring)."""
    return _walk_records(options) + _guest_records(options) + _vpid_records(options)


MMU_SUITE = register(
    Suite(
        "mmu",
        "2D walk references per TLB miss (Bhargava et al. 2008), TLB-miss vs page-table-update guests under "
        "shadow and nested paging, VPID on/off",
        run_mmu,
    )
)
