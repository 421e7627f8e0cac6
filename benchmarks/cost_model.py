"""The cost model: simulated cycles = Σ counter × unit cost of a cost profile (docs/benchmarks.md).

Counts are measured (the core's and the VMMs' counters); prices are declared, each with its source
in the papers (Adams & Agesen 2006 Table 1, §3.2, §3.3, §6.3; Agesen et al. 2012 Table 1).  This
module only reads counters: it never runs a machine, so saved results can be re-priced under any
profile.  Counters with no price are reported as unpriced, never counted as zero cycles.
"""

from __future__ import annotations

import fnmatch
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "AGGREGATES",
    "KINDS",
    "PROFILE_DIR",
    "CostModelError",
    "CostProfile",
    "Priced",
    "UnitCost",
    "available_profiles",
    "benchmark_specific_keys",
    "docs_tables",
    "load_profile",
    "price",
    "profile_table",
    "update_docs",
]

PROFILE_DIR = Path(__file__).with_name("cost_profiles")

KINDS = frozenset(
    {
        "vm_transition", "vmcs_access", "translation", "callout", "in_tc", "trap", "instruction",
        "exception", "io", "mmu", "emulation",
    }
)  # fmt: skip
"""Event kinds of the "where the cycles go" breakdown; every unit cost names one."""


def fitted_file(directory: Path, name: str) -> Path:
    """The generated file of profile ``name``'s fitted prices (``python -m benchmarks.fit``),
    beside the profiles in ``directory``: ``fitted/<name>.toml``."""
    return directory / "fitted" / f"{name}.toml"


AGGREGATES: dict[str, str] = {
    "instructions": "insn_*_cpl*",
    "vm_exits": "vm_exit_*",
    "callouts": "callout_*",
    "in_tc_sequences": "in_tc_*",
    "hypercalls": "hypercall_*",
}
"""Counters that are sums of others (cffi_core/counters.py ``flatten``, the VMMs' ``counters``): a
profile prices the sum or its parts, never both (that would count each event twice), and a sum
whose parts are priced (or a part whose sum is priced) is not unpriced."""

_EXCLUDED_PARTS = {"in_tc_*": ("in_tc_*_ticks",)}
"""Counters matching an aggregate's parts pattern that are not parts (ticks, not runs)."""

BENCHMARK_TOKENS = frozenset(
    {
        "forkwait", "fork", "compile", "kernel", "apache", "specint", "specjbb", "passmark", "spec",
        "nanobench", "nanobenchmark", "benchmark", "bench", "workload", "macro", "pgfault", "divzero",
        "ptemod", "cr8wr", "callret", "gzip", "mcf", "boot",
        "factor", "scale", "fudge", "adjust", "calibration", "correction",
    }
)  # fmt: skip
"""The rule for benchmark-specific entries: a unit cost prices an *event* counter, so no key may
have a ``_``-separated token naming a benchmark or workload (Adams & Agesen 2006 §6: the seven
nanobenchmarks, forkwait, the macrobenchmarks) or a fudge factor (docs/benchmarks.md §2: "no benchmark-specific
entry").  Instruction names that are also nanobenchmark names (``syscall``, ``in``)
are events and allowed."""

_KEY = re.compile(r"^[a-z0-9_.*]+$")
_TOP_KEYS = frozenset({"name", "description", "base", "clock", "unit_costs", "included", "fitted", "reference"})
_COST_KEYS = frozenset({"cycles", "kind", "source"})
_FITTED_KEYS = frozenset({"kind", "fitted_on"})


class CostModelError(ValueError):
    """A profile that cannot be found or read, or counters that cannot be priced."""


@dataclass(frozen=True)
class UnitCost:
    """The cycles one counted event costs, its event kind, and where the number comes from."""

    cycles: float
    kind: str
    source: str


@dataclass(frozen=True)
class FittedCost:
    """A per-event cost the profile leaves to the nanobenchmark fit (``benchmarks.fit``): its
    event kind and the nanobenchmark rows that determine it."""

    kind: str
    fitted_on: str


@dataclass(frozen=True)
class CostProfile:
    """A named table of unit costs (keys: counter names or ``fnmatch`` patterns such as
    ``vm_exit_*``; the VMM's own counters carry the prefix ``vmm.``) at a clock.

    ``included``: counters whose cost is part of another counter's price, or none (a TLB hit),
    each with the reason; they are neither priced nor unpriced.  ``fitted``: the per-event costs
    fitted to the seven nanobenchmarks, priced once ``fitted/<name>.toml`` exists;
    ``awaiting_fit``: those of them not priced yet.  ``base``: the profile this one starts from
    (its unit costs, fitted ones included, and its ``included``), overriding what it declares."""

    name: str
    description: str
    clock_ghz: float
    clock_source: str
    unit_costs: dict[str, UnitCost]
    included: dict[str, str] = field(default_factory=dict)
    fitted: dict[str, FittedCost] = field(default_factory=dict)
    awaiting_fit: dict[str, str] = field(default_factory=dict)
    base: str | None = None
    path: Path | None = None
    reference: dict[str, tuple[float, str]] = field(default_factory=dict)
    """Whole operations the papers time, kept to compare with, never priced with: name ->
    (cycles, source)."""

    def lookup(self, counter: str) -> tuple[str, UnitCost] | None:
        """The key and unit cost pricing ``counter``: its exact key first, else the one pattern
        matching it (two matching patterns are an error: the price would be ambiguous)."""
        return _match(self.name, counter, self.unit_costs)

    def inclusion(self, counter: str) -> str | None:
        """Why ``counter`` needs no price of its own (``included``), or None."""
        hit = _match(self.name, counter, self.included)
        return None if hit is None else hit[1]


def _match(profile: str, counter: str, table: Mapping[str, object]) -> tuple[str, Any] | None:
    if counter in table:
        return counter, table[counter]
    hits = [k for k in table if "*" in k and fnmatch.fnmatchcase(counter, k)]
    if len(hits) > 1:
        raise CostModelError(f"profile {profile!r}: counter {counter!r} matches patterns {hits}")
    return (hits[0], table[hits[0]]) if hits else None


@dataclass(frozen=True)
class Priced:
    """Counters priced under one profile: total cycles, cycles by counter and by event kind,
    simulated seconds at the profile's clock, the counters no unit cost prices (``unpriced``:
    their cycles are missing, so ``cycles`` is then a lower bound) and those whose cost is
    included in another's price (``included``)."""

    profile: str
    cycles: float
    by_counter: dict[str, float]
    by_kind: dict[str, float]
    seconds: float
    unpriced: dict[str, int]
    included: dict[str, int] = field(default_factory=dict)

    @property
    def unpriced_nonzero(self) -> dict[str, int]:
        """The unpriced counters that counted something (their cycles are missing from ``cycles``)."""
        return {k: n for k, n in self.unpriced.items() if n}

    @property
    def complete(self) -> bool:
        """True when every counter that counted something is priced or included."""
        return not self.unpriced_nonzero

    @property
    def vmm_reported(self) -> float:
        """The cycles priced from the VMM's own counters (``vmm.*``): the VMM's word, not the host's."""
        return sum(c for k, c in self.by_counter.items() if k.startswith("vmm."))


def available_profiles(directory: Path = PROFILE_DIR) -> list[str]:
    """The names of the profiles in ``directory`` (one ``<name>.toml`` each)."""
    return sorted(p.stem for p in directory.glob("*.toml"))


def _need(table: Mapping, key: str, types: tuple[type, ...], where: str) -> object:
    if key not in table:
        raise CostModelError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise CostModelError(f"{where}: key {key!r} must be {' or '.join(t.__name__ for t in types)}, not {value!r}")
    return value


def load_profile(name_or_path: str | Path, directory: Path = PROFILE_DIR, *, with_fit: bool = True) -> CostProfile:
    """The profile called ``name_or_path`` in ``directory``, or the TOML file at that path, with
    its base's unit costs and inclusions under its own and its fitted prices
    (``fitted/<name>.toml`` beside it) once the fit has run (not with ``with_fit=False``: the
    profile as the fit starts from it).  Errors name the file and the key."""
    return _load(name_or_path, directory, (), with_fit)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise CostModelError(f"{path}: {e}") from e


def _unit_costs(table: object, where: str) -> dict[str, UnitCost]:
    if not isinstance(table, dict):
        raise CostModelError(f"{where}: key 'unit_costs' must be a table")
    costs: dict[str, UnitCost] = {}
    for key, entry in table.items():
        at = f"{where} [unit_costs.{key}]"
        if not _KEY.match(key):
            raise CostModelError(f"{at}: a key is a counter name or pattern ([a-z0-9_.*]), not {key!r}")
        if not isinstance(entry, dict):
            raise CostModelError(f"{at}: must be a table with cycles, kind, source")
        for k in entry:
            if k not in _COST_KEYS:
                raise CostModelError(f"{at}: unknown key {k!r} (allowed: {sorted(_COST_KEYS)})")
        cycles = _need(entry, "cycles", (int, float), at)
        if cycles < 0 or not math.isfinite(cycles):
            raise CostModelError(f"{at}: key 'cycles' must be finite and >= 0, not {cycles!r}")
        kind = _need(entry, "kind", (str,), at)
        if kind not in KINDS:
            raise CostModelError(f"{at}: key 'kind' is {kind!r}, not one of {sorted(KINDS)}")
        source = _need(entry, "source", (str,), at)
        if not source.strip():
            raise CostModelError(f"{at}: key 'source' is empty: every unit cost cites its paper, table and row")
        costs[key] = UnitCost(cycles, kind, source)
    return costs


def _load(name_or_path: str | Path, directory: Path, seen: tuple[str, ...], with_fit: bool) -> CostProfile:
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = directory / f"{name_or_path}.toml"
        if not path.is_file():
            from cffi_core.profiles import did_you_mean

            known = available_profiles(directory)
            raise CostModelError(
                f"unknown cost profile {name_or_path!r}{did_you_mean(str(name_or_path), known)}; available: {known}"
            )
    data = _read_toml(path)
    where = str(path)
    for key in data:
        if key not in _TOP_KEYS:
            raise CostModelError(f"{where}: unknown key {key!r} (allowed: {sorted(_TOP_KEYS)})")
    name = _need(data, "name", (str,), where)
    if name != path.stem:
        raise CostModelError(f"{where}: key 'name' is {name!r} but the file is {path.name}")
    clock = _need(data, "clock", (dict,), where)
    ghz = _need(clock, "ghz", (int, float), f"{where} [clock]")
    if not ghz > 0:
        raise CostModelError(f"{where} [clock]: key 'ghz' must be positive, not {ghz!r}")
    clock_source = _need(clock, "source", (str,), f"{where} [clock]")

    base_name = data.get("base")
    costs: dict[str, UnitCost] = {}
    included: dict[str, str] = {}
    if base_name is not None:
        if not isinstance(base_name, str):
            raise CostModelError(f"{where}: key 'base' must be a profile name, not {base_name!r}")
        if base_name in (*seen, name):
            raise CostModelError(f"{where}: key 'base' makes a cycle: {' -> '.join((*seen, name, base_name))}")
        base = _load(base_name, path.parent, (*seen, name), with_fit)
        costs.update(base.unit_costs)
        included.update(base.included)

    own = _unit_costs(data.get("unit_costs", {}), where)
    for key, note in dict(data.get("included", {})).items():
        if not isinstance(note, str) or not note.strip() or not _KEY.match(key):
            raise CostModelError(f"{where} [included]: key {key!r} must be a counter or pattern with its reason")
        if key in own:
            raise CostModelError(f"{where} [included]: key {key!r} is priced in [unit_costs] too")
        included[key] = note
    fitted: dict[str, FittedCost] = {}
    for key, entry in dict(data.get("fitted", {})).items():
        at = f"{where} [fitted.{key}]"
        if not _KEY.match(key) or not isinstance(entry, dict):
            raise CostModelError(f"{at}: a counter or pattern with a table of kind and fitted_on")
        for k in entry:
            if k not in _FITTED_KEYS:
                raise CostModelError(f"{at}: unknown key {k!r} (allowed: {sorted(_FITTED_KEYS)})")
        kind = _need(entry, "kind", (str,), at)
        if kind not in KINDS:
            raise CostModelError(f"{at}: key 'kind' is {kind!r}, not one of {sorted(KINDS)}")
        if key in own or key in included:
            raise CostModelError(f"{at}: priced or included elsewhere in the profile too")
        fitted[key] = FittedCost(kind, str(_need(entry, "fitted_on", (str,), at)))
    reference: dict[str, tuple[float, str]] = {}
    for key, entry in dict(data.get("reference", {})).items():
        at = f"{where} [reference.{key}]"
        if not isinstance(entry, dict) or set(entry) != {"cycles", "source"}:
            raise CostModelError(f"{at}: a table of cycles and source")
        reference[key] = (float(_need(entry, "cycles", (int, float), at)), str(_need(entry, "source", (str,), at)))
    for key in own:  # a profile's own price overrides its base's, and its base's inclusion
        included.pop(key, None)
    costs.update(own)

    awaiting: dict[str, str] = {}
    if fitted:
        fit_path = fitted_file(path.parent, name)
        got = (
            _unit_costs(_read_toml(fit_path).get("unit_costs", {}), str(fit_path))
            if with_fit and fit_path.is_file()
            else {}
        )
        for key, cost in got.items():
            if key not in fitted:
                raise CostModelError(f"{fit_path} [unit_costs.{key}]: not declared in [fitted] of {path.name}")
            if cost.kind != fitted[key].kind:
                raise CostModelError(
                    f"{fit_path} [unit_costs.{key}]: kind {cost.kind!r}, declared {fitted[key].kind!r}"
                )
        costs.update(got)
        awaiting = {k: f.fitted_on for k, f in fitted.items() if k not in got}
    for agg, parts in AGGREGATES.items():
        if agg in costs and any(_is_part(k, parts) for k in costs):
            raise CostModelError(f"{where} [unit_costs.{agg}]: priced with its parts ({parts}): events counted twice")
    return CostProfile(
        name=name,
        description=str(data.get("description", "")),
        clock_ghz=float(ghz),
        clock_source=clock_source,
        unit_costs=costs,
        included=included,
        fitted=fitted,
        awaiting_fit=awaiting,
        base=base_name,
        path=path,
        reference=reference,
    )


def benchmark_specific_keys(profile: CostProfile) -> list[str]:
    """The keys of ``profile`` (unit costs and awaiting fit) breaking the rule of ``BENCHMARK_TOKENS``."""
    keys = [*profile.unit_costs, *profile.fitted, *profile.included]
    return [k for k in keys if set(k.replace("*", "").split("_")) & BENCHMARK_TOKENS]


def _canonical(counters: Mapping[str, int]) -> dict[str, int]:
    """``counters`` checked (integers >= 0) with the core's ``vm_exit_<number>`` renamed
    ``vm_exit_<reason>`` as the hardware VMM names them (docs/vmx.md V.4), so that one price
    covers both; the same reason under both names is an error (one exit counted twice)."""
    from cffi_core.vmx import VmExitReason  # the enum only: no machine is made

    out: dict[str, int] = {}
    for name, n in counters.items():
        if isinstance(n, bool) or not isinstance(n, int):
            raise CostModelError(f"counter {name!r}: count must be an integer, not {n!r}")
        if n < 0:
            raise CostModelError(f"counter {name!r}: count must be >= 0, not {n}")
        m = re.fullmatch(r"vm_exit_(\d+)", name)
        if m and int(m.group(1)) in VmExitReason._value2member_map_:
            renamed = f"vm_exit_{VmExitReason(int(m.group(1))).name.lower()}"
            if renamed in counters:
                raise CostModelError(f"counters {name!r} and {renamed!r} count the same exit reason")
            name = renamed
        out[name] = n
    return out


def _is_part(name: str, pattern: str) -> bool:
    return (
        name not in AGGREGATES
        and fnmatch.fnmatchcase(name, pattern)
        and not any(fnmatch.fnmatchcase(name, x) for x in _EXCLUDED_PARTS.get(pattern, ()))
    )


def price(counters: Mapping[str, int], profile: CostProfile | str) -> Priced:
    """Simulated cycles of ``counters`` (one run's flat counters, e.g. a results JSON's) under
    ``profile`` (a ``CostProfile`` or a profile name).  Wall-clock time is never an input."""
    if not isinstance(profile, CostProfile):
        profile = load_profile(profile)
    counts = _canonical(counters)
    priced_names = {n for n in counts if profile.lookup(n) is not None}
    by_counter: dict[str, float] = {}
    by_kind: dict[str, float] = {}
    unpriced: dict[str, int] = {}
    included: dict[str, int] = {}
    for name, n in sorted(counts.items()):
        hit = profile.lookup(name)
        awaiting = hit is None and _match(profile.name, name, profile.awaiting_fit) is not None
        if hit is None and not awaiting and profile.inclusion(name) is not None:
            included[name] = n
            continue
        if hit is None:
            covered = any(
                (name == agg and any(_is_part(p, parts) for p in priced_names))
                or (_is_part(name, parts) and agg in priced_names)
                for agg, parts in AGGREGATES.items()
            ) or (name in AGGREGATES and any(_is_part(k, AGGREGATES[name]) for k in profile.unit_costs))
            if not covered:
                unpriced[name] = n
            continue
        cycles = n * hit[1].cycles
        by_counter[name] = cycles
        by_kind[hit[1].kind] = by_kind.get(hit[1].kind, 0) + cycles
    total = sum(by_counter.values())
    return Priced(
        profile=profile.name,
        cycles=total,
        by_counter=by_counter,
        by_kind=by_kind,
        seconds=total / (profile.clock_ghz * 1e9),
        unpriced=unpriced,
        included=included,
    )


DOCS_BEGIN = "<!-- cost profiles: generated by `python -m benchmarks.cost_model docs/benchmarks.md` -->"
DOCS_END = "<!-- end of cost profiles -->"


def profile_table(profile: CostProfile) -> str:
    """The Markdown of one profile for docs/benchmarks.md: clock, base, unit costs with sources
    (fitted ones marked), the counters included in others' prices, and any awaiting the fit."""
    # with a base, only the prices the profile's own file declares (the rest are the base's)
    own = set(_read_toml(profile.path).get("unit_costs", {})) if profile.base and profile.path else None
    lines = [
        f"### `{profile.name}`",
        "",
        f"{profile.description}. Clock {profile.clock_ghz:g} GHz ({profile.clock_source}).",
    ]
    if profile.base:
        lines[-1] += f" Every price not listed here is `{profile.base}`'s."
    lines += ["", "| counter | cycles | kind | source |", "|---|---:|---|---|"]
    for key, c in profile.unit_costs.items():
        if own is not None and key not in own:
            continue
        cycles = f"{c.cycles:g}" + (" (fitted)" if key in profile.fitted else "")
        lines.append(f"| `{key}` | {cycles} | {c.kind} | {c.source} |")
    if profile.reference:
        lines += ["", "Whole operations timed by the paper, to compare with (they price nothing):", "",
                  "| operation | cycles | source |", "|---|---:|---|"]  # fmt: skip
        lines += [f"| {k} | {c:g} | {src} |" for k, (c, src) in profile.reference.items()]
    if profile.included and not profile.base:
        lines += ["", "Included in other prices, or no event of the machine:", "", "| counter | why |", "|---|---|"]
        lines += [f"| `{k}` | {v} |" for k, v in profile.included.items()]
    if profile.awaiting_fit:
        lines += [
            "",
            "Awaiting the per-event fit (unpriced until then):",
            "",
            "| counter | to be fitted on |",
            "|---|---|",
        ]
        lines += [f"| `{k}` | {v} |" for k, v in profile.awaiting_fit.items()]
    return "\n".join(lines)


def docs_tables(directory: Path = PROFILE_DIR) -> str:
    """Every profile's table, between the markers of docs/benchmarks.md."""
    body = "\n\n".join(profile_table(load_profile(n, directory)) for n in available_profiles(directory))
    return f"{DOCS_BEGIN}\n\n{body}\n\n{DOCS_END}"


def replace_section(path: Path, begin: str, end: str, section: str) -> bool:
    """Put ``section`` (which starts with ``begin`` and ends with ``end``) in place of the text
    between those markers in ``path``; True if the file changed."""
    text = path.read_text()
    start, stop = text.index(begin), text.index(end) + len(end)
    new = text[:start] + section + text[stop:]
    path.write_text(new)
    return new != text


def update_docs(path: Path) -> bool:
    """Rewrite the generated section of ``path`` from the profiles; True if it changed."""
    return replace_section(path, DOCS_BEGIN, DOCS_END, docs_tables())


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        print(f"{arg}: {'updated' if update_docs(Path(arg)) else 'up to date'}")
