"""The popek command line: asm, disasm, run, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from reports.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_run_json_gives_console_exit_code_and_counters(capsys):
    assert main(["run", str(EXAMPLES / "hello.s"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["console"] == "hello, world\n"
    assert doc["exit_code"] == 0
    assert doc["counters"]["instructions"] > 0


def test_run_prints_console_exit_code_and_a_counter_table(capsys):
    assert main(["run", str(EXAMPLES / "paging.s"), "--profile", "classic-1974"]) == 0
    out = capsys.readouterr().out
    assert "ring 3 says hello" in out
    assert "exit code: 0" in out
    assert "instructions" in out


def test_asm_writes_an_elf_that_disasm_and_readelf_read(tmp_path, capsys):
    elf = tmp_path / "hello.elf"
    assert main(["asm", str(EXAMPLES / "hello.s"), "-o", str(elf)]) == 0
    assert main(["disasm", str(elf)]) == 0
    assert "out" in capsys.readouterr().out
    if shutil.which("readelf"):
        syms = subprocess.run(["readelf", "-s", str(elf)], capture_output=True, text=True, check=True).stdout
        assert "message" in syms


def test_assembly_error_names_file_line_and_column_with_a_caret(tmp_path, capsys):
    bad = tmp_path / "bad.s"
    bad.write_text("nop\n  frobnicate r1\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"popek: {bad}:2:3: unknown instruction 'frobnicate'", "      frobnicate r1", "      ^"]


def test_every_error_of_a_file_is_reported_at_once(tmp_path, capsys):
    bad = tmp_path / "four.s"
    bad.write_text("frob r1\nadd r1, r2\nnop\naddi r1, r2, 99999\nli r3, missing\n")
    assert main(["asm", str(bad)]) == 2
    heads = [line for line in capsys.readouterr().err.splitlines() if line.startswith("popek: ")]
    # the syntax of every line first; then, with the syntax right, what encoding finds
    assert heads == [
        f"popek: {bad}:1:1: unknown instruction 'frob'",
        f"popek: {bad}:2:1: add takes 3 operand(s) (rd, rs1, rs2), got 2",
    ]
    bad.write_text("addi r1, r2, 99999\nnop\nli r3, missing\nbeq r1, r2, 0x102\n")
    assert main(["asm", str(bad)]) == 2
    heads = [line for line in capsys.readouterr().err.splitlines() if line.startswith("popek: ")]
    assert heads == [
        f"popek: {bad}:1:14: addi: immediate 99999 out of range [-32768, 32767]",
        f"popek: {bad}:3:8: undefined symbol 'missing'",
        f"popek: {bad}:4:13: beq: target 0x102 is not a multiple of 4 bytes from 0xc",
    ]


def test_garbled_elf_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.elf"
    bad.write_bytes(b"\x7fELF" + b"\x00" * 20)
    assert main(["run", str(bad)]) == 2
    assert "bad.elf" in capsys.readouterr().err


def test_unknown_profile_is_refused_by_the_parser():
    with pytest.raises(SystemExit):
        main(["run", str(EXAMPLES / "hello.s"), "--profile", "pentium"])


def test_a_profile_with_added_features_is_accepted_and_a_bad_feature_named(capsys):
    assert main(["run", str(EXAMPLES / "hello.s"), "--profile", "vtx-2009+iommu"]) == 0
    with pytest.raises(SystemExit):
        main(["run", str(EXAMPLES / "hello.s"), "--profile", "vtx-2009+warp"])
    assert "unknown features ['warp']" in capsys.readouterr().err


def test_run_takes_a_second_disk_image(tmp_path, capsys):
    image, program = tmp_path / "disk2.img", tmp_path / "read2.s"
    image.write_bytes(b"Z" + bytes(511))
    program.write_text(
        "; read sector 0 of the second disk, poll until done, print its first byte\n"
        "_start: li r1, 1\n out 0x171, r1\n li r1, 0x8000\n out 0x172, r1\n li r1, 1\n out 0x173, r1\n"
        "wait: in r2, 0x173\n li r3, 1\n beq r2, r3, wait\n li r1, 0x8000\n ld r1, [r1]\n"
        " out 0x3f8, r1\n out 0x500, r0\n"
    )
    assert main(["run", str(program), "--disk2", str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["console"] == "Z"


def test_version_names_the_core_abi_and_the_instruction_table(capsys):
    from cffi_core import _binding

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("popek ") and f"C core ABI {_binding.ABI_VERSION}" in out
    assert _binding.ffi.string(_binding.lib.p64_isa_hash()).decode() in out


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["run", "x.s", "--profile", "vtx2009"], "(did you mean 'vtx-2009'?)"),
        (["run", "x.s", "--profile", "vtx-2009+iomu"], "(did you mean 'iommu'?)"),
        (["bench", "--suite", "forkwiat"], "(did you mean 'forkwait'?)"),
        (["bench", "--profile", "p4-206"], "(did you mean 'p4-2006'?)"),
        (["grade", "--vmm", "emulate", "--hypothesis-profile", "thorogh"], "(did you mean 'thorough'?)"),
    ],
)
def test_a_near_miss_name_gets_a_suggestion_before_anything_runs(argv, hint, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert hint in capsys.readouterr().err


def test_a_near_miss_vmm_name_gets_a_suggestion(tmp_path, capsys):
    prog = tmp_path / "p.s"
    prog.write_text("_start: hlt\n")
    assert main(["run", str(prog), "--vmm", "hardwar"]) == 2
    assert "(did you mean 'hardware'?)" in capsys.readouterr().err
