"""The host's count of a guest's port accesses by device (``HostWatch.ports``, ``io_<device>``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.measure import IO_PREFIX, NATIVE, run_counters
from cffi_core.asm import assemble_file
from conformance.api import VMConfig

_GUEST = Path(__file__).resolve().parents[2] / "conformance" / "guests" / "disk.s"


@pytest.fixture(scope="module")
def natively() -> dict[str, int]:
    return _ports(NATIVE, "x86-2005")


def _ports(vmm: str, machine: str) -> dict[str, int]:
    run = run_counters(vmm, machine, assemble_file(str(_GUEST)), VMConfig(disk=bytes(512 * 64)))
    return {k[len(IO_PREFIX) :]: v for k, v in run.host.items() if k.startswith(IO_PREFIX)}


def test_a_native_run_counts_every_port_access_by_device(natively):
    run = run_counters(NATIVE, "x86-2005", assemble_file(str(_GUEST)), VMConfig(disk=bytes(512 * 64)))
    assert sum(natively.values()) == run.host["port_reads"] + run.host["port_writes"]
    assert natively["disk"] > 0 and natively["console"] > 0 and natively["result"] == 1


@pytest.mark.parametrize(("monitor", "machine"), [("hardware", "vtx-2006"), ("trap-and-emulate", "x86-2005")])
def test_the_host_sees_the_same_accesses_leave_a_guest_under_a_vmm_that_exits_on_them(natively, monitor, machine):
    # under hardware they are I/O VM exits, under trap-and-emulate exits to the host: either way
    # the guest's port traffic, device by device, is the bare machine's
    assert _ports(monitor, machine) == natively


def test_a_vmm_that_emulates_in_out_behind_callouts_shows_no_port():
    assert _ports("binary-translation", "x86-2005") == {}
