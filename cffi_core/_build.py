"""Build script of the C core (cffi API mode, out of line): ``python setup.py build_ext --inplace``
or ``pip install -e .`` compiles ``cffi_core/csrc`` into ``cffi_core._p64``.

The boundary header ``csrc/p64.h`` is fed to ``cdef`` unchanged.  With ``P64_SANITIZE=1`` the
core is built with AddressSanitizer and UndefinedBehaviorSanitizer (errors fatal).  Nothing
imports this module at run time.
"""

from __future__ import annotations

import os
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
CSRC = HERE / "csrc"
SOURCES = ["machine.c", "mmu.c", "decode.c", "events.c", "system.c", "run.c", "vmx.c", "translate.c"]

# Pinned flags: the interpreter's speed depends on code layout (shared/research/perf-anchors.md §3.3).
OPTIMIZE = ["-O2", "-fno-crossjumping"]
WARNINGS = ["-std=c11", "-Wall", "-Wextra"]
SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]


def _flags() -> tuple[list[str], list[str]]:
    prefix_map = [f"-fmacro-prefix-map={HERE}=cffi_core"]
    if os.environ.get("P64_SANITIZE") == "1":
        return WARNINGS + SANITIZE + prefix_map, SANITIZE
    return WARNINGS + OPTIMIZE + prefix_map, []


ffibuilder = FFI()
ffibuilder.cdef((CSRC / "p64.h").read_text())
_compile, _link = _flags()
ffibuilder.set_source(
    "cffi_core._p64",
    '#include <stdint.h>\n#include "p64.h"',
    sources=[str((CSRC / s).relative_to(HERE.parent)) for s in SOURCES],
    include_dirs=[str(CSRC), str(CSRC / "generated")],
    # Headers too: a change of a structure in a header alone must rebuild every source.
    depends=[str(h.relative_to(HERE.parent)) for h in sorted(CSRC.glob("**/*.h"))],
    extra_compile_args=_compile,
    extra_link_args=_link,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
