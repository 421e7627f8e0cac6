"""The result port: the guest's way to end a run and say how it went (a test harness device).

Writing RESULT_EXIT records the exit code and stops the run; the host checks ``stopped`` after
each ``out`` (docs/architecture.md §11).
"""

from __future__ import annotations

from typing import Any

from cffi_core.devices.base import ALL_ONES, Device

RESULT_EXIT = 0x500  # write: the exit code; the run ends
RESULT_CODE_MASK = 0xFFFF_FFFF  # exit codes are unsigned 32-bit, as a process's exit status


class ResultPort(Device):
    """Result port (port 0x500).

    The exit code is the low 32 bits of the value written, unsigned (``out`` of -1 gives
    0xffffffff).  A second write replaces the code; ``stopped`` stays set until reset.
    Reads return all ones.
    """

    ports = (RESULT_EXIT,)

    def __init__(self, name: str = "result") -> None:
        self.name = name
        self.reset()

    def reset(self) -> None:
        """Not stopped, no exit code."""
        self.stopped = False
        self.exit_code: int | None = None

    def _read(self, port: int) -> int:
        """Write-only: all ones."""
        return ALL_ONES

    def _write(self, port: int, value: int) -> None:
        """Record the exit code and stop."""
        self.exit_code = value & RESULT_CODE_MASK
        self.stopped = True

    def _state(self) -> dict[str, Any]:
        return {"stopped": self.stopped, "exit_code": self.exit_code}

    def _load(self, state: dict[str, Any]) -> None:
        self.stopped, self.exit_code = state["stopped"], state["exit_code"]
