"""The directed test guests (docs/vmm-api.md §10): one per obstacle of docs/architecture.md §4.3 and per mechanism.

Each ``<name>.s`` here includes ``lib/prelude.s`` (IDT with logging handlers, ring-3 entry)
and ``lib/signature.s`` (the console signature: r1-r8, CR0/CR3/CR4/CR8, the FLAGS ring 3 ran
with, the exception log, the clock; then exit code 0 on port 0x500).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.api import VMConfig

if TYPE_CHECKING:
    from cffi_core.image import GuestImage

__all__ = ["DIRECTED_GUESTS", "GUEST_DIR", "DirectedGuest", "by_name"]

GUEST_DIR = Path(__file__).resolve().parent
GUEST_MEMORY = 1 << 20  # every guest's memory map fits in 1 MiB (lib/prelude.s)
GUEST_BUDGET = 200_000  # ticks; the longest guest (disk) needs about 3,000 plus 2,000 halted
# Sector s holds bytes (7 i + s) mod 256: a disk where every sector differs.
DISK_IMAGE = b"".join(bytes((7 * i + s) & 0xFF for i in range(512)) for s in range(4))
CONSOLE_INPUT = b"popek reads its console\n\x00\xff"  # a NUL and 0xff too: bytes, not text


@dataclass(frozen=True)
class DirectedGuest:
    """One directed guest: its source, what it tests, and the VMConfig it runs with."""

    name: str
    category: str  # "obstacle" (docs/architecture.md §4.3) or "mechanism"
    what: str
    config: VMConfig

    @property
    def path(self) -> Path:
        return GUEST_DIR / f"{self.name}.s"

    def image(self) -> GuestImage:
        return _assemble(self.path)

    def source(self) -> str:
        return self.path.read_text(encoding="utf-8")


@cache
def _assemble(path: Path) -> GuestImage:
    from cffi_core.asm import assemble_file  # loads the compiled core: only when a guest runs

    return assemble_file(path)


def _guest(
    name: str,
    category: str,
    what: str,
    disk: bytes | None = None,
    disk2: bytes | None = None,
    console_input: bytes = b"",
) -> DirectedGuest:
    config = VMConfig(memory=GUEST_MEMORY, disk=disk, disk2=disk2, budget=GUEST_BUDGET, console_input=console_input)
    return DirectedGuest(name, category, what, config)


DIRECTED_GUESTS: tuple[DirectedGuest, ...] = (
    _guest("smsw", "obstacle", "smsw reads CR0[15:0] at CPL 3 without trapping"),
    _guest("sidt", "obstacle", "sidt reads the real IDTR at CPL 3 (Red Pill)"),
    _guest("rdcs", "obstacle", "rdcs reads the real CPL (ring aliasing)"),
    _guest("pushf", "obstacle", "pushf pushes the real FLAGS"),
    _guest("popf", "obstacle", "popf ignores IF/IOPL changes at CPL 3 silently"),
    _guest("iret", "obstacle", "iret ignores IF/IOPL changes at CPL 3 silently"),
    _guest("iopl", "obstacle", "cli/sti/in/out raise #GP at CPL > IOPL, run at CPL <= IOPL"),
    _guest("privileged", "obstacle", "privileged instructions and rdtsc with TSD raise #GP at CPL 3"),
    _guest("paging", "mechanism", "4-level paging, A/D bits read back, invlpg after a remap"),
    _guest("pagefault", "mechanism", "page faults at CPL 0 and CPL 3 repaired and retried"),
    _guest("syscall", "mechanism", "ring 3 system calls through a DPL 3 gate and iret"),
    _guest("timer", "mechanism", "periodic timer interrupts wake sti; hlt"),
    _guest("disk", "mechanism", "disk DMA read and write completed by IRQ 14", disk=DISK_IMAGE),
    _guest(
        "disk2",
        "mechanism",
        "second-disk DMA completed by IRQ 15; DMA past the end of RAM refused, nothing moved",
        disk2=DISK_IMAGE,
    ),
    _guest("smc", "mechanism", "self-modifying code executes the new instruction"),
    _guest("spaces", "mechanism", "CR3 switches between two live address spaces; a page ring 3 used is remapped"),
    _guest("tpr", "mechanism", "CR8 holds back a pending interrupt until lowered; sti; hlt and sti's shadow"),
    _guest("sti_fault", "mechanism", "an interrupt pending at sti waits out a hidden page fault, a D-bit fault and an exit in sti's shadow"),
    _guest("console", "mechanism", "console input polled, read and echoed", console_input=CONSOLE_INPUT),
    _guest("tsc", "mechanism", "wrmsr MSR_TSC, rdtsc after exits and after a halt; TIMER_NOW"),
    _guest("beyond_ram", "mechanism", "CPU accesses at or beyond the end of RAM (paging off, PTE, page table) are #MC"),
    _guest("vmcall", "mechanism", "vmcall outside guest mode is #UD at CPL 0, in sti's shadow and at CPL 3"),
    _guest("transfers", "mechanism", "callr, jr and ret at CPL 0 to targets 16 KiB apart (one TC-hash entry)"),
)


def by_name(name: str) -> DirectedGuest:
    """The directed guest called ``name``."""
    for guest in DIRECTED_GUESTS:
        if guest.name == name:
            return guest
    raise KeyError(f"no directed guest {name!r} (known: {', '.join(g.name for g in DIRECTED_GUESTS)})")
