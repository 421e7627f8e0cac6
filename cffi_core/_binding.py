"""The one module that imports the compiled core (``cffi_core._p64``): its ``ffi`` and ``lib``,
the ABI/instruction-table check made at import, the mapping of status codes to exceptions, and
``tie``, which keeps the owner of core memory alive for as long as a view of that memory lives.

Everything else (``cffi_core.machine``) goes through here, so a stale build is caught once, at
import, with a message that says how to rebuild.
"""

from __future__ import annotations

from cffi_core.isa.table import table_hash

ABI_VERSION = 3  # must equal P64_ABI_VERSION in cffi_core/csrc/core.h

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
    """A physical address range outside RAM (P64_ERR_RANGE)."""


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
