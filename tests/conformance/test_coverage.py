"""Coverage cells of generated guests (conformance.coverage): what the static walk counts, and the tally."""

from __future__ import annotations

from conformance import coverage
from conformance.strategies import Block, GuestProgram


def _program(*blocks: tuple[str, ...], cpl: int = 0, paging: bool = False) -> GuestProgram:
    return GuestProgram(cpl=cpl, paging=paging, flags=0, body=tuple(Block(b) for b in blocks))


def test_instructions_count_at_their_cpl_paging_and_tf():
    cells = coverage.cells(_program(("smsw r1",), ("li r9, 0x100", "push r9", "popf"), ("sidt r2",), paging=True))
    assert coverage.instruction_cell("smsw", 0, True, False) in cells
    assert coverage.instruction_cell("sidt", 0, True, True) in cells  # after the popf that set TF
    assert coverage.instruction_cell("sidt", 0, True, False) not in cells
    assert coverage.adjacent_cell("exit-with-pending-db") in cells


def test_pseudo_instructions_count_as_what_they_assemble_to():
    cells = coverage.cells(_program(("li r1, 5",)))
    assert coverage.instruction_cell("addi", 0, False, False) in cells


def test_an_iret_frame_sets_the_flags_it_carries():
    frame = ("mov r9, sp", "li r10, 0x100", "push r9", "push r10", "li r10, 3", "push r10", "la r10, {L}",
             "push r10", "iret", "{L}:")  # fmt: skip
    cells = coverage.cells(_program(frame, ("rdcs r1",), cpl=3))
    assert coverage.instruction_cell("rdcs", 3, False, True) in cells


def test_popf_at_cpl3_cannot_set_if_so_cli_stays_privileged():
    # IOPL 0 at CPL 3: IF is not popf's to change (§6.4), and the walk does not pretend it is.
    cells = coverage.cells(_program(("li r9, 0x200", "push r9", "popf"), ("sti",), ("smsw r1",), cpl=3))
    assert coverage.adjacent_cell("exit-after-sti") in cells  # smsw right after sti
    assert coverage.adjacent_cell("exit-with-pending-interrupt") not in cells


def test_pending_interrupt_needs_a_source_and_the_pic_mask():
    timer = ("li r9, 5", "out 0x40, r9")
    mask = ("out 0x21, r0",)
    assert coverage.adjacent_cell("exit-with-pending-interrupt") not in coverage.cells(_program(timer, ("hlt",)))
    assert coverage.adjacent_cell("exit-with-pending-interrupt") in coverage.cells(_program(timer, mask, ("hlt",)))


def test_an_empty_body_covers_nothing():
    assert coverage.cells(_program()) == frozenset()


def test_every_cell_is_in_the_universe_and_parses_back():
    universe = set(coverage.all_cells())
    cells = coverage.cells(_program(("smsw r1",), ("sti",), ("cli",), cpl=3, paging=True))
    assert cells <= universe
    assert coverage.parse_instruction_cell(coverage.instruction_cell("smsw", 3, True, False)) == ("smsw", 3, True, False)
    assert coverage.parse_instruction_cell(coverage.adjacent_cell("exit-after-sti")) is None


def test_the_tally_counts_examples_once_per_cell_and_only_while_open():
    program = _program(("smsw r1",), ("smsw r2",))
    coverage.note(program)  # no tally open: counted nowhere
    with coverage.tally() as counts:
        coverage.note(program)
        coverage.note(program)
    coverage.note(program)
    assert counts[coverage.instruction_cell("smsw", 0, False, False)] == 2
