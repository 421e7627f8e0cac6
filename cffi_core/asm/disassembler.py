"""The P64 disassembler: table-driven text for one word, and a re-assemblable listing of a GuestImage."""

from __future__ import annotations

import bisect
import re

from cffi_core.asm.lexer import MASK64, SYMBOL_RE, is_register_name
from cffi_core.asm.syntax import FORMAT_OPERANDS
from cffi_core.image import GuestImage, Segment
from cffi_core.isa.encoding import Decoded, decode

__all__ = ["MAX_LISTING_LINES", "TRUNCATED", "disassemble", "disassemble_word"]

# Limits (docs/limits.md).  A listing line costs a few microseconds and some 60 bytes of text:
# 2^18 of them (1 MiB of code, a hundred times the largest guest of the suite) take a second or
# two; a longer listing stops there with a TRUNCATED line instead of running for minutes.
MAX_LISTING_LINES = 1 << 18
TRUNCATED = "; truncated:"  # how the last line of a listing cut at its limit begins
# A run of at least this many zero bytes is listed as one .space line (a zero word is no
# instruction), so that zero fill, such as a .bss tail, costs one line however long it is.
_ZERO_RUN = 64
_NONZERO = re.compile(rb"[^\x00]")


def _hex(value: int) -> str:
    return f"-{-value:#x}" if value < 0 else f"{value:#x}"


def _immediate(d: Decoded) -> str:
    # Signed 16-bit values (addi, slti, memory offsets) and shift counts read best in decimal;
    # zero-extended masks, ports, vectors and lui's upper bits read best in hex.
    if d.insn.format.imm in ("s16", "sh6"):
        return str(d.imm)
    return _hex(d.imm)


def _offset(base: int, imm: int, hex_offset: bool) -> str:
    text = _hex(abs(imm)) if hex_offset else str(abs(imm))
    if imm == 0:
        return f"r{base}"
    return f"r{base} {'-' if imm < 0 else '+'} {text}"


def disassemble_word(word: int, pc: int | None = None) -> str:
    """Canonical assembly for one 32-bit word (table mnemonics, no pseudo-instructions).

    Branch and jump targets are absolute hex addresses when ``pc`` is given, else ``. + N``.
    Invalid encodings print as ``.word 0x%08x``.  The text re-assembles to ``word``.
    """
    if not 0 <= word <= 0xFFFFFFFF:
        raise ValueError(f"{word!r} is not a 32-bit word")
    d = decode(word)
    if d is None:
        return f".word 0x{word:08x}"
    regs = {"rd": d.rd, "rs1": d.rs1, "rs2": d.rs2}
    parts = []
    for spec in FORMAT_OPERANDS[d.insn.fmt]:
        if spec.kind == "reg":
            parts.append(f"r{regs[spec.role]}")
        elif spec.kind == "cr":
            parts.append(f"cr{d.crn}")
        elif spec.kind == "imm":
            parts.append(_immediate(d))
        elif spec.kind == "target":
            if pc is not None:
                parts.append(f"{(pc + d.imm) & MASK64:#x}")
            else:
                parts.append(f". {'-' if d.imm < 0 else '+'} {abs(d.imm)}")
        elif spec.kind == "mem":
            parts.append(f"[{_offset(regs[spec.role], d.imm, False)}]")
        elif spec.kind == "port":
            base = regs[spec.role]
            # imm16 is unsigned and wraps with the base modulo 2^16, so it is never shown negative.
            parts.append(_hex(d.imm) if base == 0 else _offset(base, d.imm, True))
    return d.insn.mnemonic + (" " + ", ".join(parts) if parts else "")


def _label_line(name: str) -> str:
    # Symbols from foreign ELF files may not be valid assembler names; keep them as comments.
    if SYMBOL_RE.fullmatch(name) and name != "." and not is_register_name(name):
        return f"{name}:"
    return f"; {name}:"


def disassemble(image: GuestImage, *, max_lines: int | None = None) -> str:
    """A listing: ``.org`` per segment, symbol labels on their own lines, one instruction (or
    ``.byte`` for unaligned ends) per line with its address and word in a trailing comment,
    and one ``.space`` line for each run of ``_ZERO_RUN`` or more zero bytes.  The listing
    re-assembles to the same segments, unless it has more than ``max_lines`` lines of code and
    data (default MAX_LISTING_LINES): then it stops there, with a last line starting
    ``TRUNCATED`` that says how many bytes were left out."""
    if max_lines is None:
        max_lines = MAX_LISTING_LINES
    width = 16 if image.end > 0xFFFFFFFF else 8
    labels: dict[int, list[str]] = {}
    for name, value in image.symbols.items():
        if name not in image.constants:
            labels.setdefault(value, []).append(name)
    label_addresses = sorted(labels)
    listed = 0  # lines of code and data
    lines = [f"; {image.name}: {len(image.segments)} segment(s), entry {image.entry:#x}"]
    for name in sorted(image.constants):
        lines.append(f"; {name} = {image.symbols[name]:#x}")
    lines.append(f".entry {image.entry:#x}")
    for k, seg in enumerate(image.segments):
        lines.append(f".org {seg.address:#x}")
        addr = seg.address
        while addr < seg.end:
            if listed == max_lines:
                left = seg.end - addr + sum(len(s.data) for s in image.segments[k + 1 :])
                lines.append(
                    f"{TRUNCATED} the listing stops at its limit of {max_lines} lines; {left} more bytes not listed"
                )
                return "\n".join(lines) + "\n"
            listed += 1
            for name in labels.get(addr, ()):
                lines.append(_label_line(name))
            if zeros := _zero_run(seg, addr, label_addresses):
                lines.append(f"    {f'.space {zeros}':<32} ; {addr:0{width}x}: {zeros} zero bytes")
                addr += zeros
                continue
            # Whole words from 4-byte aligned addresses; single bytes where the segment is ragged.
            size = 4 if addr % 4 == 0 and addr + 4 <= seg.end else 1
            for a in range(addr + 1, addr + size):
                for name in labels.get(a, ()):
                    lines.append(f"; {name} = {a:#x}")
            chunk = seg.data[addr - seg.address : addr - seg.address + size]
            if size == 4:
                word = int.from_bytes(chunk, "little")
                text, raw = disassemble_word(word, addr), f"{word:08x}"
                d = decode(word)
                if d is not None and d.insn.format.imm in ("s16w", "s24w"):
                    names = labels.get((addr + d.imm) & MASK64)
                    if names:
                        raw += f" -> {names[0]}"  # name the branch target for the reader
            else:
                text, raw = f".byte 0x{chunk[0]:02x}", f"{chunk[0]:02x}"
            lines.append(f"    {text:<32} ; {addr:0{width}x}: {raw}")
            addr += size
    for value in sorted(labels):
        if image.segment_at(value) is None:
            for name in labels[value]:
                lines.append(f"; {name} = {value:#x} (outside every segment)")
    return "\n".join(lines) + "\n"


def _zero_run(seg: Segment, addr: int, label_addresses: list[int]) -> int:
    """The length of the zero run listed as one ``.space`` at ``addr``, or 0: zero bytes up to
    the next label (which must get its own line), whole words unless the run ends the segment."""
    if seg.data[addr - seg.address] != 0:
        return 0
    i = bisect.bisect_right(label_addresses, addr)
    end = min(seg.end, label_addresses[i]) if i < len(label_addresses) else seg.end
    # Search no further than the next label: labels in a long zero run cost no rescans.
    found = _NONZERO.search(seg.data, addr - seg.address, end - seg.address)
    if found is not None:
        end = seg.address + found.start()
    if end < seg.end:
        end -= (end - addr) % 4
    return end - addr if end - addr >= _ZERO_RUN else 0
