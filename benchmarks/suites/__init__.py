"""The benchmark suites (docs/benchmarks.md §5): each runs its workloads under a list of VMMs and returns records.

A suite is a ``Suite``: a name, a one-line description, and ``run(options) -> list[Record]``
(``benchmarks.measure.Record``: counts only, priced later by ``benchmarks.cost_model``).
``SUITES`` lists them in the order a report shows them; ``popek bench`` and the pytest-benchmark
files under ``benchmarks/`` both run them through this interface.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from benchmarks.measure import NATIVE, Record

__all__ = [
    "DEFAULT_VMMS",
    "MACHINE_PREFERENCE",
    "PAPER_MACHINE",
    "SUITES",
    "Suite",
    "SuiteOptions",
    "all_suites",
    "machine_for",
    "register",
]

DEFAULT_VMMS = (NATIVE, "binary-translation", "hardware", "hardware-ept", "trap-and-emulate", "paravirt")
"""The columns of a benchmark report unless ``--vmm`` names others: native and every reference
VMM of a technique the paper discusses (the emulator is left out: it is the oracle's speed, not
a technique the paper benchmarks)."""

PAPER_MACHINE = "vtx-2006+tpr_shadow"
"""The P64 machine of Adams & Agesen 2006's Pentium 4 672: VT-x without nested paging or VPID,
with the TPR shadow — their hardware VMM ran ``cr8wr`` without exits ("%cr8 writes exit only if
TPR drops below the highest pending interrupt", the TPR threshold of V.3)."""

MACHINE_PREFERENCE = (PAPER_MACHINE, "vtx-2009", "x86-2005", "x86-64-2005", "classic-1974")
"""Machine profiles in the order a VMM is placed on one: the paper's machine first; a VMM
needing more (EPT) goes to ``vtx-2009``."""

_FIXED = {"trap-and-emulate": "classic-1974"}
"""VMMs equivalent on one profile only: trap-and-emulate is, by Popek & Goldberg's theorem, on the
machine where every sensitive instruction traps (docs/vmm-api.md §7)."""


def machine_for(vmm: str) -> str:
    """The machine profile ``vmm`` is benchmarked on: the first of ``MACHINE_PREFERENCE`` with
    every host feature it requires (native and a VMM with no requirement: ``PAPER_MACHINE``)."""
    if vmm in _FIXED:
        return _FIXED[vmm]
    if vmm == NATIVE:
        return MACHINE_PREFERENCE[0]
    from cffi_core.profiles import get_profile
    from conformance.api import load_vmm

    requires = frozenset(load_vmm(vmm).requires)
    for machine in MACHINE_PREFERENCE:
        if requires <= get_profile(machine).features:
            return machine
    raise ValueError(f"{vmm}: no machine profile has the host features it requires ({', '.join(sorted(requires))})")


@dataclass(frozen=True)
class SuiteOptions:
    """What a suite run is asked for: the VMMs (columns), a scale (1: the small defaults that run
    in minutes on a 2-core machine; larger multiplies the iterations), and a progress callback
    that receives one line per run started."""

    vmms: tuple[str, ...] = DEFAULT_VMMS
    scale: int = 1
    progress: Callable[[str], None] = field(default=lambda line: None)


@dataclass(frozen=True)
class Suite:
    """A benchmark suite: ``run(options)`` returns its records (a VMM a workload cannot run on
    — a paravirtual VMM and native-only guest code — is left out with a note, not an error)."""

    name: str
    description: str
    run: Callable[[SuiteOptions], list[Record]]


SUITES: dict[str, Suite] = {}


def register(suite: Suite) -> Suite:
    """Add ``suite`` to ``SUITES`` (each suite module calls this at import)."""
    if suite.name in SUITES:
        raise ValueError(f"suite {suite.name!r} registered twice")
    SUITES[suite.name] = suite
    return suite


_MODULES = ("nanobench", "forkwait", "macro", "mmu", "io")
"""The suite modules, in report order; each registers its suite(s) at import."""


def all_suites() -> dict[str, Suite]:
    """Every suite, registered by importing its module (``_MODULES``); a module not written yet
    is skipped."""
    import importlib

    for name in _MODULES:
        try:
            importlib.import_module(f"benchmarks.suites.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"benchmarks.suites.{name}":
                raise
    # in report order (a module may import another, which then registers first)
    ranked = sorted(SUITES, key=lambda name: _MODULES.index(name) if name in _MODULES else len(_MODULES))
    return {name: SUITES[name] for name in ranked}
