"""GuestImage and ELF64 tests: validation, round trip, pyelftools/readelf readability, malformed files."""

from __future__ import annotations

import contextlib
import io
import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cffi_core.asm import assemble
from cffi_core.image import EM_P64, GuestImage, ImageError, Segment

SETTINGS = settings(derandomize=True, deadline=None, max_examples=200)

SOURCE = """
        .equ LIMIT, 0x40
        .org 0x1000
_start: li r1, LIMIT
loop:   addi r1, r1, -1
        bnez r1, loop
        hlt
        .org 0x3000
data:   .quad 1, 2
msg:    .asciz "ok"
"""


@pytest.fixture(scope="module")
def image() -> GuestImage:
    return assemble(SOURCE, filename="small.s")


@pytest.fixture(scope="module")
def elf(image) -> bytes:
    return image.to_elf()


# ---- GuestImage ----


def test_image_queries(image):
    assert [s.address for s in image.segments] == [0x1000, 0x3000]
    assert image.end == 0x3000 + 16 + 3
    assert image.start == 0x1000
    assert image.read(0x3008, 8) == (2).to_bytes(8, "little")
    assert image.symbol("msg") == 0x3010
    assert image.segment_at(0x1004) is image.segments[0] and image.segment_at(0x2000) is None


def test_read_outside_segments_and_unknown_symbol_raise_image_error(image):
    with pytest.raises(ImageError, match=r"small\.s: address 0x1010 is not in any segment"):
        image.read(0x100C, 8)
    with pytest.raises(ImageError, match=r"small\.s: no symbol 'nope'"):
        image.symbol("nope")


def test_read_spans_adjacent_segments():
    img = GuestImage((Segment(0, b"ab"), Segment(2, b"cd")), 0, {})
    assert img.read(1, 3) == b"bcd"


@pytest.mark.parametrize(
    ("segments", "message"),
    [
        ((Segment(0, b""),), "segment 0 at 0x0 is empty"),
        ((Segment(0x10, b"ab"), Segment(0x11, b"c")), "segment 1 at 0x11-0x11 overlaps segment 0 at 0x10-0x11"),
        ((Segment(0x10, b"a"), Segment(0x0, b"b")), "segment 1 at 0x0 is not sorted after segment 0 at 0x10"),
        ((Segment(-1, b"a"),), "segment 0 has a bad address -1"),
        ((Segment((1 << 64) - 1, b"ab"),), "runs past the end of the 64-bit address space"),
    ],
)
def test_image_validates_segments(segments, message):
    with pytest.raises(ImageError, match="^img: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        GuestImage(segments, 0, {}, name="img")


def test_image_validates_entry_and_symbols():
    with pytest.raises(ImageError, match="entry point"):
        GuestImage((), -1, {})
    with pytest.raises(ImageError, match="symbol 'x' has value -1"):
        GuestImage((), 0, {"x": -1})
    with pytest.raises(ImageError, match="bad symbol name ''"):
        GuestImage((), 0, {"": 1})


def test_image_is_immutable_and_equality_ignores_name():
    a = GuestImage([Segment(0, bytearray(b"x"))], 0, {"s": 0}, name="a")
    b = GuestImage((Segment(0, b"x"),), 0, {"s": 0}, name="b")
    assert a == b and isinstance(a.segments, tuple) and isinstance(a.segments[0].data, bytes)
    with pytest.raises(TypeError):
        a.symbols["t"] = 1
    assert hash(a) == hash(b) and len({a, b}) == 1


# ---- ELF writing and round trip ----


def test_elf_round_trip_preserves_segments_entry_and_symbols(image, elf):
    back = GuestImage.from_elf(elf, name="x.elf")
    assert back == image
    assert back.constants == {"LIMIT"} and back.name == "x.elf"


def test_save_and_load(tmp_path, image):
    path = tmp_path / "prog.elf"
    image.save(path)
    loaded = GuestImage.load(path)
    assert loaded == image and loaded.name == str(path)


def test_load_of_a_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.elf: cannot read"):
        GuestImage.load(tmp_path / "nope.elf")


def test_empty_image_cannot_be_written():
    with pytest.raises(ImageError, match="no segments"):
        GuestImage((), 0, {}).to_elf()


@st.composite
def images(draw):
    n = draw(st.integers(1, 4))
    addrs = sorted(draw(st.sets(st.integers(0, 1 << 20), min_size=n, max_size=n)))
    segments, cursor = [], 0
    for a in addrs:
        a = max(a, cursor)  # keep segments apart
        data = draw(st.binary(min_size=1, max_size=40))
        segments.append(Segment(a, data))
        cursor = a + len(data) + 1
    names = draw(st.lists(st.from_regex(r"[A-Za-z_.$][A-Za-z0-9_.$]{0,12}", fullmatch=True), max_size=6, unique=True))
    symbols = {n: draw(st.integers(0, (1 << 64) - 1)) for n in names}
    entry = draw(st.integers(0, (1 << 64) - 1))
    return GuestImage(tuple(segments), entry, symbols)


@given(images())
@SETTINGS
def test_elf_round_trip_of_generated_images(img):
    assert GuestImage.from_elf(img.to_elf()) == img


def test_elf_header_and_program_headers_are_as_specified(image, elf):
    from elftools.elf.elffile import ELFFile

    f = ELFFile(io.BytesIO(elf))
    assert f.elfclass == 64 and f.little_endian
    assert f["e_type"] == "ET_EXEC" and f["e_machine"] == EM_P64 and f["e_entry"] == 0x1000
    assert f["e_ident"]["EI_OSABI"] in (255, "ELFOSABI_STANDALONE")
    loads = [s.header for s in f.iter_segments()]
    assert [(h.p_type, h.p_vaddr, h.p_paddr, h.p_filesz, h.p_memsz, h.p_flags) for h in loads] == [
        ("PT_LOAD", s.address, s.address, len(s.data), len(s.data), 7) for s in image.segments
    ]
    assert [s.data() for s in f.iter_segments()] == [s.data for s in image.segments]
    names = [s.name for s in f.iter_sections()]
    assert names == ["", ".seg0", ".seg1", ".symtab", ".strtab", ".shstrtab"]
    assert f.get_section_by_name(".seg0")["sh_flags"] == 7


def test_pyelftools_reads_the_symbols(elf):
    from elftools.elf.elffile import ELFFile

    symtab = ELFFile(io.BytesIO(elf)).get_section_by_name(".symtab")
    syms = {s.name: s for s in symtab.iter_symbols() if s.name}
    assert {n: s["st_value"] for n, s in syms.items()} == {
        "LIMIT": 0x40, "_start": 0x1000, "loop": 0x1004, "data": 0x3000, "msg": 0x3010,
    }  # fmt: skip
    assert syms["LIMIT"]["st_shndx"] == "SHN_ABS"
    assert syms["_start"]["st_shndx"] == 1 and syms["msg"]["st_shndx"] == 2
    assert all(s["st_info"]["bind"] == "STB_GLOBAL" and s["st_info"]["type"] == "STT_NOTYPE" for s in syms.values())


def test_label_outside_every_segment_is_absolute():
    img = assemble("nop\nafter:")
    from elftools.elf.elffile import ELFFile

    sym = ELFFile(io.BytesIO(img.to_elf())).get_section_by_name(".symtab").get_symbol_by_name("after")[0]
    assert sym["st_shndx"] == "SHN_ABS" and sym["st_value"] == 4


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils readelf not installed")
def test_readelf_reads_the_file_without_complaint(tmp_path, elf):
    path = tmp_path / "prog.elf"
    path.write_bytes(elf)
    result = subprocess.run(
        ["readelf", "-W", "-h", "-l", "-S", "-s", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stderr == ""
    out = result.stdout
    assert "EXEC (Executable file)" in out and "0x7064" in out and "ELF64" in out
    for name in ("_start", "loop", "data", "msg", "LIMIT", ".seg0", ".seg1", ".symtab"):
        assert name in out
    assert "0000000000001004     0 NOTYPE  GLOBAL DEFAULT    1 loop" in out


# ---- malformed ELF ----


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


PH = 64  # the first program header
SEG1_PH = PH + 56


def shdr_offset(data: bytes, index: int) -> int:
    return struct.unpack_from("<Q", data, 0x28)[0] + 64 * index


def expect_error(data: bytes, pattern: str) -> None:
    with pytest.raises(ImageError, match=pattern):
        GuestImage.from_elf(data, name="bad.elf")


def test_truncation_at_every_offset_is_an_image_error(elf):
    for n in range(len(elf)):
        with pytest.raises(ImageError, match=r"^bad\.elf: "):
            GuestImage.from_elf(elf[:n], name="bad.elf")


def test_flipping_any_byte_gives_an_image_or_an_image_error(elf):
    for i in range(len(elf)):
        for mask in (0xFF, 0x01, 0x80):
            data = bytearray(elf)
            data[i] ^= mask
            try:
                GuestImage.from_elf(bytes(data), name="bad.elf")
            except ImageError as exc:
                assert str(exc).startswith("bad.elf: ")


@given(st.data())
@SETTINGS
def test_random_corruption_gives_an_image_or_an_image_error(elf, data):
    buf = bytearray(elf)
    for _ in range(data.draw(st.integers(1, 8))):
        buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ImageError):
        GuestImage.from_elf(bytes(buf), name="bad.elf")


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "pattern"),
    [
        (0, "<B", 0x7E, r"^bad\.elf: not an ELF file \(bad magic\)$"),
        (4, "<B", 1, r"ELF class 1 is not ELFCLASS64"),
        (5, "<B", 2, r"not ELFDATA2LSB"),
        (6, "<B", 0, r"EI_VERSION 0"),
        (7, "<B", 3, r"EI_OSABI 3"),
        (0x10, "<H", 3, r"e_type 3 is not ET_EXEC"),
        (0x12, "<H", 0x3E, r"e_machine 0x3e is not EM_P64 \(0x7064\)"),
        (0x14, "<I", 2, r"e_version 2"),
        (0x34, "<H", 52, r"e_ehsize 52"),
        (0x36, "<H", 32, r"e_phentsize 32"),
        (0x38, "<H", 0, r"no program headers"),
        (0x38, "<H", 200, r"program header table \(200 entries at offset 0x40\) runs past the end of the file"),
        (0x20, "<Q", 1 << 40, r"program header table .* runs past the end"),
        (0x28, "<Q", 1 << 40, r"section header table .* runs past the end"),
        (0x3A, "<H", 40, r"e_shentsize 40"),
        (0x3E, "<H", 99, r"e_shstrndx 99 is not a section"),
        (PH + 8, "<Q", 1 << 32, r"program header 0 \(PT_LOAD at 0x1000\): file data .* runs past the end of the file"),
        (PH + 32, "<Q", 0x100, r"program header 0 \(PT_LOAD at 0x1000\): p_filesz 0x100 > p_memsz 0x"),
        (PH + 40, "<Q", 1 << 40, r"p_memsz 0x10000000000 is larger than the limit"),
        (SEG1_PH + 16, "<Q", 0x1008, r"program headers 0 and 1 overlap \(0x1000-0x100f and 0x1008-0x101a\)"),
        (SEG1_PH + 16, "<Q", (1 << 64) - 8, r"runs past the end of the 64-bit address space"),
    ],
)
def test_malformed_header_fields_are_named(elf, offset, fmt, value, pattern):
    expect_error(patched(elf, offset, fmt, value), pattern)


def test_no_loadable_segments_is_an_error(elf):
    data = patched(patched(elf, PH, "<I", 4), SEG1_PH, "<I", 4)  # both PT_NOTE
    expect_error(data, r"no PT_LOAD segments")


def test_memsz_larger_than_filesz_is_zero_fill(elf, image):
    data = patched(elf, SEG1_PH + 40, "<Q", 64)
    img = GuestImage.from_elf(data)
    assert img.segments[1].data == image.segments[1].data + bytes(64 - len(image.segments[1].data))


def test_symbol_table_garbage_is_an_error(elf):
    symtab = shdr_offset(elf, 3)
    expect_error(patched(elf, symtab + 0x38, "<Q", 16), r"symbol table \(section 3\): entry size 16")
    expect_error(patched(elf, symtab + 0x20, "<Q", 25), r"symbol table \(section 3\): entry size 24 / table size 25")
    expect_error(
        patched(elf, symtab + 0x18, "<Q", len(elf) - 8), r"symbol table \(section 3\): data .* runs past the end"
    )
    expect_error(patched(elf, symtab + 0x28, "<I", 77), r"sh_link 77 is not a section")
    expect_error(patched(elf, symtab + 0x28, "<I", 1), r"sh_link 1 is not a string table")
    sym1 = struct.unpack_from("<Q", elf, symtab + 0x18)[0] + 24
    expect_error(patched(elf, sym1, "<I", 0xFFFF), r"symbol 1: name offset 0xffff is not a string")


def test_non_elf_input_is_an_error():
    expect_error(b"", r"bad magic")
    expect_error(b"\x7fELF", r"truncated ELF header \(4 bytes, need 64\)")
    expect_error(b"nop\n" * 20, r"bad magic")
