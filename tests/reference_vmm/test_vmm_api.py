"""The VMM contract itself: observations and their diffs, loading VMMs, and misbehaving VMMs."""

from __future__ import annotations

import pytest

from cffi_core.asm import assemble
from conformance import api
from conformance.api import (
    VM,
    Observation,
    VMConfig,
    VMMError,
    VMMLoadError,
    VMMUnsupported,
    load_vmm,
    observe,
)
from reference_vmm.emulate import EmulateVMM
from reference_vmm.native import NativeVMM

HELLO = assemble("_start: li r1, 72\n out 0x3f8, r1\n out 0x500, r0")
SMALL = VMConfig(memory=1 << 20, budget=1000)


# ---- Observation ----


def test_equivalence_ignores_counters():
    a = Observation(b"hi", 0, b"", "exit", counters={"instructions": 5})
    b = Observation(b"hi", 0, b"", "exit", counters={"instructions": 50})
    assert a.equivalent(b) and a.diff(b) == []


def test_diff_names_each_difference_readably():
    a = Observation(b"hello, world\n", 0, bytes(1024), "exit")
    disk = bytearray(1024)
    disk[0x205] = 0xAB
    b = Observation(b"hello, wOrld\n", None, bytes(disk), "budget")
    lines = a.diff(b, ("native", "vmm"))
    assert lines == [
        "stop: native 'exit', vmm 'budget'",
        "exit code: native 0 (0x0), vmm none",
        "console: differs from byte 8 (native 13 bytes, vmm 13): native b'hello, world\\n', vmm b'hello, wOrld\\n'",
        "disk: 1 bytes differ, the first at 0x205 (sector 1): native 00 00 00 00 00 00 00 00, vmm ab 00 00 00 00 00 00 00",
    ]
    assert not a.equivalent(b)


def test_the_second_disk_is_compared_and_named_in_the_diff():
    a = Observation(b"", 0, b"", "exit", disk2=bytes(512))
    b = Observation(b"", 0, b"", "exit", disk2=b"\x01" + bytes(511))
    assert not a.equivalent(b)
    assert a.diff(b) == [
        "disk2: 1 bytes differ, the first at 0x0 (sector 0): expected 00 00 00 00 00 00 00 00, actual 01 00 00 00 00 00 00 00"
    ]
    assert Observation(b"", 0, b"", "exit").disk2 == b""


def test_diff_of_a_long_console_shows_context_around_the_first_difference():
    a = Observation(b"x" * 100 + b"A", None, b"", "halted")
    b = Observation(b"x" * 100, None, b"", "halted")
    (line,) = a.diff(b)
    assert line.startswith("console: differs from byte 100 (expected 101 bytes, actual 100): expected …b'xxx")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stop": "crashed"}, "stop = 'crashed'"),
        ({"console": "text"}, "console is a str"),
        ({"exit_code": -1, "stop": "exit"}, "exit_code = -1"),
        ({"exit_code": 3, "stop": "halted"}, "an exit code comes with stop 'exit' only"),
    ],
)
def test_observation_refuses_garbage(kwargs, message):
    fields = {"console": b"", "exit_code": None, "disk": b"", "stop": "halted", **kwargs}
    with pytest.raises((TypeError, ValueError), match=message):
        Observation(**fields)


def test_the_contract_copies_the_machines_constants():
    from cffi_core import machine, platform
    from conformance import api

    assert (api.PAGE_SIZE, api.MIN_MEMORY, api.MAX_MEMORY, api.DEFAULT_GUEST_MEMORY) == (
        machine.PAGE_SIZE,
        machine.MIN_MEMORY,
        machine.MAX_MEMORY,
        machine.DEFAULT_MEMORY,
    )
    assert api.DEFAULT_BUDGET == platform.DEFAULT_BUDGET


def test_vmconfig_checks_its_fields():
    with pytest.raises(ValueError, match="memory"):
        VMConfig(memory=1000)
    with pytest.raises(ValueError, match="from 64 KiB to 4 GiB"):
        VMConfig(memory=4096)
    with pytest.raises(ValueError, match="budget"):
        VMConfig(budget=-1)
    assert VMConfig(disk=bytearray(512)).disk == bytes(512)
    assert VMConfig(disk2=bytearray(1024)).disk2 == bytes(1024)
    for name in ("disk", "disk2"):
        with pytest.raises(ValueError, match=f"{name}: must be bytes of whole 512-byte sectors"):
            VMConfig(**{name: bytes(100)})
        with pytest.raises(ValueError, match=name):
            VMConfig(**{name: "not bytes"})


# ---- load_vmm ----


def test_load_vmm_by_module_and_class():
    assert load_vmm("reference_vmm.emulate:EmulateVMM") is EmulateVMM
    assert load_vmm("reference_vmm.native.monitor:NativeVMM") is NativeVMM


def test_load_vmm_by_entry_point_name():
    assert load_vmm("native") is NativeVMM
    assert load_vmm("emulate") is EmulateVMM


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_vmm", r"no VMM named 'no_such_vmm' in entry-point group 'popek.vmms' \(known: .*emulate.*native"),
        ("no_such_pkg.mod:VMM", "cannot import module 'no_such_pkg.mod'"),
        ("reference_vmm.emulate:Nope", "module 'reference_vmm.emulate' has no attribute 'Nope'"),
        ("cffi_core.machine:Machine", "not a subclass of conformance.api.VMM"),
        ("conformance.api:VMM", "does not implement create_vm, run"),
        ("reference_vmm.emulate:", "expected 'pkg.module:Class'"),
        ("  ", "give 'pkg.module:Class' or an entry-point name"),
    ],
)
def test_load_vmm_errors_say_what_is_wrong(spec, message):
    with pytest.raises(VMMLoadError, match=message):
        load_vmm(spec)


# ---- observe: misbehaving VMMs ----


class _RaisesInRun(EmulateVMM):
    name = "raises-in-run"

    def run(self, budget: int) -> None:
        raise ZeroDivisionError("the monitor divided by zero")


class _ReturnsNoVM(EmulateVMM):
    name = "returns-no-vm"

    def create_vm(self, image, config):
        return {"console": b""}


class _GarbageVM(VM):
    console = property(lambda self: "not bytes")
    exit_code = property(lambda self: None)
    disk = property(lambda self: b"")
    stop = property(lambda self: "halted")


class _ReturnsGarbageVM(EmulateVMM):
    name = "garbage-vm"

    def create_vm(self, image, config):
        return _GarbageVM()

    def run(self, budget: int) -> None:
        pass


class _NeedsVmx(EmulateVMM):
    name = "needs-vmx"
    requires = frozenset({"vmx", "ept"})


@pytest.mark.parametrize("isolate", [True, False])
def test_a_vmm_that_raises_in_run_is_a_vmm_error_naming_it(isolate):
    with pytest.raises(
        VMMError,
        match=r"VMM 'raises-in-run' \(.*:_RaisesInRun\): run raised ZeroDivisionError: the monitor divided by zero",
    ) as info:
        observe(_RaisesInRun, HELLO, SMALL, isolate=isolate)
    if not isolate:  # in this process the cause is chained; from a child, its text is all that crosses
        assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_a_vmm_returning_garbage_is_a_vmm_error():
    with pytest.raises(VMMError, match=r"'returns-no-vm'.*create_vm returned dict, not a conformance\.api\.VM"):
        observe(_ReturnsNoVM, HELLO, SMALL)
    with pytest.raises(VMMError, match=r"'garbage-vm'.*observation raised TypeError: console is a str"):
        observe(_ReturnsGarbageVM, HELLO, SMALL)


def test_a_vmm_needing_missing_host_features_is_unsupported():
    with pytest.raises(VMMUnsupported, match="requires host features ept, vmx, which profile 'x86-2005' lacks"):
        observe(_NeedsVmx, HELLO, SMALL)


def test_a_budget_overrun_is_an_observation_not_an_error():
    spin = assemble("_start: jmp _start")
    for vmm in (NativeVMM, EmulateVMM):
        assert observe(vmm, spin, SMALL) == Observation(b"", None, b"", "budget")


@pytest.mark.parametrize("vmm", [NativeVMM, EmulateVMM])
def test_a_guest_calling_for_host_software_is_an_error_under_both(vmm):
    # hcall needs host software a bare machine lacks: the oracle fails, and so does emulation.
    with pytest.raises(VMMError, match=rf"'{vmm.name}'.*run raised MachineError: .*(hcall|HCALL)"):
        observe(vmm, assemble("_start: hcall 3"), SMALL)


def test_observe_rejects_what_is_not_a_vmm_class():
    with pytest.raises(VMMError, match=r"not a subclass of conformance\.api\.VMM"):
        observe(object, HELLO, SMALL)  # type: ignore[arg-type]


def test_a_vm_that_has_not_stopped_reports_budget():
    from cffi_core.machine import Machine

    monitor = EmulateVMM(Machine("x86-2005", 1 << 20))
    vm = monitor.create_vm(assemble("_start: jmp _start"), SMALL)
    monitor.run(10)
    assert not vm.stopped and vm.observation().stop == "budget"


# ---- observe: no test can hang (docs/vmm-api.md §5) ----
# Each misbehaving VMM below loops forever on a common mistake; observe must end it with a
# "no progress" error naming it and the guest's pc, within a second or so of host work.


def _unreflecting_hardware_vmm():
    """First-generation VT-x that drops a true page fault: the guest faults again, forever."""
    from types import MappingProxyType

    from cffi_core import spec
    from cffi_core.vmx import VmcsField, VmExitReason
    from reference_vmm.hardware.monitor import HANDLERS, HardwareVM, HardwareVMM, on_page_fault
    from reference_vmm.shadow import Resolution

    def resume_instead(vm):
        code = vm.vmcs[VmcsField.EXIT_INTR_ERROR_CODE]
        vm.vcpu.cpl = 3 if code & 4 else 0  # PF_U
        access = spec.ACCESS_WRITE if code & 2 else spec.ACCESS_READ  # PF_W (no fetch faults here)
        if vm.shadow.fault(vm.vcpu, vm.vmcs[VmcsField.EXIT_QUALIFICATION], access) is Resolution.TRUE:
            vm.clock -= 1  # taken for hidden: resume, and the guest faults at the same pc again
            return None
        return on_page_fault(vm)

    class VM_(HardwareVM):
        handlers = MappingProxyType({**HANDLERS, VmExitReason.EXCEPTION: resume_instead})

    class Unreflecting(HardwareVMM):
        name = "unreflecting"
        vm_class = VM_

    return Unreflecting


def _sleepless_ept_vmm():
    """Nested paging whose idle loop never advances the guest's clock: hlt, re-enter, hlt..."""
    from reference_vmm.hardware_ept.monitor import HardwareEptVM, HardwareEptVMM

    class VM_(HardwareEptVM):
        def _idle(self, ticks):
            pass

    class Sleepless(HardwareEptVMM):
        name = "sleepless"
        vm_class = VM_

    return Sleepless


class _Idle(NativeVMM):
    """run returns at once and never runs the guest: its clock stands still."""

    name = "idle"

    def run(self, budget: int) -> None:
        pass


class _Swallowing(EmulateVMM):
    """Catches every exception of its host calls and tries again: a spinner that hides."""

    name = "swallowing"

    def run(self, budget: int) -> None:
        while True:
            try:
                self.host.run(1)
            except Exception:
                continue


def test_a_vmm_that_does_not_reflect_a_true_page_fault_fails_with_no_progress_quickly():
    import time

    from conformance.guests import by_name

    guest = by_name("pagefault")
    start = time.process_time()
    # Each fault is an entry of a tick or so: whichever bound of the slice it passes first.
    with pytest.raises(VMMError, match=rf"^no progress: VMM 'unreflecting' \(.*\) (entered the host \d+ times|ran the "
                       rf"host for \d+ ticks) in one slice of {api.OBSERVE_SLICE} guest ticks \(at most \d+\); the "
                       r"guest's pc is 0x[0-9a-f]+ \(last exit: VM exit EXCEPTION\)"):  # fmt: skip
        observe(_unreflecting_hardware_vmm(), guest.image(), guest.config, profile="vtx-2006")
    assert time.process_time() - start < 20


def test_a_vmm_whose_idle_loop_never_advances_the_clock_fails_with_no_progress():
    from conformance.guests import by_name

    guest = by_name("timer")
    # Each entry finds the guest halted and leaves the host's clock still: stopped after
    # STILL_ENTRIES of them, not after a slice's worth of entries.
    with pytest.raises(VMMError, match=rf"^no progress: VMM 'sleepless' .* entered the host {api.STILL_ENTRIES + 1} "
                       r"times in a row without the host's clock moving .*"
                       r"the guest's pc is 0x[0-9a-f]+ \(last exit: HLT\)"):  # fmt: skip
        observe(_sleepless_ept_vmm(), guest.image(), guest.config, profile="vtx-2009")


def test_a_vmm_whose_guest_clock_stands_still_fails_with_no_progress():
    with pytest.raises(VMMError, match=r"^no progress: VMM 'idle' .*: the guest's clock stood at 0 ticks for 8 calls "
                       rf"of run\({api.OBSERVE_SLICE}\) in a row; the guest's pc is unknown"):  # fmt: skip
        observe(_Idle, HELLO, VMConfig(memory=1 << 20))


def test_a_vmm_that_swallows_the_error_still_fails_with_no_progress():
    # Its host, never set up, shuts down at once: entries that leave the host's clock still.
    entries = api.STILL_ENTRIES + 1
    with pytest.raises(VMMError, match=rf"^no progress: VMM 'swallowing' .* entered the host {entries} times in a row"):
        observe(_Swallowing, assemble("_start: jmp _start"), VMConfig(memory=1 << 20))


def test_observe_records_the_host_entries_of_a_run():
    from cffi_core.machine import Machine
    from conformance.api import HostWatch, default_host_memory
    from reference_vmm.trap_emulate import TrapEmulateVMM

    host = Machine("x86-2005", default_host_memory(1 << 20))
    assert observe(TrapEmulateVMM, HELLO, SMALL, host=host).console == b"H"
    watch = HostWatch.of(host)
    assert watch.entries == sum(watch.exits.values()) >= 2  # the two outs exit to the VMM
    assert watch.exits["IO_OUT"] == 2


@pytest.mark.parametrize("vmm", [NativeVMM, EmulateVMM], ids=["native", "emulate"])
def test_a_vms_ticks_are_its_counters_clock_without_building_them(vmm):
    # observe reads VM.ticks after every slice (docs/vmm-api.md §3, §5): it must tell the same
    # clock as the counters, halted time included.
    from cffi_core.machine import Machine
    from conformance.api import default_host_memory
    from conformance.guests import by_name

    guest = by_name("timer")  # halts until its timer wakes it: halted ticks count
    monitor = vmm(Machine("x86-2005", default_host_memory(guest.config.memory)))
    vm = monitor.create_vm(guest.image(), guest.config)
    while not vm.stopped:
        monitor.run(997)
        counters = vm.counters
        assert vm.ticks == counters["ticks"] + counters["halted_ticks"]
    assert counters["halted_ticks"] > 0


def test_the_watch_reads_the_hosts_clock_around_every_entry():
    from cffi_core.machine import Machine
    from conformance.api import HostWatch

    host = Machine("x86-2005", 1 << 20)
    host.load(assemble("_start: jmp _start"))
    reader = host.clock_reader()
    watch = HostWatch.of(host)
    for budget in (5, 17, 1):
        host.run(budget)
        assert reader() == host.clock
    assert (watch.entries, watch.host_ticks, watch.longest) == (3, 23, 17)
    assert watch.exits == {"BUDGET": 3}
