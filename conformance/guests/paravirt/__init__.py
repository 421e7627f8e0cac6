"""Paravirtual builds of the directed guests (docs/paravirt-abi.md): a port per guest where paravirtualization keeps its meaning, else the reason.

A VMM whose ``guest_abi`` is ``"paravirt"`` runs guests ported to the paravirtual ABI, never
native guest code (Fisher-Ogden 2006 §2.3.3: "source-level modifications can be made to avoid
the x86 challenges to virtualization").  Equivalence for it means: the paravirtual build under
the VMM gives the same console output, exit code and disk as the native build run natively.

``paravirt_build(name)`` gives, for each name of ``conformance.guests.DIRECTED_GUESTS``, the
port ``<name>.s`` here — a ``ParavirtGuest`` with the native guest's category, purpose and
``VMConfig`` — or the reason there is none:

- an obstacle guest exists to execute a sensitive instruction (architecture.md §4.3), which a
  paravirtual kernel never executes: paravirtualization removes it;
- a mechanism guest whose results are machine state a paravirtual kernel cannot have (a large
  page, CR8, the TSC, sti's shadow, a second disk, memory beyond its own) is not ported rather
  than faked.

The ports include ``lib/directed.s`` and ``lib/end.s`` (the native ``lib/prelude.s`` and
``lib/signature.s`` ported; ``lib/pv.s`` is the ABI's macros, the one home of the library).
Where a port runs its native guest's code, the two include one body,
``conformance/guests/lib/body_<name>.s`` (the victim's: ``lib/victim_work.s``), written with the
operations both libraries define — natively the instruction, here the ABI's (``lib/directed.s``).
The ports' signature leaves out the native signature's machine-state lines, which no paravirtual
kernel has — the control registers, the FLAGS user mode ran with, the clock (lib/end.s says
why each) —, and ``native_expectation`` removes exactly those lines from the native run's
observation: the rest of the console, the exit code and the disks must be equal byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from conformance.api import Observation
from conformance.guests import DirectedGuest, by_name

__all__ = [
    "PARAVIRT_DIR",
    "PORTS",
    "SIGNATURE_MACHINE_STATE",
    "ParavirtGuest",
    "native_expectation",
    "paravirt_build",
]

PARAVIRT_DIR = Path(__file__).resolve().parent

PORTS = ("syscall", "pagefault", "timer", "disk", "smc", "spaces", "console", "transfers")
"""The directed guests with a paravirtual port here (``<name>.s``)."""

SIGNATURE_MACHINE_STATE = (b"cr0=", b"cr3=", b"cr4=", b"cr8=", b"user flags=", b"tsc=", b"now=")
"""The lines of the native signature (conformance/guests/lib/signature.s) that show machine
state a paravirtual kernel does not have (docs/paravirt-abi.md §8): the control registers
(``mfcr`` is privileged; the kernel runs paged from its first instruction and has no TPR), the
real FLAGS user mode ran with (user mode always runs with events enabled, §4.4), and the clock
(``rdtsc`` is undefined and TIMER_NOW is port I/O; SHARED_TIME counts the port's own
instructions, which are not the native guest's)."""

_REMOVES = "paravirtualization removes it (Fisher-Ogden 2006 §2.3.3)"


def _sensitive(insn: str) -> str:
    return (
        f"{insn} is the sensitive instruction this guest exists to execute; a paravirtual kernel never "
        f"executes it — {_REMOVES}"
    )


_REASONS: dict[str, str] = {
    "smsw": _sensitive("smsw"),
    "sidt": _sensitive("sidt"),
    "rdcs": _sensitive("rdcs"),
    "pushf": _sensitive("pushf"),
    "popf": _sensitive("popf"),
    "iret": _sensitive("iret"),
    "iopl": _sensitive("iret (the one that gives ring 3 IOPL 3 for its cli, sti, in and out)"),
    "privileged": _sensitive("mtcr cr4 (setting CR4.TSD, so that rdtsc becomes privileged)")
    + "; the privileged instructions it then runs at CPL 3 are the obstacle class this guest shows, "
    "not a mechanism of the paravirtual ABI",
    "paging": "its r4 reads back PD[0], the 2 MiB page (PTE_PS) the kernel runs in, with the A and D bits "
    "the walker set: under the paravirtual ABI no entry maps a large page (docs/paravirt-abi.md §7.2: "
    "PV_ERSVD), so a paravirtual kernel has no such entry to read; the 4 KiB entries' A and D bits and "
    "invlpg after a remap are in the spaces and pagefault ports",
    "disk2": "it exists to drive the second disk (ports 0x170, IRQ 15): the paravirtual ABI has one block "
    "device, VMConfig.disk on the block ring (docs/paravirt-abi.md §9); its DMA past the end of RAM is "
    "the block ring's PV_ENOTOWNED, which the paravirtual safety adversaries check",
    "tpr": "CR8, the task-priority register, is the machine state this guest exists to exercise: a "
    "paravirtual kernel has no TPR (mtcr is privileged, docs/paravirt-abi.md §8) but the event mask and "
    "per-port masks (§5), and `sti; hlt` is one hypercall (§4.8) with no shadow to show",
    "sti_fault": "sti's interrupt shadow is what this guest exists to exercise (an interrupt pending at sti "
    "waits out a hidden page fault, a D-bit fault and an exit in the shadow): under the paravirtual ABI "
    "sti is a store to the event mask (docs/paravirt-abi.md §5.1), with no shadow, and a pending upcall is "
    "taken by a hypercall",
    "tsc": "wrmsr MSR_TSC and rdtsc are the instructions this guest exists to execute: wrmsr is "
    "privileged and rdtsc undefined for a paravirtual kernel (docs/paravirt-abi.md §8); its time is "
    "SHARED_TIME, which it cannot set",
    "beyond_ram": "its accesses at and beyond the end of RAM need paging off, which a paravirtual kernel "
    "never is (docs/paravirt-abi.md §3), and entries naming frames outside its memory, which mmu_update "
    "refuses (§7.2 rule 3: PV_ENOTOWNED) — the refusal the paravirtual safety adversaries check",
    "vmcall": "vmcall is the instruction this guest exists to execute: under the paravirtual ABI it is a "
    "hypercall transport, whose fault in the kernel outside the hypercall page is host-dependent and "
    "undefined (docs/paravirt-abi.md §2.4)",
}


@dataclass(frozen=True)
class ParavirtGuest(DirectedGuest):
    """The paravirtual port of a directed guest: ``<name>.s`` in this directory, with the
    native guest's name, category, purpose and VMConfig."""

    @property
    def path(self) -> Path:
        return PARAVIRT_DIR / f"{self.name}.s"


def paravirt_build(name: str) -> DirectedGuest | str:
    """The paravirtual port of the directed guest ``name``, or the reason there is none."""
    native = by_name(name)
    if name in PORTS:
        return ParavirtGuest(native.name, native.category, native.what, native.config)
    reason = _REASONS.get(name)
    if reason is None:
        raise KeyError(f"directed guest {name!r} has neither a paravirtual port nor a reason for none")
    return reason


def native_expectation(native: Observation) -> Observation:
    """What a port must show under a paravirtual VMM, from its native guest's native run: the
    same observation, but for the signature's machine-state lines (``SIGNATURE_MACHINE_STATE``)
    removed from the console."""
    lines = native.console.splitlines(keepends=True)
    start = max(i for i, line in enumerate(lines) if line.startswith(b"r1="))  # the signature's first line
    kept = lines[:start] + [line for line in lines[start:] if not line.startswith(SIGNATURE_MACHINE_STATE)]
    return replace(native, console=b"".join(kept))
