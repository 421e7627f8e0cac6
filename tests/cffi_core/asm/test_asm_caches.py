"""The assembler's caches (line plans, instruction words, li sequences) never change a result."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cffi_core.asm import AssemblyError, assemble, assemble_file, clear_caches, lexer, li_sequence
from cffi_core.asm import assembler as asm
from cffi_core.isa.encoding import encode

REPO = Path(__file__).resolve().parents[3]
GUEST_LIB = REPO / "conformance" / "guests" / "lib"


def words(*encoded: int) -> bytes:
    """Instruction words as the image holds them (little-endian), computed by the encoder."""
    return b"".join(w.to_bytes(4, "little") for w in encoded)


def li_words(rd: int, value: int) -> bytes:
    return words(*(encode(m, rd=rd, rs1=0 if zero else rd, imm=imm) for m, zero, imm in li_sequence(value)))


def outcome(run):
    """An assembly's result as plain data: the image's contents, or the error's text."""
    try:
        image = run()
    except AssemblyError as exc:
        return ("error", str(exc))
    return ("image", [(s.address, s.data) for s in image.segments], image.entry, list(image.symbols.items()))


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_caches()
    yield
    clear_caches()


# ---- included files ------------------------------------------------------------------------


def test_an_included_file_edited_between_two_assemblies_gives_the_new_output(tmp_path):
    lib = tmp_path / "lib.s"
    main = tmp_path / "main.s"
    main.write_text('.include "lib.s"\n')
    lib.write_text("addi r1, r0, 5\n")
    stat = lib.stat()
    assert assemble_file(main).segments[0].data == words(encode("addi", rd=1, imm=5))
    # The same size, and the same modification time as before: only the text tells them apart.
    lib.write_text("addi r1, r0, 6\n")
    os.utime(lib, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert assemble_file(main).segments[0].data == words(encode("addi", rd=1, imm=6))


def test_an_included_file_made_bad_after_a_good_assembly_errors_at_its_line(tmp_path):
    (tmp_path / "main.s").write_text('nop\n.include "lib.s"\n')
    lib = tmp_path / "lib.s"
    lib.write_text("nop\naddi r1, r0, 5\n")
    assemble_file(tmp_path / "main.s")
    lib.write_text("nop\naddi r1, r0, 5 5\n")
    with pytest.raises(AssemblyError) as info:
        assemble_file(tmp_path / "main.s")
    assert str(info.value) == f"{lib}:2: unexpected '5' in imm"


def test_an_included_file_that_is_gone_is_an_error_after_a_good_assembly(tmp_path):
    (tmp_path / "main.s").write_text('.include "lib.s"\n')
    (tmp_path / "lib.s").write_text("nop\n")
    assemble_file(tmp_path / "main.s")
    (tmp_path / "lib.s").unlink()
    with pytest.raises(AssemblyError, match=r"main\.s:1: cannot include 'lib\.s': "):
        assemble_file(tmp_path / "main.s")


# ---- a line cached in one context, then assembled in another ---------------------------------


def test_a_bad_line_errors_at_its_own_file_and_line_after_being_cached_as_good(tmp_path):
    line = "        call    helper"
    good = f"helper: ret\n{line}\n"
    assert assemble(good, filename="good.s").segments
    # The same text, now with no such label and at another line of another file.
    with pytest.raises(AssemblyError) as info:
        assemble(f"nop\nnop\n{line}\n", filename="bad.s")
    assert str(info.value) == "bad.s:3: undefined symbol 'helper'"


def test_a_label_cached_once_is_still_a_duplicate_where_it_is_defined_twice():
    assemble("here: nop\n", filename="a.s")
    with pytest.raises(AssemblyError) as info:
        assemble("here: nop\nhere: nop\n", filename="b.s")
    assert str(info.value) == "b.s:2: symbol 'here' already defined at b.s:1"


@pytest.mark.parametrize(
    ("line", "alone", "before", "name"),
    [
        # a label is defined before the rest of its line is parsed
        ("dup: .word 1 +", "expression ends too early", "dup: nop", "dup"),
        # an .equ name is defined before its value is evaluated
        (".equ k, (1", "missing ')'", "k = 2", "k"),
    ],
)
def test_a_duplicate_name_is_reported_before_the_cached_bad_rest_of_its_line(line, alone, before, name):
    with pytest.raises(AssemblyError) as info:
        assemble(line, filename="a.s")
    assert str(info.value) == f"a.s:1: {alone}"
    with pytest.raises(AssemblyError) as info:
        assemble(f"{before}\n{line}\n", filename="b.s")
    assert str(info.value) == f"b.s:2: symbol '{name}' already defined at b.s:1"


def test_a_macro_call_cached_as_a_call_is_an_unknown_instruction_where_no_macro_has_its_name():
    assemble(".macro twice\nnop\nnop\n.endm\ntwice\n", filename="a.s")
    with pytest.raises(AssemblyError) as info:
        assemble("nop\ntwice\n", filename="b.s")
    assert str(info.value) == "b.s:2: unknown instruction 'twice'"


def test_a_line_cached_as_an_unknown_instruction_calls_the_macro_where_one_is_defined():
    with pytest.raises(AssemblyError, match=r"^a\.s:1: unknown instruction 'twice'$"):
        assemble("twice\n", filename="a.s")
    image = assemble(".macro twice\nnop\nnop\n.endm\ntwice\n", filename="b.s")
    assert image.segments[0].data == words(encode("addi"), encode("addi"))


def test_entry_given_twice_is_an_error_after_the_line_was_cached_alone():
    assemble("start: nop\n.entry start\n", filename="a.s")
    with pytest.raises(AssemblyError) as info:
        assemble("start: nop\n.entry start\n.entry start\n", filename="b.s")
    assert str(info.value) == "b.s:3: .entry already given at b.s:2"


def test_a_cached_bad_line_inside_a_macro_names_the_body_line_and_each_call():
    body = "    addi r1, r1, 99999"
    with pytest.raises(AssemblyError, match=r"^a\.s:1: addi: immediate 99999"):
        assemble(body, filename="a.s")
    src = f".macro inner\n{body}\n.endm\n.macro outer\n    inner\n.endm\nnop\n    outer\n"
    with pytest.raises(AssemblyError) as info:
        assemble(src, filename="m.s")
    assert str(info.value) == (
        "m.s:2: addi: immediate 99999 out of range [-32768, 32767]"
        " (in macro 'inner' called at m.s:5 (in macro 'outer' called at m.s:8))"
    )


def test_the_same_instruction_text_encodes_each_assembly_s_own_values():
    # 0 first, then more values than an instruction keeps encodings for, each asked for twice.
    line = "        addi    r2, r0, K"
    values = [0, *(v for k in range(1, 13) for v in (k, -k))]
    for value in values + values:
        image = assemble(f"K = {value}\n{line}\n")
        assert image.segments[0].data == words(encode("addi", rd=2, imm=value))


def test_a_branch_text_encodes_the_offset_of_each_place_it_is_at():
    line = "        beq     r1, r2, there"
    for gap in (0, 1, 7, 2):
        image = assemble(f"{line}\n" + "nop\n" * gap + "there: nop\n")
        assert image.segments[0].data[:4] == words(encode("beq", rs1=1, rs2=2, imm=4 * (gap + 1)))


def test_a_li_text_reserves_room_for_each_assembly_s_own_value():
    # The same li line grows to six instructions in one assembly; in the next its value needs
    # one, and it must not keep the room (nops) the first one reserved.
    line = "        li      r3, far"
    big = 0x123456789ABC
    first = assemble(f"{line}\nfar = {big}\n")
    assert first.segments[0].data == li_words(3, big)
    assert len(li_sequence(big)) > 1
    second = assemble(f"{line}\nfar = 7\n")
    assert second.segments[0].data == li_words(3, 7) == words(encode("addi", rd=3, imm=7))


def test_a_line_longer_than_the_cached_ones_assembles_the_same_every_time():
    values = list(range(200))
    line = ".byte " + ", ".join(str(v) for v in values)
    assert len(line) > asm._PLAN_MAX_CHARS
    for _ in range(2):
        assert assemble(line).segments[0].data == bytes(values)
    with pytest.raises(AssemblyError, match=r"^<string>:2: value 256 does not fit in 8 bits$"):
        assemble(f"nop\n{line}, 256\n")


# ---- limits count what is assembled, not what is cached ---------------------------------------


def test_cached_lines_still_count_against_the_line_limit(monkeypatch):
    src = "".join(f"l{k}: nop\n" for k in range(20))
    assemble(src)
    monkeypatch.setattr(asm, "MAX_SOURCE_LINES", 19)
    with pytest.raises(AssemblyError, match=r"^<string>:0: more than the limit of 19 source lines"):
        assemble(src)


def test_cached_macro_expansions_still_count_against_the_expansion_limit(monkeypatch):
    src = ".macro m\nnop\n.endm\n" + "m\n" * 5
    assemble(src)
    monkeypatch.setattr(asm, "MAX_MACRO_EXPANSIONS", 4)
    with pytest.raises(AssemblyError) as info:
        assemble(src)
    assert str(info.value) == "<string>:8: macro 'm': more than the limit of 4 macro expansions in one assembly"


def test_cached_includes_still_count_against_the_include_limit(tmp_path, monkeypatch):
    (tmp_path / "lib.s").write_text("nop\n")
    main = tmp_path / "main.s"
    main.write_text('.include "lib.s"\n' * 3)
    assemble_file(main)
    monkeypatch.setattr(asm, "MAX_INCLUDES", 2)
    with pytest.raises(AssemblyError) as info:
        assemble_file(main)
    assert str(info.value) == f"{main}:3: cannot include 'lib.s': more than the limit of 2 includes in one assembly"


def test_a_line_cached_under_one_expression_depth_limit_is_parsed_again_under_another(monkeypatch):
    line = ".word ((((1))))"
    assert assemble(line).segments[0].data == (1).to_bytes(4, "little")
    monkeypatch.setattr(lexer, "MAX_DEPTH", 2)
    with pytest.raises(AssemblyError, match=r"^<string>:1: expression nested too deeply$"):
        assemble(line)
    monkeypatch.undo()
    assert assemble(line).segments[0].data == (1).to_bytes(4, "little")


def test_the_line_cache_is_bounded():
    for k in range(asm._PLAN_CACHE_SIZE + 10):
        asm._plan(f".word {k}")
    info = asm._cached_plan.cache_info()
    assert info.maxsize == asm._PLAN_CACHE_SIZE
    assert info.currsize == asm._PLAN_CACHE_SIZE


# ---- whole sources: cached and uncached agree, good and bad -----------------------------------


GUESTS = REPO / "conformance" / "guests"
# Directed guests and the library files they include (each includes lib/prelude.s and
# lib/signature.s); a library file's mutants are assembled through a guest that includes it.
_GUESTS = ("popf.s", "paging.s", "disk.s")
_LIBRARY = {"lib/prelude.s": "popf.s", "lib/signature.s": "popf.s", "lib/paging.s": "paging.s", "lib/disk.s": "disk.s"}


def _mutants(text: str, rng: random.Random, n: int) -> list[str]:
    """``n`` copies of ``text``, each with one line changed: dropped, doubled, cut short or
    with a word replaced, so that most are wrong in some way."""
    lines = text.split("\n")
    words = sorted({w for line in lines for w in line.split()})
    out = []
    for _ in range(n):
        changed = list(lines)
        i = rng.randrange(len(changed))
        how = rng.randrange(4)
        if how == 0:
            del changed[i]
        elif how == 1:
            changed.insert(i, changed[i])
        elif how == 2:
            changed[i] = changed[i][: rng.randrange(len(changed[i]) + 1)]
        elif parts := changed[i].split():
            parts[rng.randrange(len(parts))] = rng.choice(words)
            changed[i] = " ".join(parts)
        out.append("\n".join(changed))
    return out


def test_guests_with_edited_sources_and_libraries_assemble_the_same_with_cold_and_warm_caches(tmp_path):
    """Each case is a directed guest with one file edited (the guest or a library file it
    includes), written over a copy of conformance/guests before it is assembled: every line is
    met in many contexts, and the same file names hold different text from one case to the next."""
    originals = {name: (GUESTS / name).read_text() for name in [*_GUESTS, *_LIBRARY]}
    rng = random.Random(2006)  # fixed: the same cases every run
    cases: list[tuple[str, str, str]] = []  # (guest to assemble, file edited, its text)
    for name in _GUESTS:
        cases += [(name, name, text) for text in [originals[name], *_mutants(originals[name], rng, 5)]]
    for name, guest in _LIBRARY.items():
        cases += [(guest, name, text) for text in _mutants(originals[name], rng, 8)]
    (tmp_path / "lib").mkdir()

    def run(guest: str, edited: str, text: str):
        for name, original in originals.items():
            (tmp_path / name).write_text(text if name == edited else original)
        return outcome(lambda: assemble_file(tmp_path / guest))

    cold = []
    for case in cases:
        clear_caches()
        cold.append(run(*case))
    # Warm: every case after every other, twice, so that the second round finds every line's
    # plan made in another case.
    for _ in range(2):
        assert [run(*case) for case in cases] == cold
    kinds = [kind for kind, *_ in cold]
    assert kinds.count("image") >= len(_GUESTS) and kinds.count("error") >= len(cases) // 3
