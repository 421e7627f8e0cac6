"""The answers docs/paravirt-abi.md prescribes, checked on directed paravirtual guests that have no native counterpart: the timer's deadline, the console ring's wrap-around, the VMM's pages, a hypercall from user mode.

A paravirtual VMM is held to the native build's run wherever a native guest exists
(``test_os.py``, ``test_equivalence.py``); what only the paravirtual interface has — its
timer, its rings, its transports — has no native run to compare with, so each guest here is
graded on the answer the ABI prescribes, computed from the ABI's constants
(``conformance.paravirt``) and never from a recorded run.  The guests
(``conformance/guests/paravirt/abi_*.s``) end with the paravirtual signature: ``rN=<hex>``
lines, then ``exceptions=<count>`` and one ``  event=<hex>`` line per fault the guest logged,
the hex being the error code shifted left by 8 bits, or-ed with the vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import pytest

from cffi_core.spec.state import GP, PF, UD
from conformance.api import VMConfig, observe
from conformance.guests.paravirt import PARAVIRT_DIR
from conformance.paravirt import PV_REFUSED_INT_ERROR, Transport, transport_for

CONFIG = VMConfig(memory=1 << 20, budget=200_000)
CONSOLE_BYTES = 3000
"""abi_console_wrap.s's output: more than the console ring's 2,048 output bytes (§9)."""


def console_text() -> bytes:
    """What abi_console_wrap.s writes: byte i is ``'a' + i mod 26``, a newline every hundredth."""
    return bytes(10 if i % 100 == 99 else ord("a") + i % 26 for i in range(CONSOLE_BYTES))


def _event(vector: int, error: int = 0) -> str:
    return f"{error << 8 | vector:016x}"


@dataclass(frozen=True)
class Answer:
    """What the ABI prescribes a guest's run to show on a host."""

    registers: dict[int, int] = field(default_factory=dict)
    """n -> the value of the signature's ``rN``."""
    events: tuple[str, ...] | None = None
    """The logged events, in order (None: not prescribed)."""
    output: bytes = b""
    """The console before the signature."""
    exit_code: int | None = 0
    """None: not prescribed (a fault the guest's library treats as fatal ends it)."""


def _user_hypercall(profile: str) -> Answer:
    # §2.4: the transport's instruction faults at user mode as it would without a VMM.
    fault = {
        Transport.HCALL: _event(GP),  # hcall at CPL 3: #GP(0)
        Transport.INT: _event(GP, PV_REFUSED_INT_ERROR),  # no DPL 3 gate 0x82 for user mode
        Transport.VMCALL: _event(UD),  # vmcall from guest user mode
    }[transport_for(profile)]
    return Answer({1: 0x55}, (fault,))


def _vmm_pages(profile: str) -> Answer | str:
    transport = transport_for(profile)
    if transport is Transport.VMCALL:
        return (
            "in guest mode, with no segment limit in force, a guest-ring-1 kernel may read the VMM's "
            "read-only pages (docs/paravirt-abi.md §7.2 rule 4): no answer is prescribed"
        )
    if transport is Transport.HCALL:
        return Answer({1: 0}, (_event(GP),))  # beyond the segment limit: #GP(0), skipped
    return Answer(events=(_event(PF),), exit_code=None)  # supervisor-only at CPL 3: #PF


ANSWERS = {
    "abi_timer": lambda profile: Answer({1: 1}, ()),  # SHARED_TIME at the upcall = deadline + 1
    "abi_console_wrap": lambda profile: Answer(output=console_text(), events=()),
    "abi_vmm_pages": _vmm_pages,
    "abi_user_hypercall": _user_hypercall,
}


@cache
def _image(name: str):
    from cffi_core.asm import assemble_file

    return assemble_file(PARAVIRT_DIR / f"{name}.s")


def _events(lines: list[bytes]) -> tuple[str, ...]:
    return tuple(line.split(b"=", 1)[1].decode() for line in lines if line.startswith(b"  event="))


pytestmark = [pytest.mark.popek_guest_abi("paravirt")]


# The VMM's pages are a matter of resource control (Popek & Goldberg 1974): a guest that reads
# them reads what is not its own; the rest is the interface's behaviour.
PROPERTIES = {"abi_vmm_pages": "safety"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.popek_property(PROPERTIES.get(n, "equivalence"), category="paravirt-abi"))
        for n in ANSWERS
    ],
)
def test_the_abis_answer(name: str, vmm, popek_profile):
    answer = ANSWERS[name](popek_profile)
    if isinstance(answer, str):
        pytest.skip(answer)
    actual = observe(vmm, _image(name), CONFIG, profile=popek_profile)
    head, sep, tail = actual.console.partition(b"r1=")
    lines = (sep + tail).splitlines()
    problems = []
    if actual.stop != "exit" or (answer.exit_code is not None and actual.exit_code != answer.exit_code):
        problems.append(
            f"stop {actual.stop!r}, exit code {actual.exit_code}; the ABI's run exits with {answer.exit_code}"
        )
    if head != answer.output:
        common = min(len(head), len(answer.output))
        first = next((i for i in range(common) if head[i] != answer.output[i]), common)
        problems.append(
            f"the console before the signature: {len(head)} bytes, the ABI's {len(answer.output)} "
            f"(the first difference at byte {first})"
        )
    for n, value in answer.registers.items():
        want = f"r{n}={value:016x}".encode()
        if want not in lines:
            got = next((x for x in lines if x.startswith(f"r{n}=".encode())), b"nothing")
            problems.append(f"{want.decode()} by the ABI, {got.decode()} under {vmm.name}")
    if answer.events is not None and _events(lines) != answer.events:
        problems.append(f"events {list(_events(lines))}, the ABI's {list(answer.events)}")
    assert not problems, "\n".join(
        [f"{name}.s under {vmm.name} on {popek_profile} (docs/paravirt-abi.md):", *(f"  {p}" for p in problems)]
    )
