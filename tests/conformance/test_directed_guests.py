"""Every directed guest runs natively to the end (exit code 0) on every implemented profile."""

from __future__ import annotations

import pytest

from cffi_core.profiles import available_profiles
from conformance.api import observe
from conformance.guests import DIRECTED_GUESTS, DirectedGuest
from reference_vmm.native import NativeVMM


@pytest.mark.parametrize("profile", available_profiles())
@pytest.mark.parametrize("guest", DIRECTED_GUESTS, ids=lambda g: g.name)
def test_directed_guest_runs_natively_to_the_end(guest: DirectedGuest, profile: str):
    obs = observe(NativeVMM, guest.image(), guest.config, profile=profile)
    assert (obs.stop, obs.exit_code) == ("exit", 0), obs.console.decode(errors="replace")
    assert b"exceptions=" in obs.console  # the signature was dumped


def test_obstacles_show_in_the_signature_only_where_the_profile_lets_them():
    # smsw at CPL 3: the x86-like profile returns CR0's low word, classic-1974 traps (§4.3, §4.4).
    smsw = next(g for g in DIRECTED_GUESTS if g.name == "smsw")
    x86 = observe(NativeVMM, smsw.image(), smsw.config, profile="x86-2005").console
    classic = observe(NativeVMM, smsw.image(), smsw.config, profile="classic-1974").console
    assert b"r2=0000000000000019" in x86 and b"exceptions=0000000000000000" in x86
    assert b"r2=0000000000005a5a" in classic and b"event=000000000000000d" in classic
