"""What running a VMM under test in a child process of its own costs the grader (docs/vmm-api.md §11)."""

from __future__ import annotations

import pytest

from conformance.api import observe
from conformance.guests import by_name
from conformance.isolation import run_isolated
from reference_vmm.trap_emulate import TrapEmulateVMM


def test_empty_request_to_a_child(benchmark):
    assert benchmark(run_isolated, lambda: 1, label="nothing", what="an empty request") == 1


@pytest.mark.parametrize("isolate", [True, False], ids=["child", "in-process"])
def test_observe_of_a_directed_guest(benchmark, isolate):
    guest = by_name("smsw")
    image = guest.image()
    obs = benchmark(observe, TrapEmulateVMM, image, guest.config, isolate=isolate)
    assert obs.stop == "exit"
