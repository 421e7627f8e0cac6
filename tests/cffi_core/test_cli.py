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


def test_assembly_error_is_one_line_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.s"
    bad.write_text("nop\nfrobnicate r1\n")
    assert main(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"popek: {bad}:2: ")
    assert "frobnicate" in err
    assert len(err.strip().splitlines()) == 1


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
