"""The one module that imports the compiled core (``cffi_core._p64``): its ``ffi`` and ``lib``,
the ABI/instruction-table check made at import, the mapping of status codes to exceptions,
``tie``, which keeps the owner of core memory alive for as long as a view of that memory lives,
and the checks of host arguments made before they reach the core (``check_int`` and its kin).

Everything else (``cffi_core.machine``) goes through here, so a stale build is caught once, at
import, with a message that says how to rebuild.
"""

from __future__ import annotations

import operator
import reprlib
from collections.abc import Mapping
from typing import Any, TypeVar

from cffi_core.isa.table import table_hash

ABI_VERSION = 8  # must equal P64_ABI_VERSION in cffi_core/csrc/core.h

REBUILD = "rebuild the C core: run `pip install -e .` (or `python setup.py build_ext --inplace`)"

try:
    from cffi_core._p64 import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(f"the P64 C core (cffi_core._p64) is not built or cannot load ({exc}); {REBUILD}") from exc


def check_build(expected_hash: str | None = None, expected_abi: int | None = None) -> None:
    """Refuse a core built from another instruction table or another boundary header."""
    want_hash = table_hash() if expected_hash is None else expected_hash
    want_abi = ABI_VERSION if expected_abi is None else expected_abi
    built_hash = ffi.string(lib.p64_isa_hash()).decode()
    if built_hash != want_hash:
        raise ImportError(
            f"the C core was built from instruction table {built_hash}, but cffi_core/isa/table.py "
            f"is {want_hash}; {REBUILD} (after `python -m cffi_core.isa.generate`)"
        )
    built_abi = int(lib.p64_abi_version())
    if built_abi != want_abi:
        raise ImportError(f"the C core has ABI version {built_abi}, the Python side expects {want_abi}; {REBUILD}")


check_build()


class _KeepAlive:
    """The "destructor" of a tied pointer: it frees nothing; holding it holds ``owner``."""

    __slots__ = ("owner",)

    def __init__(self, owner: object) -> None:
        self.owner = owner

    def __call__(self, _ptr: object) -> None:
        pass


def tie(ptr: object, owner: object) -> object:
    """``ptr``, a pointer into memory that ``owner`` (a gc-managed handle) frees, as a cdata that
    keeps ``owner`` alive for as long as it lives.

    A pointer returned by the core (``p64_cpu``, ``p64_memory``, ``p64_vmcs_regs``, ...) does not
    own what it points to: a view built on it would outlive the machine it reads (a use after
    free).  A buffer made with ``ffi.buffer`` keeps its cdata alive, and a memoryview its
    buffer, so a view built on the tied pointer keeps the core alive instead."""
    return ffi.gc(ptr, _KeepAlive(owner))


class CoreError(RuntimeError):
    """A call into the C core failed; the message is the core's own (p64_last_error)."""


class ConfigError(CoreError, ValueError):
    """An invalid machine configuration (P64_ERR_CONFIG)."""


class StateError(CoreError, ValueError):
    """Host-written CPU state that no program could produce (P64_ERR_STATE, §10)."""


class RangeError(CoreError, ValueError):
    """A physical address range outside RAM, or clock ticks past 2^64 - 1 (P64_ERR_RANGE)."""


class SnapshotError(CoreError, ValueError):
    """A snapshot of the wrong size or of another machine shape (P64_ERR_SNAPSHOT)."""


class VMXError(CoreError, ValueError):
    """vmx refused: the profile lacks the feature, or a VMCS field is invalid (P64_ERR_VMX;
    the message names the field, docs/vmx.md V.8)."""


_ERRORS: dict[int, type[CoreError]] = {
    lib.P64_ERR_VMX: VMXError,
    lib.P64_ERR_CONFIG: ConfigError,
    lib.P64_ERR_STATE: StateError,
    lib.P64_ERR_RANGE: RangeError,
    lib.P64_ERR_SNAPSHOT: SnapshotError,
}


def check(rc: int, machine_ptr: object | None) -> None:
    """Raise the exception of status ``rc`` (nothing for P64_OK).  ``machine_ptr`` is the
    ``struct p64_machine *`` the call was made on, or None for a failed ``p64_create``."""
    if rc == lib.P64_OK:
        return
    ptr = ffi.NULL if machine_ptr is None else machine_ptr
    message = ffi.string(lib.p64_last_error(ptr)).decode(errors="replace")
    if rc == lib.P64_ERR_NOMEM:
        raise MemoryError(message or "the P64 core is out of memory")
    raise _ERRORS.get(rc, CoreError)(message or f"P64 core error {rc}")


# ---- arguments: one place for the checks of every public method of Machine, Vmcs, Platform ----
# Each check raises one exception whose message names the argument, ``from None``: called in
# the ``except`` of a fast path that let cffi's conversion fail first, it must not show that
# failure as the context of its own.

U64_MAX = 2**64 - 1
_T = TypeVar("_T")
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 40


def _show(value: object) -> str:
    return _short.repr(value)


def _span(lo: int, hi: int) -> str:
    def bound(n: int) -> str:
        for p in (64, 63, 32, 31):
            for k, text in ((2**p, f"2**{p}"), (2**p - 1, f"2**{p}-1"), (-(2**p), f"-2**{p}")):
                if n == k:
                    return text
        return str(n)

    return f"{bound(lo)}..{bound(hi)}"


def check_int(name: str, value: object, lo: int | None = 0, hi: int = U64_MAX) -> int:
    """``value`` as an int in ``lo..hi``; else TypeError (not an integer: a float, a string,
    None) or ValueError (out of range), with a message that names ``name``.  Objects with
    ``__index__`` (numpy integers) count as integers.  With ``lo`` None only the type is
    checked (the caller says what range it wants)."""
    try:
        n = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        wanted = "an int" if lo is None else f"an int in {_span(lo, hi)}"
        raise TypeError(f"{name} = {_show(value)}: must be {wanted}, not {type(value).__name__}") from None
    if lo is not None and not lo <= n <= hi:
        raise ValueError(f"{name} = {_show(value)}: must be in {_span(lo, hi)}") from None
    return n


def check_index(name: str, value: object, n: int) -> int:
    """An index into ``n`` registers: TypeError for a non-integer, IndexError outside 0..n-1
    (as a sequence answers), both naming ``name``."""
    try:
        i = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name} index {_show(value)}: must be an int in 0..{n - 1}, not {type(value).__name__}"
        ) from None
    if not 0 <= i < n:
        raise IndexError(f"{name} index {i} out of range 0..{n - 1}") from None
    return i


def check_word(name: str, value: object) -> int:
    """A 64-bit register or field value: an int in -2**63..2**64-1, a negative one taken as its
    two's complement (so ``-1`` is all ones), returned in 0..2**64-1."""
    return check_int(name, value, -(2**63), U64_MAX) & U64_MAX


def check_bytes(name: str, value: object) -> bytes:
    """Bytes-like ``value`` (bytes, bytearray, memoryview, array) as bytes, copied unless it
    is bytes already, so that the core never reads memory that the call itself overwrites."""
    if isinstance(value, bytes):
        return value
    try:
        view = memoryview(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"{name} = {_show(value)}: must be bytes-like (bytes, bytearray, memoryview), not {type(value).__name__}"
        ) from None
    with view:
        return view.tobytes()


def check_type(name: str, value: _T, cls: type | tuple[type, ...], what: str) -> _T:
    """``value`` if it is a ``cls``; else TypeError: ``name`` must be ``what``."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} = {_show(value)}: must be {what}, not {type(value).__name__}") from None
    return value


def check_flag(name: str, value: object) -> bool:
    """A yes/no argument: a bool (or the int 0 or 1)."""
    if value is True or value is False:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} = {_show(value)}: must be a bool, not {type(value).__name__}") from None


def check_choice(name: str, value: object, choices: Mapping[str, Any]) -> Any:
    """``choices[value]`` for one of its keys; else ValueError (TypeError for a non-string)
    listing them."""
    if not isinstance(value, str):
        raise TypeError(
            f"{name} = {_show(value)}: must be one of {sorted(choices)}, not {type(value).__name__}"
        ) from None
    try:
        return choices[value]
    except KeyError:
        raise ValueError(f"{name} = {_show(value)}: must be one of {sorted(choices)}") from None
