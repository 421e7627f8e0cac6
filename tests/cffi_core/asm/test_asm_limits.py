"""Assembler and disassembler limits (docs/limits.md): sources that would exhaust time, memory or the stack end in one ``file:line: message`` error."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from cffi_core.asm import AssemblyError, assemble, assemble_file, disassemble
from cffi_core.asm import assembler as asm
from cffi_core.asm import disassembler as dis
from cffi_core.asm.lexer import MAX_DEPTH
from cffi_core.image import MAX_IMAGE_BYTES, GuestImage, Segment


def refused(f) -> tuple[AssemblyError, int]:
    """The AssemblyError ``f()`` raises, and the most memory allocated meanwhile (tracemalloc)."""
    tracemalloc.start()
    try:
        with pytest.raises(AssemblyError) as info:
            f()
        return info.value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def doubling_macros(levels: int) -> str:
    """Macro m<k> calls m<k-1> twice: m<levels> expands 2^(levels+1) - 1 macros into 2^levels nops."""
    out = [".macro m0\nnop\n.endm\n"]
    out += [f".macro m{k}\nm{k - 1}\nm{k - 1}\n.endm\n" for k in range(1, levels + 1)]
    return "".join(out) + f"m{levels}\n"


# ---- output size ----


def test_total_output_is_capped_before_anything_is_allocated():
    # Each .space is within MAX_FILL; forty of them are 10 GiB.
    error, peak = refused(lambda: assemble(".space 0x10000000\n" * 40, filename="big.s"))
    assert str(error) == (
        f"big.s:2: the output grows to {2 * MAX_IMAGE_BYTES} bytes here, "
        f"more than the limit of {MAX_IMAGE_BYTES} bytes of an image"
    )
    assert peak < 16 << 20  # refused from the layout's sizes, not after emitting 256 MiB


def test_output_at_the_limit_counts_every_kind_of_statement():
    src = '.space 0x0ffffff0\n.ascii "0123456789abcdef"\n.byte 1\n'
    with pytest.raises(AssemblyError, match=r"^<string>:3: the output grows to 268435457 bytes here"):
        assemble(src)


def test_fill_limit_is_checked_before_the_total():
    with pytest.raises(
        AssemblyError, match=rf"^<string>:1: {1 << 40} bytes of fill is more than the limit {asm.MAX_FILL}"
    ):
        assemble(".space 1 << 40")
    with pytest.raises(AssemblyError, match=r"^<string>:2: \d+ bytes of fill is more than the limit"):
        assemble("nop\n.align 1 << 62")


def test_segment_count_is_capped(monkeypatch):
    monkeypatch.setattr(asm, "MAX_SEGMENTS", 3)  # the real limit takes 65,276 .org lines to reach
    src = "".join(f".org {16 * i}\n.byte {i}\n" for i in range(4))
    with pytest.raises(
        AssemblyError, match=r"^<string>:8: bytes at 0x30 would start a new segment, more than the limit of 3"
    ):
        assemble(src)
    assert len(assemble(src.replace(".org 48", ".org 33")).segments) == 3  # adjacent bytes join a run


# ---- macros ----


def test_a_macro_that_would_expand_2_to_the_30_times_stops_at_the_expansion_limit(monkeypatch):
    monkeypatch.setattr(asm, "MAX_MACRO_EXPANSIONS", 1000)  # reached by counting: cheap at any value
    with pytest.raises(AssemblyError) as info:
        assemble(doubling_macros(30), filename="bomb.s")
    assert str(info.value).startswith("bomb.s:")
    assert "more than the limit of 1000 macro expansions in one assembly (in macro 'm" in str(info.value)


def test_the_expansion_limit_allows_exactly_that_many(monkeypatch):
    monkeypatch.setattr(asm, "MAX_MACRO_EXPANSIONS", (1 << 11) - 1)
    assert assemble(doubling_macros(10)).segments[0].data == assemble("nop").segments[0].data * (1 << 10)
    monkeypatch.setattr(asm, "MAX_MACRO_EXPANSIONS", (1 << 11) - 2)
    with pytest.raises(AssemblyError, match="macro expansions"):
        assemble(doubling_macros(10))


def test_an_expansion_is_measured_before_it_is_built():
    # 1,000 references to a 10,000-character argument: 10^7 characters from one line of source.
    src = ".macro many a\n" + "\\a" * 1000 + "\n.endm\nmany " + "x" * 10_000 + "\n"
    error, peak = refused(lambda: assemble(src))
    assert str(error) == (
        f"<string>:4: macro 'many': more than the limit of {asm.MAX_SOURCE_CHARS} source characters in one assembly"
    )
    assert peak < 4 << 20


def test_lines_produced_by_macros_count_against_the_line_limit(monkeypatch):
    monkeypatch.setattr(asm, "MAX_SOURCE_LINES", 1000)
    src = ".macro m0\n" + "\n" * 100 + ".endm\n.macro m1\n" + "m0\n" * 100 + ".endm\nm1\n"
    with pytest.raises(AssemblyError, match=r"macro 'm0': more than the limit of 1000 source lines .* \(in macro 'm1'"):
        assemble(src)


# ---- source size ----


def test_source_text_over_the_line_limit_is_refused_before_it_is_parsed(monkeypatch):
    with pytest.raises(
        AssemblyError, match=rf"^<string>:0: more than the limit of {asm.MAX_SOURCE_LINES} source lines"
    ):
        assemble("\n" * (asm.MAX_SOURCE_LINES + 1))
    monkeypatch.setattr(asm, "MAX_SOURCE_LINES", 1000)  # a source at the limit is parsed: keep it small
    assert assemble("nop\n" * 1000).end == 4000
    with pytest.raises(AssemblyError, match="more than the limit of 1000 source lines"):
        assemble("nop\n" * 1001)


def test_source_text_over_the_character_limit_is_refused_before_it_is_split():
    with pytest.raises(
        AssemblyError, match=rf"^x\.s:0: more than the limit of {asm.MAX_SOURCE_CHARS} source characters"
    ):
        assemble(";" * (asm.MAX_SOURCE_CHARS + 1), filename="x.s")


def test_a_source_file_over_the_size_limit_is_not_read(tmp_path):
    big = tmp_path / "big.s"
    with open(big, "wb") as f:
        f.truncate(asm.MAX_SOURCE_CHARS + 1)  # sparse: costs no disk and is never read
    with pytest.raises(AssemblyError) as info:
        assemble_file(big)
    assert str(info.value) == (
        f"{big}:0: cannot read: {asm.MAX_SOURCE_CHARS + 1} bytes is larger than the limit of "
        f"{asm.MAX_SOURCE_CHARS} bytes for a source file"
    )
    main = tmp_path / "main.s"
    main.write_text('nop\n.include "big.s"\n')
    with pytest.raises(AssemblyError, match=rf"^{main}:2: cannot include 'big.s': \d+ bytes is larger than the limit"):
        assemble_file(main)


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "dir"])
def test_an_endless_or_special_file_is_never_read(tmp_path, special):
    if special == "fifo":
        special = str(tmp_path / "fifo")
        os.mkfifo(special)  # opening it for reading would wait for a writer forever
    elif special == "dir":
        special = str(tmp_path)
    src = tmp_path / "main.s"
    src.write_text(f'.include "{special}"\n')
    with pytest.raises(AssemblyError, match=rf"^{src}:1: cannot include '{special}': not a regular file \(a "):
        assemble_file(src)
    with pytest.raises(AssemblyError, match=rf"^{special}:0: cannot read: not a regular file"):
        assemble_file(special)


# ---- includes ----


def write_chain(tmp_path, n: int) -> None:
    """inc0.s includes inc1.s ... includes inc<n>.s."""
    for k in range(n):
        (tmp_path / f"inc{k}.s").write_text(f'.include "inc{k + 1}.s"\n')
    (tmp_path / f"inc{n}.s").write_text("nop\n")


@pytest.mark.parametrize("n", [300, 1000])
def test_a_long_include_chain_stops_at_the_depth_limit(tmp_path, n):
    write_chain(tmp_path, n)
    d = asm.MAX_INCLUDE_DEPTH
    with pytest.raises(AssemblyError) as info:
        assemble_file(tmp_path / "inc0.s")
    assert (
        str(info.value)
        == f"{tmp_path / f'inc{d}.s'}:1: cannot include 'inc{d + 1}.s': includes nested more than {d} deep"
    )


def test_includes_nested_to_the_depth_limit_assemble(tmp_path):
    write_chain(tmp_path, asm.MAX_INCLUDE_DEPTH)
    assert assemble_file(tmp_path / "inc0.s") == assemble("nop")


def test_a_file_included_twice_at_every_level_stops_at_the_include_count(tmp_path):
    # 30 levels of including the next file twice would read 2^30 files.
    for k in range(30):
        (tmp_path / f"twice{k}.s").write_text(f'.include "twice{k + 1}.s"\n.include "twice{k + 1}.s"\n')
    (tmp_path / "twice30.s").write_text("")
    with pytest.raises(
        AssemblyError, match=rf"cannot include 'twice\d+\.s': more than the limit of {asm.MAX_INCLUDES} includes"
    ):
        assemble_file(tmp_path / "twice0.s")


def test_every_nesting_limit_at_once_stays_inside_the_python_stack(tmp_path):
    # Includes, macros and an expression each nested to their limits, one inside the other:
    # the limits together must leave room on Python's stack (no RecursionError).
    write_chain(tmp_path, asm.MAX_INCLUDE_DEPTH)
    expr = "(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH
    macros = [f".macro n0\n.byte {expr}\n.endm\n"]
    macros += [f".macro n{k}\nn{k - 1}\n.endm\n" for k in range(1, asm.MAX_MACRO_DEPTH)]
    (tmp_path / f"inc{asm.MAX_INCLUDE_DEPTH}.s").write_text("".join(macros) + f"n{asm.MAX_MACRO_DEPTH - 1}\n")
    assert assemble_file(tmp_path / "inc0.s").segments[0].data == b"\x01"


def test_macro_depth_carries_across_includes(tmp_path):
    # A macro nest whose innermost macro includes a file that starts the nest again: the
    # nesting is one count, not restarted by each include (that multiplied into a RecursionError).
    depth = asm.MAX_MACRO_DEPTH - 1
    nest = ['.macro n0 f\n.include "\\f"\n.endm\n']
    nest += [f".macro n{k} f\nn{k - 1} \\f\n.endm\n" for k in range(1, depth)]
    (tmp_path / "f0.s").write_text("".join(nest) + f"n{depth - 1} f1.s\n")
    for k in range(1, asm.MAX_INCLUDE_DEPTH):
        (tmp_path / f"f{k}.s").write_text(f"n{depth - 1} f{k + 1}.s\n")
    with pytest.raises(
        AssemblyError, match=r"f0\.s:\d+: macro 'n\d+': expansion nested too deeply .* called at \S*f1\.s:1\)$"
    ):
        assemble_file(tmp_path / "f0.s")


# ---- disassembler ----


def test_zero_fill_is_listed_as_one_space_line_and_reassembles():
    image = GuestImage((Segment(0x1000, b"\x01\x02\x03\x04" + bytes(1 << 20)),), 0x1000, {"tail": 0x1000 + (1 << 20)})
    listing = disassemble(image)
    assert len(listing.splitlines()) < 10
    assert f".space {(1 << 20) - 4}" in listing and "tail:" in listing
    assert assemble(listing).segments == image.segments


def test_a_short_zero_run_stays_words():
    image = GuestImage((Segment(0, bytes(8) + b"\x05"),), 0)
    assert ".space" not in disassemble(image)


def test_a_long_listing_stops_at_the_line_limit_and_says_so():
    image = GuestImage((Segment(0, b"\x01" * 400), Segment(0x1000, b"\x02" * 8)), 0)
    lines = disassemble(image, max_lines=10).splitlines()
    assert len([line for line in lines if line.startswith("    ")]) == 10
    assert (
        lines[-1] == f"{dis.TRUNCATED} the listing stops at its limit of 10 lines; {400 - 40 + 8} more bytes not listed"
    )


def test_the_listing_limit_defaults_to_max_listing_lines(monkeypatch):
    monkeypatch.setattr(dis, "MAX_LISTING_LINES", 3)
    assert disassemble(GuestImage((Segment(0, b"\x01" * 64),), 0)).splitlines()[-1].startswith(dis.TRUNCATED)
