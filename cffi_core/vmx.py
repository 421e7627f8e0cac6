"""The vmx extension as Python sees it (docs/vmx.md): VMCS fields, controls, VM exit reasons and
event-information encodings, read from the core's boundary header (``csrc/p64.h`` is their one
home), and ``Vmcs``, the handle of one virtual machine control structure.

>>> from cffi_core.machine import Machine
>>> m = Machine("vtx-2006", memory=1 << 20)
>>> v = m.vmcs()
>>> v[VmcsField.PROC_CONTROLS] = ProcControl.HLT_EXITING
>>> m.counters["vmcs_writes"]
1
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING

from cffi_core import _binding
from cffi_core._binding import check_flag, check_int, check_type, check_word, ffi, lib

if TYPE_CHECKING:
    from cffi_core.machine import Machine

__all__ = [
    "INTR_TYPE_SHIFT", "INTR_VALID", "READ_ONLY_FIELDS", "EventInfo", "IntrType", "IommuFault", "PinControl", "ProcControl", "VmExitReason",
    "Vmcs", "VmcsField", "intr_info",
]  # fmt: skip


def _members(prefix: str, exclude: frozenset[str] = frozenset()) -> dict[str, int]:
    values = {n[len(prefix) :]: int(getattr(lib, n)) for n in dir(lib) if n.startswith(prefix) and n not in exclude}
    return dict(sorted(values.items(), key=lambda item: item[1]))


# Built from the header's enums so that the names cannot drift from the core's.
VmcsField = IntEnum("VmcsField", _members("P64_VMCS_", frozenset({"P64_VMCS_FIELDS"})))  # type: ignore[misc]
VmcsField.__doc__ = "The fields of a VMCS (docs/vmx.md V.2)."
VmExitReason = IntEnum("VmExitReason", _members("P64_VMEXIT_", frozenset({"P64_VMEXIT_REASONS"})))  # type: ignore[misc]
VmExitReason.__doc__ = "Why a VM exit happened: VT-x's basic exit reasons (docs/vmx.md V.4)."
ProcControl = IntFlag("ProcControl", {k: 1 << b for k, b in _members("P64_PROC_").items()})  # type: ignore[misc]
ProcControl.__doc__ = "Bits of PROC_CONTROLS (docs/vmx.md V.2)."
PinControl = IntFlag("PinControl", {k: 1 << b for k, b in _members("P64_PIN_").items()})  # type: ignore[misc]
PinControl.__doc__ = "Bits of PIN_CONTROLS (docs/vmx.md V.2)."

READ_ONLY_FIELDS = frozenset(f for f in VmcsField if f >= VmcsField.EXIT_REASON)  # type: ignore[attr-defined]


class IntrType(IntEnum):
    """The type of an event-information field (docs/vmx.md V.5, V.9)."""

    EXTERNAL = lib.P64_INTR_TYPE_EXTERNAL
    HARDWARE_EXCEPTION = lib.P64_INTR_TYPE_HARDWARE_EXCEPTION
    SOFTWARE_INTERRUPT = lib.P64_INTR_TYPE_SOFTWARE_INTERRUPT


_INTR_TYPES = frozenset(IntrType)
_FIELDS = lib.P64_VMCS_FIELDS
_vmcs_read = lib.p64_vmcs_read
_vmcs_write = lib.p64_vmcs_write
_VALID = 1 << lib.P64_INTR_VALID_BIT
_HAS_ERROR = 1 << lib.P64_INTR_ERROR_CODE_BIT
INTR_VALID = _VALID
"""Bit 31 of the event-information fields: the event is valid (docs/vmx.md V.5)."""
INTR_TYPE_SHIFT = int(lib.P64_INTR_TYPE_SHIFT)
"""Where the 3-bit type sits in the event-information fields (docs/vmx.md V.5)."""


def intr_info(vector: int, kind: IntrType, has_error: bool = False) -> int:
    """Encode ENTRY_INTR_INFO (valid bit set) for an event to inject (docs/vmx.md V.9)."""
    vector = check_int("vector", vector, 0, 255)
    if kind not in _INTR_TYPES:
        raise ValueError(f"kind = {kind!r}: must be an IntrType ({', '.join(t.name for t in IntrType)})")
    has_error = check_flag("has_error", has_error)
    return vector | int(kind) << lib.P64_INTR_TYPE_SHIFT | (_HAS_ERROR if has_error else 0) | _VALID


@dataclass(frozen=True)
class EventInfo:
    """A decoded EXIT_INTR_INFO or IDT_VECTORING_INFO (docs/vmx.md V.5)."""

    valid: bool
    vector: int
    kind: int
    has_error: bool

    @classmethod
    def decode(cls, info: int) -> EventInfo:
        return cls(bool(info & _VALID), info & 0xFF, (info >> lib.P64_INTR_TYPE_SHIFT) & 7, bool(info & _HAS_ERROR))


@dataclass(frozen=True)
class IommuFault:
    """A DMA the IOMMU refused (docs/vmx.md V.10)."""

    device: int
    write: bool
    address: int
    reason: str  # "not mapped", "not permitted", "misconfigured"


_FAULT_REASONS = ("not mapped", "not permitted", "misconfigured")


def _take_faults(m: object) -> list[IommuFault]:
    out = ffi.new("struct p64_iommu_fault[]", lib.P64_IOMMU_FAULT_LOG)
    n = int(lib.p64_iommu_take_faults(m, out, lib.P64_IOMMU_FAULT_LOG))
    return [
        IommuFault(int(f.device), bool(f.write), int(f.address), _FAULT_REASONS[min(int(f.reason), 2)])
        for f in (out[i] for i in range(n))
    ]


class _GuestRegisters:
    """The guest's r0..r15 in a VMCS: a plain array, read and written without counting (V.2).
    The array's pointer is tied to the VMCS (``_binding.tie``): the view keeps it alive.
    Values are 64-bit words (``_binding.check_word``); writes to r0 are ignored."""

    __slots__ = ("_a",)

    def __init__(self, array: object) -> None:
        self._a = array

    def __getitem__(self, i: int) -> int:
        if type(i) is not int or not 0 <= i < 16:
            i = _binding.check_index("vmcs.regs", i, 16)
        return 0 if i == 0 else int(self._a[i])

    def __setitem__(self, i: int, value: int) -> None:
        if type(i) is not int or not 0 <= i < 16:
            i = _binding.check_index("vmcs.regs", i, 16)
        if not i:
            check_word("vmcs.regs[0]", value)  # a write to r0 is ignored, a bad value is not
            return
        try:
            self._a[i] = value
        except (TypeError, OverflowError):
            self._a[i] = check_word(f"vmcs.regs[{i}]", value)

    def __len__(self) -> int:
        return 16

    def __iter__(self) -> Iterator[int]:
        return (self[i] for i in range(16))

    def values(self) -> list[int]:
        """r0..r15 as a list (``list(regs)`` in one call: a VMM that emulates copies them all)."""
        out = ffi.unpack(self._a, 16)
        out[0] = 0
        return out

    def set_values(self, values: Sequence[int]) -> None:
        """Write r1..r15 from ``values[1:16]`` (r0 is ignored, as by ``regs[0] = ...``): what
        ``regs[i] = values[i]`` for each i does, in one call."""
        if len(values) != 16:
            raise ValueError(f"vmcs.regs.set_values: {len(values)} values, expected 16")
        try:
            self._a[1:16] = values[1:16]
        except (TypeError, OverflowError):
            for i in range(16):
                self[i] = values[i]  # the checks and the message of one register at a time


_EXIT_INFO = int(lib.P64_VMCS_EXIT_REASON)  # the first read-only field (V.2)
_U64 = (1 << 64) - 1
_BATCHES: dict[tuple[int, ...], tuple[object, bool]] = {}
"""Field tuples seen by ``read_many``/``write_many``: their C array, and whether every field
is writable (below the exit information).  A VMM uses a handful of tuples, over and over."""


def _batch(fields: Sequence[int]) -> tuple[object, bool] | None:
    """The C array of ``fields`` when they are all valid field numbers, else None (the caller
    then goes one field at a time, for the error of the first bad one)."""
    key = fields if type(fields) is tuple else tuple(fields)
    known = _BATCHES.get(key)
    if known is not None:
        return known
    if not key or not all(isinstance(f, int) and type(f) is not bool and 0 <= f < _FIELDS for f in key):
        return None
    known = (ffi.new("uint32_t[]", key), all(f < _EXIT_INFO for f in key))
    if len(_BATCHES) < 256:
        _BATCHES[key] = known
    return known


class Vmcs:
    """One VMCS of a machine (``Machine.vmcs()``): fields through ``read``/``write`` (or
    indexing), each access counted in ``vmcs_reads``/``vmcs_writes`` (Adams & Agesen 2006);
    the guest's general registers in ``regs``, not counted."""

    __slots__ = ("_m", "_machine", "_out", "_v", "regs")

    def __init__(self, machine: Machine) -> None:
        from cffi_core.machine import Machine

        check_type("machine", machine, Machine, "a Machine")
        out = ffi.new("struct p64_vmcs **")
        m = machine._m
        rc = lib.p64_vmcs_create(m, out)
        if rc != lib.P64_OK:
            _binding.check(rc, m)
        self._machine = machine  # keeps the machine (hence the core) alive as long as the VMCS
        self._m = m
        # SAFETY: destroyed exactly once by the gc hook; it only frees the VMCS's own memory
        # (never the machine's), so it is safe in whatever order the two are collected.
        self._v = ffi.gc(out[0], lib.p64_vmcs_destroy)
        self._out = ffi.new("uint64_t *")  # reused by read: a VMM reads ~10 fields per exit
        # The registers view holds a pointer tied to the VMCS: kept alone, it keeps the VMCS.
        self.regs = _GuestRegisters(_binding.tie(lib.p64_vmcs_regs(self._v), self._v))

    def read(self, field: int) -> int:
        """Read one field (counted)."""
        try:  # a VMM reads fields at every exit: cffi's conversion is the fast type check
            rc = _vmcs_read(self._m, self._v, field, self._out)
        except (TypeError, OverflowError):
            check_int("field", field, 0, _FIELDS - 1)
            raise
        if rc:
            _binding.check(rc, self._m)
        return self._out[0]

    def write(self, field: int, value: int) -> None:
        """Write one field (counted): a 64-bit word (-2**63..2**64-1, a negative one as its
        two's complement); exit-information fields are read-only."""
        try:
            rc = _vmcs_write(self._m, self._v, field, value)
        except (TypeError, OverflowError):
            field, value = check_int("field", field, 0, _FIELDS - 1), check_word("value", value)
            rc = _vmcs_write(self._m, self._v, field, value)
        if rc:
            _binding.check(rc, self._m)

    __getitem__ = read
    __setitem__ = write

    def read_many(self, fields: Sequence[int]) -> list[int]:
        """``[vmcs.read(f) for f in fields]`` in one call of the core (``p64_vmcs_read_many``):
        every field checked and counted as by ``read`` — a VMM that loads a whole vcpu at an
        exit pays one call, not one per field."""
        batch = _batch(fields)
        if batch is None:
            return [self.read(field) for field in fields]
        n = len(fields)
        out = ffi.new("uint64_t[]", n)
        rc = lib.p64_vmcs_read_many(self._m, self._v, batch[0], out, n)
        if rc:  # the fields are valid: only the core's checks of the VMCS refuse, at the first
            _binding.check(rc, self._m)
        return list(out)

    def write_many(self, fields: Sequence[int], values: Sequence[int]) -> None:
        """``vmcs.write(f, x)`` for each field and value in turn, in one call of the core
        (``p64_vmcs_write_many``), each checked and counted as by ``write``."""
        n = len(fields)
        if n != len(values):
            raise ValueError(f"write_many: {n} fields but {len(values)} values")
        batch = _batch(fields)
        if batch is None or not batch[1] or not all(type(x) is int and 0 <= x <= _U64 for x in values):
            for field, value in zip(fields, values, strict=True):
                self.write(field, value)  # write's own checks, message and normalization
            return
        rc = lib.p64_vmcs_write_many(self._m, self._v, batch[0], values, n)
        if rc:
            _binding.check(rc, self._m)

    def copy_from(self, other: Vmcs) -> None:
        """Make this VMCS a copy of ``other`` (guest state, controls, registers): a VMM's
        snapshot of a VM, not counted as field accesses."""
        check_type("other", other, Vmcs, "a Vmcs")
        if other._m is not self._m:
            raise _binding.VMXError("copy_from: other belongs to another machine (a VMCS belongs to its creator)")
        rc = lib.p64_vmcs_copy(self._m, self._v, other._v)
        if rc != lib.P64_OK:
            _binding.check(rc, self._m)
