"""Efficiency of a paravirtual VMM (``guest_abi == "paravirt"``) on p64os, measured from the host's side: direct execution, fast system calls, batched page-table updates, ring I/O.

Paravirtualization trades binary compatibility for efficiency: the guest is changed so that it
"avoid[s] the problem instructions entirely" (Fisher-Ogden 2006 §2.3.3), and Xen's interface is
built to enter the VMM rarely: a "fast" exception handler for system calls, called "directly by
the processor without indirecting via Xen"; page-table updates batched, to "amortize each
hypercall across 2048 updates"; I/O on shared-memory rings with "batched" notification (Barham
et al. 2003).  The tests grade those promises on the paravirtual build of p64os, with the host's
figures (``run_alone``: host entries and exits, the host core's counters), never with what the
VMM reports about itself:

- **direct execution**: the host's core retires deprivileged (or in guest mode) at least
  ``MIN_DIRECT`` of the native build's instruction count, and the VMM enters the host at most
  ``MAX_ENTRIES_PER_1000`` times per 1,000 of them;
- **fast system calls**: on the hosts where docs/paravirt-abi.md §6.3 gives the fast path a real
  gate (``seglimit``, ``vmx``), the VMM takes no more host-gate exits than the native run's
  faults and interrupts other than the system calls: a system call that reached the VMM would
  add one;
- **batched page-table updates**: forkwait's host entries per extra iteration are at most
  ``BATCH_RATIO`` of those of the classic technique measured on the same host — shadow paging
  with one trap per traced page-table write (``trap-and-emulate``; ``hardware`` on ``vmx``
  hosts, the issue's comparison);
- **ring I/O**: diskio's host entries per extra sector are fewer than the emulated disk's under
  that technique, whose every port access exits.

Per-iteration figures are differences of two sizes of a workload, so that the boot and the
workload's fixed part cancel (the machine is deterministic: docs/architecture.md §1).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import pytest

from cffi_core.vmx import VmExitReason
from conformance.api import HostedRun, Observation, VMMUnsupported, observe, run_alone
from conformance.checks import assert_equivalent
from conformance.guest_os import PACKAGE_DIR, os_config, os_image
from conformance.test_efficiency import guest_equ, measured_direct

MIN_DIRECT = 0.95
"""Share of the native build's instruction count the host's core must retire directly: the
paravirtual kernel runs deprivileged, hypercalls replace its privileged instructions, and
everything else — user code, most of the kernel — is the native build's own code."""
MAX_ENTRIES_PER_1000 = 20.0
"""Host entries per 1,000 native-build instructions: a hypercall, an upcall or a fault now and
then.  Trap-and-emulate takes about 30 per 1,000 on compute (every privileged instruction of
the kernel traps), the reference paravirtual VMM about 2."""
BATCH_RATIO = 0.25
"""At most this share of the shadow-paging VMM's host entries per forkwait iteration: a fork
copies tens of page-table entries, each one trap under shadow paging and one request of a
single ``mmu_update`` under paravirtualization."""
SIZES = {"forkwait": (8, 16), "diskio": (2, 4)}
"""Two sizes per workload: the figures per iteration are the differences."""
DIRECT_WORKLOADS = {"compute": 1, "forkwait": 8, "diskio": 2}

pytestmark = [pytest.mark.popek_guest_abi("paravirt")]


@cache
def _native(name: str, n: int, profile: str) -> Observation:
    from reference_vmm.native import NativeVMM

    return observe(NativeVMM, os_image(), os_config(name, n), profile=profile)


def _run(vmm, name: str, n: int, profile: str) -> HostedRun:
    """The paravirtual build under ``vmm``, equivalent to the native build natively or failed."""
    run = run_alone(vmm, os_image(paravirt=True), os_config(name, n), profile=profile)
    assert_equivalent(_native(name, n, profile), run.observation, names=("native", vmm.name))
    return run


@cache
def _classic(name: str, n: int, profile: str) -> HostedRun:
    """The native build under the classic technique of this host: shadow paging with traced
    page tables — ``hardware`` (VT-x) on ``vmx`` hosts, ``trap-and-emulate`` elsewhere."""
    from cffi_core.profiles import get_profile
    from conformance.api import load_vmm

    classic = load_vmm("hardware" if "vmx" in get_profile(profile).features else "trap-and-emulate")
    try:
        return run_alone(classic, os_image(), os_config(name, n), profile=profile)
    except VMMUnsupported as e:  # pragma: no cover - every profile has one of the two
        pytest.skip(f"no classic technique to compare with on {profile}: {e}")


def _fast_path_is_a_gate(profile: str) -> bool:
    """Whether docs/paravirt-abi.md §6.3 gives the fast system call a real gate on this host."""
    from conformance.paravirt import Transport, transport_for

    return transport_for(profile) is not Transport.INT


def _syscall_vector() -> int:
    return guest_equ((PACKAGE_DIR / "user" / "ulib.s").read_text(encoding="utf-8"), "SYSCALL_VEC")


def _events(counters: Mapping[str, int], skip: int | None = None) -> int:
    """Exceptions and interrupts of a native run, but those of vector ``skip``."""
    return sum(
        v
        for k, v in counters.items()
        if k.startswith(("exception_", "interrupt_")) and int(k.rsplit("_", 1)[1]) != skip
    )


@pytest.mark.popek_property("efficiency", category="paravirt")
@pytest.mark.parametrize("name", list(DIRECT_WORKLOADS))
def test_the_paravirtual_kernel_runs_directly(name: str, vmm, popek_profile, popek_record):
    n = DIRECT_WORKLOADS[name]
    run = _run(vmm, name, n, popek_profile)
    native = _native(name, n, popek_profile).counters["instructions"]
    direct = measured_direct(run.host.counters)
    credited = min(direct, native)
    per_1000 = 1000 * run.host.entries / native
    popek_record(guest_instructions=native, host_entries=run.host.entries, host_direct=direct)
    problems = []
    if credited < MIN_DIRECT * native:
        problems.append(
            f"the host's core retired {direct} instructions directly for the native build's {native} "
            f"({100 * credited / native:.1f}% credited); at least {100 * MIN_DIRECT:.0f}% must run directly"
        )
    if per_1000 > MAX_ENTRIES_PER_1000:
        problems.append(
            f"the VMM entered the host {run.host.entries} times ({per_1000:.1f} per 1,000 native-build "
            f"instructions); at most {MAX_ENTRIES_PER_1000:g} per 1,000"
        )
    assert not problems, "\n".join(
        [f"efficiency of {vmm.name} on the paravirtual {name} {n}:", *(f"  {p}" for p in problems)]
    )


@pytest.mark.popek_property("efficiency", category="paravirt")
def test_fast_system_calls_do_not_enter_the_vmm(vmm, popek_profile, popek_record):
    """forkwait makes a system call every few hundred instructions; through the registered
    fast gate none of them reaches the VMM on the hosts that have the direct path."""
    if not _fast_path_is_a_gate(popek_profile):
        pytest.skip(
            f"on {popek_profile} the fast system call goes through the VMM, which switches from the user table "
            "to the kernel's (docs/paravirt-abi.md §6.3, §7.4; Xen's 64-bit port)"
        )
    name, n = "forkwait", SIZES["forkwait"][1]
    run = _run(vmm, name, n, popek_profile)
    native = _native(name, n, popek_profile).counters
    vector = _syscall_vector()
    syscalls = native.get(f"exception_{vector}", 0)
    others = _events(native, skip=vector)
    # The exits that are no hypercall: host-gate exits (hcall hosts: a hypercall is EXIT_HCALL),
    # and VM exits but vmcall's (vmx hosts), as the host's core counts them.
    counters = run.host.counters
    vmcalls = counters.get(f"vm_exit_{VmExitReason.VMCALL}", 0)
    gates = run.host.exits.get("HOST_GATE", 0) + counters.get("vm_exits", 0) - vmcalls
    popek_record(system_calls=syscalls, other_events=others, host_gate_exits=gates)
    assert syscalls > others, f"forkwait {n} makes {syscalls} system calls natively: too few to tell the paths apart"
    # Every fault and interrupt of the native run may reach the VMM, plus one page fault per
    # page of the guest's own tables it reads through its read-only mapping on first touch.
    assert gates <= others + syscalls // 2, (
        f"{vmm.name} took {gates} host-gate exits in {name} {n}, whose native run has {syscalls} system calls "
        f"(int {vector:#x}) and {others} other exceptions and interrupts: its system calls enter the VMM, "
        "not the guest's fast gate (docs/paravirt-abi.md §6.3; Barham et al. 2003)"
    )


def _per_iteration(vmm, name: str, profile: str, record) -> tuple[float, float]:
    """Host entries per extra iteration of ``name``: the paravirtual build under ``vmm``, and the
    native build under the classic technique of this host (recorded both)."""
    small, large = SIZES[name]

    def per(run) -> float:
        return (run(large).host.entries - run(small).host.entries) / (large - small)

    mine = per(lambda n: _run(vmm, name, n, profile))
    theirs = per(lambda n: _classic(name, n, profile))
    record(entries_per_iteration=round(mine), classic_entries_per_iteration=round(theirs))
    return mine, theirs


@pytest.mark.popek_property("efficiency", category="paravirt")
def test_fork_batches_its_page_table_updates(vmm, popek_profile, popek_record):
    mine, theirs = _per_iteration(vmm, "forkwait", popek_profile, popek_record)
    assert mine <= BATCH_RATIO * theirs, (
        f"{vmm.name} enters the host {mine:.1f} times per forkwait iteration; shadow paging, one trap per "
        f"traced page-table write, takes {theirs:.1f}: batched mmu_update should take at most "
        f"{BATCH_RATIO:g} of that (Barham et al. 2003)"
    )


@pytest.mark.popek_property("efficiency", category="paravirt")
def test_ring_io_enters_the_vmm_less_than_the_emulated_disk(vmm, popek_profile, popek_record):
    mine, theirs = _per_iteration(vmm, "diskio", popek_profile, popek_record)
    assert mine < theirs, (
        f"{vmm.name} enters the host {mine:.1f} times per diskio iteration; the emulated disk, every port access "
        f"an exit, takes {theirs:.1f}: the block ring should take fewer (Barham et al. 2003, I/O rings)"
    )
