"""The long fuzz run of the C core: random machines played until the core has executed a given
number of instructions.  Run as a module from the checkout's root,
``python -m tests.cffi_core.fuzz_long --instructions N [--seed S] [--case K]``, or under
ASan + UBSan with ``bash .ci/fuzz.sh N [--seed S] [--case K]`` (tests/README.md)."""

# A case is an example of the guest-mode fuzz (tests/cffi_core/vmx/test_fuzz_vmx.py): RAM of
# random bytes with random code, an IDT of random gates, guest page tables and nested tables of
# random permissions, corrupted at random, and a VMCS of random controls; then up to 120 host
# calls interleaved: vmrun and host-mode runs of that code (up to LONG_RUN ticks each), VMCS
# writes and reads, host CPU writes, snapshot/restore, DMA, IOMMU attach/detach, invept,
# invvpid, advance_clock, TLB flushes, walks, memory reads and writes, interrupts, resets.
# Every case is played twice, on fresh machines, and must give the same results.  A finding is
# an assertion of the play failing (an unnamed refusal, a host state not restored, a budget
# overrun, a snapshot that does not repeat a run, two plays that differ) or an exception that
# is not one of the core's documented refusals; a sanitizer report ends the process (.ci/fuzz.sh
# then names the case from the --status file).  Cases are numbered from 0 and drawn from the
# seed alone, so `--seed S --case K` replays case K of a run.

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.cffi_core.vmx.test_fuzz_vmx import HOST_OPS, LONG_PROFILES, OPS, Example, Tally, draw_example, play

LONG_RUN = 20_000  # the longest run a host call asks for, in ticks
MAX_OPS = 120


def draw_case(seed: int, case: int) -> tuple[Example, str]:
    """Case ``case`` of the run of ``seed``, and the call that draws the same example."""
    r = random.Random(f"popek-fuzz:{seed}:{case}")  # a str seed hashes the same in every process
    profile, example_seed, n_ops = r.choice(LONG_PROFILES), r.getrandbits(64), r.randrange(1, MAX_OPS + 1)
    call = f"draw_example({profile!r}, {example_seed}, {n_ops}, OPS + HOST_OPS, {LONG_RUN}, tables_mapped=True)"
    return draw_example(profile, example_seed, n_ops, OPS + HOST_OPS, LONG_RUN, tables_mapped=True), call


def check_case(x: Example, tally: Tally) -> str | None:
    """Play ``x`` twice; what went wrong, or None."""
    try:
        first = play(x, tally)
        if play(x, tally) != first:
            return "the same inputs gave another result on a fresh machine"
    except AssertionError as e:
        return f"assertion: {e}"
    except Exception as e:
        return f"{type(e).__name__} (not a documented refusal): {e}"
    return None


@dataclass
class Run:
    seed: int
    tally: Tally = field(default_factory=Tally)
    cases: int = 0
    findings: list[str] = field(default_factory=list)

    def figures(self, elapsed: float) -> str:
        t = self.tally
        return (
            f"{t.instructions} instructions ({t.guest_instructions} in guest mode), {t.vm_exits} VM exits, "
            f"{t.host_calls} host calls, {self.cases} cases, {elapsed:.1f} s, {len(self.findings)} findings"
        )


def _replay(seed: int, case: int) -> str:
    return f"bash .ci/fuzz.sh --seed {seed} --case {case}  (or python -m tests.cffi_core.fuzz_long --seed {seed} --case {case})"


def fuzz(seed: int, instructions: int, status: str | None, out=sys.stdout) -> Run:
    """Play cases 0, 1, ... of ``seed`` until the core has executed ``instructions``."""
    run, start, step = Run(seed), time.monotonic(), max(instructions // 20, 1)
    next_report = step
    while run.tally.instructions < instructions:
        case = run.cases
        if status:
            with open(status, "w") as f:  # for .ci/fuzz.sh, should a sanitizer end the process
                f.write(f"--seed {seed} --case {case}\n")
        x, call = draw_case(seed, case)
        what = check_case(x, run.tally)
        run.cases += 1
        if what:
            run.findings.append(f"case {case}: {what}\n    replay: {_replay(seed, case)}\n    example: {call}")
            print(f"FINDING {run.findings[-1]}", file=out, flush=True)
        if run.tally.instructions >= next_report:
            print(f"progress: {run.figures(time.monotonic() - start)}", file=out, flush=True)
            next_report = (run.tally.instructions // step + 1) * step
    print(f"done, seed {seed}: {run.figures(time.monotonic() - start)}", file=out, flush=True)
    return run


def replay(seed: int, case: int, out=sys.stdout) -> int:
    x, call = draw_case(seed, case)
    tally = Tally()
    what = check_case(x, tally)
    print(f"case {case} of seed {seed}: {call}", file=out)
    print(f"{tally.instructions} instructions, {tally.vm_exits} VM exits, {tally.host_calls} host calls: "
          f"{what or 'no finding'}", file=out)  # fmt: skip
    return 1 if what else 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.cffi_core.fuzz_long", description=__doc__.splitlines()[0])
    p.add_argument("--instructions", type=int, default=10**6, help="instructions to execute (default 10^6)")
    p.add_argument("--seed", type=int, help="the run's seed (default: drawn, and printed)")
    p.add_argument("--case", type=int, help="replay one case of --seed")
    p.add_argument("--status", help="a file that names the case being played (for .ci/fuzz.sh)")
    a = p.parse_args(argv)
    if a.case is not None:
        if a.seed is None:
            p.error("--case replays a case of a run: give its --seed")
        return replay(a.seed, a.case)
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2**32)
    print(f"fuzz: seed {seed}, until {a.instructions} instructions (replay a case: {_replay(seed, 0)})", flush=True)
    run = fuzz(seed, a.instructions, a.status)
    for f in run.findings:
        print(f"FINDING {f}")
    return 1 if run.findings else 0


if __name__ == "__main__":
    sys.exit(main())
