"""Inputs that would exhaust the machine (docs/limits.md): image files, disks and command-line numbers end in one clear error, fast, in bounded memory."""

from __future__ import annotations

import os
import re
import struct
import tracemalloc
from pathlib import Path

import pytest

from cffi_core.asm import assembler, disassembler
from cffi_core.image import (
    EM_P64,
    MAX_ELF_FILE_BYTES,
    MAX_IMAGE_BYTES,
    MAX_SEGMENTS,
    GuestImage,
    ImageError,
    InputFileError,
    Segment,
    read_input_file,
)
from cffi_core.machine import MAX_MEMORY, MiB
from reports import cli
from reports.cli import main

ROOT = Path(__file__).resolve().parents[2]
HELLO = str(ROOT / "examples" / "hello.s")
GiB = 1 << 30

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")


def elf(loads: list[tuple[int, bytes, int]], entry: int = 0) -> bytes:
    """A minimal P64 ELF: one PT_LOAD per (address, file bytes, p_memsz), no sections."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 255]) + bytes(8)
    out = bytearray(_EHDR.pack(ident, 2, EM_P64, 1, entry, 64, 0, 0, 64, 56, len(loads), 64, 0, 0))
    offset = 64 + 56 * len(loads)
    for address, data, memsz in loads:
        out += _PHDR.pack(1, 7, offset, address, address, len(data), memsz, 1)
        offset += len(data)
    for _, data, _ in loads:
        out += data
    return bytes(out)


def refused(f, error=ImageError) -> tuple[str, int]:
    """The message of the ``error`` that ``f()`` raises, and the peak memory allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(error) as info:
            f()
        return str(info.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def one_line_error(capsys, argv: list[str]) -> str:
    """Run ``popek ARGV``: it must exit with status 2 and one error on stderr: one line ``popek:
    ...``, which an assembly error follows with its source line and a caret (indented, bounded);
    returns the first line."""
    try:
        status = main(argv)
    except SystemExit as exc:  # a usage error leaves through the argument parser
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.splitlines()
    assert err.startswith("popek: ") and err.endswith("\n") and len(lines) <= 3, err
    assert all(line.startswith("    ") and len(line) < 300 for line in lines[1:]), err
    return lines[0]


def sparse(path: Path, size: int) -> str:
    """A file of ``size`` bytes that costs no disk space (and must never be read)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return str(path)


# ---- image size ----

EIGHT_GIB = elf([(i * GiB, b"\x42" * 8, GiB) for i in range(8)])  # 8 segments of 1 GiB, ~500 bytes


def test_eight_segments_of_a_gib_are_refused_from_the_headers():
    assert len(EIGHT_GIB) < 600
    message, peak = refused(lambda: GuestImage.from_elf(EIGHT_GIB, name="big.elf"))
    assert (
        message
        == f"big.elf: program header 0 (PT_LOAD at 0x0): p_memsz 0x40000000 is larger than the limit {MAX_IMAGE_BYTES:#x} of an image"
    )
    assert peak < 1 << 20


def test_a_segment_that_does_not_fit_in_ram_is_refused_first():
    message, peak = refused(lambda: GuestImage.from_elf(EIGHT_GIB, name="big.elf", memory=16 * MiB))
    assert (
        message
        == "big.elf: program header 0 (PT_LOAD at 0x0): 0x0-0x3fffffff does not fit in the machine's 0x1000000 bytes of RAM"
    )
    assert peak < 1 << 20
    small = elf([(0x1000, b"\x01", 16), (0x10000, b"\x02", 0x10000)])
    GuestImage.from_elf(small, memory=0x20000)
    with pytest.raises(ImageError, match=r"program header 1 \(PT_LOAD at 0x10000\): 0x10000-0x1ffff does not fit"):
        GuestImage.from_elf(small, memory=0x1F000)


def test_the_image_limit_is_on_all_segments_together():
    half = MAX_IMAGE_BYTES // 2 + 0x1000
    data = elf([(0, b"", half), (MAX_IMAGE_BYTES, b"", half)])
    message, peak = refused(lambda: GuestImage.from_elf(data, name="two.elf"))
    assert message.startswith("two.elf: program header 1 (PT_LOAD at 0x10000000): p_memsz ")
    assert f"brings the image to {2 * half:#x} bytes, more than the limit {MAX_IMAGE_BYTES:#x}" in message
    assert peak < 1 << 20


def test_an_image_built_in_memory_obeys_the_same_limits():
    with pytest.raises(ImageError, match=rf"{MAX_SEGMENTS + 1} segments is more than the limit of {MAX_SEGMENTS}"):
        GuestImage(tuple(Segment(2 * i, b"\x01") for i in range(MAX_SEGMENTS + 1)), 0)


def test_segment_count_is_refused_from_the_headers_and_the_limit_is_writable():
    too_many = elf([(2 * i, b"\x01", 1) for i in range(MAX_SEGMENTS + 1)])
    with pytest.raises(ImageError) as info:
        GuestImage.from_elf(too_many, name="many.elf")
    message = str(info.value)
    assert (
        message
        == f"many.elf: program header {MAX_SEGMENTS} (PT_LOAD at {2 * MAX_SEGMENTS:#x}): more than the limit of {MAX_SEGMENTS} loadable segments"
    )
    # MAX_SEGMENTS is as many as an ELF file holds without extended section numbering.
    data = GuestImage(tuple(Segment(2 * i, b"\x01") for i in range(MAX_SEGMENTS)), 0).to_elf()
    e_shnum = struct.unpack_from("<H", data, 0x3C)[0]
    assert e_shnum == MAX_SEGMENTS + 4 and e_shnum < 0xFF00  # SHN_LORESERVE


# ---- files ----


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "directory"])
def test_read_input_file_refuses_what_is_not_a_regular_file_without_reading(tmp_path, kind):
    if kind == "fifo":
        path = str(tmp_path / "fifo")
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    else:
        path = str(tmp_path) if kind == "directory" else kind
    with pytest.raises(InputFileError) as info:
        read_input_file(path, 1 << 20, "a disk image")
    assert info.value.path == path
    assert re.fullmatch(r"not a regular file \(an? [A-Za-z ]+\), so not read as a disk image", info.value.reason)


def test_read_input_file_refuses_a_file_over_its_limit_before_reading(tmp_path):
    path = sparse(tmp_path / "big", GiB)
    message, peak = refused(lambda: read_input_file(path, 1000, "a thing"), InputFileError)
    assert message == f"{path}: {GiB} bytes is larger than the limit of 1000 bytes for a thing"
    assert peak < 1 << 20
    assert read_input_file(sparse(tmp_path / "ok", 1000), 1000) == bytes(1000)


def test_an_elf_file_over_its_limit_is_not_read(tmp_path):
    path = sparse(tmp_path / "huge.elf", MAX_ELF_FILE_BYTES + 1)
    message, peak = refused(lambda: GuestImage.load(path))
    assert (
        message
        == f"{path}: {MAX_ELF_FILE_BYTES + 1} bytes is larger than the limit of {MAX_ELF_FILE_BYTES} bytes for an ELF image"
    )
    assert peak < 1 << 20


# ---- the command line ----


def test_run_of_eight_gib_of_segments_is_one_line(tmp_path, capsys):
    path = tmp_path / "big.elf"
    path.write_bytes(EIGHT_GIB)
    err = one_line_error(capsys, ["run", str(path)])
    assert (
        err
        == f"popek: {path}: program header 0 (PT_LOAD at 0x0): 0x0-0x3fffffff does not fit in the machine's 0x1000000 bytes of RAM"
    )
    assert "p_memsz 0x40000000 is larger than the limit" in one_line_error(capsys, ["disasm", str(path)])


def test_asm_of_forty_maximal_spaces_is_one_line(tmp_path, capsys):
    src = tmp_path / "space.s"
    src.write_text(".space 0x10000000\n" * 40)
    err = one_line_error(capsys, ["asm", str(src), "-o", str(tmp_path / "space.elf")])
    assert err.startswith(f"popek: {src}:2:1: the output grows to ")
    assert not (tmp_path / "space.elf").exists()


def test_asm_of_a_macro_bomb_and_an_include_bomb_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(assembler, "MAX_MACRO_EXPANSIONS", 1000)  # cheap; the value is counted, not allocated
    bomb = tmp_path / "bomb.s"
    bomb.write_text(
        ".macro m0\n.endm\n" + "".join(f".macro m{k}\nm{k - 1}\nm{k - 1}\n.endm\n" for k in range(1, 31)) + "m30\n"
    )
    assert "more than the limit of 1000 macro expansions" in one_line_error(capsys, ["asm", str(bomb)])
    for k in range(30):
        (tmp_path / f"t{k}.s").write_text(f'.include "t{k + 1}.s"\n' * 2)
    (tmp_path / "t30.s").write_text("nop\n")
    err = one_line_error(capsys, ["run", str(tmp_path / "t0.s")])
    assert f"more than the limit of {assembler.MAX_INCLUDES} includes" in err


@pytest.mark.parametrize("option", [[], ["--disk"], ["--disk2"], ["include"]])
def test_run_refuses_dev_zero_wherever_it_is_given(tmp_path, capsys, option):
    if option == ["include"]:
        src = tmp_path / "inc.s"
        src.write_text('.include "/dev/zero"\n')
        argv = ["run", str(src)]
    else:
        argv = ["run", *option, "/dev/zero"] if option else ["run", "/dev/zero"]
        if option:
            argv = ["run", HELLO, *option, "/dev/zero"]
    err = one_line_error(capsys, argv)
    assert "/dev/zero" in err and "not a regular file (a character device)" in err


def test_run_refuses_a_disk_over_its_limit_unread(tmp_path, capsys):
    disk = sparse(tmp_path / "disk.img", cli.MAX_DISK_BYTES + 512)
    err = one_line_error(capsys, ["run", HELLO, "--disk", disk])
    assert (
        err
        == f"popek: {disk}: {cli.MAX_DISK_BYTES + 512} bytes is larger than the limit of {cli.MAX_DISK_BYTES} bytes for a disk image"
    )


def test_disasm_of_a_large_zero_segment_is_short_and_says_what_it_skipped(tmp_path, capsys):
    path = tmp_path / "bss.elf"
    path.write_bytes(elf([(0x1000, bytes.fromhex("00000042") * 4, 16 * MiB)], entry=0x1000))
    assert main(["disasm", str(path)]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) < 12
    assert f".space {16 * MiB - 16}" in out and f"{16 * MiB - 16} zero bytes" in out


def test_disasm_past_the_listing_limit_says_so_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(disassembler, "MAX_LISTING_LINES", 5)
    path = tmp_path / "code.elf"
    path.write_bytes(elf([(0, b"\x11" * 64, 64)]))
    assert main(["disasm", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].startswith(disassembler.TRUNCATED)
    assert err == f"popek: {path}: the listing stops at its limit of 5 lines; 44 more bytes not listed\n"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--budget", str(10**30), f"argument --budget: {10**30} is outside 1..{(1 << 64) - 1} ticks"),
        ("--budget", "10**30", "argument --budget: '10**30' is not a whole number of ticks"),
        ("--budget", "-1", f"argument --budget: -1 is outside 1..{(1 << 64) - 1} ticks"),
        ("--budget", "0", f"argument --budget: 0 is outside 1..{(1 << 64) - 1} ticks"),
        ("--memory", "0", f"argument --memory: 0 is outside 1..{MAX_MEMORY // MiB} MiB"),
        ("--memory", str(MAX_MEMORY // MiB + 1), f"argument --memory: {MAX_MEMORY // MiB + 1} is outside"),
        ("--memory", "1.5", "argument --memory: '1.5' is not a whole number of MiB"),
        ("--profile", "pentium", "argument --profile: unknown profile 'pentium'"),
    ],
)
def test_run_options_out_of_range_are_one_line(capsys, option, value, message):
    assert one_line_error(capsys, ["run", HELLO, option, value]).startswith(f"popek: run: {message}")


def test_the_largest_budget_and_memory_are_accepted(capsys):
    assert main(["run", HELLO, "--budget", str((1 << 64) - 1), "--memory", "1"]) == 0
    assert "hello, world" in capsys.readouterr().out


def test_missing_arguments_of_asm_disasm_and_run_are_one_line(capsys):
    for command in ("asm", "disasm"):
        assert one_line_error(capsys, [command]).startswith(f"popek: {command}: the following arguments are required")
    assert one_line_error(capsys, ["run"]).startswith("popek: run: give a program")


# ---- the document ----


def test_every_limit_is_documented_with_its_value():
    from cffi_core import image
    from cffi_core.asm import lexer

    doc = (ROOT / "docs" / "limits.md").read_text()
    limits = {
        "MAX_IMAGE_BYTES": image.MAX_IMAGE_BYTES,
        "MAX_SEGMENTS": image.MAX_SEGMENTS,
        "MAX_ELF_FILE_BYTES": image.MAX_ELF_FILE_BYTES,
        "MAX_FILL": assembler.MAX_FILL,
        "MAX_PASSES": assembler.MAX_PASSES,
        "MAX_MACRO_DEPTH": assembler.MAX_MACRO_DEPTH,
        "MAX_MACRO_EXPANSIONS": assembler.MAX_MACRO_EXPANSIONS,
        "MAX_INCLUDE_DEPTH": assembler.MAX_INCLUDE_DEPTH,
        "MAX_INCLUDES": assembler.MAX_INCLUDES,
        "MAX_SOURCE_LINES": assembler.MAX_SOURCE_LINES,
        "MAX_SOURCE_CHARS": assembler.MAX_SOURCE_CHARS,
        "MAX_DEPTH": lexer.MAX_DEPTH,
        "MAX_LISTING_LINES": disassembler.MAX_LISTING_LINES,
        "MAX_BUDGET": cli.MAX_BUDGET,
        "MAX_DISK_BYTES": cli.MAX_DISK_BYTES,
    }
    for name, value in limits.items():
        row = next((line for line in doc.splitlines() if line.startswith(f"| `{name}`")), None)
        assert row is not None, f"{name} has no row in docs/limits.md"
        assert f"{value:,}" in row, f"docs/limits.md gives {name} a value other than {value:,}"
