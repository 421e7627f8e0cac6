"""Faults raised inside the spec, and the exits it reports to the host
(docs/architecture.md §6.1, §10).

``Fault`` is a Python exception that instruction bodies, the access checks and event delivery
raise; the boundary logic (``cffi_core.spec.machine``) catches every one of them and delivers
it, so none escapes ``step`` or ``run``.  ``Exit`` mirrors ``struct p64_exit``; its reasons and event
kinds are ``cffi_core.exits``', shared with the core's wrapper.
"""

from __future__ import annotations

from dataclasses import dataclass

from cffi_core.exits import EventKind, ExitReason

EXIT_BUDGET = ExitReason.BUDGET
EXIT_HOST_GATE = ExitReason.HOST_GATE
EXIT_IO_IN = ExitReason.IO_IN
EXIT_IO_OUT = ExitReason.IO_OUT
EXIT_HLT = ExitReason.HLT
EXIT_HCALL = ExitReason.HCALL
EXIT_SHUTDOWN = ExitReason.SHUTDOWN
EVENT_FAULT = EventKind.FAULT
EVENT_TRAP = EventKind.TRAP
EVENT_SOFTWARE = EventKind.SOFTWARE
EVENT_EXTERNAL = EventKind.EXTERNAL
EVENT_ABORT = EventKind.ABORT


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
