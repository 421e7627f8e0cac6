"""Safety against paravirtual adversaries (docs/paravirt-abi.md): malicious hypercalls beside the paravirtual victim, each refused with its code, the victim and the host untouched.

A paravirtual guest's kernel reaches the VMM by hypercall, and every hypercall that names
memory is a way to reach another VM's or the VMM's: ``mmu_update`` entries and pins, set_cr3,
trap tables, block requests, console_write (Barham et al. 2003, "Virtual address translation":
the guest's own page tables, registered and validated; "Data transfer: I/O rings").  The
adversaries run first, so that the victim's memory is the frames right after their own
(mem_base + mem_size, start info, §3): the directed one (``conformance/guests/paravirt/
attack.s``) aims each attack at its own tables, the victim's frames and the VMM's pages (its
top-level slots, its IDT) and prints the codes, which are compared with the ABI's
(``conformance.paravirt``); the generated ones (``strategies.hypercall_adversaries``) draw
hypercall sequences near the same frames.  The victim is judged as in conformance/test_safety.py:
its observation and memory equal its run alone, the host's canary intact.  (These tests apply to
paravirtual VMMs only; conformance/test_safety.py's apply to every VMM.)
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.api import VMConfig
from conformance.guests import DISK_IMAGE, GUEST_DIR
from conformance.paravirt import PvError, error_of
from conformance.safety import run_side_by_side
from conformance.strategies import hypercall_adversaries
from conformance.test_safety import _SETTINGS, VICTIM_CONFIG, _judge, _victim_of

E = PvError
ATTACK = GUEST_DIR / "paravirt" / "attack.s"
ATTACK_CONFIG = VMConfig(memory=1 << 20, disk=DISK_IMAGE, budget=60_000)
# (what, the code, r2 where the refusal names an index, else None), in attack.s's order.
ATTACKS = [
    ("a writable mapping of its own L1", E.EWRITABLE, 0),
    ("a writable mapping of its own L4", E.EWRITABLE, 0),
    ("the victim's first frame mapped writable", E.ENOTOWNED, 0),
    ("the victim's L4 mapped read-only", E.ENOTOWNED, 0),
    ("the VMM's L3 (named by slot 511) mapped read-only", E.ENOTOWNED, 0),
    ("the VMM's L3 pinned as its own", E.ENOTOWNED, 0),
    ("an entry of the victim's L4 written directly", E.ENOTTABLE, 0),
    ("a page of the victim's pinned", E.ENOTOWNED, 0),
    ("the victim's L1 unpinned", E.ENOTTABLE, 0),
    ("its L4 slot 1 naming the victim's L3", E.ENOTOWNED, 0),
    ("a 2 MiB page over the victim", E.ERSVD, 0),
    ("set_cr3 to the victim's L4", E.ENOTTABLE, None),
    ("the victim's L4 as user base", E.ENOTTABLE, None),
    ("the VMM's top-level slot 256 onto the victim", E.EPERM, 0),
    ("the VMM's slot 511 cleared", E.EPERM, 0),
    ("an L4 with slot 256 present pinned (after its valid read-only remap)", E.EPERM, 1),
    ("a trap-table handler at the VMM's IDT", E.EPERM, 40),
    ("a trap-table gate at the hypercall vector", E.EPERM, 0x82),
    ("the VMM's IDT read as a trap table", E.EFAULT, None),
    ("the VMM's IDT written to the console", E.EFAULT, None),
    ("mmu_update requests read from the VMM's IDT", E.EFAULT, 0),
    ("the shared info page pinned", E.EPERM, 0),
    ("its current base unpinned", E.EINUSE, 0),
]
BLOCK_ATTACKS = [
    ("DMA into the victim's first frame", E.ENOTOWNED),
    ("DMA out of the victim's data onto its disk", E.ENOTOWNED),
    ("DMA into its own L1, a pinned table", E.EWRITABLE),
    ("DMA into the VMM's L3", E.ENOTOWNED),
    ("DMA across the end of its memory into the victim's", E.ENOTOWNED),
    ("DMA into its own data", None),
    ("two sectors from its last into the victim's first, written to its disk", E.ENOTOWNED),
    ("two sectors read into its last and the victim's first", E.ENOTOWNED),
]
PTE_P, PTE_W, PTE_U = 1, 2, 4


def _words(data: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


@pytest.mark.popek_property("safety", category="hypercalls")
@pytest.mark.popek_guest_abi("paravirt")
def test_malicious_hypercalls_are_refused_and_the_victim_untouched(vmm, popek_profile):
    attack = _assemble(ATTACK)
    run = run_side_by_side(vmm, [(attack, ATTACK_CONFIG), (_victim_of(vmm), VICTIM_CONFIG)], popek_profile)
    _judge(vmm, popek_profile, run, 1, ATTACK.read_text(encoding="utf-8"), ATTACK_CONFIG.memory)
    adversary = run.observations[0]
    assert adversary is not None and (adversary.stop, adversary.exit_code) == ("exit", 0), adversary
    out = _words(adversary.console)
    mem_base, victim = out[:2]
    assert victim == mem_base + ATTACK_CONFIG.memory
    n = 2 * len(ATTACKS)
    got = [
        (what, error_of(r1), r2 if index is not None else None)
        for (what, _, index), r1, r2 in zip(ATTACKS, out[2 : 2 + n : 2], out[3 : 3 + n : 2], strict=True)
    ]
    assert got == ATTACKS
    send, rsp_prod, *responses = out[2 + n : 2 + n + 2 + 2 * len(BLOCK_ATTACKS)]
    assert (send, rsp_prod) == (0, len(BLOCK_ATTACKS))
    assert responses[0::2] == list(range(len(BLOCK_ATTACKS)))  # the ids, in request order
    statuses = [(what, error_of(s) if s else None) for (what, _), s in zip(BLOCK_ATTACKS, responses[1::2], strict=True)]
    assert statuses == BLOCK_ATTACKS
    scratch, slot_1, slot_256, slot_511 = out[2 + n + 2 + 2 * len(BLOCK_ATTACKS) :]
    # As the VMM wrote it (§3): A and D are the walker's, PTE_U the VMM's where the kernel runs at
    # ring 3 (§7.2: a guest does not rely on reading it back).
    assert scratch & ~(0x60 | PTE_U) == (mem_base + 0x60000) | PTE_P | PTE_W
    assert (slot_1, slot_256) == (0, 0) and slot_511 & PTE_P  # the VMM's slot still its own


@pytest.mark.popek_property("safety", category="adversary")
@pytest.mark.popek_guest_abi("paravirt")
@_SETTINGS
@given(adversary=hypercall_adversaries(), adversary_first=st.booleans())
def test_hypercall_adversary_cannot_disturb_the_victim_or_the_host(vmm, popek_profile, adversary, adversary_first):
    guests = [(_victim_of(vmm), VICTIM_CONFIG), (adversary.image, adversary.config)]
    if adversary_first:
        guests.reverse()
    run = run_side_by_side(vmm, guests, popek_profile)
    _judge(vmm, popek_profile, run, 1 if adversary_first else 0, adversary.listing(), adversary.config.memory)


def _assemble(path):
    from cffi_core.asm import assemble_file

    return assemble_file(path)
