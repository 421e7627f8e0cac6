"""p64os's disk image tool (conformance/guest_os/mkfs.py): layout, round trips, refusals and the command line."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cffi_core.devices import SECTOR_SIZE as DEVICE_SECTOR_SIZE
from conformance.guest_os import mkfs
from conformance.guest_os.mkfs import (
    DATA_START,
    FS_MAGIC,
    MAX_FILES,
    NAME_MAX,
    SECTOR_SIZE,
    main,
    make_fs,
    read_directory,
    read_fs,
)

# ---- an independent reading of the format (the module docstring's tables, by hand) -------

_NAME_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "/")


def _expected_layout(files: Mapping[str, bytes], capacity: Mapping[str, int], spare: int) -> tuple[list, int]:
    """(name, start, capacity, size) in sorted order, and the total sectors, from the rules alone."""
    names = sorted(set(files) | set(capacity))
    rows, start = [], 5  # superblock (1) + directory (4)
    for name in names:
        size = len(files.get(name, b""))
        room = capacity.get(name, max(1, (size + 511) // 512))
        rows.append((name, start, room, size))
        start += room
    return rows, start + spare


def _raw_entry(image: bytes, i: int) -> tuple[bytes, int, int, int]:
    base = 512 + 32 * i
    return (
        image[base : base + 16],
        int.from_bytes(image[base + 16 : base + 20], "little"),
        int.from_bytes(image[base + 20 : base + 24], "little"),
        int.from_bytes(image[base + 24 : base + 32], "little"),
    )


def _check_bytes(image: bytes, files: Mapping[str, bytes], capacity: Mapping[str, int], spare: int) -> None:
    rows, total = _expected_layout(files, capacity, spare)
    assert len(image) == total * 512
    assert image[0:8] == b"P64OSFS\0"
    quads = [int.from_bytes(image[o : o + 8], "little") for o in range(8, 48, 8)]
    assert quads == [1, len(rows), total, 4, 5]
    assert not any(image[48:512])
    for i, (name, start, room, size) in enumerate(rows):
        assert _raw_entry(image, i) == (name.encode().ljust(16, b"\0"), start, room, size)
        extent = image[start * 512 : (start + room) * 512]
        assert extent == files.get(name, b"").ljust(room * 512, b"\0")
    assert not any(image[512 + 32 * len(rows) : 5 * 512])  # unused entries
    assert not any(image[(total - spare) * 512 :])  # spare sectors


# ---- strategies ----------------------------------------------------------------------------

_names = st.text(alphabet=_NAME_CHARS, min_size=1, max_size=NAME_MAX)
_files = st.dictionaries(_names, st.binary(max_size=1500), max_size=12)


@st.composite
def _fs_inputs(draw: st.DrawFn) -> tuple[dict[str, bytes], dict[str, int], int]:
    files = draw(_files)
    capacity: dict[str, int] = {}
    for name, data in files.items():
        if draw(st.booleans()):
            capacity[name] = max(1, (len(data) + 511) // 512) + draw(st.integers(0, 3))
    for name in draw(st.lists(_names, max_size=4)):
        if name not in files:
            capacity[name] = draw(st.integers(1, 4))
    return files, capacity, draw(st.integers(0, 5))


# ---- round trips and layout ---------------------------------------------------------------


@given(_fs_inputs())
def test_round_trip_gives_back_every_file(inputs):
    files, capacity, spare = inputs
    image = make_fs(files, capacity=capacity, spare_sectors=spare)
    expected = {name: files.get(name, b"") for name in sorted(set(files) | set(capacity))}
    assert read_fs(image) == expected
    assert list(read_fs(image)) == sorted(expected)  # directory order is name order


@given(_fs_inputs())
def test_image_bytes_follow_the_documented_layout(inputs):
    files, capacity, spare = inputs
    _check_bytes(make_fs(files, capacity=capacity, spare_sectors=spare), files, capacity, spare)


@given(_fs_inputs(), st.randoms(use_true_random=False))
def test_same_files_in_any_order_give_the_same_bytes(inputs, rnd):
    files, capacity, spare = inputs
    shuffled_names = list(files)
    rnd.shuffle(shuffled_names)
    shuffled = {n: files[n] for n in shuffled_names}
    a = make_fs(files, capacity=capacity, spare_sectors=spare)
    b = make_fs(shuffled, capacity=dict(reversed(list(capacity.items()))), spare_sectors=spare)
    assert a == b


@pytest.mark.parametrize(("size", "sectors"), [(0, 1), (1, 1), (511, 1), (512, 1), (513, 2), (5000, 10)])
def test_default_capacity_is_the_size_in_sectors_rounded_up_at_least_one(size, sectors):
    (entry,) = read_directory(make_fs({"f": b"\x5a" * size}))
    assert entry == ("f", DATA_START, sectors, size)


def test_an_empty_file_system_is_superblock_and_directory_only():
    image = make_fs({})
    assert len(image) == 5 * 512 and read_fs(image) == {}
    assert len(make_fs({}, spare_sectors=7)) == 12 * 512


def test_capacity_only_names_are_empty_files_with_room():
    image = make_fs({"in": b"abc"}, capacity={"out": 8})
    assert read_directory(image) == [("in", 5, 1, 3), ("out", 6, 8, 0)]


def test_the_longest_name_and_the_most_files_fit():
    files = {f"{i:0{NAME_MAX}d}": bytes([i]) for i in range(MAX_FILES)}
    assert read_fs(make_fs(files)) == files


def test_constants_agree_with_the_machine_and_the_platform():
    # docs/limits.md's row: | `MAX_DISK_BYTES` | 268,435,456 (256 MiB) | ...
    limits = (Path(__file__).parents[2] / "docs" / "limits.md").read_text()
    match = re.search(r"^\| `MAX_DISK_BYTES` \| ([\d,]+) ", limits, re.MULTILINE)
    assert match is not None
    assert SECTOR_SIZE == DEVICE_SECTOR_SIZE
    assert int(match.group(1).replace(",", "")) == mkfs.MAX_IMAGE_BYTES
    assert FS_MAGIC.to_bytes(8, "little") == b"P64OSFS\0"
    assert MAX_FILES == 64 and mkfs.ENTRY_SIZE * mkfs.ENTRIES_PER_SECTOR == SECTOR_SIZE


# ---- make_fs refusals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("a" * (NAME_MAX + 1), "at most 15"),
        ("caf\u00e9", "printable ASCII"),
        ("a b", "printable ASCII"),
        ("a/b", "printable ASCII"),
        ("tab\t", "printable ASCII"),
        ("nul\0", "printable ASCII"),
    ],
)
def test_bad_names_are_refused(name, why):
    with pytest.raises(ValueError, match=why):
        make_fs({name: b""})
    with pytest.raises(ValueError, match=why):
        make_fs({}, capacity={name: 1})


class _Repeating(Mapping[str, bytes]):
    """A mapping whose iteration yields a name twice (what a file list with a duplicate gives)."""

    def __getitem__(self, key: str) -> bytes:
        return b"x"

    def __iter__(self) -> Iterator[str]:
        return iter(["dup", "dup"])

    def __len__(self) -> int:
        return 2


def test_a_duplicate_name_is_refused():
    with pytest.raises(ValueError, match="'dup': appears twice"):
        make_fs(_Repeating())


def test_too_many_files_are_refused():
    with pytest.raises(ValueError, match="at most 64"):
        make_fs({f"f{i}": b"" for i in range(MAX_FILES + 1)})
    with pytest.raises(ValueError, match="at most 64"):
        make_fs({f"f{i}": b"" for i in range(MAX_FILES)}, capacity={"extra": 1})


def test_a_file_larger_than_its_capacity_is_refused():
    make_fs({"f": b"x" * 1024}, capacity={"f": 2})
    with pytest.raises(ValueError, match="1025 bytes do not fit its capacity of 2 sectors"):
        make_fs({"f": b"x" * 1025}, capacity={"f": 2})


@pytest.mark.parametrize("room", [0, -1, True, 1.5, "2"])
def test_a_capacity_that_is_not_a_positive_int_is_refused(room):
    with pytest.raises(ValueError, match="capacity"):
        make_fs({"f": b""}, capacity={"f": room})


@pytest.mark.parametrize("spare", [-1, True, 2.0])
def test_bad_spare_sectors_are_refused(spare):
    with pytest.raises(ValueError, match="spare_sectors"):
        make_fs({}, spare_sectors=spare)


def test_contents_must_be_bytes():
    with pytest.raises(ValueError, match="must be bytes"):
        make_fs({"f": "text"})  # type: ignore[dict-item]


def test_an_image_beyond_the_platform_limit_is_refused():
    fits = mkfs.MAX_IMAGE_BYTES // 512 - DATA_START
    assert len(make_fs({}, spare_sectors=fits)) == mkfs.MAX_IMAGE_BYTES
    with pytest.raises(ValueError, match="more than"):
        make_fs({}, spare_sectors=fits + 1)


# ---- read_fs refusals --------------------------------------------------------------------


def _good() -> bytearray:
    return bytearray(make_fs({"alpha": b"A" * 700, "beta": b"B" * 10}, capacity={"gamma": 2}, spare_sectors=1))


def _entry_off(i: int, field: int) -> int:
    return 512 + 32 * i + field


def _set(image: bytearray, offset: int, fmt: str, value: int) -> bytearray:
    struct.pack_into(fmt, image, offset, value)
    return image


def _corruptions() -> list[tuple[str, bytes, str]]:
    g = _good
    cases = [
        ("not whole sectors", bytes(g()) + b"\0", "whole number"),
        ("too short", bytes(g()[: 4 * 512]), "shorter than"),
        ("magic", g()[:0] + b"X" + g()[1:], "magic"),
        ("version", _set(g(), 8, "<Q", 2), "version 2"),
        ("nfiles", _set(g(), 16, "<Q", 65), "65 files"),
        ("total", _set(g(), 24, "<Q", 9), "9 sectors"),
        ("dir sectors", _set(g(), 32, "<Q", 3), "directory of 3"),
        ("data start", _set(g(), 40, "<Q", 6), "data at 6"),
        ("extent before data", _set(g(), _entry_off(0, 16), "<I", 4), "not inside"),
        ("extent past end", _set(g(), _entry_off(2, 16), "<I", 10), "not inside"),
        ("zero capacity", _set(g(), _entry_off(1, 20), "<I", 0), "not inside"),
        ("overlap", _set(g(), _entry_off(1, 16), "<I", 6), "overlap"),
        ("size", _set(g(), _entry_off(1, 24), "<Q", 513), "size 513 exceeds"),
        ("unused entry", _set(g(), _entry_off(3, 24), "<Q", 1), "unused"),
        ("fewer files", _set(g(), 16, "<Q", 2), "unused"),
    ]
    dup = g()
    dup[_entry_off(1, 0) : _entry_off(1, 16)] = b"alpha".ljust(16, b"\0")
    cases.append(("duplicate name", bytes(dup), "appears twice"))
    bad = g()
    bad[_entry_off(0, 0)] = 0xE9
    cases.append(("non-ASCII name", bytes(bad), "bad name"))
    empty = g()
    empty[_entry_off(0, 0) : _entry_off(0, 16)] = bytes(16)
    cases.append(("empty name", bytes(empty), "bad name"))
    padded = g()
    padded[_entry_off(0, 15)] = ord("x")
    cases.append(("bytes after the NUL", bytes(padded), "after the name's NUL"))
    long_name = g()
    long_name[_entry_off(0, 0) : _entry_off(0, 16)] = b"p" * 16
    cases.append(("no NUL", bytes(long_name), "bad name"))
    return [(label, bytes(img), match) for label, img, match in cases]


def test_the_unchanged_image_used_below_reads_back():
    assert read_fs(bytes(_good())) == {"alpha": b"A" * 700, "beta": b"B" * 10, "gamma": b""}


@pytest.mark.parametrize(("label", "image", "match"), _corruptions(), ids=[c[0] for c in _corruptions()])
def test_a_malformed_image_is_refused(label, image, match):
    with pytest.raises(ValueError, match=match):
        read_fs(image)


@given(st.lists(st.tuples(st.integers(0, DATA_START * 512 - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_read_fs_of_a_damaged_image_returns_valid_files_or_raises_value_error(edits):
    image = _good()
    for offset, value in edits:
        image[offset] = value
    try:
        files = read_fs(bytes(image))
    except ValueError:
        return
    assert len(files) <= MAX_FILES
    for name, data in files.items():
        assert 1 <= len(name) <= NAME_MAX and set(name) <= set(_NAME_CHARS)
        assert len(data) <= len(image) - DATA_START * 512


# ---- the command line --------------------------------------------------------------------


def test_cli_builds_the_image_of_a_directory(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_bytes(b"hello, disk\n")
    (src / "big").write_bytes(bytes(range(256)) * 5)
    out = tmp_path / "disk.img"
    assert main([str(src), "-o", str(out), "--capacity", "log=4", "--capacity", "big=6", "--spare", "2"]) == 0
    image = out.read_bytes()
    assert image == make_fs(
        {"hello.txt": b"hello, disk\n", "big": bytes(range(256)) * 5}, capacity={"log": 4, "big": 6}, spare_sectors=2
    )
    assert read_fs(image) == {"big": bytes(range(256)) * 5, "hello.txt": b"hello, disk\n", "log": b""}
    assert "3 files" in capsys.readouterr().out


def test_cli_refuses_a_subdirectory_and_bad_names(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    assert main([str(src), "-o", str(tmp_path / "x.img")]) == 1
    assert "not a regular file" in capsys.readouterr().err
    (src / "sub").rmdir()
    (src / ("n" * 16)).write_bytes(b"")
    assert main([str(src), "-o", str(tmp_path / "x.img")]) == 1
    assert "at most 15" in capsys.readouterr().err
    assert not (tmp_path / "x.img").exists()
    assert main([str(tmp_path / "missing"), "-o", str(tmp_path / "x.img")]) == 1
    with pytest.raises(SystemExit) as exc:
        main([str(src), "-o", str(tmp_path / "x.img"), "--capacity", "nosectors"])
    assert exc.value.code == 2


def test_cli_runs_as_a_module(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"A")
    out = tmp_path / "disk.img"
    done = subprocess.run(
        [sys.executable, "-m", "conformance.guest_os.mkfs", str(src), "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert read_fs(out.read_bytes()) == {"a": b"A"}
