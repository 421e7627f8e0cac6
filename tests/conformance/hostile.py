"""Misbehaving VMM plug-ins: trap-and-emulate with one hostile act each, for the grader's isolation tests (docs/vmm-api.md §11).

Each class is ``TrapEmulateVMM`` (equivalent on ``classic-1974``) that misbehaves on its first
``run`` call: it loops forever, leaves its process, crashes it, leaves a thread that never ends,
raises ``KeyboardInterrupt``, allocates without bound, waits forever (for a Ctrl-C of the
grader), or damages host RAM and then hides it from the reads of its own process.  Passed to
the suite as ``--popek-vmm tests.conformance.hostile:Name``.  Where a test needs to know that the
hostile act began, the VMM writes its process id to the file named by ``POPEK_HOSTILE_MARK``.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time

from conformance.api import host_canary
from reference_vmm.trap_emulate import TrapEmulateVMM

MARK_ENV = "POPEK_HOSTILE_MARK"


class _Hostile(TrapEmulateVMM):
    """Runs as trap-and-emulate, except for ``act`` before its first slice."""

    _acted = False

    def act(self) -> None:
        raise NotImplementedError

    def run(self, budget: int) -> None:
        if not self._acted:
            self._acted = True
            mark = os.environ.get(MARK_ENV)
            if mark:
                with open(mark, "w", encoding="ascii") as f:
                    f.write(str(os.getpid()))
            self.act()
        super().run(budget)


class Looping(_Hostile):
    name = "looping"

    def act(self) -> None:
        while True:
            pass


class Exiting(_Hostile):
    name = "exiting"

    def act(self) -> None:
        os._exit(3)


class Segfaulting(_Hostile):
    name = "segfaulting"

    def act(self) -> None:
        ctypes.string_at(0)  # reads address 0: SIGSEGV


class Threading(_Hostile):
    """Correct, but leaves a non-daemon thread that never ends."""

    name = "threading"

    def act(self) -> None:
        threading.Thread(target=threading.Event().wait, daemon=False).start()


class Interrupting(_Hostile):
    name = "interrupting"

    def act(self) -> None:
        raise KeyboardInterrupt


class Hoarding(_Hostile):
    name = "hoarding"

    def act(self) -> None:
        self.hoard = [bytearray(1 << 30) for _ in range(20)]  # 20 GiB, touched by zero-filling


class Sleeping(_Hostile):
    """Waits forever in its first slice: the grader is interrupted (Ctrl-C) meanwhile."""

    name = "sleeping"

    def act(self) -> None:
        while True:
            time.sleep(3600)


class Hiding(_Hostile):
    """Writes the host's canary region, then makes its own process read the pattern there."""

    name = "hiding"

    def act(self) -> None:
        from cffi_core.machine import Machine
        from conformance import safety

        start, _ = host_canary(self.host)
        self.host.write(start, b"\xff" * 64)
        true_read = Machine.read

        def read(machine: Machine, addr: int, size: int) -> bytes:
            data = bytearray(true_read(machine, addr, size))
            lo, hi = max(addr, start), min(addr + size, start + 64)
            if lo < hi:
                data[lo - addr : hi - addr] = safety.canary_pattern(lo, hi - lo)
            return bytes(data)

        Machine.read = read  # type: ignore[method-assign]
        safety.host_memory_damage = lambda host, owned: []  # and the check itself, for good measure
