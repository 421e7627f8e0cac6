"""The hardware VMMs' fast exit paths change no figure: every counter matches the code before them.

The fast paths of ``reference_vmm.hardware`` and ``reference_vmm.shadow`` (a cache of the
guest's page walks, a store emulated without rebuilding the spec's state from scratch, cheaper
VMCS traffic) must be invisible: the observation, the VMM's counters (``vm.counters``) and the
host core's (``Machine.counters``, every VMCS read and write included, as Adams & Agesen 2006
price them) and what ``HostWatch`` saw must be those of the plain code.

The expected figures are not computed here: they are the plain code's own, recorded by running
this file as a script in a checkout of the commit before the fast paths
(``BASELINE_COMMIT``) and kept in ``hardware_speed_baseline.json`` beside it::

    git worktree add /tmp/before <BASELINE_COMMIT>
    cp cffi_core/_p64.abi3.so /tmp/before/cffi_core/   # the core is not in git
    cp tests/reference_vmm/test_hardware_speed_exactness.py /tmp/before/tests/reference_vmm/
    PYTHONPATH=/tmp/before python /tmp/before/tests/reference_vmm/test_hardware_speed_exactness.py \\
        > tests/reference_vmm/hardware_speed_baseline.json
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

BASELINE_COMMIT = "f174253"
"""The last commit before the fast paths: the figures of ``BASELINE`` are its code's."""
BASELINE = Path(__file__).with_name("hardware_speed_baseline.json")
ADDED_SINCE = ("cr_writes", "system_")
"""Host counters the core gained after ``BASELINE_COMMIT`` (docs/architecture.md §13), by name or
prefix (``system_<mnemonic>``): absent from the baseline, so no figure of it changed; any other
key the baseline lacks is a failure."""

# (case id, VMM, profile, guest): p64os workloads ("os:<name>:<n>") and directed guests.  The
# shadow pager is shared with trap-and-emulate and guest_mode with hardware-ept, so they are here too.
CASES: tuple[tuple[str, str, str, str], ...] = (
    ("hw-forkwait", "hardware", "vtx-2006", "os:forkwait:6"),
    ("hw-mmu", "hardware", "vtx-2006", "os:mmu:4096"),
    ("hw-ktest", "hardware", "vtx-2006", "os:ktest:1"),
    ("hw-paging", "hardware", "vtx-2006", "paging"),
    ("hw-pagefault", "hardware", "vtx-2006", "pagefault"),
    ("hw-spaces", "hardware", "vtx-2006", "spaces"),
    ("hw-smc", "hardware", "vtx-2006", "smc"),
    ("hw-sti_fault", "hardware", "vtx-2006", "sti_fault"),
    ("hw-beyond_ram", "hardware", "vtx-2006", "beyond_ram"),
    ("hw-syscall", "hardware", "vtx-2006", "syscall"),
    ("hw-tsc", "hardware", "vtx-2006", "tsc"),
    ("ept-forkwait", "hardware-ept", "vtx-2009", "os:forkwait:6"),
    ("ept-paging", "hardware-ept", "vtx-2009", "paging"),
    ("te-forkwait", "trap-and-emulate", "x86-64-2005", "os:forkwait:3"),
    ("te-paging", "trap-and-emulate", "classic-1974", "paging"),
    ("te-spaces", "trap-and-emulate", "x86-2005", "spaces"),
    ("te-pagefault", "trap-and-emulate", "x86-64-2005", "pagefault"),
)


def guest_inputs(guest: str) -> dict[str, Any]:
    """The guest's image and VMConfig as plain data: the baseline keeps the very bytes its
    figures were made with, so that later changes to the guests' sources do not move them."""
    if guest.startswith("os:"):
        from conformance.guest_os import os_config, os_image

        _, name, n = guest.split(":")
        image, config = os_image(), os_config(name, int(n))
    else:
        from conformance.guests import by_name

        directed = by_name(guest)
        image, config = directed.image(), directed.config
    return {
        "entry": image.entry,
        "segments": [[seg.address, _pack(seg.data)] for seg in image.segments],
        "memory": config.memory,
        "disk": None if config.disk is None else _pack(config.disk),
        "disk2": None if config.disk2 is None else _pack(config.disk2),
        "console_input": _pack(config.console_input),
        "budget": config.budget,
    }


def figures(vmm: str, profile: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """One run in this process: the observation (plain data), the VMM's and the host's figures."""
    from cffi_core.image import GuestImage, Segment
    from cffi_core.machine import Machine
    from conformance.api import HostWatch, VMConfig, default_host_memory, load_vmm, observe, plain_observation

    image = GuestImage(tuple(Segment(a, _unpack(d)) for a, d in inputs["segments"]), inputs["entry"])
    config = VMConfig(
        memory=inputs["memory"],
        disk=None if inputs["disk"] is None else _unpack(inputs["disk"]),
        disk2=None if inputs["disk2"] is None else _unpack(inputs["disk2"]),
        console_input=_unpack(inputs["console_input"]),
        budget=inputs["budget"],
    )
    host = Machine(profile, default_host_memory(config.memory))
    obs = observe(load_vmm(vmm), image, config, host=host)
    plain = plain_observation(obs, vmm)
    plain = {k: (_digest(v) if k.startswith("disk") else v) for k, v in plain.items()}
    plain["console"] = plain["console"].decode("latin-1")
    # The host's whole RAM at the end: guest RAM, shadow tables, bitmaps — byte for byte.
    plain["host_memory"] = _digest(bytes(host.memory))
    return _canonical({"observation": plain, "host": HostWatch.of(host).figures()})


def _pack(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def _unpack(text: str) -> bytes:
    return zlib.decompress(base64.b64decode(text))


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(data: Any) -> Any:
    """Figures as JSON keeps them (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(data, sort_keys=True))


@cache
def _baseline() -> dict[str, Any]:
    return json.loads(BASELINE.read_text())


BASELINE_PERIOD = 2_000
"""The host-timer period (``conformance.api.HOST_TIMER_PERIOD``) of ``BASELINE_COMMIT``: the
figures count its timer exits and slices, so they are compared at that period."""


@pytest.fixture(autouse=True)
def _baseline_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """The period of the baseline's code, as each piece that slices reads it (at each call)."""
    from conformance import api
    from reference_vmm.hardware import guest_mode
    from reference_vmm.trap_emulate import monitor

    monkeypatch.setattr(api, "OBSERVE_SLICE", BASELINE_PERIOD)
    monkeypatch.setattr(guest_mode, "SLICE", BASELINE_PERIOD)
    monkeypatch.setattr(monitor, "SLICE", 10 * BASELINE_PERIOD)


@pytest.mark.parametrize(("case", "monitor", "profile", "guest"), CASES, ids=[c[0] for c in CASES])
def test_figures_match_the_plain_code(case: str, monitor: str, profile: str, guest: str) -> None:
    baseline = _baseline()
    expected = baseline["figures"][case]
    actual = figures(monitor, profile, baseline["inputs"][guest])
    assert actual["observation"] == expected["observation"]
    counters = {k: v for k, v in actual["host"]["counters"].items() if not k.startswith(ADDED_SINCE)}
    assert counters == expected["host"]["counters"]
    for key in ("exits", "entries", "host_ticks", "longest", "max_slice_entries"):
        assert actual["host"][key] == expected["host"][key], key


def _record() -> None:
    """Print every case's inputs and figures as JSON (run in the baseline commit's checkout)."""
    inputs = {guest: guest_inputs(guest) for guest in sorted({c[3] for c in CASES})}
    out: dict[str, Any] = {"inputs": inputs, "figures": {}}
    for case, vmm, profile, guest in CASES:
        print(case, file=sys.stderr)
        out["figures"][case] = figures(vmm, profile, inputs[guest])
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    _record()
