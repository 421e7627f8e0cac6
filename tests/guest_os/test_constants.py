"""include/p64.s is generated from the machine's Python constants: up to date, and every value right."""

from __future__ import annotations

from pathlib import Path

import pytest

from cffi_core.asm import assemble_file
from cffi_core.devices import console, disk, pic, post, result, timer
from cffi_core.spec import state
from conformance.guest_os import constants

P64_S = Path(__file__).resolve().parents[2] / "conformance" / "guest_os" / "include" / "p64.s"

# The file as it was written by hand before it was generated, name by name: the manual's values
# (docs/devices.md, docs/architecture.md), which guest software already relies on.
HAND_WRITTEN = {
    "PIC_CMD": 0x20,
    "PIC_MASK": 0x21,
    "PIC_IRR": 0x22,
    "PIC_BASE": 0x23,
    "PIC_EOI": 0x20,
    "TIMER_COUNT": 0x40,
    "TIMER_CTRL": 0x41,
    "TIMER_NOW": 0x42,
    "TIMER_ENABLE": 1,
    "TIMER_PERIODIC": 2,
    "POST_CODE": 0x80,
    "CONSOLE_DATA": 0x3F8,
    "CONSOLE_STATUS": 0x3F9,
    "CONSOLE_CTRL": 0x3FA,
    "CONSOLE_RX_IRQ": 1,
    "DISK_SECTOR": 0x1F0,
    "DISK_COUNT": 0x1F1,
    "DISK_ADDR": 0x1F2,
    "DISK_CMD": 0x1F3,
    "DISK_SIZE": 0x1F4,
    "DISK_CMD_ACK": 0,
    "DISK_CMD_READ": 1,
    "DISK_CMD_WRITE": 2,
    "DISK_STATUS_IDLE": 0,
    "DISK_STATUS_BUSY": 1,
    "DISK_STATUS_DONE": 2,
    "DISK_STATUS_ERROR": 3,
    "DISK_MAX_COUNT": 128,
    "SECTOR_SIZE": 512,
    "RESULT_EXIT": 0x500,
    "TIMER_IRQ": 0,
    "CONSOLE_IRQ": 4,
    "DISK_IRQ": 14,
    "VEC_TIMER": 32,
    "VEC_CONSOLE": 36,
    "VEC_DISK": 46,
    "FLAGS_TF": 1 << 8,
    "FLAGS_IF": 1 << 9,
    "FLAGS_IOPL": 3 << 12,
    "CR0_PE": 1,
    "CR0_TS": 1 << 3,
    "CR0_WP": 1 << 4,
    "CR0_PG": 1 << 15,
    "CR4_PL4": 2,
    "CR4_TSD": 1 << 2,
    "CR4_PGE": 1 << 7,
    "MSR_TSC": 0x10,
    "MSR_RSP0": 0x100,
    "MSR_RSP1": 0x101,
    "MSR_RSP2": 0x102,
    "PAGE_SIZE": 4096,
    "PTE_P": 1,
    "PTE_W": 1 << 1,
    "PTE_U": 1 << 2,
    "PTE_A": 1 << 5,
    "PTE_D": 1 << 6,
    "PTE_PS": 1 << 7,
    "PTE_G": 1 << 8,
    "PTE_NX": 1 << 63,
    "PTE_FRAME": 0x000FFFFFFFFFF000,
    "PF_P": 1,
    "PF_W": 1 << 1,
    "PF_U": 1 << 2,
    "PF_RSVD": 1 << 3,
    "PF_I": 1 << 4,
    "GATE_SIZE": 16,
    "GATE_P": 1,
    "GATE_TRAP": 1 << 1,
    "GATE_DPL3": 3 << 4,
    "VEC_DE": 0,
    "VEC_DB": 1,
    "VEC_UD": 6,
    "VEC_DF": 8,
    "VEC_GP": 13,
    "VEC_PF": 14,
    "VEC_AC": 17,
    "VEC_MC": 18,
}

# Each name of the file with the Python constant it must equal.  The ones with no constant of
# their own are computed here from the manual's rules, independently of the generator.
PYTHON = {
    "PIC_CMD": pic.PIC_CMD,
    "PIC_MASK": pic.PIC_MASK,
    "PIC_IRR": pic.PIC_IRR,
    "PIC_BASE": pic.PIC_BASE,
    "PIC_EOI": pic.PIC_EOI,
    "TIMER_COUNT": timer.TIMER_COUNT,
    "TIMER_CTRL": timer.TIMER_CTRL,
    "TIMER_NOW": timer.TIMER_NOW,
    "TIMER_ENABLE": timer.TIMER_ENABLE,
    "TIMER_PERIODIC": timer.TIMER_PERIODIC,
    "POST_CODE": post.POST_CODE,
    "CONSOLE_DATA": console.CONSOLE_DATA,
    "CONSOLE_STATUS": console.CONSOLE_STATUS,
    "CONSOLE_CTRL": console.CONSOLE_CTRL,
    "CONSOLE_RX_IRQ": console.CONSOLE_RX_IRQ,
    "DISK_SECTOR": disk.DISK_SECTOR,
    "DISK_COUNT": disk.DISK_COUNT,
    "DISK_ADDR": disk.DISK_ADDR,
    "DISK_CMD": disk.DISK_CMD,
    "DISK_SIZE": disk.DISK_SIZE,
    "DISK_CMD_ACK": disk.DISK_CMD_ACK,
    "DISK_CMD_READ": disk.DISK_CMD_READ,
    "DISK_CMD_WRITE": disk.DISK_CMD_WRITE,
    "DISK_STATUS_IDLE": disk.DISK_STATUS_IDLE,
    "DISK_STATUS_BUSY": disk.DISK_STATUS_BUSY,
    "DISK_STATUS_DONE": disk.DISK_STATUS_DONE,
    "DISK_STATUS_ERROR": disk.DISK_STATUS_ERROR,
    "DISK_MAX_COUNT": disk.DISK_MAX_COUNT,
    "SECTOR_SIZE": disk.SECTOR_SIZE,
    "RESULT_EXIT": result.RESULT_EXIT,
    "TIMER_IRQ": timer.TIMER_IRQ,
    "CONSOLE_IRQ": console.CONSOLE_IRQ,
    "DISK_IRQ": disk.DISK_IRQ,
    # IRQ n is vector PIC_BASE + n (devices.md §3), with the base at its reset value.
    "VEC_TIMER": pic.PIC_BASE_RESET + timer.TIMER_IRQ,
    "VEC_CONSOLE": pic.PIC_BASE_RESET + console.CONSOLE_IRQ,
    "VEC_DISK": pic.PIC_BASE_RESET + disk.DISK_IRQ,
    "FLAGS_TF": state.FLAGS_TF,
    "FLAGS_IF": state.FLAGS_IF,
    "FLAGS_IOPL": state.FLAGS_IOPL,
    "CR0_PE": state.CR0_PE,
    "CR0_TS": state.CR0_TS,
    "CR0_WP": state.CR0_WP,
    "CR0_PG": state.CR0_PG,
    # The CR4 whose paging-levels field gives 4 levels (architecture.md §2: levels = CR4_PL + 2),
    # as the spec reads it.
    "CR4_PL4": next(v for v in range(4) if state.State(cr4=v).paging_levels == 4),
    "CR4_TSD": state.CR4_TSD,
    "CR4_PGE": state.CR4_PGE,
    "MSR_TSC": state.MSR_TSC,
    "MSR_RSP0": state.MSR_RSP0,
    "MSR_RSP1": state.MSR_RSP1,
    "MSR_RSP2": state.MSR_RSP2,
    "PAGE_SIZE": state.PAGE_SIZE,
    "PTE_P": state.PTE_P,
    "PTE_W": state.PTE_W,
    "PTE_U": state.PTE_U,
    "PTE_A": state.PTE_A,
    "PTE_D": state.PTE_D,
    "PTE_PS": state.PTE_PS,
    "PTE_G": state.PTE_G,
    "PTE_NX": state.PTE_NX,
    "PTE_FRAME": state.PTE_FRAME,
    "PF_P": state.PF_P,
    "PF_W": state.PF_W,
    "PF_U": state.PF_U,
    "PF_RSVD": state.PF_RSVD,
    "PF_I": state.PF_I,
    "GATE_SIZE": state.GATE_SIZE,
    "GATE_P": state.GATE_P,
    # The gate's attribute bits (architecture.md §6.2): the type field at bits 2:1, DPL at 5:4.
    "GATE_TRAP": state.GATE_TRAP << state.GATE_TYPE_SHIFT,
    "GATE_DPL3": 3 << state.GATE_DPL_SHIFT,
    "VEC_DE": state.DE,
    "VEC_DB": state.DB,
    "VEC_UD": state.UD,
    "VEC_DF": state.DF,
    "VEC_GP": state.GP,
    "VEC_PF": state.PF,
    "VEC_AC": state.AC,
    "VEC_MC": state.MC,
}


def _assembled() -> dict[str, int]:
    """The constants as the assembler reads them from the checked-in file."""
    return dict(assemble_file(P64_S).symbols)


def test_the_checked_in_file_is_not_stale():
    assert constants.stale_files() == [], "p64.s is stale: run python -m conformance.guest_os.constants"
    assert constants.main(["--check"]) == 0


def test_line_1_says_it_is_generated_and_line_2_what_it_holds():
    lines = P64_S.read_text().splitlines()
    assert lines[0] == "; Generated by conformance/guest_os/constants.py; do not edit."
    assert lines[1].startswith("; The machine's constants")


def test_every_value_equals_the_python_constant():
    assert _assembled() == PYTHON


def test_every_hand_written_name_keeps_its_value():
    assembled = _assembled()
    assert {name: assembled.get(name) for name in HAND_WRITTEN} == HAND_WRITTEN


def test_the_new_devices_constants_are_the_manuals():
    assembled = _assembled()
    wanted = {"POST_CODE": 0x80, "CONSOLE_CTRL": 0x3FA, "CONSOLE_RX_IRQ": 1, "CONSOLE_IRQ": 4, "VEC_CONSOLE": 36}
    assert {name: assembled[name] for name in wanted} == wanted


def test_check_fails_on_a_stale_file_and_a_rewrite_fixes_it(tmp_path, monkeypatch, capsys):
    target = tmp_path / "p64.s"
    target.write_text(P64_S.read_text().replace(".equ POST_CODE, 0x80", ".equ POST_CODE, 0x81"))
    monkeypatch.setattr(constants, "GENERATED", {target: constants.render})
    assert constants.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert constants.main([]) == 0
    assert target.read_text() == P64_S.read_text()
    assert constants.main(["--check"]) == 0
    target.unlink()  # a missing file is stale too
    assert constants.main(["--check"]) == 1


def test_a_name_given_twice_is_refused(monkeypatch):
    twice = (*constants.BLOCKS, (constants.Constant("PIC_CMD", 0x20, "hex"),))
    monkeypatch.setattr(constants, "BLOCKS", twice)
    with pytest.raises(ValueError, match="PIC_CMD"):
        constants.render()
