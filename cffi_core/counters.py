"""The counters of docs/architecture.md §13 as one flat mapping of names, whoever counted them
(the C core for ``Machine.counters``, the executable spec for an emulated CPU), so that
reports can put any two side by side."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from cffi_core.isa.table import SYSTEM_INSTRUCTIONS


def flatten(
    scalars: Mapping[str, int],
    insn: Sequence[Sequence[int]],
    exceptions: Sequence[int],
    interrupts: Sequence[int],
    vm_exits: Sequence[int] = (),
    system: Sequence[int] = (),
) -> dict[str, int]:
    """The flat names: the scalar counters as they are, ``insn_<mode>_cpl<n>`` and their sum
    ``instructions``, ``exception_<v>``/``interrupt_<v>`` for vectors with a count,
    ``vm_exit_<reason>`` for VM exit reasons with a count (docs/vmx.md V.11) with their sum
    ``vm_exits``, and ``system_<mnemonic>`` for system-group instructions retired (indexed as
    ``SYSTEM_INSTRUCTIONS``; those with a count)."""
    flat = {name: int(value) for name, value in scalars.items()}
    for insn_row, n in zip(SYSTEM_INSTRUCTIONS, system, strict=False):
        if n:
            flat[f"system_{insn_row.mnemonic}"] = int(n)
    total = 0
    for mode, mode_name in enumerate(("host", "guest")):
        for cpl in range(4):
            n = int(insn[mode][cpl])
            flat[f"insn_{mode_name}_cpl{cpl}"] = n
            total += n
    flat["instructions"] = total
    for v in range(256):
        if exceptions[v]:
            flat[f"exception_{v}"] = int(exceptions[v])
        if interrupts[v]:
            flat[f"interrupt_{v}"] = int(interrupts[v])
    flat["vm_exits"] = 0
    for reason, n in enumerate(vm_exits):
        if n:
            flat[f"vm_exit_{reason}"] = int(n)
            flat["vm_exits"] += int(n)
    return flat


@dataclass(frozen=True)
class Counters(Mapping[str, int]):
    """A snapshot of the core's counters (docs/architecture.md §13), as a flat mapping.

    Keys: those of ``flatten``.
    """

    values: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, key: str) -> int:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def exceptions(self) -> dict[int, int]:
        """Exceptions and software interrupts delivered, by vector (non-zero only)."""
        return {int(k.split("_")[1]): v for k, v in self.values.items() if k.startswith("exception_")}

    @property
    def vm_exits(self) -> dict[int, int]:
        """VM exits by reason number (non-zero only; docs/vmx.md V.4)."""
        return {int(k.rsplit("_", 1)[1]): v for k, v in self.values.items() if k.startswith("vm_exit_")}

    @property
    def interrupts(self) -> dict[int, int]:
        """External interrupts delivered, by vector (non-zero only)."""
        return {int(k.split("_")[1]): v for k, v in self.values.items() if k.startswith("interrupt_")}
