"""Faults raised inside the spec, and the exits it reports to the host
(docs/architecture.md §6.1, §10).

``Fault`` is a Python exception that instruction bodies, the access checks and event delivery
raise; the boundary logic (``cffi_core.spec.machine``) catches every one of them and delivers
it, so none escapes ``step`` or ``run``.  ``Exit`` mirrors ``struct p64_exit``; the reason
and event-kind names are those of the C enums without the ``P64_`` prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitReason(IntEnum):
    """Why ``run`` (or ``step``) returned to the host (§10)."""

    EXIT_BUDGET = 0
    EXIT_HOST_GATE = 1
    EXIT_IO_IN = 2
    EXIT_IO_OUT = 3
    EXIT_HLT = 4
    EXIT_HCALL = 5
    EXIT_SHUTDOWN = 6


class EventKind(IntEnum):
    """Class of an event (§6.1), reported at a host gate."""

    EVENT_FAULT = 0
    EVENT_TRAP = 1
    EVENT_SOFTWARE = 2
    EVENT_EXTERNAL = 3
    EVENT_ABORT = 4


EXIT_BUDGET = ExitReason.EXIT_BUDGET
EXIT_HOST_GATE = ExitReason.EXIT_HOST_GATE
EXIT_IO_IN = ExitReason.EXIT_IO_IN
EXIT_IO_OUT = ExitReason.EXIT_IO_OUT
EXIT_HLT = ExitReason.EXIT_HLT
EXIT_HCALL = ExitReason.EXIT_HCALL
EXIT_SHUTDOWN = ExitReason.EXIT_SHUTDOWN
EVENT_FAULT = EventKind.EVENT_FAULT
EVENT_TRAP = EventKind.EVENT_TRAP
EVENT_SOFTWARE = EventKind.EVENT_SOFTWARE
EVENT_EXTERNAL = EventKind.EVENT_EXTERNAL
EVENT_ABORT = EventKind.EVENT_ABORT


class Fault(Exception):
    """An exception raised by an access, an instruction or a delivery step.

    ``error_code`` is None for vectors without one (§6.1); ``address`` is the linear address
    of a #PF (it goes to CR2).  Raising a Fault changes no state: whoever catches it decides.
    """

    def __init__(self, vector: int, error_code: int | None = None, address: int = 0) -> None:
        super().__init__(vector, error_code, address)
        self.vector = vector
        self.error_code = error_code
        self.address = address

    def __repr__(self) -> str:
        code = "" if self.error_code is None else f"({self.error_code:#x})"
        at = f" at {self.address:#x}" if self.address else ""
        return f"Fault(vector {self.vector}{code}{at})"


@dataclass(frozen=True)
class Exit:
    """One exit to the host, as ``struct p64_exit``: only the fields of the reason mean
    anything (host gate: vector, kind, has_error, error_code, address; in: port, reg; out:
    port, value; hcall: number)."""

    reason: ExitReason
    vector: int = 0
    kind: EventKind = EVENT_FAULT
    has_error: bool = False
    error_code: int = 0
    address: int = 0
    port: int = 0
    value: int = 0
    reg: int = 0
    number: int = 0
