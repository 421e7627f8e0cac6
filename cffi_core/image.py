"""GuestImage, the in-memory P64 program image, and its ELF64 file format (write with struct, read with pyelftools)."""

from __future__ import annotations

import bisect
import io
import itertools
import os
import stat
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "ELFOSABI_STANDALONE",
    "EM_P64",
    "MAX_ELF_FILE_BYTES",
    "MAX_IMAGE_BYTES",
    "MAX_SEGMENTS",
    "GuestImage",
    "ImageError",
    "InputFileError",
    "Segment",
    "read_input_file",
]

EM_P64 = 0x7064  # e_machine of P64 images ("pd"); no registered number exists
ELFOSABI_STANDALONE = 255  # EI_OSABI: an embedded/standalone program, no operating system ABI

_MASK64 = (1 << 64) - 1

# ELF constants (System V gABI); only the ones this format uses.
_ELFCLASS64 = 2
_ELFDATA2LSB = 1
_EV_CURRENT = 1
_ET_EXEC = 2
_PT_LOAD = 1
_PF_X, _PF_W, _PF_R = 1, 2, 4
_SHT_PROGBITS, _SHT_SYMTAB, _SHT_STRTAB = 1, 2, 3
_SHF_WRITE, _SHF_ALLOC, _SHF_EXECINSTR = 1, 2, 4
_SHN_UNDEF = 0
_SHN_LORESERVE = 0xFF00
_SHN_ABS = 0xFFF1
_STB_GLOBAL = 1
_STT_NOTYPE, _STT_SECTION, _STT_FILE = 0, 3, 4

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # 64 bytes
_PHDR = struct.Struct("<IIQQQQQQ")  # 56 bytes
_SHDR = struct.Struct("<IIQQQQIIQQ")  # 64 bytes
_SYM = struct.Struct("<IBBHQQ")  # 24 bytes

# Limits (docs/limits.md).  An image holds every byte of its segments in host memory, a zero-
# filled PT_LOAD tail (p_memsz > p_filesz) included, and loading copies them into RAM again:
# 256 MiB bounds that, far above any guest of the suite (kilobytes), and it is checked from the
# program headers before anything is allocated, so a 500-byte file cannot ask for gigabytes.
MAX_IMAGE_BYTES = 1 << 28
# The ELF file has a section per segment besides the null section, .symtab, .strtab and
# .shstrtab, and e_shnum must stay below SHN_LORESERVE (gABI: larger counts need extended
# numbering): the most segments an image can have and still be written.
MAX_SEGMENTS = _SHN_LORESERVE - 5
# An image file is its segments' file bytes (at most MAX_IMAGE_BYTES) plus headers and symbols:
# 16 MiB more holds some 500,000 symbols, and bounds the memory their table can take.
MAX_ELF_FILE_BYTES = MAX_IMAGE_BYTES + (16 << 20)


class ImageError(ValueError):
    """A malformed image or image file; the message names the file and the offending part."""


class InputFileError(ValueError):
    """An input file that is not a regular file, or larger than its limit: ``str()`` is
    ``path: reason``, and ``path`` and ``reason`` are attributes."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[InputFileError], tuple[str, str]]:
        return type(self), (self.path, self.reason)  # args holds the joined message only


def read_input_file(path: str | os.PathLike[str], limit: int, what: str = "a file") -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; ``what`` says what
    the file is for messages, with its article ("a disk image").

    Anything else is refused before it is read: a FIFO, a character device such as
    ``/dev/zero`` or a directory (InputFileError: such a file can be endless, and waiting for
    a FIFO's writer can be forever), and a file of more than ``limit`` bytes (InputFileError
    naming ``what`` and the limit).  Failures of the operating system raise OSError.
    """
    name = os.fspath(path)
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer; a regular file ignores it.
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputFileError(name, f"not a regular file ({_file_kind(st.st_mode)}), so not read as {what}")
        if st.st_size > limit:
            raise InputFileError(name, f"{st.st_size} bytes is larger than the limit of {limit} bytes for {what}")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)  # one byte more shows a file that grew since fstat
    if len(data) > limit:
        raise InputFileError(name, f"more than the limit of {limit} bytes for {what}")
    return data


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a plain file"


@dataclass(frozen=True)
class Segment:
    """A run of initialised guest memory: ``data`` loaded at guest physical ``address``."""

    address: int
    data: bytes

    def __post_init__(self) -> None:
        # Accept bytearray/memoryview for convenience but store immutable bytes, so images hash-compare.
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))

    @property
    def end(self) -> int:
        """One past the last address of the segment."""
        return self.address + len(self.data)


@dataclass(frozen=True)
class GuestImage:
    """A loadable program: sorted, non-overlapping, non-empty segments, an entry point and symbols.

    ``symbols`` maps names to unsigned 64-bit values (addresses for labels, values for
    constants); ``constants`` names the symbols that are constants rather than addresses
    (written as SHN_ABS in ELF).  ``name`` and ``constants`` are informational and take no
    part in equality, so an image equals its ELF round trip.
    """

    segments: tuple[Segment, ...]
    entry: int
    symbols: Mapping[str, int] = field(default_factory=dict)
    name: str = field(default="<image>", compare=False)
    constants: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        segments = tuple(self.segments)
        if len(segments) > MAX_SEGMENTS:
            raise ImageError(f"{self.name}: {len(segments)} segments is more than the limit of {MAX_SEGMENTS}")
        total = 0
        for i, seg in enumerate(segments):
            if not isinstance(seg, Segment):
                raise ImageError(f"{self.name}: segment {i} is a {type(seg).__name__}, not a Segment")
            if not isinstance(seg.address, int) or seg.address < 0:
                raise ImageError(f"{self.name}: segment {i} has a bad address {seg.address!r}")
            if not seg.data:
                raise ImageError(f"{self.name}: segment {i} at {seg.address:#x} is empty")
            total += len(seg.data)
            if total > MAX_IMAGE_BYTES:
                raise ImageError(
                    f"{self.name}: segment {i} at {seg.address:#x} brings the image to {total:#x} bytes, "
                    f"more than the limit of {MAX_IMAGE_BYTES:#x}"
                )
            if seg.end > _MASK64 + 1:
                raise ImageError(
                    f"{self.name}: segment {i} at {seg.address:#x} runs past the end of the 64-bit address space"
                )
            if i and seg.address < segments[i - 1].end:
                prev = segments[i - 1]
                if seg.address < prev.address:
                    raise ImageError(
                        f"{self.name}: segment {i} at {seg.address:#x} is not sorted after segment {i - 1} at {prev.address:#x}"
                    )
                raise ImageError(
                    f"{self.name}: segment {i} at {seg.address:#x}-{seg.end - 1:#x} overlaps segment {i - 1} at {prev.address:#x}-{prev.end - 1:#x}"
                )
        if not isinstance(self.entry, int) or not 0 <= self.entry <= _MASK64:
            raise ImageError(f"{self.name}: entry point {self.entry!r} is not a 64-bit address")
        symbols: dict[str, int] = {}
        for sym, value in dict(self.symbols).items():
            if not isinstance(sym, str) or not sym or "\0" in sym:
                raise ImageError(f"{self.name}: bad symbol name {sym!r}")
            if not isinstance(value, int) or not 0 <= value <= _MASK64:
                raise ImageError(f"{self.name}: symbol {sym!r} has value {value!r}, not an unsigned 64-bit integer")
            symbols[sym] = value
        constants = frozenset(self.constants)
        unknown = constants - symbols.keys()
        if unknown:
            raise ImageError(f"{self.name}: constants {sorted(unknown)} are not symbols")
        object.__setattr__(self, "segments", segments)
        # A read-only view keeps the frozen dataclass honest: nobody can add a symbol behind its back.
        object.__setattr__(self, "symbols", MappingProxyType(symbols))
        object.__setattr__(self, "constants", constants)

    def __hash__(self) -> int:
        # The generated hash would fail on the symbols mapping; hash what equality compares.
        return hash((self.segments, self.entry, frozenset(self.symbols.items())))

    # ---- queries ----

    @property
    def start(self) -> int:
        """Lowest address covered by a segment (0 for an empty image)."""
        return self.segments[0].address if self.segments else 0

    @property
    def end(self) -> int:
        """Highest address covered by a segment, plus one (0 for an empty image)."""
        return self.segments[-1].end if self.segments else 0

    def read(self, address: int, size: int) -> bytes:
        """The ``size`` bytes at ``address``; every byte must lie in a segment (ImageError otherwise)."""
        if size < 0:
            raise ImageError(f"{self.name}: negative read size {size}")
        out = bytearray()
        addr, stop = address, address + size
        i = bisect.bisect_right([s.address for s in self.segments], addr) - 1
        while addr < stop:
            if i < 0 or i >= len(self.segments) or not self.segments[i].address <= addr < self.segments[i].end:
                raise ImageError(f"{self.name}: address {addr:#x} is not in any segment")
            seg = self.segments[i]
            take = min(stop, seg.end) - addr
            out += seg.data[addr - seg.address : addr - seg.address + take]
            addr += take
            i += 1
        return bytes(out)

    def symbol(self, name: str) -> int:
        """The value of symbol ``name`` (ImageError if the image has no such symbol)."""
        try:
            return self.symbols[name]
        except KeyError:
            raise ImageError(f"{self.name}: no symbol {name!r}") from None

    def segment_at(self, address: int) -> Segment | None:
        """The segment containing ``address``, or None."""
        i = bisect.bisect_right([s.address for s in self.segments], address) - 1
        if i >= 0 and address < self.segments[i].end:
            return self.segments[i]
        return None

    # ---- files ----

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, memory: int | None = None) -> GuestImage:
        """Read an ELF64 P64 image file (a regular file of at most MAX_ELF_FILE_BYTES).

        ``memory``, when given, is the RAM size of the machine the image is for: a segment
        that does not end below it is refused before anything is allocated."""
        name = os.fspath(path)
        try:
            data = read_input_file(name, MAX_ELF_FILE_BYTES, "an ELF image")
        except InputFileError as exc:
            raise ImageError(str(exc)) from None
        except OSError as exc:
            raise ImageError(f"{name}: cannot read: {exc.strerror or exc}") from None
        return cls.from_elf(data, name=name, memory=memory)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the image as an ELF64 file."""
        data = self.to_elf()
        with open(path, "wb") as f:
            f.write(data)

    def to_elf(self) -> bytes:
        """The image as an ELF64 little-endian ET_EXEC file for EM_P64: one RWX PT_LOAD and one
        ``.segN`` section per segment, ``.symtab`` (labels in their segment's section, constants
        and addresses outside every segment SHN_ABS), ``.strtab`` and ``.shstrtab``."""
        return _write_elf(self)

    @classmethod
    def from_elf(cls, data: bytes, name: str = "<elf>", *, memory: int | None = None) -> GuestImage:
        """Parse an ELF64 P64 image; every malformed input raises ImageError naming ``name``.

        The program headers are checked before any segment is built: at most MAX_SEGMENTS
        loadable segments of at most MAX_IMAGE_BYTES together (p_memsz, zero fill included),
        each ending at or below ``memory`` when that is given (the machine's RAM size)."""
        return _read_elf(bytes(data), name, memory)


# ---------------------------------------------------------------------------------------------
# Writing


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _write_elf(image: GuestImage) -> bytes:
    segs = image.segments
    name = image.name
    if not segs:
        raise ImageError(f"{name}: an image with no segments cannot be written as ELF (a P64 ELF needs a PT_LOAD)")
    n = len(segs)
    nsections = 1 + n + 3  # null, one per segment, .symtab, .strtab, .shstrtab: < SHN_LORESERVE (MAX_SEGMENTS)

    # shstrtab and strtab
    shstr = bytearray(b"\0")

    def shname(s: str) -> int:
        off = len(shstr)
        shstr.extend(s.encode() + b"\0")
        return off

    seg_names = [shname(f".seg{i}") for i in range(n)]
    symtab_name, strtab_name, shstrtab_name = shname(".symtab"), shname(".strtab"), shname(".shstrtab")

    strtab = bytearray(b"\0")
    starts = [s.address for s in segs]
    syms = [_SYM.pack(0, 0, 0, 0, 0, 0)]
    for sym, value in image.symbols.items():
        st_name = len(strtab)
        strtab.extend(sym.encode() + b"\0")
        shndx = _SHN_ABS
        if sym not in image.constants:
            i = bisect.bisect_right(starts, value) - 1
            if i >= 0 and value < segs[i].end:
                shndx = 1 + i
        syms.append(_SYM.pack(st_name, (_STB_GLOBAL << 4) | _STT_NOTYPE, 0, shndx, value, 0))
    symtab = b"".join(syms)

    # layout: ehdr, phdrs, segment data, symtab (8-aligned), strtab, shstrtab, section headers (8-aligned)
    off = _EHDR.size + _PHDR.size * n
    seg_offsets = []
    for s in segs:
        seg_offsets.append(off)
        off += len(s.data)
    symtab_off = _align(off, 8)
    strtab_off = symtab_off + len(symtab)
    shstrtab_off = strtab_off + len(strtab)
    shoff = _align(shstrtab_off + len(shstr), 8)

    out = bytearray()
    ident = b"\x7fELF" + bytes([_ELFCLASS64, _ELFDATA2LSB, _EV_CURRENT, ELFOSABI_STANDALONE]) + bytes(8)
    out += _EHDR.pack(
        ident,
        _ET_EXEC,
        EM_P64,
        _EV_CURRENT,
        image.entry,
        _EHDR.size,
        shoff,
        0,
        _EHDR.size,
        _PHDR.size,
        n,
        _SHDR.size,
        nsections,
        nsections - 1,
    )
    for s, o in zip(segs, seg_offsets, strict=True):
        # p_align 1: the loader copies bytes, it never maps file pages, so no congruence is needed.
        out += _PHDR.pack(_PT_LOAD, _PF_R | _PF_W | _PF_X, o, s.address, s.address, len(s.data), len(s.data), 1)
    for s in segs:
        out += s.data
    out += bytes(symtab_off - len(out))
    out += symtab + strtab + shstr
    out += bytes(shoff - len(out))
    out += _SHDR.pack(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    for i, (s, o) in enumerate(zip(segs, seg_offsets, strict=True)):
        out += _SHDR.pack(
            seg_names[i], _SHT_PROGBITS, _SHF_ALLOC | _SHF_WRITE | _SHF_EXECINSTR, s.address, o, len(s.data), 0, 0, 1, 0
        )
    # sh_info of .symtab = index of the first non-local symbol: every real symbol is global.
    out += _SHDR.pack(symtab_name, _SHT_SYMTAB, 0, 0, symtab_off, len(symtab), n + 2, 1, 8, _SYM.size)
    out += _SHDR.pack(strtab_name, _SHT_STRTAB, 0, 0, strtab_off, len(strtab), 0, 0, 1, 0)
    out += _SHDR.pack(shstrtab_name, _SHT_STRTAB, 0, 0, shstrtab_off, len(shstr), 0, 0, 1, 0)
    return bytes(out)


# ---------------------------------------------------------------------------------------------
# Reading


def _check_header(data: bytes, name: str) -> int:
    """Validate the ELF header with struct before pyelftools sees it, for precise messages;
    returns the entry point."""
    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise ImageError(f"{name}: not an ELF file (bad magic)")
    if len(data) < _EHDR.size:
        raise ImageError(f"{name}: truncated ELF header ({len(data)} bytes, need {_EHDR.size})")
    if data[4] != _ELFCLASS64:
        raise ImageError(f"{name}: ELF class {data[4]} is not ELFCLASS64 (P64 images are 64-bit)")
    if data[5] != _ELFDATA2LSB:
        raise ImageError(f"{name}: ELF data encoding {data[5]} is not ELFDATA2LSB (P64 images are little-endian)")
    if data[6] != _EV_CURRENT:
        raise ImageError(f"{name}: EI_VERSION {data[6]} is not EV_CURRENT")
    if data[7] not in (0, ELFOSABI_STANDALONE):
        raise ImageError(f"{name}: EI_OSABI {data[7]} is neither standalone (255) nor System V (0)")
    hdr = _EHDR.unpack_from(data)
    (
        _,
        e_type,
        e_machine,
        e_version,
        entry,
        e_phoff,
        e_shoff,
        _flags,
        e_ehsize,
        e_phentsize,
        e_phnum,
        e_shentsize,
        e_shnum,
        e_shstrndx,
    ) = hdr
    if e_type != _ET_EXEC:
        raise ImageError(f"{name}: e_type {e_type} is not ET_EXEC")
    if e_machine != EM_P64:
        raise ImageError(f"{name}: e_machine {e_machine:#x} is not EM_P64 ({EM_P64:#x})")
    if e_version != _EV_CURRENT:
        raise ImageError(f"{name}: e_version {e_version} is not EV_CURRENT")
    if e_ehsize != _EHDR.size:
        raise ImageError(f"{name}: e_ehsize {e_ehsize} is not {_EHDR.size}")
    if e_phnum == 0:
        raise ImageError(f"{name}: no program headers, so no segments to load")
    if e_phentsize != _PHDR.size:
        raise ImageError(f"{name}: e_phentsize {e_phentsize} is not {_PHDR.size}")
    if e_phoff + e_phnum * _PHDR.size > len(data):
        raise ImageError(
            f"{name}: program header table ({e_phnum} entries at offset {e_phoff:#x}) runs past the end of the file ({len(data)} bytes)"
        )
    if e_shoff or e_shnum:
        if e_shoff == 0 or e_shnum == 0:
            # e_shnum == 0 with e_shoff set means "extended numbering", which no P64 image needs.
            raise ImageError(f"{name}: section header table: e_shoff {e_shoff:#x} with e_shnum {e_shnum}")
        if e_shentsize != _SHDR.size:
            raise ImageError(f"{name}: e_shentsize {e_shentsize} is not {_SHDR.size}")
        if e_shoff + e_shnum * _SHDR.size > len(data):
            raise ImageError(
                f"{name}: section header table ({e_shnum} entries at offset {e_shoff:#x}) runs past the end of the file ({len(data)} bytes)"
            )
        if e_shstrndx >= e_shnum:
            raise ImageError(f"{name}: e_shstrndx {e_shstrndx} is not a section (there are {e_shnum})")
    return entry


def _read_elf(data: bytes, name: str, memory: int | None) -> GuestImage:
    entry = _check_header(data, name)
    loads = _check_program_headers(data, name, memory)
    # pyelftools raises a zoo of exceptions on corrupt input (its own, construct's, struct's,
    # IndexError, UnicodeDecodeError, ...); each becomes one ImageError naming the file.
    from elftools.common.exceptions import ELFError, ELFParseError  # local: keep `import popek` light
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(io.BytesIO(data))
        symbols, constants = _read_symbols(elf, data, name)
    except ImageError:
        raise
    except (
        ELFError,
        ELFParseError,
        struct.error,
        IndexError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        OverflowError,
        UnicodeDecodeError,
        AssertionError,
    ) as exc:
        raise ImageError(f"{name}: malformed ELF: {exc or type(exc).__name__}") from None
    except Exception as exc:  # construct's errors have no common importable base across versions
        if type(exc).__module__.startswith("elftools"):
            raise ImageError(f"{name}: malformed ELF: {exc or type(exc).__name__}") from None
        raise
    # p_memsz > p_filesz: the tail is zero fill (a .bss), materialised here, within the limits checked.
    segments = tuple(Segment(a, data[off : off + filesz] + bytes(memsz - filesz)) for a, off, filesz, memsz in loads)
    return GuestImage(segments, entry, symbols, name=name, constants=constants)


def _check_program_headers(data: bytes, name: str, memory: int | None) -> list[tuple[int, int, int, int]]:
    """Every PT_LOAD with p_memsz > 0 as (p_vaddr, p_offset, p_filesz, p_memsz), sorted by address,
    checked with struct from the header table alone, so nothing is allocated for a bad one.

    The header table's position and entry size were checked by ``_check_header``."""
    e_phoff, e_phnum = struct.unpack_from("<Q", data, 0x20)[0], struct.unpack_from("<H", data, 0x38)[0]
    found: list[tuple[int, int, int, int, int]] = []
    total = 0
    for i in range(e_phnum):
        p_type, _flags, off, vaddr, _paddr, filesz, memsz, _align = _PHDR.unpack_from(data, e_phoff + i * _PHDR.size)
        if p_type != _PT_LOAD:
            continue  # notes and the like carry nothing to load
        where = f"{name}: program header {i} (PT_LOAD at {vaddr:#x})"
        if filesz > memsz:
            raise ImageError(f"{where}: p_filesz {filesz:#x} > p_memsz {memsz:#x}")
        if off + filesz > len(data):
            raise ImageError(
                f"{where}: file data (offset {off:#x}, size {filesz:#x}) runs past the end of the file ({len(data)} bytes)"
            )
        if memsz == 0:
            continue
        if vaddr + memsz > _MASK64 + 1:
            raise ImageError(f"{where}: segment runs past the end of the 64-bit address space")
        if memory is not None and vaddr + memsz > memory:
            raise ImageError(
                f"{where}: {vaddr:#x}-{vaddr + memsz - 1:#x} does not fit in the machine's {memory:#x} bytes of RAM"
            )
        if memsz > MAX_IMAGE_BYTES:
            raise ImageError(f"{where}: p_memsz {memsz:#x} is larger than the limit {MAX_IMAGE_BYTES:#x} of an image")
        total += memsz
        if total > MAX_IMAGE_BYTES:
            raise ImageError(
                f"{where}: p_memsz {memsz:#x} brings the image to {total:#x} bytes, "
                f"more than the limit {MAX_IMAGE_BYTES:#x} of an image"
            )
        if len(found) == MAX_SEGMENTS:
            raise ImageError(f"{where}: more than the limit of {MAX_SEGMENTS} loadable segments")
        found.append((vaddr, i, off, filesz, memsz))
    if not found:
        raise ImageError(f"{name}: no PT_LOAD segments")
    found.sort(key=lambda t: t[0])
    for (a0, i0, *_, m0), (a1, i1, *_, m1) in itertools.pairwise(found):
        if a1 < a0 + m0:
            raise ImageError(
                f"{name}: program headers {i0} and {i1} overlap ({a0:#x}-{a0 + m0 - 1:#x} and {a1:#x}-{a1 + m1 - 1:#x})"
            )
    return [(vaddr, off, filesz, memsz) for vaddr, _, off, filesz, memsz in found]


def _read_symbols(elf, data: bytes, name: str) -> tuple[dict[str, int], frozenset[str]]:
    from elftools.elf.sections import SymbolTableSection

    symbols: dict[str, int] = {}
    constants: set[str] = set()
    nsec = elf.num_sections()
    for si in range(nsec):
        sh = elf._get_section_header(si)  # raw header first: the checks below need no names
        if sh["sh_type"] != "SHT_SYMTAB":
            continue
        where = f"{name}: symbol table (section {si})"
        off, size, entsize, link = sh["sh_offset"], sh["sh_size"], sh["sh_entsize"], sh["sh_link"]
        if entsize != _SYM.size or size % _SYM.size:
            raise ImageError(
                f"{where}: entry size {entsize} / table size {size} is not a whole number of {_SYM.size}-byte entries"
            )
        if off + size > len(data):
            raise ImageError(f"{where}: data (offset {off:#x}, size {size:#x}) runs past the end of the file")
        if not 0 < link < nsec:
            raise ImageError(f"{where}: sh_link {link} is not a section")
        strh = elf._get_section_header(link)
        if strh["sh_type"] != "SHT_STRTAB":
            raise ImageError(f"{where}: sh_link {link} is not a string table")
        if strh["sh_offset"] + strh["sh_size"] > len(data):
            raise ImageError(f"{where}: string table (section {link}) runs past the end of the file")
        strtab = data[strh["sh_offset"] : strh["sh_offset"] + strh["sh_size"]]
        section = elf.get_section(si)
        if not isinstance(section, SymbolTableSection):
            raise ImageError(f"{where}: not readable as a symbol table")
        for k, sym in enumerate(section.iter_symbols()):
            st_name = sym["st_name"]
            if k == 0 or sym["st_info"]["type"] in ("STT_SECTION", "STT_FILE") or st_name == 0:
                continue
            # pyelftools reads names straight from the file with no bound: check them here.
            if st_name >= len(strtab) or strtab.find(b"\0", st_name) < 0:
                raise ImageError(f"{where}: symbol {k}: name offset {st_name:#x} is not a string in the string table")
            raw = strtab[st_name : strtab.index(b"\0", st_name)]
            try:
                label = raw.decode()
            except UnicodeDecodeError:
                raise ImageError(f"{where}: symbol {k}: name is not UTF-8") from None
            value = sym["st_value"]
            if label in symbols and symbols[label] != value:
                raise ImageError(f"{where}: symbol {label!r} defined twice ({symbols[label]:#x} and {value:#x})")
            symbols[label] = value
            if sym["st_shndx"] == "SHN_ABS":
                constants.add(label)
    return symbols, frozenset(constants)
