"""The console of ``popek demo`` and ``popek grade`` while the runs go: a line as each run starts
and as each ends (in the order they end), and a live line of the runs going on.

A finished run reads ``[k/N] vmm on profile: verdict (time)`` (``reports.demo.describe``), k
counting the runs finished.  On a terminal the live line is rewritten in place (carriage return
and erase-line) under those lines: each running run with its tests finished so far (read from
its log, ``reports.demo.tests_done``), the runs done and the time so far.  Anywhere else (a CI
log, a pipe) nothing is rewritten: the same status is a plain line after every ``heartbeat``
seconds without other output, so a long run is never silent for long.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TextIO

from reports.demo import Outcome, Plan, describe, format_seconds, tests_done

__all__ = ["RunConsole"]

_ERASE = "\r\x1b[K"  # back to the line's start, erase to its end (ECMA-48 CR and EL)


class RunConsole:
    """Prints the runs' start and end lines and the live status; a context manager around
    ``reports.demo.run_plan`` (pass ``started`` and ``finished`` as its callbacks).  Thread-safe:
    the runs' threads call it."""

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        *,
        live: bool | None = None,
        interval: float = 0.5,
        heartbeat: float = 60.0,
    ) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.interval = interval
        self.heartbeat = heartbeat
        self.done = 0
        self._running: dict[Path, tuple[Plan, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()
        self._last_output = self._start
        self._shown = False  # a live line is on the screen
        self._width = len(f"[{total}/{total}] ")

    def __enter__(self) -> RunConsole:
        self._start = self._last_output = time.monotonic()
        self._thread = threading.Thread(target=self._tick, name="popek-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            self._erase()

    def started(self, plan: Plan, log: Path) -> None:
        """A run starts (``run_plan``'s ``started``)."""
        with self._lock:
            self._running[log] = (plan, time.monotonic())
            self._line(" " * self._width + f"{plan.title}: started")

    def finished(self, outcome: Outcome) -> None:
        """A run ended (``run_plan``'s ``progress``)."""
        line = describe(outcome)
        with self._lock:
            self._running.pop(outcome.log, None)
            self.done += 1
            self._line(f"[{self.done:>{len(str(self.total))}}/{self.total}] {line}")

    def status(self) -> str:
        """The live status: the runs done and the time so far, then each run going on with its
        tests done (and the percentage pytest last wrote) and its time so far."""
        parts = []
        now = time.monotonic()
        for log, (plan, since) in list(self._running.items()):
            done, percent = tests_done(log)
            part = f"{plan.title} {done} tests" + (f" ({percent}%)" if percent is not None else "")
            parts.append(f"{part} for {format_seconds(now - since)}")
        elapsed = format_seconds(now - self._start)
        return f"{self.done}/{self.total} done, {elapsed}; running: {', '.join(parts) or 'none'}"

    # ---- output (under the lock) ------------------------------------------------------------

    def _line(self, text: str) -> None:
        self._erase()
        self.stream.write(text + "\n")
        self._last_output = time.monotonic()
        self._draw()

    def _erase(self) -> None:
        if self._shown:
            self.stream.write(_ERASE)
            self._shown = False
        self.stream.flush()

    def _draw(self) -> None:
        if not self.live or not self._running:
            self.stream.flush()
            return
        width = shutil.get_terminal_size((100, 24)).columns - 1  # a wrapped line cannot be rewritten
        text = self.status()
        if len(text) > width:
            text = text[: max(0, width - 3)] + "..."
        self.stream.write(_ERASE + text)
        self.stream.flush()
        self._shown = True

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                if self.live:
                    self._draw()
                elif self._running and time.monotonic() - self._last_output >= self.heartbeat:
                    self.stream.write(" " * self._width + self.status() + "\n")
                    self.stream.flush()
                    self._last_output = time.monotonic()
