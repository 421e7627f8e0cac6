"""The simulated P64 machine: instruction table, C core, Machine, devices, assembler, spec.

``cffi_core.Machine`` and ``cffi_core.Platform`` are imported lazily, so that tools which
need only the instruction table (the generator, the assembler) work before the C core is
compiled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cffi_core.machine import Machine
    from cffi_core.platform import Platform

__all__ = ["Machine", "Platform"]


def __getattr__(name: str) -> Any:
    if name == "Machine":
        from cffi_core.machine import Machine

        return Machine
    if name == "Platform":
        from cffi_core.platform import Platform

        return Platform
    raise AttributeError(f"module 'cffi_core' has no attribute {name!r}")
