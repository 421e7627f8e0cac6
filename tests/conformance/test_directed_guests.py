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


def _native_console(name: str, profile: str = "x86-2005") -> bytes:
    guest = next(g for g in DIRECTED_GUESTS if g.name == name)
    return observe(NativeVMM, guest.image(), guest.config, profile=profile).console


def test_blind_spot_guests_show_what_the_manual_says():
    # Values the manual fixes, not the run: the two spaces map PAGED_VA to frames marked 0x70
    # and 0x77 (lib/paging.s), the remap to frame 3 (§8.1); TPR 15 and 2 hold vector 32 back,
    # TPR 1 lets it through, the shadowed `in` runs before it (§6.5), TPR 16 is #GP(0) (§2); rdtsc right after a TSC
    # write reads the value + 1 (§9); vmcall is #UD outside guest mode (§3); RAM_END is #MC (§5.1).
    spaces = _native_console("spaces")
    for line in (b"r1=0000000000000070", b"r2=0000000000000077", b"r3=0000000000000070", b"r5=0000000000000073"):
        assert line in spaces
    tpr = _native_console("tpr")
    for line in (b"r1=000000000000000f", b"r2=0000000000000000", b"r4=0000000000000000", b"r7=0000000000000001"):
        assert line in tpr
    assert b"r8=0000000000000000" in tpr and b"cr8=0000000000000000" in tpr
    assert b"event=000000000000000d" in tpr  # TPR 16: #GP(0) (§2), and cr8 above stays 0
    assert b"r1=0000000001000001" in _native_console("tsc")
    assert _native_console("vmcall").count(b"event=0000000000000006") == 3
    assert b"r3=0000000000005a5a" in _native_console("beyond_ram") and b"event=0000000000000012" in _native_console(
        "beyond_ram"
    )
    assert _native_console("console").startswith(b"popek reads its console\n\x00\xff\n")
