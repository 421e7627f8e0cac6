"""Trap-and-emulate (reference_vmm.trap_emulate): equivalence where the theorem allows it, direct execution, time, several VMs."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from cffi_core.asm import assemble, assemble_file
from cffi_core.machine import Machine
from conformance.api import (
    CONTROL_LATENCY,
    HOST_TIMER_PERIOD,
    VMConfig,
    VMMError,
    default_host_memory,
    host_canary,
    observe,
)
from conformance.guests import by_name
from reference_vmm.native import NativeVMM
from reference_vmm.trap_emulate import RESERVED_VA, TrapEmulateVM, TrapEmulateVMM, ring_plan
from reference_vmm.trap_emulate.monitor import HIDDEN_FAULT_SHARE, host_gate_idt
from reference_vmm.trap_emulate.rings import RING_COMPRESSION

GUESTS = Path(__file__).resolve().parents[1] / "guests"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROFILES = ["x86-2005", "x86-64-2005", "classic-1974"]
CONFIG = VMConfig(memory=4 << 20, budget=400_000)


def _both(image, config: VMConfig = CONFIG, profile: str = "x86-2005"):
    native = observe(NativeVMM, image, config, profile=profile)
    trapped = observe(TrapEmulateVMM, image, config, profile=profile)
    assert native.equivalent(trapped), "\n".join(native.diff(trapped, ("native", "trap-and-emulate")))
    return native, trapped


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(
    "path",
    [
        EXAMPLES / "hello.s",
        EXAMPLES / "paging.s",
        GUESTS / "timer_hlt.s",
        GUESTS / "single_step.s",
        GUESTS / "pt_churn.s",
        GUESTS / "timer_tsc.s",
    ],
    ids=lambda p: p.stem,
)
def test_guests_without_sensitive_unprivileged_instructions_are_equivalent(path, profile):
    native, _ = _both(assemble_file(path), profile=profile)
    assert native.stop == "exit"


def test_disk_dma_lands_in_the_guests_region():
    disk = bytes(range(256)) * 4
    config = VMConfig(memory=1 << 20, disk=disk, budget=200_000)
    native, trapped = _both(assemble_file(GUESTS / "disk_rw.s"), config)
    assert native.exit_code == int.from_bytes(disk[512 + 8 : 512 + 12], "little") + 1
    assert trapped.disk == native.disk


def test_a_guest_that_rewrites_its_page_tables_is_shadowed_by_tracing():
    _, trapped = _both(assemble_file(GUESTS / "pt_churn.s"))
    c = trapped.counters
    assert c["traced_writes"] >= 63  # every remap once the window's table is traced (first walk)
    assert c["hidden_page_faults"] > 0
    assert c["shadow_invlpgs"] == 64
    assert c["shadow_roots"] >= 3  # paging off, then the guest's two address spaces


def test_guest_time_is_exact_despite_hidden_faults():
    # The timer handler prints rdtsc and TIMER_NOW: equal bytes mean equal clocks at each interrupt.
    native, trapped = _both(assemble_file(GUESTS / "timer_tsc.s"))
    assert len(native.console) == 16
    assert trapped.counters["hidden_page_faults"] >= 8
    assert trapped.counters["virtual_interrupts"] == 8


@pytest.mark.parametrize("guest", ["smsw", "sidt", "rdcs", "pushf", "popf", "iret"])
def test_sensitive_unprivileged_instructions_break_equivalence_on_x86_only(guest):
    g = by_name(guest)
    native = observe(NativeVMM, g.image(), g.config, profile="x86-2005")
    trapped = observe(TrapEmulateVMM, g.image(), g.config, profile="x86-2005")
    assert not native.equivalent(trapped)  # Popek & Goldberg (1974), Theorem 1 does not apply
    _both(g.image(), g.config, profile="classic-1974")  # every sensitive instruction traps: it does


def test_sidt_shows_the_reserved_range_on_x86():
    g = by_name("sidt")
    trapped = observe(TrapEmulateVMM, g.image(), g.config, profile="x86-2005")
    assert f"r1={RESERVED_VA:016x}".encode() in trapped.console  # the Red Pill


@pytest.mark.parametrize("profile", ["x86-2005", "classic-1974"])
def test_a_guest_using_the_reserved_page_sees_its_own_memory(profile):
    _, trapped = _both(assemble_file(GUESTS / "top_page.s"), profile=profile)
    assert trapped.exit_code == 0x1234 + 0x600D


def test_without_seglimit_or_classic_the_guest_kernel_reads_the_vmms_idt():
    # The documented price of the paging-protected 0/1/3 plan (rings.py): address-space
    # compression made visible.  The write went to the guest's own page (emulated).
    trapped = observe(TrapEmulateVMM, assemble_file(GUESTS / "top_page.s"), CONFIG, profile="x86-64-2005")
    gate = host_gate_idt()
    assert trapped.exit_code == int.from_bytes(gate[:8], "little") + int.from_bytes(gate[8:16], "little")


def test_compute_runs_directly_and_never_at_real_ring_0():
    image = assemble(
        """
        _start: li r1, 0
                li r2, 20000
        loop:   addi r1, r1, 3
                xor r3, r3, r1
                addi r2, r2, -1
                bnez r2, loop
                out 0x500, r3
        """
    )
    for profile in PROFILES:
        host = Machine(profile, default_host_memory(CONFIG.memory))
        trapped = observe(TrapEmulateVMM, image, CONFIG, host=host)
        c = trapped.counters
        assert c["guest_insns_direct"] >= 80_000 and c["guest_insns_emulated"] <= 2
        assert c["vmm_interventions"] <= 10
        assert host.counters["insn_host_cpl0"] == 0  # the guest kernel ran deprivileged
        assert trapped.exit_code == observe(NativeVMM, image, CONFIG, profile=profile).exit_code


def test_ring_plans():
    assert ring_plan(frozenset({"seglimit"})).real_ring(0) == 1
    assert not ring_plan(frozenset({"seglimit"})).compression
    classic = ring_plan(frozenset({"classic"}))
    assert classic.compression and classic.real_ring(0) == 3
    assert classic.space(0) != classic.space(3)
    assert ring_plan(frozenset()).real_ring(0) == 1
    x86 = ring_plan(frozenset({"seglimit"}))
    assert x86.real_iopl(0, cpl=0) == 1  # the guest kernel's cli/sti/popf change the real IF
    assert [x86.real_iopl(0, cpl) for cpl in (1, 2)] == [0, 0]  # rings 1-2 keep their rights
    assert x86.guest_cpl(2, before=0) == 2 and x86.guest_cpl(1, before=0) == 0  # ring aliasing


def test_several_vms_share_the_host_and_each_sees_its_solo_run():
    images = [assemble_file(GUESTS / n) for n in ("pt_churn.s", "timer_tsc.s", "single_step.s")]
    solo = [observe(TrapEmulateVMM, image, CONFIG) for image in images]
    host = Machine("x86-2005", default_host_memory(3 * CONFIG.memory))
    start, size = host_canary(host)
    host.write(start, b"\xa5" * size)
    monitor = TrapEmulateVMM(host)
    vms = [monitor.create_vm(image, CONFIG) for image in images]
    while not all(vm.stopped for vm in vms):
        monitor.run(997)  # slices that cut the guests anywhere
    for alone, vm in zip(solo, vms, strict=True):
        assert vm.observation() == alone
    assert host.read(start, size) == b"\xa5" * size
    regions = sorted((vm.memory.base, vm.memory.base + vm.memory.size) for vm in vms)
    assert all(a[1] <= b[0] for a, b in pairwise(regions))


def test_a_host_too_small_for_the_guest_is_refused_by_name():
    monitor = TrapEmulateVMM(Machine("x86-2005", 4 << 20))
    with pytest.raises(ValueError, match="host RAM"):
        monitor.create_vm(assemble("_start: out 0x500, r0"), VMConfig(memory=8 << 20))


def test_hcall_in_the_guest_kernel_is_a_machine_error_as_on_a_bare_machine():
    image = assemble("_start: hcall 7")
    for vmm in (NativeVMM, TrapEmulateVMM):
        with pytest.raises(VMMError, match="hcall"):
            observe(vmm, image, CONFIG)


def test_ring_compression_without_classic_loses_the_guest_kernels_return_to_ring_3():
    # Why x86-64-2005 gets the paging-protected 0/1/3 plan (rings.py): with the guest kernel at
    # ring 3, its iret to ring 3 does not trap, the VMM keeps believing the guest is at CPL 0,
    # and the user's system call is delivered with a CPL 0 frame (the guest prints its cs).
    g = by_name("syscall")
    host = Machine("x86-64-2005", default_host_memory(g.config.memory))
    monitor = TrapEmulateVMM(host, plan=RING_COMPRESSION)
    vm = monitor.create_vm(g.image(), g.config)
    monitor.run(g.config.budget)
    native = observe(NativeVMM, g.image(), g.config, profile="x86-64-2005")
    assert b"r2=0000000000000003" in native.console
    assert b"r2=0000000000000000" in vm.console
    assert observe(TrapEmulateVMM, g.image(), g.config, profile="x86-64-2005") == native


def test_hidden_faults_cannot_stretch_a_slice_beyond_the_control_bound():
    # Hidden faults cost host ticks that are no guest's; past a quarter of the slice's ticks the
    # rest of it runs in the spec, so VMM.run(n) keeps the host within n plus the control
    # latency's share of n (docs/vmm-api.md §9: HOST_TIMER_PERIOD + CONTROL_LATENCY for n =
    # HOST_TIMER_PERIOD).  Slices short enough that the sweep's 3,000 faults fill many of them.
    n = 2_000
    image = assemble_file(GUESTS / "page_sweep.s")
    config = VMConfig(memory=16 << 20, budget=400_000)
    host = Machine("x86-2005", default_host_memory(config.memory))
    monitor = TrapEmulateVMM(host)
    vm = monitor.create_vm(image, config)
    longest = 0
    while not vm.stopped:
        before = host.clock
        monitor.run(n)
        longest = max(longest, host.clock - before)
    assert longest <= n + n * CONTROL_LATENCY // HOST_TIMER_PERIOD
    assert vm.counters["hidden_page_faults"] >= 2 * n // HIDDEN_FAULT_SHARE
    assert vm.observation() == observe(NativeVMM, image, config)
    assert vm.exit_code == 3000


@pytest.mark.parametrize("profile", PROFILES)
def test_true_page_faults_reach_the_guest_with_its_cr2_and_error_code(profile):
    # The guest logs each #PF's error code and prints CR2 (conformance/guests/pagefault.s): a
    # not-present write at CPL 0 (PF_W) and a user write to a read-only page (PF_P|PF_W|PF_U).
    g = by_name("pagefault")
    native, trapped = _both(g.image(), g.config, profile=profile)
    assert b"event=000000000000020e" in native.console and b"event=000000000000070e" in native.console
    assert trapped.counters["true_page_faults"] == 2
    assert trapped.counters["hidden_page_faults"] > 0


def test_subclasses_choose_their_vms_and_pagers_without_touching_the_parents():
    # The hooks of READING_GUIDE.md: every reference VMM builds its VMs through `vm_class`,
    # and trap-and-emulate builds the shadow pager through `TrapEmulateVM.make_pager`.
    from reference_vmm.emulate import EmulatedVM, EmulateVMM
    from reference_vmm.native import NativeVM
    from reference_vmm.shadow import ShadowPager

    made = []

    class CountingPager(ShadowPager):
        pass

    class VariantVM(TrapEmulateVM):
        def make_pager(self) -> ShadowPager:
            made.append(self)
            return CountingPager(self.monitor.host, self.memory, self.pool, reserved={RESERVED_VA: self.monitor.idt})

    class VariantVMM(TrapEmulateVMM):
        vm_class = VariantVM

    class LoggedNative(NativeVMM):
        vm_class = type("LoggedNativeVM", (NativeVM,), {})

    class LoggedEmulate(EmulateVMM):
        vm_class = type("LoggedEmulatedVM", (EmulatedVM,), {})

    image = assemble_file(GUESTS / "pt_churn.s")
    native = observe(NativeVMM, image, CONFIG)
    for vmm in (VariantVMM, LoggedNative, LoggedEmulate):
        host = Machine("x86-2005", default_host_memory(CONFIG.memory))
        monitor = vmm(host)
        vm = monitor.create_vm(image, CONFIG)
        assert type(vm) is vmm.vm_class
        monitor.run(CONFIG.budget)
        assert vm.observation() == native
    assert len(made) == 1 and isinstance(made[0].shadow, CountingPager)
    assert TrapEmulateVMM.vm_class is TrapEmulateVM and NativeVMM.vm_class is NativeVM
    assert EmulateVMM.vm_class is EmulatedVM
