"""The P64 machine as Python sees it: a thin, typed wrapper over the C core.

``Machine`` owns one core instance: physical memory (a zero-copy view), CPU state, the run
call (KVM_RUN-style: it returns at an exit, docs/architecture.md §10), page walks, counters
and snapshots.  Devices are not here: a native run wires them up in ``cffi_core.platform``,
and a VMM wires its own virtual devices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING, NamedTuple

from cffi_core import _binding
from cffi_core._binding import (
    U64_MAX,
    check_bytes,
    check_choice,
    check_flag,
    check_int,
    check_type,
    check_word,
    ffi,
    lib,
)
from cffi_core.counters import Counters, flatten
from cffi_core.exits import EventKind, ExitReason
from cffi_core.profiles import DEFAULT_PROFILE, Profile, get_profile

if TYPE_CHECKING:
    from cffi_core.image import GuestImage
    from cffi_core.vmx import IommuFault, Vmcs

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
PAGE_SIZE = 4096
MIN_MEMORY = 64 * KiB
MAX_MEMORY = 4 * GiB
DEFAULT_MEMORY = 16 * MiB
# Work per slice of a run (Machine.run, Machine.vmrun; docs/architecture.md §10): the core goes
# back to Python after at most this much work (a tick is a unit; a decoded page, a TLB flush, the
# end of a block weigh more), so that a signal (Ctrl-C) takes effect within about 100 ms however
# slow the guest's ticks (the slowest measured: ~140 ns per unit, a guest whose every instruction
# faults through guest mode's two-dimensional walks with 4-entry TLBs).  At the core's usual
# 600-1100 MIPS a slice is half a millisecond, and the return to Python between two (about a
# microsecond) costs nothing measurable.
RUN_SLICE = 1 << 19


def _device(device: object) -> int:
    """A DMA requester id as the core takes it (a uint32_t; the core refuses ids from
    P64_IOMMU_DEVICES on with a VMXError naming the device, docs/vmx.md V.10)."""
    return check_int("device", device, 0, _U32_MAX)


class Exit(NamedTuple):
    """One exit of ``Machine.run``; only the fields of its reason are meaningful.

    A named tuple rather than a dataclass: a VMM builds one per exit, and the exit round
    trip is on the benchmarks' critical path (<= 3 us, benchmarks/test_core_speed.py)."""

    reason: ExitReason
    vector: int = 0
    kind: EventKind = EventKind.FAULT
    error_code: int | None = None
    address: int = 0
    port: int = 0
    value: int = 0
    reg: int = 0
    number: int = 0


@dataclass(frozen=True)
class TLBConfig:
    """Geometry of the modeled TLBs (docs/architecture.md §8.2); defaults as the papers' CPUs.
    The core checks the geometry (powers of two, ways dividing entries) when a Machine is
    built; here each field must be an int that the core's configuration can hold."""

    dtlb_entries: int = 64
    dtlb_ways: int = 4
    itlb_entries: int = 32
    itlb_ways: int = 4

    def __post_init__(self) -> None:
        for f in fields(self):
            check_int(f"tlb.{f.name}", getattr(self, f.name), 0, _U32_MAX)


@dataclass(frozen=True)
class Walk:
    """A page walk made without the TLB (``Machine.walk``)."""

    physical: int
    fault: int  # 0, or the vector the access would raise
    error_code: int
    page_level: int
    writable: bool
    user: bool
    nx: bool
    entries: tuple[tuple[int, int], ...]  # (physical address, value) of each entry read

    @property
    def memory_references(self) -> int:
        return len(self.entries)


_ACCESS = {"read": lib.P64_ACCESS_READ, "write": lib.P64_ACCESS_WRITE, "fetch": lib.P64_ACCESS_FETCH}
_U32_MAX = 2**32 - 1

# Scalar fields of struct p64_cpu the host may read and write (arrays handled apart).
_CPU_FIELDS = (
    "pc", "flags", "cpl", "cr0", "cr2", "cr3", "cr4", "cr8", "idtr", "seglimit", "cslimit", "gsbase", "gslimit",
    "tsc_offset", "halted", "int_shadow", "intr_vector", "intr_acked", "shutdown", "pending_db", "vm_tag",
)  # fmt: skip
# What each field of struct p64_cpu can hold (the core judges what is architectural, §10):
# 64-bit registers take -2**63..2**64-1 (a negative value as its two's complement), the flags
# of uint32_t 0..2**32-1 and the vectors of int32_t -2**31..2**31-1.
_CPU_FIELD_CHECKS: dict[str, Callable[[str, object], int]] = {
    name: (
        partial(check_int, lo=-(2**31), hi=2**31 - 1)
        if name in ("intr_vector", "intr_acked")
        else partial(check_int, lo=0, hi=_U32_MAX)
        if name in ("halted", "int_shadow", "shutdown", "pending_db", "vm_tag")
        else check_word
    )
    for name in _CPU_FIELDS
}
_SCALAR_COUNTERS = (
    "ticks", "halted_ticks", "double_faults", "triple_faults", "host_gate_exits", "hcalls", "vmcalls",
    "port_reads", "port_writes", "itlb_hits", "itlb_misses", "dtlb_hits", "dtlb_misses", "tlb_flushes",
    "tlb_full_flushes", "invlpgs", "walks", "walk_refs", "ad_updates", "pages_decoded", "code_invalidations",
    "vm_entries", "vmcs_reads", "vmcs_writes", "vm_transition_flushes", "walks_2d", "walk_refs_2d", "pwc_hits",
    "ntlb_hits", "ntlb_misses", "iommu_translations", "iommu_faults", "cr_writes",
)  # fmt: skip


class CPU:
    """Live view of the CPU state (struct p64_cpu): attribute access, ``r[i]``, ``rsp[i]``.

    It keeps the core it reads alive (``_binding.tie``): a CPU kept after its Machine is gone
    still reads and writes that machine's state."""

    __slots__ = ("_c", "_r", "_rsp")

    def __init__(self, cdata: object) -> None:
        object.__setattr__(self, "_c", cdata)
        object.__setattr__(self, "_r", _RegisterView(cdata.r, 16, cdata, "cpu.r"))
        object.__setattr__(self, "_rsp", _RegisterView(cdata.rsp, 3, cdata, "cpu.rsp"))

    @property
    def r(self) -> _RegisterView:
        """General registers r0..r15 (r0 reads 0; writes to it are ignored by the core)."""
        return self._r

    @property
    def rsp(self) -> _RegisterView:
        """MSR_RSP0..2: the stacks loaded when an event enters an inner ring."""
        return self._rsp

    def __getattr__(self, name: str) -> int:
        if name in _CPU_FIELDS:
            return int(getattr(self._c, name))
        raise AttributeError(name)

    # Each field is also a property reading the core's struct directly (cffi gives its integer
    # fields as ints): a VMM reads several at every exit, and a property is found before
    # Python falls back to ``__getattr__`` after a failed lookup.
    for _name in _CPU_FIELDS:
        locals()[_name] = property(attrgetter(f"_c.{_name}"), doc=f"The CPU's ``{_name}`` (struct p64_cpu).")
    del _name

    def __setattr__(self, name: str, value: int) -> None:
        if name not in _CPU_FIELDS:
            raise AttributeError(f"the CPU has no field {name!r}")
        try:  # a VMM writes fields at every exit: cffi's own conversion is the fast check
            setattr(self._c, name, value)
        except (TypeError, OverflowError):
            setattr(self._c, name, _CPU_FIELD_CHECKS[name](f"cpu.{name}", value))

    def state(self) -> dict[str, object]:
        """A plain snapshot of every architectural field (for comparisons and reports)."""
        out: dict[str, object] = {f: int(getattr(self._c, f)) for f in _CPU_FIELDS}
        out["r"] = [0] + [int(self._c.r[i]) for i in range(1, 16)]
        out["rsp"] = [int(self._c.rsp[i]) for i in range(3)]
        return out


class _RegisterView:
    """``n`` registers of an array inside the core, called ``name`` in error messages;
    ``owner`` (the tied struct the array is a field of) keeps the core alive as long as the
    view.  Values are 64-bit words (``_binding.check_word``)."""

    __slots__ = ("_a", "_n", "_name", "_owner")

    def __init__(self, array: object, n: int, owner: object, name: str) -> None:
        self._a, self._n, self._owner, self._name = array, n, owner, name

    def _index(self, i: int) -> int:
        if type(i) is int and 0 <= i < self._n:
            return i
        return _binding.check_index(self._name, i, self._n)

    def __getitem__(self, i: int) -> int:
        return 0 if self._n == 16 and i == 0 else int(self._a[self._index(i)])

    def __setitem__(self, i: int, value: int) -> None:
        i = self._index(i)
        try:
            self._a[i] = value
        except (TypeError, OverflowError):
            self._a[i] = check_word(f"{self._name}[{i}]", value)

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[int]:
        return (self[i] for i in range(self._n))

    def values(self) -> list[int]:
        """Every register at once (r0 reads 0): what a VMM takes back at each exit, in one
        call rather than one per register."""
        out = list(self._a[0 : self._n])
        if self._n == 16:
            out[0] = 0
        return out

    def load(self, values: Sequence[int]) -> None:
        """Write every register at once from ``values`` (exactly ``len(self)`` of them)."""
        if len(values) != self._n:
            raise ValueError(f"{self._name}: {len(values)} values for {self._n} registers")
        try:  # converted whole before anything is written: a bad value changes nothing
            words = ffi.new("uint64_t[]", values)
        except (TypeError, OverflowError):
            words = [check_word(f"{self._name}[{i}]", v) for i, v in enumerate(values)]
        self._a[0 : self._n] = words


def _read_counters(c: object) -> Counters:
    scalars = {name: int(getattr(c, name)) for name in _SCALAR_COUNTERS}
    return Counters(flatten(scalars, c.insn, c.exceptions, c.interrupts, c.vm_exits, c.insn_system))


@dataclass(frozen=True)
class MachineSnapshot:
    """The whole machine state (memory, CPU, TLB, counters, clock) as opaque bytes."""

    profile: str
    memory_size: int
    data: bytes


class Machine:
    """One simulated P64 machine.

    >>> m = Machine("x86-2005", memory=1 * MiB)
    >>> m.write(0x1000, (0x55 << 24).to_bytes(4, "little"))  # ud

    With ``shared_memory=True`` the RAM is a shared mapping: a process forked afterwards writes
    the same bytes this one reads (the grader reads host RAM from outside the process that
    runs the VMM under test, docs/vmm-api.md §11).  Everything else stays private to each
    process.
    """

    def __init__(
        self,
        profile: str | Profile = DEFAULT_PROFILE,
        memory: int = DEFAULT_MEMORY,
        tlb: TLBConfig | None = None,
        *,
        shared_memory: bool = False,
    ) -> None:
        self.profile = get_profile(check_type("profile", profile, (str, Profile), "a profile name or a Profile"))
        if type(shared_memory) is not bool:
            raise TypeError(f"shared_memory = {shared_memory!r}: must be a bool")
        memory = check_int("memory", memory, None)
        if memory % PAGE_SIZE or not MIN_MEMORY <= memory <= MAX_MEMORY:
            raise ValueError(
                f"memory = {memory!r}: must be a multiple of {PAGE_SIZE} bytes between "
                f"{MIN_MEMORY // KiB} KiB and {MAX_MEMORY // GiB} GiB"
            )
        if tlb is not None:
            check_type("tlb", tlb, TLBConfig, "a TLBConfig or None")
        self.tlb = tlb or TLBConfig()
        cfg = ffi.new("struct p64_config *")
        cfg.mem_size = memory
        cfg.features = self.profile.feature_bits
        cfg.dtlb_entries, cfg.dtlb_ways = self.tlb.dtlb_entries, self.tlb.dtlb_ways
        cfg.itlb_entries, cfg.itlb_ways = self.tlb.itlb_entries, self.tlb.itlb_ways
        cfg.mem_shared = int(shared_memory)
        self.shared_memory = shared_memory
        out = ffi.new("struct p64_machine **")
        rc = lib.p64_create(cfg, out)
        if rc != lib.P64_OK:
            _binding.check(rc, out[0] if out[0] != ffi.NULL else None)
        # SAFETY: the gc hook destroys the core exactly once, when the last reference to the
        # handle goes.  Every pointer into the core is tied to the handle (``_binding.tie``), so
        # a view that outlives this Machine (``memory``, ``cpu`` and its registers) keeps the
        # core alive rather than reading freed memory.  Nothing here refers back to ``self``:
        # the core goes as soon as the Machine and its views do, without waiting for the gc.
        h = self._m = ffi.gc(out[0], lib.p64_destroy)
        self._cpu = _binding.tie(lib.p64_cpu(h), h)
        self._exit = _binding.tie(lib.p64_exit_info(h), h)
        self._counters = _binding.tie(lib.p64_counters(h), h)
        self.memory_size = int(lib.p64_memory_size(h))
        # The buffer keeps its (tied) pointer alive, and every memoryview of it the buffer.
        self._mem = ffi.buffer(_binding.tie(lib.p64_memory(h), h), self.memory_size)
        self.cpu = CPU(self._cpu)

    # -- memory ---------------------------------------------------------------------------
    @property
    def memory(self) -> memoryview:
        """Zero-copy view of physical memory.  Writing code through it bypasses the decoded-
        instruction cache: use ``write`` (or call ``code_written``) for anything executable.
        The view keeps the machine's RAM alive, even after the Machine itself is gone."""
        return memoryview(self._mem)

    def read(self, addr: int, size: int) -> bytes:
        """Read physical memory; RangeError outside RAM."""
        addr, size = check_int("addr", addr), check_int("size", size, 0, self.memory_size)
        out = ffi.new("uint8_t[]", max(size, 1))
        self._check(lib.p64_read_phys(self._m, addr, out, size))
        return bytes(ffi.buffer(out, size))

    def write(self, addr: int, data: bytes) -> None:
        """Write physical memory (any bytes-like ``data``), keeping decoded code coherent;
        RangeError outside RAM."""
        addr, data = check_int("addr", addr), check_bytes("data", data)
        self._check(lib.p64_write_phys(self._m, addr, ffi.from_buffer(data), len(data)))

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        """Write a 64-bit word (-2**63..2**64-1, a negative one as its two's complement)."""
        self.write(addr, check_word("value", value).to_bytes(8, "little"))

    def code_written(self, addr: int, size: int) -> None:
        """Tell the core that memory it may have decoded changed behind its back."""
        self._check(lib.p64_code_written(self._m, check_int("addr", addr), check_int("size", size)))

    def load(self, image: GuestImage) -> None:
        """Copy an image's segments into RAM and set pc to its entry point."""
        from cffi_core.image import GuestImage

        check_type("image", image, GuestImage, "a GuestImage (cffi_core.asm.assemble, GuestImage.load)")
        for seg in image.segments:
            if seg.address + len(seg.data) > self.memory_size:
                raise ValueError(
                    f"image {image.name}: segment at {seg.address:#x}..{seg.address + len(seg.data):#x} "
                    f"does not fit in {self.memory_size:#x} bytes of RAM"
                )
        for seg in image.segments:
            self.write(seg.address, seg.data)
        self.cpu.pc = image.entry

    # -- execution ------------------------------------------------------------------------
    def run(self, budget: int) -> Exit:
        """Run at most ``budget`` ticks; return the exit (docs/architecture.md §10).

        The core returns to Python between slices of a long run (``RUN_SLICE``), so that a
        signal takes effect: on Ctrl-C (``KeyboardInterrupt``) the run ends at the budget exit
        it would have made had its budget run out there, and a later ``run`` goes on from that
        point.  The slices are invisible: exit, clock, counters, TLBs and state are those of one
        run of ``budget`` ticks."""
        h = self._m
        try:
            rc = _run_slice(h, budget, RUN_SLICE)
        except (TypeError, OverflowError):  # the exit round trip is hot: cffi checks the budget
            check_int("budget", budget)
            raise
        except BaseException:  # a signal as the call returned: it ends the run the call opened
            lib.p64_close(h)
            raise
        if rc:  # refused: nothing ran, nothing is open of this call's
            _binding.check(rc, h)
        try:
            ex = _exit_of(self._exit)
            return ex if ex is not None else self._go_on()
        except BaseException:
            lib.p64_close(h)
            raise

    def _go_on(self) -> Exit:
        """The rest of a run the core paused after a slice (``EXIT_PAUSED``): slices until it
        ends.  Python runs its signal handlers between two; whatever they raise (or anything
        else, a refused ``p64_resume``) reaches ``run``/``vmrun``, which close the run at the
        budget exit of the tick where it paused."""
        h, e = self._m, self._exit
        while True:
            rc = _resume(h, RUN_SLICE)
            if rc:
                _binding.check(rc, h)
            ex = _exit_of(e)
            if ex is not None:
                return ex

    # -- vmx (docs/vmx.md) ----------------------------------------------------------------
    def vmcs(self) -> Vmcs:
        """A new VMCS for this machine, its guest state at reset (needs the ``vmx`` feature)."""
        from cffi_core.vmx import Vmcs

        return Vmcs(self)

    def vmrun(self, vmcs: Vmcs, budget: int) -> Exit:
        """Enter guest mode with ``vmcs`` for at most ``budget`` ticks (docs/vmx.md V.1).

        Returns at a VM exit (``ExitReason.VM``, ``number`` = the ``VmExitReason``; the rest of
        the exit information is in the VMCS) or at a host exit that guest mode keeps (budget,
        port I/O let through, ``hlt`` without HLT exiting): the guest's state is then in the
        VMCS (an ``in`` fills ``vmcs.regs[exit.reg]``), and the next ``vmrun`` resumes it.

        A long ``vmrun`` returns to Python between slices as ``run`` does, invisibly: one VM
        entry, and on Ctrl-C the budget exit at the tick where it paused, as if the budget had
        been that many ticks (a preemption, which the VMM resumes with the next ``vmrun``)."""
        try:
            machine, v = vmcs._machine, vmcs._v
        except AttributeError:
            from cffi_core.vmx import Vmcs

            check_type("vmcs", vmcs, Vmcs, "a Vmcs of this machine (Machine.vmcs)")
            raise
        if machine is not self:
            raise _binding.VMXError("vmrun: vmcs belongs to another machine (the VMCS belongs to its creator)")
        h = self._m
        try:
            rc = _vmrun_slice(h, v, budget, RUN_SLICE)
        except (TypeError, OverflowError):
            check_int("budget", budget)
            raise
        except BaseException:  # as in run
            lib.p64_close(h)
            raise
        if rc:
            _binding.check(rc, h)
        e = self._exit
        if e.reason == _VM:  # one shared, immutable Exit per reason: the round trip is hot (V.1)
            return _vm_exit(e.number)
        try:
            ex = _exit_of(e)
            return ex if ex is not None else self._go_on()
        except BaseException:
            lib.p64_close(h)
            raise

    def invept(self) -> None:
        """Drop every translation derived from nested tables (INVEPT; docs/vmx.md V.6)."""
        self._check(lib.p64_invept(self._m))

    def invvpid(self, vpid: int) -> None:
        """Drop every TLB entry tagged ``vpid`` (INVVPID; docs/vmx.md V.7)."""
        self._check(lib.p64_invvpid(self._m, check_int("vpid", vpid, 1, 0xFFFF)))

    def iommu_attach(self, device: int, root: int) -> None:
        """Remap device ``device``'s DMA through nested tables at ``root`` (EPT-pointer
        format: bits 51:12 the table, bits 1:0 levels - 2; docs/vmx.md V.10)."""
        self._check(lib.p64_iommu_attach(self._m, _device(device), check_int("root", root)))

    def iommu_detach(self, device: int) -> None:
        self._check(lib.p64_iommu_detach(self._m, _device(device)))

    def dma_read(self, device: int, addr: int, size: int) -> bytes | None:
        """Device ``device`` reads memory: the bytes, or None when the IOMMU refused the DMA."""
        device, addr = _device(device), check_int("addr", addr)
        size = check_int("size", size, 0, self.memory_size)
        buf = ffi.new("uint8_t[]", max(size, 1))
        refused = ffi.new("uint32_t *")
        self._check(lib.p64_dma(self._m, device, addr, buf, size, 0, refused))
        return None if refused[0] else bytes(ffi.buffer(buf, size))

    def dma_write(self, device: int, addr: int, data: bytes) -> bool:
        """Device ``device`` writes memory; False when the IOMMU refused the DMA (nothing written)."""
        device, addr, data = _device(device), check_int("addr", addr), check_bytes("data", data)
        refused = ffi.new("uint32_t *")
        self._check(lib.p64_dma(self._m, device, addr, ffi.from_buffer(data), len(data), 1, refused))
        return not refused[0]

    def iommu_faults(self) -> list[IommuFault]:
        """The DMAs refused since the last call, oldest first (the newest 64 are kept)."""
        from cffi_core.vmx import _take_faults

        return _take_faults(self._m)

    @property
    def clock(self) -> int:
        """Ticks since reset (docs/architecture.md §9)."""
        return int(lib.p64_clock(self._m))

    def clock_reader(self) -> Callable[[], int]:
        """A function of no arguments that reads ``clock``: for a caller that reads it around
        every entry (``conformance.api.HostWatch``), without the property's lookup each time."""
        return partial(lib.p64_clock, self._m)

    @property
    def exit_qualification(self) -> int:
        """The exit qualification of the last VM exit (docs/vmx.md V.5) as the host's exit record
        holds it: what the host sees of an exit without a VMCS read (so not counted in
        ``vmcs_reads``); meaningless after any other exit."""
        return int(self._exit.qualification)

    def now(self) -> int:
        """The clock, for devices (the ``Clock`` protocol)."""
        return int(lib.p64_clock(self._m))

    def advance_clock(self, ticks: int) -> None:
        """Let ``ticks`` pass while halted (the host's idle skip, §9)."""
        ticks, now = check_int("ticks", ticks), self.clock
        if ticks > U64_MAX - now:
            raise ValueError(f"ticks = {ticks}: the clock ({now}) would pass 2**64-1")
        self._check(lib.p64_advance_clock(self._m, ticks))

    def walk(self, va: int, access: str = "read", cpl: int = 0, set_ad: bool = False) -> Walk:
        """Translate ``va`` as an access of kind read/write/fetch at ``cpl``, without the TLB."""
        va, kind = check_word("va", va), check_choice("access", access, _ACCESS)
        cpl, set_ad = check_int("cpl", cpl, 0, 3), check_flag("set_ad", set_ad)
        w = ffi.new("struct p64_walk *")
        self._check(lib.p64_walk(self._m, va, kind, cpl, int(set_ad), w))
        return Walk(
            physical=int(w.physical),
            fault=int(w.fault),
            error_code=int(w.error_code),
            page_level=int(w.page_level),
            writable=bool(w.writable),
            user=bool(w.user),
            nx=bool(w.nx),
            entries=tuple((int(w.entry_addr[i]), int(w.entry[i])) for i in range(w.levels)),
        )

    def tlb_flush(self) -> None:
        """Drop every TLB entry (counted as a full flush)."""
        self._check(lib.p64_tlb_flush(self._m))

    def retired(self, guest: bool = False) -> int:
        """Instructions retired in host mode (or, with ``guest``, in guest mode), all CPLs: the
        one count a VMM reads at every exit, without building the whole ``counters`` mapping."""
        try:
            row = self._counters.insn[_MODES[guest]]
        except (KeyError, TypeError):
            check_flag("guest", guest)
            raise
        return int(row[0] + row[1] + row[2] + row[3])

    @property
    def counters(self) -> Counters:
        """A snapshot of the counters."""
        return _read_counters(self._counters)

    def reset(self) -> None:
        """Reset the CPU, TLB, clock and counters to their reset values; memory is kept."""
        self._check(lib.p64_reset(self._m))

    # -- snapshots ------------------------------------------------------------------------
    def snapshot(self) -> MachineSnapshot:
        """Capture the whole machine; ``restore`` brings it back, and runs repeat exactly."""
        n = int(lib.p64_snapshot_size(self._m))
        buf = ffi.new("uint8_t[]", n)
        self._check(lib.p64_snapshot(self._m, buf, n))
        return MachineSnapshot(self.profile.name, self.memory_size, bytes(ffi.buffer(buf, n)))

    def restore(self, snap: MachineSnapshot) -> None:
        """Bring back the state ``snapshot`` captured, on this machine or another of the same
        shape (profile, memory size, TLB geometry)."""
        check_type("snap", snap, MachineSnapshot, "a MachineSnapshot (Machine.snapshot)")
        if snap.profile != self.profile.name or snap.memory_size != self.memory_size:
            raise _binding.SnapshotError(
                f"snap: a snapshot of a {snap.profile} machine with {snap.memory_size:#x} bytes cannot be "
                f"restored into a {self.profile.name} machine with {self.memory_size:#x} bytes"
            )
        data = check_bytes("snap.data", snap.data)
        self._check(lib.p64_restore(self._m, ffi.from_buffer(data), len(data)))

    def _check(self, rc: int) -> None:
        if rc != lib.P64_OK:
            _binding.check(rc, self._m)


def _exit_of(e: object) -> Exit | None:
    """The exit the core reported in ``e`` (struct p64_exit); None when the run paused, open."""
    reason = _REASONS[e.reason]
    # Read only the fields the reason gives: each cffi field access costs tens of ns.
    if reason is ExitReason.BUDGET:
        return _BUDGET_EXIT
    if reason is ExitReason.IO_OUT:
        return Exit(reason, port=e.port, value=e.value)
    if reason is ExitReason.IO_IN:
        return Exit(reason, port=e.port, reg=e.reg)
    if reason is ExitReason.HOST_GATE:
        return Exit(
            reason,
            vector=e.vector,
            kind=_KINDS[e.kind],
            error_code=e.error_code if e.has_error else None,
            address=e.address,
        )
    if reason is ExitReason.HCALL:
        return Exit(reason, number=e.number)
    if reason is None:
        return None
    if reason is ExitReason.VM:
        return _vm_exit(e.number)
    return Exit(reason)


_run_slice = lib.p64_run_slice
_vmrun_slice = lib.p64_vmrun_slice
_resume = lib.p64_resume
_BUDGET_EXIT = Exit(ExitReason.BUDGET)
_MODES = {False: 0, True: 1}  # retired(guest): 0 and 1 hash and compare as False and True
_VM = int(ExitReason.VM)
_VM_EXITS: dict[int, Exit] = {}


def _vm_exit(n: int) -> Exit:
    try:
        return _VM_EXITS[n]
    except KeyError:
        from cffi_core.vmx import VmExitReason

        _VM_EXITS.update({int(r): Exit(ExitReason.VM, number=r) for r in VmExitReason})
        return _VM_EXITS.get(n) or Exit(ExitReason.VM, number=int(n))


_REASONS: dict[int, ExitReason | None] = {int(r): r for r in ExitReason}
_REASONS[lib.P64_EXIT_PAUSED] = None  # the core's pause between two slices of a run (§10)
_KINDS = {int(k): k for k in EventKind}
