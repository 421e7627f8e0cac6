"""Exit reasons and event classes (docs/architecture.md §10, §6.1): one home for the names
that the core's wrapper and the executable spec both report.  The values are those of the
``P64_EXIT_*`` and ``P64_EVENT_*`` enums of ``csrc/p64.h``; a test keeps them equal."""

from __future__ import annotations

from enum import IntEnum


class ExitReason(IntEnum):
    """Why ``run`` returned to the host (§10).  The core's ``P64_EXIT_PAUSED`` (8), a run paused
    between two slices and still open, is not among them: ``Machine.run`` and ``Machine.vmrun``
    go on with the run (or close it) and never return it."""

    BUDGET = 0
    HOST_GATE = 1
    IO_IN = 2
    IO_OUT = 3
    HLT = 4
    HCALL = 5
    SHUTDOWN = 6
    VM = 7  # Machine.vmrun only: a VM exit (docs/vmx.md V.4); Exit.number is the VmExitReason


class EventKind(IntEnum):
    """Class of an event (§6.1), reported at a host gate."""

    FAULT = 0
    TRAP = 1
    SOFTWARE = 2
    EXTERNAL = 3
    ABORT = 4
