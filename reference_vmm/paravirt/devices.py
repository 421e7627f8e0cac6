"""The paravirtual console and block device: the VMM's end of the shared-memory rings of docs/paravirt-abi.md §9 (docs/devices.md §11).

Barham et al. (2003), "Data transfer: I/O rings": a ring is a page shared by the guest and the
VMM, with a producer and a consumer index per direction, each written by one side only; a
producer fills entries, stores its index once for the batch and notifies the other side by an
event.  Here the indices are free-running 64-bit counts (slot = count mod the ring's size), the
notification is the event channel of the device's port (§5.2), and the VMM serves a ring when
the guest sends on that port (``evtchn_send``, §4.10): it reads what the guest produced, does
it, writes what it produces, and says which port to raise.

A ring whose indices are impossible is a guest bug the VMM cannot answer on the ring itself:
``RingError`` names the ring, and the VM stops with ``stop == "shutdown"`` (§9).

Rings live in guest memory and are read and written here by machine address (pseudo-physical +
``mem_base``, §3), through the host Machine (whose ``write`` keeps decoded code coherent).
"""

from __future__ import annotations

from cffi_core.devices.disk import SECTOR_SIZE
from cffi_core.machine import Machine
from conformance.paravirt import (
    BLK_MAX_SECTORS,
    BLK_RING_SIZE,
    BLOCK_REQUEST,
    BLOCK_RESPONSE,
    BLOCK_RING,
    CONS_IN_SIZE,
    CONS_OUT_SIZE,
    CONSOLE_RING,
    MASK64,
    BlockOp,
    PvError,
)
from reference_vmm.paravirt.pagetables import PageTables

__all__ = ["BlockRing", "ConsoleRing", "RingError"]

_OUT_PROD, _OUT_CONS = CONSOLE_RING.offset("out_prod"), CONSOLE_RING.offset("out_cons")
_IN_PROD, _IN_CONS = CONSOLE_RING.offset("in_prod"), CONSOLE_RING.offset("in_cons")
_IN, _OUT = CONSOLE_RING.offset("in"), CONSOLE_RING.offset("out")
_REQ_PROD, _RSP_PROD = BLOCK_RING.offset("req_prod"), BLOCK_RING.offset("rsp_prod")
_REQUESTS, _RESPONSES = BLOCK_RING.offset("requests"), BLOCK_RING.offset("responses")


class RingError(Exception):
    """A ring's indices are impossible (§9): the VM stops, and this names the ring."""


class _Page:
    """A shared page at a machine address: 64-bit loads and stores, byte runs."""

    def __init__(self, host: Machine, address: int) -> None:
        self.host = host
        self.address = address

    def u64(self, offset: int) -> int:
        return int.from_bytes(self.host.memory[self.address + offset : self.address + offset + 8], "little")

    def set_u64(self, offset: int, value: int) -> None:
        self.host.write(self.address + offset, (value & MASK64).to_bytes(8, "little"))

    def u32(self, offset: int) -> int:
        return int.from_bytes(self.host.memory[self.address + offset : self.address + offset + 4], "little")


class ConsoleRing:
    """The console (§9): a byte ring out of the guest into the VM's console, and one into the guest
    from ``VMConfig.console_input``.  ``output`` is the VM's console, which ``console_write``
    (§4.12) appends to as well."""

    def __init__(self, host: Machine, address: int, console_input: bytes, output: bytearray) -> None:
        self.page = _Page(host, address)
        self.output = output
        self._input = bytes(console_input)
        self._fed = 0  # bytes of input copied into the ring: in_prod, which only the VMM writes

    @property
    def input_left(self) -> int:
        """Console input not yet copied into the ring."""
        return len(self._input) - self._fed

    def serve(self) -> bool:
        """What the VMM does when the guest sends on ``PORT_CONSOLE``: take the output it
        produced, give it the input there is room for.  True when ``PORT_CONSOLE`` is to be
        raised (output consumed: room again; or input produced)."""
        return self.drain() | self.feed()

    def drain(self) -> bool:
        """Append the bytes between ``out_cons`` and ``out_prod`` to the console; store
        ``out_cons``.  True when there were any."""
        page = self.page
        prod, cons = page.u64(_OUT_PROD), page.u64(_OUT_CONS)
        count = (prod - cons) & MASK64
        if count > CONS_OUT_SIZE:
            raise RingError(
                f"console ring: out_prod {prod} is {count} bytes past out_cons {cons} (at most {CONS_OUT_SIZE})"
            )
        if not count:
            return False
        base = page.address + _OUT
        memory = page.host.memory
        for i in range(cons, cons + count):
            self.output.append(memory[base + i % CONS_OUT_SIZE])
        page.set_u64(_OUT_CONS, prod)
        return True

    def feed(self) -> bool:
        """Copy console input into the ring while it has room; store ``in_prod``.  True when any
        byte was produced."""
        page = self.page
        cons = page.u64(_IN_CONS)
        waiting = (self._fed - cons) & MASK64
        if waiting > CONS_IN_SIZE:
            raise RingError(f"console ring: in_cons {cons} is beyond in_prod {self._fed & MASK64}")
        count = min(CONS_IN_SIZE - waiting, self.input_left)
        if not count:
            return False
        for i in range(self._fed, self._fed + count):
            page.host.write(page.address + _IN + i % CONS_IN_SIZE, self._input[i : i + 1])
        self._fed += count
        page.set_u64(_IN_PROD, self._fed)
        return True


class BlockRing:
    """The block device (§9): requests from the guest, served at once against the VM's disk image
    (``disk``, a bytearray the VM reports as its disk), responses back on the ring."""

    def __init__(self, host: Machine, address: int, disk: bytearray, tables: PageTables) -> None:
        self.page = _Page(host, address)
        self.disk = disk
        self.tables = tables
        self._served = 0  # requests consumed = responses produced: rsp_prod, which only the VMM writes
        self.served_ok = 0
        self.refused = 0

    @property
    def sectors(self) -> int:
        return len(self.disk) // SECTOR_SIZE

    def serve(self) -> bool:
        """Serve every request between what was consumed and ``req_prod``: check each whole,
        move its bytes or refuse it, write its response; store ``rsp_prod`` once.  True when
        ``PORT_BLOCK`` is to be raised (responses produced)."""
        page = self.page
        prod = page.u64(_REQ_PROD)
        count = (prod - self._served) & MASK64
        if count > BLK_RING_SIZE:
            raise RingError(
                f"block ring: req_prod {prod} is {count} requests past the {self._served} consumed "
                f"(at most {BLK_RING_SIZE})"
            )
        for i in range(self._served, self._served + count):
            slot = _REQUESTS + (i % BLK_RING_SIZE) * BLOCK_REQUEST.size
            request_id = page.u64(slot + BLOCK_REQUEST.offset("id"))
            status = self._transfer(
                page.u32(slot + BLOCK_REQUEST.offset("op")),
                page.u32(slot + BLOCK_REQUEST.offset("count")),
                page.u64(slot + BLOCK_REQUEST.offset("sector")),
                page.u64(slot + BLOCK_REQUEST.offset("buffer")),
            )
            out = _RESPONSES + (i % BLK_RING_SIZE) * BLOCK_RESPONSE.size
            page.set_u64(out + BLOCK_RESPONSE.offset("id"), request_id)
            page.set_u64(out + BLOCK_RESPONSE.offset("status"), -status if status else 0)
        if not count:
            return False
        self._served += count
        page.set_u64(_RSP_PROD, self._served)
        return True

    def _transfer(self, op: int, count: int, sector: int, buffer: int) -> int:
        """One request, checked whole before any byte moves (§9, as the disk of devices.md §6);
        0, or the code it is refused with."""
        if op not in (BlockOp.READ, BlockOp.WRITE) or count == 0:
            return self._refuse(PvError.EINVAL)
        if count > BLK_MAX_SECTORS:
            return self._refuse(PvError.E2BIG)
        if sector + count > self.sectors:
            return self._refuse(PvError.ERANGE)
        size = count * SECTOR_SIZE
        if not self.tables.owned(buffer, size):
            return self._refuse(PvError.ENOTOWNED)
        if op == BlockOp.READ and self.tables.pinned_in(buffer, size):
            return self._refuse(PvError.EWRITABLE)
        start = sector * SECTOR_SIZE
        host = self.page.host
        if op == BlockOp.READ:
            host.write(buffer, bytes(self.disk[start : start + size]))
        else:
            self.disk[start : start + size] = host.read(buffer, size)
        self.served_ok += 1
        return 0

    def _refuse(self, code: PvError) -> int:
        self.refused += 1
        return int(code)
