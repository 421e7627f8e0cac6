"""docs/vmm-api.md §13 and §14 name only what exists: every host, CPU, VMCS and shadow-pager attribute they cite, and §14's setup code runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cffi_core import spec
from cffi_core.exits import ExitReason
from cffi_core.machine import Exit, Machine
from conformance.api import VMConfig, default_host_memory
from reference_vmm.shadow import Resolution, Space

ROOT = Path(__file__).resolve().parents[2]
MANUAL = ROOT / "docs" / "vmm-api.md"
_NAMED = re.compile(
    r"(?<![\w./])(host|cpu|vcpu|vmcs|pager|hmap|memory|Space|Resolution|ExitReason|Exit|ex|spec)((?:\.\w+)+)"
)


def _section(number: int) -> str:
    text = MANUAL.read_text(encoding="utf-8")
    start = text.index(f"\n## {number}. ")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _setup_code() -> str:
    """§14's first code block: a VMM's host map, one guest's memory and its shadow pager."""
    return re.search(r"```python\n(.*?)```", _section(14), re.S).group(1)


@pytest.fixture(scope="module")
def objects() -> dict[str, object]:
    """What each name the manual uses stands for: a host and its CPU, a VMCS (of a vmx host),
    and the pager §14's setup code builds on that host."""
    config = VMConfig()
    host = Machine("x86-2005", memory=default_host_memory(config.memory))
    scope: dict[str, object] = {"host": host, "config": config}
    exec(compile(_setup_code(), "docs/vmm-api.md §14", "exec"), scope)
    return {
        "host": host,
        "cpu": host.cpu,
        "vcpu": spec.State.reset(entry=0, features=host.profile.features),
        "vmcs": Machine("vtx-2006", memory=1 << 20).vmcs(),
        "pager": scope["pager"],
        "hmap": scope["hmap"],
        "memory": scope["memory"],
        "Space": Space,
        "Resolution": Resolution,
        "ExitReason": ExitReason,
        "Exit": Exit(ExitReason.BUDGET),
        "ex": Exit(ExitReason.BUDGET),
        "spec": spec,
    }


def named(section: int) -> list[tuple[str, str]]:
    """``(object, .attribute.chain)`` for every attribute of a known object ``section`` names."""
    return sorted({(m.group(1), m.group(2)) for m in _NAMED.finditer(_section(section))})


@pytest.mark.parametrize("section", [13, 14])
def test_every_attribute_the_manual_names_exists(section: int, objects: dict[str, object]) -> None:
    names = named(section)
    assert len(names) > 20, names  # the pattern still finds the manual's names
    missing = []
    for base, chain in names:
        obj = objects[base]
        for part in chain.strip(".").split("."):
            if not hasattr(obj, part):
                missing.append(f"{base}{chain}")
                break
            obj = getattr(obj, part)
    assert not missing, f"docs/vmm-api.md §{section} names what does not exist: {missing}"


def test_the_exit_table_names_every_exit_reason_and_real_fields() -> None:
    section = _section(13)
    table = section[section.index("| `reason` | fields |") :]
    table = table[: table.index("\n\n")]
    rows = {row.split("|")[1].strip().strip("`"): row.split("|")[2] for row in table.splitlines()[2:]}
    assert set(rows) == {r.name for r in ExitReason}
    for reason, fields in rows.items():
        for field in re.findall(r"`(\w+)`", fields):
            if field not in ("EventKind", "None") and field.upper() != field:
                assert field in Exit._fields, f"{reason}: {field}"


def test_the_setup_code_gives_a_pager_that_answers_a_fault(objects: dict[str, object]) -> None:
    """§14's objects work as §14 says: a root for the shared space, a hidden fault for a page the
    guest may touch with paging off, the reserved page emulated."""
    pager, host, vcpu = objects["pager"], objects["host"], objects["vcpu"]
    root = pager.root(vcpu, Space.SHARED)
    assert 0 <= root < host.memory_size and pager.needs_flush
    assert pager.fault(vcpu, 0x2000, spec.ACCESS_READ) is Resolution.HIDDEN
    assert pager.fault(vcpu, 0xFFFF_FFFF_FFFF_F008, spec.ACCESS_READ) is Resolution.EMULATE
