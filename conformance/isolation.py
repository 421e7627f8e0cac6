"""The VMM under test runs in a child process of the grader (docs/vmm-api.md §11): its crashes, hangs, memory and tampering stay there.

The grader (the pytest process) forks a child for each VMM run: the child builds the VMM and
drives it; the grader keeps the verdict.  A ``Session`` is one such child, kept for a sequence
of requests (the stateful tests); ``run_isolated`` is a child for one piece of work.

What crosses back is plain data only — ``None``, ``bool``, ``int``, ``float``, ``str``,
``bytes`` and tuples, lists, dicts and sets of them — read with an unpickler that refuses every
class, so that a child under the VMM's control cannot run code in the grader.  The child:

- is its own process group, so that a Ctrl-C of the grader does not reach it (the grader
  kills it) and a kill reaches whatever it started;
- has its address space bounded (``RLIMIT_AS``: what the grader had at the fork plus
  ``Limits.memory``): a VMM that allocates without end gets ``MemoryError``;
- is killed when a request takes longer than its time (``Limits.seconds``) of wall-clock time
  (the host's clock bounds the grader's patience only; nothing in the machine reads it);
- ends with ``os._exit`` after each reply is sent: threads the VMM left behind end with it;
- is killed when the grader dies, whatever kills it (SIGTERM, SIGKILL), on Linux: a Ctrl-C is
  the grader's to handle, but a grader that cannot run its ``finally`` must not leave the VMM
  running (``prctl(PR_SET_PDEATHSIG)``).

A child that dies (a segfault, ``os._exit``, a kill), overruns its time, or sends something
other than plain data fails the request with ``VMMCrashed`` or ``VMMTimedOut``, whose message
names the VMM, the request and the cause.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import pickle
import resource
import select
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from conformance.api import NoProgress, VMMError, VMMUnsupported, _frame_line

__all__ = [
    "BASE_SECONDS",
    "DEFAULT_LIMITS",
    "MIN_TICKS_PER_SECOND",
    "Limits",
    "Session",
    "VMMCrashed",
    "VMMTimedOut",
    "configure",
    "limits",
    "one_test",
    "run_isolated",
]

GiB = 1 << 30
BASE_SECONDS = 30.0
"""Wall-clock seconds any request gets: building a VMM, its VMs, a Python start-up's worth."""
MIN_TICKS_PER_SECOND = 20_000
"""The slowest a VMM may run its guests' time and still be graded: some thirty times slower
than the reference emulator (``emulate``, an interpreter in Python) on a loaded CI machine."""
_HEADER = struct.Struct("<Q")  # a frame: its length, then a pickle of plain data
_MESSAGE_LIMIT = 8000  # characters of an error message carried back


@dataclass(frozen=True)
class Limits:
    """What one request to a VMM's child process may take."""

    timeout: float | None = None
    """Seconds of wall-clock time per request (``--popek-timeout``); None: ``BASE_SECONDS``
    plus one second per ``MIN_TICKS_PER_SECOND`` guest ticks the request may run."""
    memory: int = 8 * GiB
    """Bytes of address space the child may add to what the grader had (``--popek-memory``)."""
    reply: int = 1 * GiB
    """Bytes of the largest reply (an observation with its disks, a VM's RAM)."""

    def seconds(self, ticks: int = 0) -> float:
        """The time a request that may run ``ticks`` guest ticks gets."""
        if self.timeout is not None:
            return float(self.timeout)
        return BASE_SECONDS + max(0, ticks) / MIN_TICKS_PER_SECOND

    def __post_init__(self) -> None:
        if self.timeout is not None and not (isinstance(self.timeout, int | float) and self.timeout > 0):
            raise ValueError(f"timeout = {self.timeout!r}: must be a positive number of seconds")
        for name in ("memory", "reply"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise ValueError(f"{name} = {value!r}: must be a positive number of bytes")


DEFAULT_LIMITS = Limits()
_limits = DEFAULT_LIMITS


def configure(*, timeout: float | None = None, memory: int | None = None) -> Limits:
    """Set the limits of later requests (the plugin's ``--popek-timeout``, ``--popek-memory``);
    a limit not given is its default (each pytest run configures its own)."""
    global _limits
    _limits = replace(
        DEFAULT_LIMITS,
        **{k: v for k, v in (("timeout", timeout), ("memory", memory)) if v is not None},
    )
    return _limits


def limits() -> Limits:
    """The limits requests are made with now."""
    return _limits


class VMMCrashed(VMMError):
    """The process running the VMM died, or sent back what the contract does not allow."""


class VMMTimedOut(VMMError):
    """A request to the process running the VMM took longer than ``Limits.timeout``; the
    process was killed."""


# A VMM that hung once in a test is not run again in that test: hypothesis would otherwise
# retry (shrink) the failing example, paying the timeout each time.
_hung: dict[str, str] = {}


@contextlib.contextmanager
def one_test() -> Iterator[None]:
    """One test: a VMM that timed out in it fails its later requests at once, with the same
    message (the plugin wraps every test in this)."""
    _hung.clear()
    try:
        yield
    finally:
        _hung.clear()


# ---- plain data across the boundary -------------------------------------------------------


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any class or function named in the stream is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def _loads(data: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


def _write_frame(fd: int, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes | None:
    """``n`` bytes from ``fd``; None at end of file; TimeoutError past ``deadline``."""
    chunks, got = [], 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + " ..."


# ---- the child ------------------------------------------------------------------------------

# How an exception raised in the child is raised again in the grader.
_KINDS: dict[str, type[VMMError]] = {
    "NoProgress": NoProgress,
    "VMMUnsupported": VMMUnsupported,
    "VMMError": VMMError,
}


def _kind(e: BaseException) -> str:
    for name, cls in _KINDS.items():
        if isinstance(e, cls):
            return name
    if type(e).__name__ == "HostRefused":  # the watch's stop after a NoProgress
        return "NoProgress"
    return "other"


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with(grader: int) -> None:
    """Have the kernel send SIGKILL to this process when its parent, the grader, ends (Linux);
    if the grader already ended between the fork and this call, end now.  The kernel sends it
    when the thread that forked ends, so only a fork from the grader's main thread asks for it
    (``grader`` is 0 otherwise)."""
    if not grader:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != grader:
        os._exit(70)


def _child_main(factory: Callable[[], Any], requests: int, replies: int, memory: int, grader: int) -> None:
    """The child's whole life: build the state, answer requests until the grader closes the
    pipe, leave with ``os._exit`` (no atexit, no finalizers, no threads waited for)."""
    status = 0
    try:
        # The grader's objects become permanent: the child's collector never walks them, so
        # their pages stay shared with the grader instead of being copied on the first pass.
        gc.freeze()
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grader decides when the child ends
        _die_with(grader)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _bound_memory(memory)
        state: Any = None
        built: BaseException | None = None
        try:
            state = factory()
        except BaseException as e:  # reported with the first request
            built = e
        while True:
            frame = _read_exact(requests, _HEADER.size, None)
            if frame is None:
                break
            (size,) = _HEADER.unpack(frame)
            body = _read_exact(requests, size, None)
            if body is None:
                break
            method, args = pickle.loads(body)  # from the grader: trusted
            try:
                if built is not None:
                    raise built
                reply: tuple[Any, ...] = ("ok", getattr(state, method)(*args))
                data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
                _loads(data)  # plain data only, checked here so that the error names the cause
            except BaseException as e:
                text = f"{type(e).__name__}: {e}" if _kind(e) == "other" else str(e)
                if isinstance(e, MemoryError) or isinstance(e.__cause__, MemoryError):
                    text += f" (the VMM's process may add {memory / GiB:g} GiB of address space: --popek-memory)"
                if _kind(e) == "other":
                    text += _frame_line(e)
                reply = ("error", _kind(e), _clip(text))
                data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            _flush()
            _write_frame(replies, data)
    except BaseException:
        status = 70  # the child's own machinery failed: the grader reports the exit status
    finally:
        _flush()
        os._exit(status)


def _bound_memory(extra: int) -> None:
    with open("/proc/self/statm", encoding="ascii") as f:
        size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = size + extra
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if soft == resource.RLIM_INFINITY or want < soft:
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


# ---- the grader's side ----------------------------------------------------------------------


class Session:
    """A child process holding ``factory()``'s result (built in the child, after the fork):
    ``call(method, *args)`` runs ``state.method(*args)`` there and returns its plain-data
    result, or raises the error it raised (``VMMError`` and its kinds; anything else as a
    ``VMMError`` naming it), ``VMMCrashed`` or ``VMMTimedOut``.  ``label`` names the VMM in
    messages.  Use it as a context manager: ``close`` ends the child."""

    def __init__(self, factory: Callable[[], Any], *, label: str, limits: Limits | None = None) -> None:
        self.label = label
        self.limits = limits or _limits
        self.pid: int | None = None
        self._dead: str | None = None
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        _flush()
        grader = os.getpid() if threading.current_thread() is threading.main_thread() else 0
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            os.close(req_w)
            os.close(rep_r)
            _child_main(factory, req_r, rep_w, self.limits.memory, grader)
        os.close(req_r)
        os.close(rep_w)
        with contextlib.suppress(OSError):  # the child may have done it already, or died
            os.setpgid(pid, pid)
        self.pid, self._requests, self._replies = pid, req_w, rep_r

    def call(self, method: str, *args: Any, what: str | None = None, ticks: int = 0) -> Any:
        """``state.method(*args)`` in the child; ``what`` names the request in errors; ``ticks``
        is how many guest ticks it may run (its time limit grows with them, ``Limits.seconds``)."""
        what = what or method
        if self.label in _hung:
            raise VMMTimedOut(f"{_hung[self.label]} (on an earlier example of this test; not run again)")
        if self._dead is not None:
            raise VMMCrashed(self._dead)
        seconds = self.limits.seconds(ticks)
        deadline = time.monotonic() + seconds
        try:
            _write_frame(self._requests, pickle.dumps((method, args), protocol=pickle.HIGHEST_PROTOCOL))
            header = _read_exact(self._replies, _HEADER.size, deadline)
            if header is None:
                raise self._died(what)
            (size,) = _HEADER.unpack(header)
            if size > self.limits.reply:
                self._kill()
                raise self._crash(f"sent a reply of {size} bytes to {what} (at most {self.limits.reply})")
            body = _read_exact(self._replies, size, deadline)
            if body is None:
                raise self._died(what)
        except TimeoutError:
            self._kill()
            message = (
                f"{self.label}: {what} did not finish within {seconds:g} s (wall clock, "
                "--popek-timeout); the process running the VMM was killed"
            )
            _hung[self.label] = message
            self._dead = message
            raise VMMTimedOut(message) from None
        except BrokenPipeError:
            raise self._died(what) from None
        try:
            reply = _loads(body)
        except Exception as e:
            self._kill()
            raise self._crash(f"sent a reply to {what} that is not plain data ({e})") from None
        if not (isinstance(reply, tuple) and reply and reply[0] in ("ok", "error")):
            self._kill()
            raise self._crash(f"sent a reply to {what} outside the protocol")
        if reply[0] == "ok" and len(reply) == 2:
            return reply[1]
        if len(reply) == 3 and isinstance(reply[2], str):
            kind, text = reply[1], reply[2]
            if kind in _KINDS:
                raise _KINDS[kind](text)
            raise VMMError(f"{self.label}: {what} raised {text}")
        self._kill()
        raise self._crash(f"sent a reply to {what} outside the protocol")

    def close(self) -> None:
        """End the child (it has nothing left to do) and reap it."""
        if self.pid is None:
            return
        for fd in (self._requests, self._replies):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._kill()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # -- the end of a child -------------------------------------------------------------------
    def _kill(self) -> int | None:
        """Kill the child's process group, reap the child; its wait status (None if reaped)."""
        pid, self.pid = self.pid, None
        if pid is None:
            return None
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return None

    def _died(self, what: str) -> VMMCrashed:
        # The reply pipe closed: the child is gone, or about to be; wait for its status.
        pid, self.pid = self.pid, None
        status = None
        if pid is not None:
            try:
                status = os.waitpid(pid, 0)[1]
            except ChildProcessError:
                status = None
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)  # anything it started
        return self._crash(f"died during {what}: {_describe(status)}")

    def _crash(self, what: str) -> VMMCrashed:
        self._dead = f"{self.label}: the process running the VMM {what}"
        return VMMCrashed(self._dead)


def _describe(status: int | None) -> str:
    if status is None:
        return "its exit status is unknown"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name} (signal {number})"
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return f"it exited with status {code} (os._exit in the VMM, or a fatal error)"
    return f"wait status {status:#x}"


class _Once:
    def __init__(self, work: Callable[[], Any]) -> None:
        self.work = work

    def run(self) -> Any:
        return self.work()


def run_isolated(
    work: Callable[[], Any], *, label: str, what: str, ticks: int = 0, limits: Limits | None = None
) -> Any:
    """``work()`` in a child process of its own (forked: ``work`` may be any closure); its
    plain-data result, or the error (see ``Session``).  ``ticks``: the guest ticks it may run."""
    with Session(lambda: _Once(work), label=label, limits=limits) as session:
        return session.call("run", what=what, ticks=ticks)
