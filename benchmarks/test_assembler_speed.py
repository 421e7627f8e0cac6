"""Wall-clock speed of the assembler on the conformance suite's generated guests and on p64os.

Every generated guest (``conformance.strategies.guest_programs``) includes the same library
files (``conformance/guests/lib/*.s``), hundreds of lines that CI's generated-guest tests
assemble again for each of their examples; the assembler keeps each line's parse, by its
text, from one assembly to the next (``cffi_core/asm/assembler.py``, ``_plan``).  The cases
time 20 derandomized generated guests and the p64os image (``conformance.guest_os``), each
both warm (the caches already hold their lines, as for every example after a test's first)
and cold (``clear_caches()`` before each round: a process's first assembly).

Target of the assembler-speed issue, reported in ``extra_info``, not asserted: the generated
guests assemble warm at least 3x faster than before the caches, which took some 35 ms a guest
and 340 ms for the p64os image.
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings

from cffi_core.asm import assemble, assemble_file, clear_caches
from conformance.guest_os import OS_SOURCE
from conformance.guests import GUEST_DIR
from conformance.strategies import GuestProgram, guest_programs

N_GUESTS = 20
ROUNDS = 5


@cache
def _guest_sources() -> tuple[tuple[str, str], ...]:
    """The first ``N_GUESTS`` guests hypothesis draws derandomized: (source, file name), the
    file name being the one ``GuestProgram.image`` assembles the source as."""
    programs: list[GuestProgram] = []

    @settings(
        max_examples=N_GUESTS, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(guest_programs())
    def collect(program: GuestProgram) -> None:
        if len(programs) < N_GUESTS:
            programs.append(program)

    collect()
    return tuple((p.source, str(GUEST_DIR / f"{p.name}.s")) for p in programs)


def _assemble_guests() -> None:
    for source, filename in _guest_sources():
        assemble(source, filename=filename)


def _record(benchmark, per: int, what: str) -> None:
    benchmark.extra_info[f"ms_per_{what}"] = benchmark.stats.stats.median * 1000 / per


def test_generated_guests_warm(benchmark):
    sources = _guest_sources()
    benchmark.pedantic(_assemble_guests, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    _record(benchmark, len(sources), "guest")
    benchmark.extra_info["guests"] = len(sources)


def test_generated_guests_cold(benchmark):
    sources = _guest_sources()
    benchmark.pedantic(_assemble_guests, setup=clear_caches, rounds=ROUNDS, iterations=1)
    _record(benchmark, len(sources), "guest")
    benchmark.extra_info["guests"] = len(sources)


def test_os_image_warm(benchmark):
    benchmark.pedantic(assemble_file, args=(OS_SOURCE,), rounds=ROUNDS, iterations=1, warmup_rounds=1)
    _record(benchmark, 1, "image")


def test_os_image_cold(benchmark):
    benchmark.pedantic(assemble_file, args=(OS_SOURCE,), setup=clear_caches, rounds=ROUNDS, iterations=1)
    _record(benchmark, 1, "image")
