"""The I/O suite: an emulated disk, a passed-through disk (IOMMU) and the paravirtual block ring, in VMM entries and counts per sector.

Two benchmarks (counts only; a report divides by the sectors moved and prices them):

- ``diskio``: p64os's disk workload (sequential writes, sequential reads, random reads and
  writes of one sector each through the kernel's driver: port programming, DMA, a completion
  interrupt) under every VMM of the options.  One iteration moves **3 sectors** (one of each
  phase, ``models.diskio_model``).  The native build's disk is emulated by every VMM that
  runs it (port exits, a device model, an injected interrupt); a paravirtual VMM runs the
  paravirtual build, whose driver posts requests on the block ring with hypercalls
  (docs/paravirt-abi.md; docs/devices.md §11) — the paper's I/O comparison (Adams & Agesen
  2006 §6.3: I/O exits are what hardware assistance does not remove) with the paravirtual
  answer beside it.
- ``disk2-sectors``: a small guest (``disk2_guest_source``) that writes a sector to the second
  disk and reads it back, sleeping on each completion interrupt: **2 sectors per iteration**.
  The second disk is the one a VMM may pass through (docs/vmx.md V.10): a VMM that can use an
  IOMMU (``"iommu"`` among its ``requires`` or ``optional``) also runs it on its machine plus
  ``iommu`` as ``disk2-sectors-iommu`` — the reference ``hardware-ept`` then assigns the disk
  to the guest, whose port accesses reach the device with no VM exit and whose DMA the IOMMU
  remaps (``iommu_translations``), against the same guest with the disk emulated.  Native code:
  a paravirtual VMM is left out of it with a note.
"""

from __future__ import annotations

from dataclasses import replace

from benchmarks.measure import NATIVE, BenchmarkError, Record, measure
from benchmarks.suites import Suite, SuiteOptions, register
from benchmarks.suites.forkwait import (
    P64osRun,
    left_out_note,
    note_left_out,
    p64os_records,
    place_native_guest,
)

__all__ = [
    "DISK2_N",
    "DISK2_SECTORS_PER_ITERATION",
    "DISKIO_N",
    "DISKIO_SECTORS_PER_ITERATION",
    "IO_SUITE",
    "SECTORS_PER_ITERATION",
    "disk2_guest_source",
    "run_io",
]

DISKIO_N = 16
"""p64os diskio iterations per record at scale 1 (48 sector operations; about 1 s under the
slowest VMM)."""
DISKIO_SECTORS_PER_ITERATION = 3
DISK2_N = 32
"""disk2-sectors iterations per record at scale 1 (64 sectors)."""
DISK2_SECTORS_PER_ITERATION = 2
SECTORS_PER_ITERATION = {
    "diskio": DISKIO_SECTORS_PER_ITERATION,
    "disk2-sectors": DISK2_SECTORS_PER_ITERATION,
    "disk2-sectors-iommu": DISK2_SECTORS_PER_ITERATION,
}
"""Sectors one iteration of each benchmark moves: what a report divides by for cycles per sector."""
_DISK2_SECTORS = 64  # the second disk's image: 32 KiB; iteration i uses sector i mod 64
_GUEST_MEMORY = 1 << 20


def disk2_guest_source(n: int) -> str:
    """The P64 source of ``disk2-sectors`` at ``n`` iterations: paging off, CPL 0; iteration i
    fills a buffer with i, writes it to sector i mod 64 of the second disk (ports 0x170–0x174,
    IRQ 15 at vector 47; docs/devices.md §6), reads the sector back into a second buffer and
    compares.  Each command waits with ``sti; hlt`` for the completion interrupt, then reads
    the status (2 = done) and acknowledges it.  Exit code 0, or 1 for a failed command, 2 for
    data that did not come back."""
    return f"""; benchmarks/suites/io.py: disk2-sectors, {n} iterations
.equ PIC_CMD, 0x20
.equ PIC_MASK, 0x21
.equ PIC_EOI, 0x20
.equ D2_SECTOR, 0x170
.equ D2_COUNT, 0x171
.equ D2_ADDR, 0x172
.equ D2_CMD, 0x173
.equ RESULT_EXIT, 0x500
.equ IDT, 0x20000
.equ OUT_BUF, 0x50000
.equ IN_BUF, 0x51000
.equ VEC_DISK2, 47
.org 0x1000
_start:
        li      sp, 0x30000
        li      r1, IDT
        lidt    r1
        li      r1, IDT + 16 * VEC_DISK2
        la      r2, on_disk2
        sd      r2, [r1]
        li      r2, 1                      ; present interrupt gate, ring 0 (architecture §6.2)
        sd      r2, [r1 + 8]
        li      r1, 0x7fff                 ; every PIC line masked but 15
        out     PIC_MASK, r1
        li      r1, 1
        out     D2_COUNT, r1
        li      r9, 0                      ; r9 = i
        li      r10, {n}
loop:   li      r1, OUT_BUF
        li      r2, OUT_BUF + 512
fill:   sd      r9, [r1]
        addi    r1, r1, 8
        bltu    r1, r2, fill
        andi    r1, r9, {_DISK2_SECTORS - 1}
        out     D2_SECTOR, r1
        li      r1, OUT_BUF
        out     D2_ADDR, r1
        li      r1, 2                      ; write: memory -> disk
        out     D2_CMD, r1
        call    wait_disk2
        li      r1, IN_BUF
        out     D2_ADDR, r1
        li      r1, 1                      ; read: disk -> memory
        out     D2_CMD, r1
        call    wait_disk2
        li      r1, IN_BUF
        ld      r2, [r1 + 504]
        bne     r2, r9, bad_data
        addi    r9, r9, 1
        bltu    r9, r10, loop
        li      r1, 0
        out     RESULT_EXIT, r1
        jmp     halt

; wait_disk2: sleep until the completion interrupt, check the status, acknowledge it.
wait_disk2:
        cli
        la      r3, done
        ld      r3, [r3]
        bnez    r3, woken
        sti                                ; hlt in sti's shadow: no interrupt between them
        hlt
        jmp     wait_disk2
woken:  la      r3, done
        sd      r0, [r3]
        in      r3, D2_CMD
        out     D2_CMD, r0
        li      r4, 2
        bne     r3, r4, bad_status
        ret

on_disk2:
        push    r1
        li      r1, PIC_EOI
        out     PIC_CMD, r1
        la      r1, done
        push    r2
        li      r2, 1
        sd      r2, [r1]
        pop     r2
        pop     r1
        iret

bad_status:
        li      r1, 1
        out     RESULT_EXIT, r1
        jmp     halt
bad_data:
        li      r1, 2
        out     RESULT_EXIT, r1
halt:   jmp     halt
.align 8
done:   .quad 0
"""


def _disk2_make(size: int) -> tuple[object, object]:
    from cffi_core.asm import assemble
    from conformance.api import VMConfig

    image = assemble(disk2_guest_source(size), filename="disk2-sectors.s")
    config = VMConfig(
        memory=_GUEST_MEMORY,
        disk2=bytes(512 * _DISK2_SECTORS),
        budget=100_000 + 20_000 * size,
    )
    return image, config


def _disk2_check(size: int, console: bytes) -> None:
    if console:
        raise BenchmarkError(f"disk2-sectors n={size}: printed {console[-120:]!r}, a correct machine prints nothing")


def _uses_iommu(vmm: str) -> bool:
    if vmm == NATIVE:
        return False
    from conformance.api import load_vmm

    cls = load_vmm(vmm)
    return "iommu" in frozenset(cls.requires) | frozenset(cls.optional)


def _disk2_records(options: SuiteOptions) -> list[Record]:
    from conformance.api import VMMUnsupported

    n = DISK2_N * options.scale
    records: list[Record] = []
    left_out: list[str] = []
    for vmm in options.vmms:
        machine = place_native_guest(vmm, "io disk2-sectors", left_out, options)
        if machine is None:
            continue
        runs = [("disk2-sectors", machine)]
        if _uses_iommu(vmm) and "+iommu" not in machine:
            runs.append(("disk2-sectors-iommu", f"{machine}+iommu"))
        for benchmark, where in runs:
            options.progress(f"io {benchmark}: {vmm} on {where}")
            try:
                record = measure("io", benchmark, vmm, where, n, _disk2_make, check=_disk2_check)
            except VMMUnsupported as e:
                left_out.append(left_out_note(vmm, where, str(e)))
                continue
            path = (
                "the disk's DMA went through the IOMMU (iommu_translations): passed through"
                if record.delta.get("iommu_translations")
                else "no DMA went through the IOMMU: the disk is the machine's own (native) or emulated"
            )
            notes = [f"one iteration = {DISK2_SECTORS_PER_ITERATION} sectors (a write and a read back)", path]
            records.append(replace(record, notes=[*record.notes, *notes]))
    return note_left_out(records, "disk2-sectors", left_out)


def run_io(options: SuiteOptions) -> list[Record]:
    """p64os diskio under every VMM of ``options`` (the paravirtual build on the block ring for a
    paravirtual VMM), and disk2-sectors with the disk emulated and, where a VMM can, passed
    through."""
    note = (
        f"one iteration = {DISKIO_SECTORS_PER_ITERATION} sector operations (a sequential write, a sequential "
        "read, a random read or write; models.diskio_model); a paravirtual VMM's on the block ring"
    )
    diskio = P64osRun("diskio", "diskio", DISKIO_N * options.scale, (note,))
    return p64os_records("io", [diskio], options.vmms, options) + _disk2_records(options)


IO_SUITE = register(
    Suite(
        "io",
        "disk I/O: emulated disk, passed-through disk (IOMMU) and paravirtual block ring, counts per sector",
        run_io,
    )
)
