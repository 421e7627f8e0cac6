"""``ParavirtVMM``: paravirtualization, Fisher-Ogden (2006) §2.3.3 after Xen (Barham et al. 2003) — the guest is written to call the VMM.

"Rather than presenting an equivalent virtual environment to guests, paravirtualization exposes
virtual machine information to guest operating systems ... source-level modifications can be
made to avoid the x86 challenges to virtualization.  Whereas binary translation would trap on
problematic instructions, paravirtualization can avoid the instructions entirely"
(Fisher-Ogden 2006 §2.3.3).  Xen, its leading example, "sacrifice[s] binary compatibility for
guest operating systems": the guest kernel is ported to an interface "similar but not identical
to the underlying hardware" (Barham et al. 2003), and asks the VMM by *hypercall* for what it
may not do itself.  The interface this VMM implements is docs/paravirt-abi.md (binding; its
values live in ``conformance/paravirt.py``), on every host profile: one monitor, whose host side
(``hosts.py``) follows the host's transport (``transport_for(profile)``, §1's table).

The pieces, in the order a guest meets them:

- **The start** (§3).  The VMM loads the image into a region of host RAM (machine address =
  pseudo-physical + ``mem_base``), fills the image's ``hypercall_page`` with the stubs of its
  host's transport, and keeps the top of the guest's memory, the *PV area*, for what it shares
  with the guest: start info, the shared info page, the console and block rings, and bootstrap
  page tables mapping the guest's memory, already pinned.  The guest starts in its kernel with
  ``r1`` at start info and its events masked.
- **Deprivileging** (§1, §8), by host:

  - ``x86-2005``: as in Xen's x86-32 port, "the guest OS is modified to run in ring 1" (Barham
    et al.): the kernel runs at real ring 1 with IOPL 0, so every privileged instruction —
    ``cli``, ``mtcr``, ``hlt``, port I/O — raises #GP(0), which the VMM delivers to the guest's
    own handler; a paravirtual kernel has hypercalls instead.  The **segment limits**
    (``MSR_SEGLIMIT``, ``MSR_CSLIMIT``, docs/architecture.md §5.3) stop data and fetch at
    ``PV_VIRT_LIMIT``: above it, in top-level slots the guest may not write (§7.2 rule 4), the
    VMM keeps its own pages — the machine's IDT — as "Xen ... [in] the top 64MB of every address
    space", so that entering and leaving the VMM needs no address-space switch.
  - ``x86-64-2005``, ``classic-1974`` (no segment limits): a ring-1 kernel could reach the
    VMM's supervisor pages, so the kernel runs at ring 3, as Xen's 64-bit port does; the VMM's
    pages stay supervisor, out of reach at CPL 3, and every present entry of the guest gets
    ``PTE_U`` (§7.2).  Kernel and user then share CPL 3: the VMM keeps the virtual CPL itself,
    and runs user mode on the user table the guest gives (``set_cr3(base, user_base)``),
    switching at every event from user mode and every ``iret`` to it (§7.4).
  - ``vtx-2006``, ``vtx-2009``: the same VMM drives guest mode with ``vmrun``; the kernel runs at
    guest ring 1 with IOPL 0 (privileged instructions fault by privilege before any VM exit),
    its user at guest ring 3, on the guest's own validated tables — no shadow, no nested paging
    (``hosts.VmcallHost`` says why).
- **Hypercalls** (§2, §4): the kernel calls a stub of its hypercall page, whose transport
  reaches the VMM — ``hcall n`` (``EXIT_HCALL``; host class, so user code at ring 3 cannot make
  one), ``int 0x82`` through a DPL 3 host gate (number in r7; from user mode it is no hypercall,
  §2.4), or ``vmcall n`` (a VM exit; from user mode, #UD).  Twelve hypercalls, one handler
  method each whatever the transport, dispatched by the table ``ParavirtVM.handlers``; a refusal
  returns ``r1 = -code`` (§10), never silently.
- **Page tables** (§7, ``pagetables.py``): the guest's own tables are what the MMU walks —
  "registered with Xen ... mapped read-only" and changed only by validated, batched
  ``mmu_update`` requests ("amortize each hypercall across 2048 updates").
- **Events** (§5): "a lightweight notification of events" replaces interrupts.  Pending events
  are bytes in the shared info page, which the VMM sets before "invoking an event-callback
  handler"; the guest holds callbacks off with its own event mask, "analogous to disabling
  interrupts" — ``cli`` and ``sti`` are stores there, and never trap.  The timer (``set_timer``),
  the console and the block device raise ports; an upcall goes through the guest's trap table.
- **Traps** (§6): the guest "registers a descriptor table for exception handlers" — its trap
  table — which the VMM copies and validates; faults reach the VMM through the host gates of its
  real IDT and are delivered to the guest's handler with the frame of §6.2, the page-fault
  address in the shared page ("page faults must always be delivered via Xen", who alone can read
  CR2).  The one exception is the **fast system-call gate**: "guest OSes may install a 'fast'
  exception handler ... so that system calls from applications ... are called directly by the
  processor without indirecting via Xen" — on ``x86-2005`` a real trap gate to ring 1 in the
  VM's IDT, on ``vmx`` hosts the same gate in the guest-mode IDT; on the ring-3 hosts it goes
  through the VMM, which must switch page tables (§6.3).
- **Devices** (§9, ``devices.py``): a console and a block device on shared-memory descriptor
  rings, served when the guest sends on their ports.
- **Time** is the guest's own clock: the ticks it ran on the host, one per upcall delivered
  (as an external interrupt's delivery is a tick, architecture.md §9), and halted time while it
  blocks; ``SHARED_TIME`` shows it at every entry.  Several VMs share the host in slices of at
  most ``SLICE`` ticks, each VM's state loaded into the real CPU for its turn.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Mapping
from contextlib import suppress
from typing import ClassVar, NamedTuple

from cffi_core.exits import EventKind, ExitReason
from cffi_core.image import GuestImage
from cffi_core.machine import PAGE_SIZE, Exit, Machine
from cffi_core.spec.state import (
    CR0_PE,
    CR0_PG,
    CR0_WP,
    DF,
    FLAGS_IF,
    FLAGS_TF,
    GATE_DPL_SHIFT,
    GATE_INTERRUPT,
    GATE_P,
    GATE_RING_SHIFT,
    GATE_TRAP,
    GATE_TYPE_SHIFT,
    GP,
    MASK64,
    PF,
    PTE_NX,
    PTE_P,
    PTE_U,
    PTE_W,
    SP,
)
from conformance.api import (
    COUNTER_DIRECT,
    COUNTER_EMULATED,
    COUNTER_INTERVENTIONS,
    HOST_TIMER_PERIOD,
    VM,
    VMM,
    VMConfig,
)
from conformance.paravirt import (
    HYPERCALL_PAGE_SYMBOL,
    IRET_FRAME,
    MMU_UPDATE_MAX,
    PV_ABI_VERSION,
    PV_CONSOLE_WRITE_MAX,
    PV_GATE_ATTRIBUTES,
    PV_GATE_FAST,
    PV_HYPERCALL_VECTOR,
    PV_NR_PORTS,
    PV_PAGING_LEVELS,
    PV_TRAP_TABLE_SIZE,
    PV_UPCALL_VECTOR,
    PV_VIRT_LIMIT,
    SHARED_INFO,
    START_INFO,
    START_MAGIC_VALUE,
    Hypercall,
    MmuCmd,
    Port,
    PvError,
    SchedOp,
    hypercall_page,
    pv_area,
    result,
    transport_for,
)
from reference_vmm.paravirt.devices import BlockRing, ConsoleRing, RingError
from reference_vmm.paravirt.hosts import SEGLIMIT, HostSide, host_side
from reference_vmm.paravirt.pagetables import ENTRIES, PageTables, Refused
from reference_vmm.round_robin import run_round_robin
from reference_vmm.shadow import GuestMemory, HostMap

__all__ = ["IDT_VA", "KERNEL_RING", "SLICE", "ParavirtVM", "ParavirtVMM"]

SLICE = 10 * HOST_TIMER_PERIOD
"""Guest ticks a VM runs per turn when several share the host (the VMM's own host timer), as
trap-and-emulate's; a caller that wants control back sooner runs the VMM with a smaller budget."""
KERNEL_RING = 1
"""The real ring of the guest kernel on ``x86-2005`` (§1: "the guest OS ... run[s] in ring 1"), and its
guest ring on ``vmx`` hosts; on the ring-3 hosts it is 3 (``hosts.IntHost``)."""
VMM_SLOT = 511
"""The top-level slot of every pinned L4 where the VMM maps its pages (one of §7.2 rule 4's)."""
IDT_VA = 0xFFFF_FFFF_FFFF_F000
"""Where the machine's IDT of this VM is mapped (slot 511, then index 511 at every level): in the
VMM's half, supervisor and read-only — beyond the segment limit on ``x86-2005`` (the CPU's IDT
reads are never checked against it, architecture.md §5.3, the guest's accesses always are), out
of reach at CPL 3 on the ring-3 hosts, and read-only to the guest-ring-1 kernel on ``vmx``
hosts, whose guest mode has no limit in force."""

_REAL_CR0 = CR0_PE | CR0_PG | CR0_WP  # WP: read-only pages (pinned tables) are read-only at ring 1 too
_REAL_CR4 = PV_PAGING_LEVELS - 2  # CR4.PL: 4 levels (§7.1)
_VMM_ENTRY = PTE_P  # the VMM's own tables: present, supervisor, read-only
_BOOT_ENTRY = PTE_P | PTE_W  # the bootstrap mapping: present, supervisor, writable, executable (§3)
_QUAD = struct.Struct("<Q")
_GATE = struct.Struct("<QQ")
_FRAME = struct.Struct("<5Q")
_SHARED_MASK = SHARED_INFO.offset("event_mask")
_SHARED_UPCALL = SHARED_INFO.offset("upcall_pending")
_SHARED_TIME = SHARED_INFO.offset("time")
_SHARED_CR2 = SHARED_INFO.offset("cr2")
_SHARED_PENDING = SHARED_INFO.offset("evtchn_pending")
_SHARED_PORT_MASK = SHARED_INFO.offset("evtchn_mask")
_NO_ERROR = None


class Gate(NamedTuple):
    """One present entry of the guest's trap table, as validated (§4.2, §6.1)."""

    handler: int
    interrupt: bool  # an interrupt gate sets the event mask at delivery
    dpl: int
    fast: bool


class _Fault(Exception):
    """An access the guest kernel could not make at a virtual address: the exception the kernel
    would have raised (architecture.md §5.3): #GP(0) beyond the segment limit, #PF from the walk."""

    def __init__(self, vector: int, error: int | None, address: int) -> None:
        super().__init__(f"vector {vector} at {address:#x}")
        self.vector, self.error, self.address = vector, error, address


Handler = Callable[["ParavirtVM", int, int], "int | None"]
"""A hypercall's handler: ``(vm, r1, r2) -> r1``, None when the handler set the registers itself
(``iret``) or the call does not return (``sched_op`` shutdown); ``Refused`` is a refusal."""


class ParavirtVM(VM):
    """One paravirtual guest: its memory in a region of host RAM, its pinned tables, its shared
    pages and rings, its trap table, the registers it holds while another VM runs, and its host
    side (``side``: the transport's ring, IDT, entry and exits; on ``vmx`` hosts its VMCS)."""

    handlers: ClassVar[dict[int, Handler]]
    """The hypercall table: number -> handler (filled after the class).  Each subclass gets a copy
    of its parent's (``__init_subclass__``), so ``MyVM.handlers[n] = mine`` changes ``MyVM`` alone."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "handlers" not in cls.__dict__:
            cls.handlers = dict(cls.handlers)

    def __init__(self, monitor: ParavirtVMM, image: GuestImage, config: VMConfig, base: int, vmm_pages: int) -> None:
        host = self.host = monitor.host
        self.monitor = monitor
        self.config = config
        self.transport = monitor.transport
        self.side: HostSide = host_side(self.transport)(self)
        self.area = area = pv_area(config.memory)
        page = _hypercall_page_of(image, area.start)
        for seg in image.segments:
            if seg.end > area.start:
                raise ValueError(
                    f"image {image.name}: segment at {seg.address:#x}..{seg.end:#x} reaches into the PV area "
                    f"from {area.start:#x} (docs/paravirt-abi.md §3: the top of the guest's memory is the VMM's)"
                )
        self.memory = GuestMemory(host, base, config.memory)
        self.mem_base = base
        host.memory[base : base + config.memory] = bytes(config.memory)
        host.code_written(base, config.memory)
        for seg in image.segments:
            self.memory.write_bytes(seg.address, seg.data)
        self.memory.write_bytes(page, hypercall_page(self.transport))

        # The VMM's pages of this VM: its IDT, mapped at IDT_VA by its own L3, L2 and L1.
        self.idt = vmm_pages
        l3, l2, l1 = vmm_pages + PAGE_SIZE, vmm_pages + 2 * PAGE_SIZE, vmm_pages + 3 * PAGE_SIZE
        host.write(self.idt, self.side.real_idt(None))
        for table, entry in ((l3, l2), (l2, l1), (l1, self.idt)):
            host.write(table, bytes(PAGE_SIZE))
            host.write(
                table + 8 * (ENTRIES - 1), (entry | _VMM_ENTRY | (PTE_NX if table == l1 else 0)).to_bytes(8, "little")
            )

        self._needs_flush = False
        self.tables = PageTables(
            host,
            base,
            config.memory,
            user_bit=PTE_U if self.side.kernel_ring == 3 else 0,
            vmm_slot=VMM_SLOT,
            vmm_l4_entry=l3 | _VMM_ENTRY,
            vmm_pages=(base + area.shared_info, base + area.console_ring, base + area.block_ring),
            flush=self._flush,
        )
        l4 = self._bootstrap_tables()
        self.tables.bases = (l4, 0)

        self.output = bytearray()
        self.disk_image = bytearray(config.disk) if config.disk is not None else None
        self.console_ring = ConsoleRing(host, base + area.console_ring, config.console_input, self.output)
        self.block_ring = (
            BlockRing(host, base + area.block_ring, self.disk_image, self.tables)
            if self.disk_image is not None
            else None
        )
        self.shared = base + area.shared_info
        self._write_start_info(page, l4)
        host.write(self.shared + _SHARED_MASK, b"\x01")  # events masked, as FLAGS.IF = 0 at reset (§3)

        # The virtual CPU between two turns (§3's state at the first instruction).
        self.regs = [0] * 16
        self.regs[1] = area.start_info
        self._pc = image.entry
        self.ring = self.side.kernel_ring
        self.tf = 0
        self.pending_db = 0
        self.base = l4
        self.kstack = 0
        self.trap_table: list[Gate | None] | None = None
        self.timer = 0
        self.blocked = False
        self.clock = 0
        self._stop: str | None = None
        self._exit_code: int | None = None
        self.stop_reason: str | None = None
        """Why the VM stopped, when the VMM stopped it (a ring's impossible indices, a triple fault)."""
        self._yielded = False
        self._first_event = ""  # the event whose delivery began the last chain of §6.6 (for stop_reason)
        self._stats: Counter[str] = Counter()
        self._refusals: Counter[str] = Counter()
        if self.console_ring.feed():  # console input goes in before the first instruction (§9)
            self._raise(Port.CONSOLE)

    # -- the start (§3) -----------------------------------------------------------------------
    def _bootstrap_tables(self) -> int:
        """Map virtual = pseudo-physical over the guest's memory with 4 KiB pages, the table pages
        read-only, and pin the tables bottom-up: the L1s, the L2s, the L3, the L4 (which gets the
        VMM's slot).  Returns the L4's machine address."""
        area, base, size = self.area, self.mem_base, self.config.memory
        tables = [base + area.tables + i * PAGE_SIZE for i in range(area.table_pages)]
        l4, l3 = tables[0], tables[1]
        n_l2 = -(-size // (1 << 30))
        l2s, l1s = tables[2 : 2 + n_l2], tables[2 + n_l2 :]
        table_range = range(base + area.tables, base + area.tables + area.table_pages * PAGE_SIZE)
        write = self.host.write
        for i, l1 in enumerate(l1s):
            entries = []
            for j in range(ENTRIES):
                frame = base + (i * ENTRIES + j) * PAGE_SIZE
                ok = frame < base + size
                entries.append(frame | (PTE_P if frame in table_range else _BOOT_ENTRY) if ok else 0)
            write(l1, struct.pack(f"<{ENTRIES}Q", *entries))
        for i, l2 in enumerate(l2s):
            chunk = l1s[i * ENTRIES : (i + 1) * ENTRIES]
            write(l2, struct.pack(f"<{ENTRIES}Q", *([t | _BOOT_ENTRY for t in chunk] + [0] * (ENTRIES - len(chunk)))))
        write(l3, struct.pack(f"<{ENTRIES}Q", *([t | _BOOT_ENTRY for t in l2s] + [0] * (ENTRIES - len(l2s)))))
        write(l4, (l3 | _BOOT_ENTRY).to_bytes(8, "little") + bytes(PAGE_SIZE - 8))
        for level, pages in ((1, l1s), (2, l2s), (3, [l3]), (4, [l4])):
            for page in pages:
                self.tables.pin(page, level)
        return l4

    def _write_start_info(self, page: int, l4: int) -> None:
        area = self.area
        values = {
            "magic": START_MAGIC_VALUE,
            "version": PV_ABI_VERSION,
            "mem_base": self.mem_base,
            "mem_size": self.config.memory,
            "pv_start": area.start,
            "shared_info": area.shared_info,
            "console_ring": area.console_ring,
            "block_ring": area.block_ring,
            "block_sectors": self.block_ring.sectors if self.block_ring is not None else 0,
            "hypercall_page": page,
            "pt_base": area.tables,
            "pt_pages": area.table_pages,
        }
        for name, value in values.items():
            self.memory.write_bytes(area.start_info + START_INFO.offset(name), value.to_bytes(8, "little"))

    # -- the outside --------------------------------------------------------------------------
    @property
    def console(self) -> bytes:
        return bytes(self.output)

    @property
    def exit_code(self) -> int | None:
        return self._exit_code

    @property
    def disk(self) -> bytes:
        return bytes(self.disk_image) if self.disk_image is not None else b""

    @property
    def stop(self) -> str | None:
        return self._stop

    @property
    def ticks(self) -> int:
        return self.clock

    @property
    def pc(self) -> int:
        return self._pc

    @property
    def counters(self) -> Mapping[str, int]:
        """The efficiency keys of the contract — instructions the host's core retired for this
        guest (all of them: a paravirtual VMM emulates none), and interventions: every exit to the
        VMM and every upcall — with the guest's, host's and halted ticks, hypercalls by name,
        ``mmu_update`` requests, refusals by code, events raised and delivered, traps delivered
        through the trap table and block requests served."""
        out: dict[str, int] = {COUNTER_DIRECT: 0, COUNTER_EMULATED: 0, COUNTER_INTERVENTIONS: 0}
        for key in ("guest_ticks", "halted_ticks", "host_ticks", "hypercalls", "mmu_update_requests"):
            out[key] = 0
        for key in ("events_raised", "events_delivered", "traps_delivered"):
            out[key] = 0
        out.update({f"hypercall_{h.name.lower()}": 0 for h in Hypercall})
        out.update({f"refused_{e.name}": 0 for e in PvError})
        out.update(self._stats)
        out.update({f"refused_{name}": n for name, n in self._refusals.items()})
        out["guest_ticks"] = self.clock
        if self.block_ring is not None:
            out["block_requests"] = self.block_ring.served_ok
            out["block_refused"] = self.block_ring.refused
        return out

    # -- the run loop ---------------------------------------------------------------------------
    def run_slice(self, budget: int) -> None:
        """Run at most ``budget`` ticks of the guest's clock, never past ``config.budget``: this
        VM's state goes into the real CPU for the turn and comes back out at its end."""
        if self._stop is not None:
            return
        end = min(self.clock + budget, self.config.budget)
        self._load()
        try:
            self._turn(end)
        finally:
            self._save()
        if self._stop is None and self.clock >= self.config.budget:
            self._stop = "budget"

    def _turn(self, end: int) -> None:
        self._yielded = False
        while self._stop is None and not self._yielded:
            if self.timer and self.timer <= self.clock:
                self.timer = 0
                self._raise(Port.TIMER)  # set_timer's deadline passed (§4.9)
            if self.blocked:
                if not self._wake(end):
                    return
                continue
            if self.clock >= end:
                return
            if self._upcall_due():
                self._upcall()
                continue
            ticks = end - self.clock
            if self.timer:
                ticks = min(ticks, self.timer - self.clock)
            self._answer(self._run(ticks))

    def _wake(self, end: int) -> bool:
        """A blocked guest (``SCHEDOP_BLOCK``, §4.8): it returns when an unmasked port is pending;
        till then its clock runs as halted time up to the timer's deadline.  False when the turn
        ends (at ``end``, or halted for good: nothing can make a port pending any more)."""
        if self._unmasked_pending():
            self.blocked = False
            self._set_shared(_SHARED_UPCALL, 1)  # the upcall is taken on the return (§2.5)
            return True
        if not self.timer:
            self._stop = "halted"  # no timer, no block request in flight (they are served at once)
            return False
        if self.clock >= end:
            return False
        idle = min(self.timer, end) - self.clock
        self.clock += idle
        self._stats["halted_ticks"] += idle
        return True

    def _run(self, ticks: int) -> Exit:
        """One entry into the guest on the host: at most ``ticks`` ticks."""
        host, cpu = self.host, self.host.cpu
        if self._needs_flush:
            self.side.flush()
            self._needs_flush = False
        self._set_time()
        cpu.tsc_offset = (self.clock - host.clock) & MASK64  # rdtsc reads the guest's clock
        start = host.clock
        ex, retired = self.side.enter(ticks)
        elapsed = host.clock - start
        self.clock += elapsed
        self._stats["host_ticks"] += elapsed
        self._stats[COUNTER_DIRECT] += retired
        return ex

    def _answer(self, ex: Exit) -> None:
        reason = ex.reason
        if reason is ExitReason.BUDGET:
            return
        self._stats[COUNTER_INTERVENTIONS] += 1
        self.side.answer(ex)

    def shut_down(self, reason: str) -> None:
        """Stop the VM as a triple fault stops a machine (``stop == "shutdown"``)."""
        self._stop, self.stop_reason = "shutdown", reason

    def _load(self) -> None:
        """Load the real CPU with this guest for its turn: deprivileged (ring 1 or 3, IOPL 0), its
        page tables, the VM's IDT of host gates, the segment limits below the VMM's half (without
        effect on hosts without ``seglimit``), the kernel stack of the fast gate in ``MSR_RSP1``,
        GS off (``ldgs`` is legal at ring 1).  On ``vmx`` hosts the CPU is the VMM's register file
        for the guest: ``hosts.VmcallHost.enter`` copies it into the VMCS at each entry, and the
        paging registers let ``Machine.walk`` translate through the guest's tables."""
        cpu = self.host.cpu
        cpu.r.load(self.regs)
        cpu.pc = self._pc
        cpu.cpl = self.ring
        cpu.flags = FLAGS_IF | self.tf  # user mode runs with IF = 1 (§4.4): what the fast gate pushes
        cpu.cr0 = _REAL_CR0
        cpu.cr4 = _REAL_CR4
        cpu.cr3 = self.base
        cpu.cr8 = 0
        cpu.idtr = IDT_VA
        cpu.seglimit = SEGLIMIT
        cpu.cslimit = SEGLIMIT
        cpu.gsbase = 0
        cpu.gslimit = 0
        cpu.rsp[0] = 0
        cpu.rsp[1] = self.kstack
        cpu.rsp[2] = 0
        cpu.pending_db = self.pending_db
        cpu.halted = 0
        cpu.int_shadow = 0
        cpu.intr_vector = -1
        cpu.intr_acked = -1

    def _save(self) -> None:
        cpu = self.host.cpu
        self.regs = cpu.r.values()
        self._pc = cpu.pc
        self.ring = cpu.cpl
        self.tf = cpu.flags & FLAGS_TF
        self.pending_db = cpu.pending_db
        self.base = cpu.cr3

    def _flush(self) -> None:
        self._needs_flush = True

    # -- the guest's memory, as its kernel sees it ------------------------------------------------
    def _translate(self, va: int, size: int, access: str) -> list[tuple[int, int]]:
        """The machine ranges of ``size`` bytes at virtual ``va`` accessed by the kernel (at its
        real ring) through its current tables: the segment limit or the canonical check (#GP(0)),
        then the walk with its permissions (#PF; CR0.WP makes pinned tables read-only at ring 1
        too, and at ring 3 read-only is read-only)."""
        side = self.side
        if side.beyond(va, size):
            raise _Fault(GP, 0, va)
        pieces = []
        while size:
            w = self.host.walk(va, access, cpl=side.kernel_ring, set_ad=True)
            if w.fault:
                raise _Fault(w.fault, side.kernel_error(w.error_code) if w.fault == PF else None, va)
            chunk = min(size, PAGE_SIZE - (va & (PAGE_SIZE - 1)))
            if not self.tables.owned(w.physical, chunk):
                raise RuntimeError(f"paravirt: {va:#x} maps {w.physical:#x}, outside the guest (a validation bug)")
            pieces.append((w.physical, chunk))
            va, size = va + chunk, size - chunk
        return pieces

    def _vread(self, va: int, size: int) -> bytes:
        return b"".join(self.host.read(pa, n) for pa, n in self._translate(va, size, "read"))

    def _vwrite(self, va: int, data: bytes) -> None:
        offset = 0
        for pa, n in self._translate(va, len(data), "write"):
            self.host.write(pa, data[offset : offset + n])
            offset += n

    # -- the shared info page (§5) ------------------------------------------------------------------
    def _shared(self, offset: int) -> int:
        return self.host.memory[self.shared + offset]

    def _set_shared(self, offset: int, value: int) -> None:
        self.host.write(self.shared + offset, bytes((value,)))

    def _set_time(self) -> None:
        self.host.write(self.shared + _SHARED_TIME, _QUAD.pack(self.clock))

    def _raise(self, port: int) -> None:
        """An event on ``port`` (§5.2): pending; an upcall pending too unless the port is masked."""
        self._stats["events_raised"] += 1
        self._set_shared(_SHARED_PENDING + port, 1)
        if not self._shared(_SHARED_PORT_MASK + port):
            self._set_shared(_SHARED_UPCALL, 1)

    def _unmasked_pending(self) -> bool:
        memory, pending, mask = self.host.memory, self.shared + _SHARED_PENDING, self.shared + _SHARED_PORT_MASK
        return any(memory[pending + p] and not memory[mask + p] for p in range(PV_NR_PORTS))

    def _upcall_due(self) -> bool:
        """An upcall to deliver now (§2.5, §5.3): events allowed, one pending, and a present entry
        at ``PV_UPCALL_VECTOR`` (without one the ports stay pending)."""
        table = self.trap_table
        return (
            table is not None
            and table[PV_UPCALL_VECTOR] is not None
            and not self._shared(_SHARED_MASK)
            and self._shared(_SHARED_UPCALL) != 0
        )

    def _upcall(self) -> None:
        """Deliver the upcall as an external interrupt (§5.3): its delivery is a tick of the
        guest's clock, at the interrupted instruction (after a hypercall: the stub's ``ret``)."""
        self.clock += 1
        self._first_event = f"the upcall at pc {self.host.cpu.pc:#x}"
        self._stats["events_delivered"] += 1
        self._stats[COUNTER_INTERVENTIONS] += 1
        self._deliver(PV_UPCALL_VECTOR, _NO_ERROR, self.host.cpu.pc, EventKind.EXTERNAL)

    # -- traps: the virtual IDT (§6) ------------------------------------------------------------------
    def event(self, vector: int, error: int | None, pc: int, kind: EventKind, cr2: int | None = None) -> None:
        """An event of the guest that came to the VMM — its fault, trap or ``int n``, as its host
        side reported it (pc the pushed pc of architecture.md §6.1) — delivered through its trap
        table (§6.2)."""
        self._first_event = f"vector {vector} ({kind.name.lower()}, error {error}) at pc {pc:#x}"
        self._deliver(vector, error, pc, kind, cr2)

    def _deliver(self, vector: int, error: int | None, pc: int, kind: EventKind, cr2: int | None = None) -> None:
        """Deliver an event through the trap table, and what its failure raises (architecture.md
        §6.6, §6.2 of the ABI): an ``int n``'s own fault at the ``int``, an upcall's at the
        interrupted instruction, an exception's #DF, and a failed #DF stops the VM."""
        failure = self._enter_handler(vector, error, pc, kind, cr2)
        if failure is None:
            return
        x_vector, x_error, x_cr2 = failure
        if kind is EventKind.SOFTWARE:
            self._deliver(x_vector, x_error, (pc - 4) & MASK64, EventKind.FAULT, x_cr2)
        elif kind is EventKind.EXTERNAL:
            self._deliver(x_vector, x_error, pc, EventKind.FAULT, x_cr2)
        elif vector == DF and kind is EventKind.ABORT:
            self._stop = "shutdown"
            self.stop_reason = f"triple fault: a fault while delivering #DF, after {self._first_event}"
        else:
            self._deliver(DF, 0, pc, EventKind.ABORT)

    def _enter_handler(
        self, vector: int, error: int | None, pc: int, kind: EventKind, cr2: int | None
    ) -> tuple[int, int | None, int | None] | None:
        """§6.2: the stack, the frame (cs the virtual CPL, FLAGS the virtual IF), the handler in the
        kernel.  None when done; else the exception the delivery raised (vector, error, CR2)."""
        cpu = self.host.cpu
        ext = 0 if kind is EventKind.SOFTWARE else 1
        if cr2 is not None:
            self.host.write(self.shared + _SHARED_CR2, _QUAD.pack(cr2))  # the virtual CR2, even if delivery fails
        gate = self.trap_table[vector] if self.trap_table is not None else None
        if gate is None:
            return GP, 8 * vector + 2 + ext, None
        user = self.side.user()
        if kind is EventKind.SOFTWARE and user and gate.dpl < 3:
            return GP, 8 * vector + 2, None
        old_sp = cpu.r[SP]
        sp = (self.kstack if user else old_sp) & ~0xF
        flags = 0 if self._shared(_SHARED_MASK) else FLAGS_IF
        words = [pc, 3 if user else 0, flags, old_sp]
        if error is not None:
            words.insert(0, error)
        new_sp = (sp - 8 * len(words)) & MASK64
        self._set_time()
        if user:
            self.side.kernel_tables()  # where kernel and user share a ring: the frame goes through the kernel's (§7.4)
        try:
            self._vwrite(new_sp, struct.pack(f"<{len(words)}Q", *words))
        except _Fault as f:
            return f.vector, f.error, f.address if f.vector == PF else None
        self.side.enter_kernel()
        cpu.r[SP] = new_sp
        cpu.pc = gate.handler
        cpu.flags = FLAGS_IF  # TF cleared, as a delivery does (architecture.md §6.3 step 8)
        if gate.interrupt:
            self._set_shared(_SHARED_MASK, 1)
        if kind is not EventKind.EXTERNAL:
            self._stats["traps_delivered"] += 1
        return None

    def _write_real_idt(self) -> None:
        """The IDT the CPU reads for this VM, as its host side builds it from the trap table (§6.3:
        the fast gate a real gate where the host allows it)."""
        self.host.write(self.idt, self.side.real_idt(self.trap_table))

    # -- hypercalls (§4) -------------------------------------------------------------------------------
    def hypercall(self, number: int) -> None:
        """Dispatch hypercall ``number`` by the table, whatever its transport; a refusal is ``r1 =
        -code`` (and r2 an index where §4 names one).  ``hcall`` and ``vmcall`` carry the number
        twice (§2.2); ``int 0x82``'s number is r7 itself."""
        cpu = self.host.cpu
        self._stats["hypercalls"] += 1
        handler = self.handlers.get(number) if number == cpu.r[7] else None
        try:
            if handler is None:
                raise Refused(PvError.ENOSYS)
            self._stats[f"hypercall_{Hypercall(number).name.lower()}"] += 1
            out = handler(self, cpu.r[1], cpu.r[2])
        except Refused as refusal:
            self._refusals[refusal.code.name] += 1
            cpu.r[1] = result(refusal.code)
            if refusal.index is not None:
                cpu.r[2] = refusal.index
            return
        if out is not None:
            cpu.r[1] = out & MASK64

    def hc_version(self, _r1: int, _r2: int) -> int:
        """§4.1: the null hypercall; an upcall pending is taken on its return (§2.5)."""
        return PV_ABI_VERSION

    def hc_set_trap_table(self, table: int, _r2: int) -> int:
        """§4.2: read the 256 gates at ``table``, validate them all, then copy them."""
        if table == 0:
            self.trap_table = None
            self._write_real_idt()
            return 0
        try:
            data = self._vread(table, PV_TRAP_TABLE_SIZE)
        except _Fault:
            raise Refused(PvError.EFAULT) from None
        gates: list[Gate | None] = []
        fast = None
        for vector in range(256):
            handler, attrs = _GATE.unpack_from(data, 16 * vector)
            if not attrs & GATE_P:
                gates.append(None)  # never refused, whatever its other bits
                continue
            kind, dpl, ring = (
                (attrs >> GATE_TYPE_SHIFT) & 3,
                (attrs >> GATE_DPL_SHIFT) & 3,
                (attrs >> GATE_RING_SHIFT) & 3,
            )
            if attrs & ~PV_GATE_ATTRIBUTES or kind not in (GATE_INTERRUPT, GATE_TRAP) or ring:
                raise Refused(PvError.EINVAL, vector)
            if attrs & PV_GATE_FAST:
                if kind != GATE_TRAP or dpl != 3 or vector < 32 or vector == PV_UPCALL_VECTOR or fast is not None:
                    raise Refused(PvError.EINVAL, vector)
                fast = vector
            if vector == PV_HYPERCALL_VECTOR or handler >= PV_VIRT_LIMIT:
                raise Refused(PvError.EPERM, vector)
            gates.append(Gate(handler, kind == GATE_INTERRUPT, dpl, bool(attrs & PV_GATE_FAST)))
        self.trap_table = gates
        self._write_real_idt()
        return 0

    def hc_stack_switch(self, sp: int, _r2: int) -> int:
        """§4.3: the stack of events from user mode — the fast gate's too, in ``MSR_RSP1``."""
        self.kstack = sp
        self.host.cpu.rsp[KERNEL_RING] = sp  # the direct fast gate's stack (unused at ring 3)
        return 0

    def hc_iret(self, _r1: int, _r2: int) -> None:
        """§4.4: return from an event frame at sp (with r7 on top): the event mask from its FLAGS,
        the virtual CPL from its cs; refused, the stub's ``ud`` follows with r1 = -code."""
        cpu = self.host.cpu
        try:
            r7, pc, cs, flags, sp = _FRAME.unpack(self._vread(cpu.r[SP], IRET_FRAME.size))
        except _Fault:
            raise Refused(PvError.EFAULT) from None
        if cs not in (0, 3) or flags & ~FLAGS_IF or (cs == 3 and flags != FLAGS_IF):
            raise Refused(PvError.EINVAL)
        self._set_shared(_SHARED_MASK, 0 if flags else 1)
        if cs == 3:
            self.side.enter_user()  # where kernel and user share a ring: the user's table (§7.4)
        cpu.r[7] = r7
        cpu.pc = pc
        cpu.r[SP] = sp
        return None

    def hc_mmu_update(self, requests: int, count: int) -> int:
        """§4.5, §7.3: apply the requests in order; the first refusal stops the batch, with r2 its
        index — the requests before it stay applied, those after it are not read."""
        if count > MMU_UPDATE_MAX:
            raise Refused(PvError.E2BIG)
        for i in range(count):
            try:
                ptr, val = struct.unpack("<QQ", self._vread((requests + 16 * i) & MASK64, 16))
            except _Fault:
                raise Refused(PvError.EFAULT, i) from None
            self._stats["mmu_update_requests"] += 1
            try:
                if self.tables.apply(ptr, val) is MmuCmd.INVLPG:
                    self._needs_flush = True  # the host drops every translation: a superset of one page's
            except Refused as refusal:
                raise Refused(refusal.code, i) from None
        return 0

    def hc_set_cr3(self, base: int, user_base: int) -> int:
        """§4.6: switch to a pinned L4 (the user base is validated the same way, and unused where
        PTE_U keeps user mode out of the kernel's pages); drops the non-global translations."""
        if (base | user_base) & (PAGE_SIZE - 1):
            raise Refused(PvError.EINVAL)
        self.tables.check_base(base)
        if user_base:
            self.tables.check_base(user_base)
        cpu = self.host.cpu
        if cpu.cr3 == base:
            self._needs_flush = True  # the kernel's "reload CR3": the host flushes only on a change
        cpu.cr3 = base
        self.tables.bases = (base, user_base)
        return 0

    def hc_invlpg(self, _va: int, _r2: int) -> int:
        """§4.7: drop the page's cached translations (the host can drop only all of them)."""
        self._needs_flush = True
        return 0

    def hc_sched_op(self, command: int, argument: int) -> int | None:
        """§4.8: yield, block until an unmasked port is pending, or shut down."""
        if command == SchedOp.YIELD:
            self._yielded = True
            return 0
        if command == SchedOp.BLOCK:
            self._set_shared(_SHARED_MASK, 0)  # sti; hlt
            if self.console_ring.feed():
                self._raise(Port.CONSOLE)
            self.blocked = True  # _wake returns at once if an unmasked port is pending
            return 0
        if command == SchedOp.SHUTDOWN:
            with suppress(RingError):
                self.console_ring.drain()  # what the guest produced on its ring is output, sent or not
            self._stop, self._exit_code = "exit", argument & 0xFFFF_FFFF
            return None
        raise Refused(PvError.EINVAL)

    def hc_set_timer(self, deadline: int, _r2: int) -> int:
        """§4.9: arm the one-shot timer at ``deadline`` of the guest's clock; 0 disarms; a
        deadline not after the clock makes ``PORT_TIMER`` pending at once."""
        self.timer = 0
        if deadline and deadline <= self.clock:
            self._raise(Port.TIMER)
        elif deadline:
            self.timer = deadline
        return 0

    def hc_evtchn_send(self, port: int, _r2: int) -> int:
        """§4.10: the guest notifies the VMM's end of a ring; the VMM serves it at once (§9)."""
        if port == Port.CONSOLE:
            ring = self.console_ring
        elif port == Port.BLOCK:
            if self.block_ring is None:
                raise Refused(PvError.ENODEV)
            ring = self.block_ring
        else:
            raise Refused(PvError.EBADPORT)
        try:
            produced = ring.serve()
        except RingError as e:
            self._stop, self.stop_reason = "shutdown", str(e)
            return 0
        if produced:
            self._raise(port)
        return 0

    def hc_evtchn_unmask(self, port: int, _r2: int) -> int:
        """§4.11: clear the port's mask; what arrived while it was masked raises an upcall now."""
        if port >= PV_NR_PORTS:
            raise Refused(PvError.EBADPORT)
        self._set_shared(_SHARED_PORT_MASK + port, 0)
        if self._shared(_SHARED_PENDING + port):
            self._set_shared(_SHARED_UPCALL, 1)
        return 0

    def hc_console_write(self, buffer: int, length: int) -> int:
        """§4.12: append ``length`` bytes at ``buffer`` to the console, synchronously."""
        if length > PV_CONSOLE_WRITE_MAX:
            raise Refused(PvError.E2BIG)
        try:
            data = self._vread(buffer, length)
        except _Fault:
            raise Refused(PvError.EFAULT) from None
        self.output += data
        return length


ParavirtVM.handlers = {
    Hypercall.VERSION: ParavirtVM.hc_version,
    Hypercall.SET_TRAP_TABLE: ParavirtVM.hc_set_trap_table,
    Hypercall.STACK_SWITCH: ParavirtVM.hc_stack_switch,
    Hypercall.IRET: ParavirtVM.hc_iret,
    Hypercall.MMU_UPDATE: ParavirtVM.hc_mmu_update,
    Hypercall.SET_CR3: ParavirtVM.hc_set_cr3,
    Hypercall.INVLPG: ParavirtVM.hc_invlpg,
    Hypercall.SCHED_OP: ParavirtVM.hc_sched_op,
    Hypercall.SET_TIMER: ParavirtVM.hc_set_timer,
    Hypercall.EVTCHN_SEND: ParavirtVM.hc_evtchn_send,
    Hypercall.EVTCHN_UNMASK: ParavirtVM.hc_evtchn_unmask,
    Hypercall.CONSOLE_WRITE: ParavirtVM.hc_console_write,
}


def _hypercall_page_of(image: GuestImage, pv_start: int) -> int:
    """The image's ``hypercall_page`` (§2.2): a page of its own below the PV area."""
    page = image.symbols.get(HYPERCALL_PAGE_SYMBOL)
    if page is None:
        raise ValueError(
            f"image {image.name}: no symbol {HYPERCALL_PAGE_SYMBOL!r}: a paravirtual image defines the page its VMM "
            f"fills with hypercall stubs (`.align 4096` then `{HYPERCALL_PAGE_SYMBOL}: .space 4096`, "
            "docs/paravirt-abi.md §2.2)"
        )
    if page % PAGE_SIZE or page + PAGE_SIZE > pv_start:
        raise ValueError(
            f"image {image.name}: {HYPERCALL_PAGE_SYMBOL} at {page:#x} is not a page-aligned page below the PV area "
            f"at {pv_start:#x} (docs/paravirt-abi.md §2.2, §3)"
        )
    return page


class ParavirtVMM(VMM):
    """Paravirtualization after Xen (Fisher-Ogden 2006 §2.3.3; Barham et al. 2003): guests built
    for docs/paravirt-abi.md, on every host profile — their kernels at ring 1 behind the segment
    limits with ``hcall`` (``x86-2005``), at ring 3 with ``int 0x82`` and kernel/user tables
    (``x86-64-2005``, ``classic-1974``), or at guest ring 1 with ``vmcall`` (``vtx-2006``,
    ``vtx-2009``): ``transport`` is ``transport_for(host.profile)``, and each VM's host side
    (``reference_vmm.paravirt.hosts``) does what differs; it needs no host feature."""

    name = "paravirt"
    technique = "paravirtualization after Xen (Fisher-Ogden 2006 §2.3.3; Barham et al. 2003)"
    requires = frozenset()
    optional = frozenset({"vmx"})  # used when present: the guest in guest mode, vmcall (hosts.py)
    guest_abi = "paravirt"
    vm_class: ClassVar[type[ParavirtVM]] = ParavirtVM
    """The class of this VMM's VMs, built as ``vm_class(monitor, image, config, base, vmm_pages)``."""
    VMM_PAGES_PER_VM = 4
    """The IDT of each VM (on ``vmx`` hosts its guest-mode IDT) and the L3, L2 and L1 that map it
    in the VMM's top-level slot, supervisor and read-only."""

    def __init__(self, host: Machine) -> None:
        super().__init__(host)
        self.transport = transport_for(host.profile)
        self.map = HostMap(host)

    def create_vm(self, image: GuestImage, config: VMConfig) -> ParavirtVM:
        base = self.map.guest_region(config.memory)
        pages = self.map.vmm_pages(self.VMM_PAGES_PER_VM * PAGE_SIZE)
        vm = self.vm_class(self, image, config, base, pages)
        self.vms.append(vm)
        return vm

    def run(self, budget: int) -> None:
        run_round_robin(self.vms, budget, SLICE, lambda vm: vm.clock)
