"""The property tests graded against seeded bugs: toy VMMs that break safety and efficiency fail, readably."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.api import CONTROL_LATENCY
from conformance.test_efficiency import GUESTS as EFFICIENCY_GUESTS

pytest_plugins = ["pytester"]

CONFORMANCE = Path(__file__).resolve().parents[2] / "conformance"

# Toy VMMs with seeded bugs (aesthetics-anchors E, "quality"):
# - BareMetalVMM runs every guest on the host machine itself at real CPL 0, all at the same
#   addresses, each to the end of its budget in one host run, and keeps its VM table at the top
#   of host RAM: it breaks every rule of resource control at once;
# - UncountedVMM is the native oracle without the efficiency counters;
# - RestartingVMM reboots a VM once it has exited (its console starts over);
# - SlowVMM is the full emulator under another name (no documented deviation covers it).
TOYS = """
from cffi_core.devices import standard_devices
from cffi_core.devices.host import DeviceHost
from cffi_core.platform import MachineDMA
from conformance.api import VM, VMM
from reference_vmm.emulate import EmulateVMM
from reference_vmm.native import NativeVMM
from reference_vmm.native.monitor import NativeVM


class BareMetalVM(VM):
    def __init__(self, host, image, config):
        self.config, self.host, self.image = config, host, image
        host.load(image)
        self.bus, self.devices = standard_devices(host, MachineDMA(host), disk=config.disk,
                                                  console_input=config.console_input)
        self._host = DeviceHost(host.cpu, self.bus, self.devices, clock=host.now, run=host.run,
                                advance_clock=host.advance_clock)
        self._stop = None

    console = property(lambda self: self.devices.console.output)
    exit_code = property(lambda self: self.devices.result.exit_code if self.devices.result.stopped else None)
    disk = property(lambda self: self.devices.disk.data if self.devices.disk is not None else b"")
    stop = property(lambda self: self._stop)

    def run_to_the_end(self):
        if self._stop is None:
            self.host.load(self.image)  # its own code again: a neighbour's load overwrote it
            self._stop = self._host.run_until(self.config.budget) or "budget"


class BareMetalVMM(VMM):
    name = "bare-metal"
    technique = "none: guests on the host at real CPL 0 (a seeded bug)"

    def create_vm(self, image, config):
        self.host.write_u64(self.host.memory_size - 8, len(self.vms) + 1)
        vm = BareMetalVM(self.host, image, config)
        self.vms.append(vm)
        return vm

    def run(self, budget):
        for vm in self.vms:
            vm.run_to_the_end()


class UncountedVM(NativeVM):
    @property
    def counters(self):
        return {}


class UncountedVMM(NativeVMM):
    name = "uncounted"
    technique = "native without efficiency counters (a seeded bug)"

    def create_vm(self, image, config):
        vm = super().create_vm(image, config)
        vm.__class__ = UncountedVM
        return vm


class RestartingVMM(NativeVMM):
    name = "restarting"
    technique = "native that reboots a VM once it exits (a seeded bug)"

    def create_vm(self, image, config):
        vm = super().create_vm(image, config)
        vm.image = image
        return vm

    def run(self, budget):
        super().run(budget)
        for vm in self.vms:
            if vm.stop == "exit":
                fresh = super().create_vm(vm.image, vm.config)
                self.vms.pop()
                vm.platform, vm._stop = fresh.platform, None


class SlowVMM(EmulateVMM):
    name = "slow"
    technique = "full emulation under another name (a seeded bug)"
"""


# A hypothesis profile for the inner runs: a few examples, no shrinking — the failure and its
# message are the point here, and shrinking a seeded bug that fails everywhere only costs time.
TOY_PROFILE = """
from hypothesis import HealthCheck, Phase, settings

settings.register_profile("toy", max_examples=5, deadline=None, derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=[HealthCheck.too_slow])
"""


# The inner runs take the repository's configuration (their test files live in conformance/),
# so their options are given here: the toy profile, no benchmark warnings under xdist.
OPTIONS = ("-p", "toy_profile", "--popek-hypothesis-profile=toy", "-p", "no:benchmark", "-p", "no:cacheprovider")


class _Toys:
    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester

    def run(self, test_file: str, *args: str) -> pytest.RunResult:
        return self.pytester.runpytest(str(CONFORMANCE / test_file), *OPTIONS, *args)


@pytest.fixture
def toys(pytester: pytest.Pytester) -> _Toys:
    pytester.makepyfile(toys=TOYS, toy_profile=TOY_PROFILE)
    pytester.syspathinsert()
    return _Toys(pytester)


def test_bare_metal_vmm_fails_every_safety_check(toys):
    from conformance import test_safety

    result = toys.run("test_safety.py", "--popek-vmm", "toys:BareMetalVMM")
    result.assert_outcomes(failed=sum(name.startswith("test_") for name in vars(test_safety)))
    result.stdout.fnmatch_lines_random(
        [
            "*resource control violated under bare-metal (Popek & Goldberg 1974):*",
            "*host canary region damaged: 1 quadwords of *",
            "*instructions retired at real CPL 0 in host mode while guests ran (insn_host_cpl0)*",
            f"*one host run lasted * ticks: the VMM must regain control within {CONTROL_LATENCY} ticks of each host "
            "timer tick*",
            "*the victim's observation beside differs from its native run:*",
            "*the victim's observation beside differs from its alone run:*",
            "*adversary:*",
        ]
    )


def test_reference_vmms_pass_the_safety_checks(toys):
    result = toys.run("test_safety.py", "--popek-vmm", "native", "--popek-vmm", "emulate", "-k", "cli_jmp")
    result.assert_outcomes(passed=2)


def test_vmm_without_counters_fails_efficiency_saying_which_keys_are_missing(toys):
    result = toys.run("test_efficiency.py", "--popek-vmm", "toys:UncountedVMM")
    result.assert_outcomes(failed=len(EFFICIENCY_GUESTS))
    result.stdout.fnmatch_lines(
        ["*the VM reports no guest_insns_direct, guest_insns_emulated, vmm_interventions in VM.counters*"]
    )


def test_emulator_without_a_documented_deviation_fails_efficiency_with_the_figures(toys):
    result = toys.run("test_efficiency.py", "--popek-vmm", "toys:SlowVMM", "--popek-vmm", "emulate")
    result.assert_outcomes(failed=len(EFFICIENCY_GUESTS), xfailed=len(EFFICIENCY_GUESTS))
    result.stdout.fnmatch_lines_random(
        [
            "*efficiency (Popek & Goldberg 1974) not met by slow on the compute guest:*",
            "*0 of the guest's * instructions (0.0%) ran directly (the host's core retired 0 deprivileged, the VM "
            "counts 0 guest_insns_direct); the compute guest needs at least 99%*",
        ]
    )


# Lazy VMMs: nested paging that intercepts what the host lets a guest do alone.  Each is still
# equivalent; only the host entries it makes for nothing show, on the eff_ops guest.
LAZY = """
from cffi_core.isa.encoding import decode
from cffi_core.vmx import ProcControl, VmcsField, VmExitReason
from reference_vmm.hardware.monitor import on_cr_access
from reference_vmm.hardware_ept.monitor import HANDLERS, HardwareEptVM, HardwareEptVMM


def on_rdtsc(vm):
    # The guest's TSC: the ticks before this one, plus its offset (architecture §9).
    insn = decode(vm.vmcs[VmcsField.EXIT_INSTRUCTION_WORD])
    vm.vmcs.regs[insn.rd] = (vm.clock - 1 + vm.tsc_offset) & ((1 << 64) - 1)
    vm.skip()


class RdtscExitingVM(HardwareEptVM):
    handlers = {**HANDLERS, VmExitReason.RDTSC: on_rdtsc}

    def set_controls(self, proc):
        super().set_controls(proc | ProcControl.RDTSC_EXITING)


class RdtscExitingVMM(HardwareEptVMM):
    name = "rdtsc-exiting"
    technique = "nested paging that intercepts every rdtsc despite the TSC offset (lazy)"
    vm_class = RdtscExitingVM


class Cr8ExitingVM(HardwareEptVM):
    handlers = {**HANDLERS, VmExitReason.CR_ACCESS: on_cr_access}

    def set_controls(self, proc):
        super().set_controls(proc & ~ProcControl.USE_TPR_SHADOW | ProcControl.CR8_LOAD_EXITING)


class Cr8ExitingVMM(HardwareEptVMM):
    name = "cr8-exiting"
    technique = "nested paging that intercepts CR8 loads although the host has a TPR shadow (lazy)"
    vm_class = Cr8ExitingVM


class PollingIdleVM(HardwareEptVM):
    def _idle(self, ticks):
        # hlt: one tick at a time, back into the halted guest, instead of skipping to the
        # next device deadline (architecture §9).
        super()._idle(min(ticks, 1))


class PollingIdleVMM(HardwareEptVMM):
    name = "polling-idle"
    technique = "nested paging that polls a halted guest tick by tick (lazy)"
    vm_class = PollingIdleVM
"""


@pytest.mark.parametrize(
    "lazy, entries",
    [("RdtscExitingVMM", "6[0-9][0-9]"), ("Cr8ExitingVMM", "9[0-9][0-9]"), ("PollingIdleVMM", "[0-9][0-9][0-9][0-9]")],
)
def test_lazy_vmms_fail_efficiency_on_the_operations_guest(pytester, lazy, entries):
    pytester.makepyfile(lazy=LAZY, toy_profile=TOY_PROFILE)
    pytester.syspathinsert()
    result = pytester.runpytest(
        str(CONFORMANCE / "test_efficiency.py"), *OPTIONS, "--popek-vmm", f"lazy:{lazy}", "--popek-vmm", "hardware-ept",
        "--popek-profile", "vtx-2009", "-k", "eff_ops",
    )  # fmt: skip
    # The reference VMM passes the same guest; the lazy one is equivalent but enters the host
    # for what the host's features let the guest do alone.
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [f"*the VMM entered the host {entries} times in * guest instructions (* per 1,000); the eff_ops guest "
         "allows at most * per 1,000 on this host*"]
    )  # fmt: skip


def test_vmm_that_restarts_stopped_vms_fails_the_stateful_test(toys):
    result = toys.run("test_stateful.py", "--popek-vmm", "toys:RestartingVMM", "--popek-vmm", "native")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*VM * console shrank or changed: console: differs from byte 0*", "*state.create_vm(guest=*"]
    )
