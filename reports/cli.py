"""The ``popek`` command line: assemble, disassemble and run guest programs on P64.

Subcommands: ``asm FILE.s -o FILE.elf``, ``disasm FILE.elf``, ``run FILE(.s|.elf)``.  Errors
in the user's input (assembly errors, malformed images, unknown profiles) print one line,
``popek: <message>``, and exit with status 2; a guest that does not exit cleanly makes
``run`` exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

EXIT_USAGE = 2


def _load_image(path: Path):
    from cffi_core.asm import assemble_file
    from cffi_core.image import GuestImage

    if path.suffix == ".s":
        return assemble_file(path)
    return GuestImage.load(path)


def _cmd_asm(args: argparse.Namespace) -> int:
    from cffi_core.asm import assemble_file

    image = assemble_file(Path(args.source))
    out = Path(args.output) if args.output else Path(args.source).with_suffix(".elf")
    image.save(out)
    print(f"{out}: {sum(len(s.data) for s in image.segments)} bytes, entry {image.entry:#x}, "
          f"{len(image.symbols)} symbols")
    return 0


def _cmd_disasm(args: argparse.Namespace) -> int:
    from cffi_core.asm import disassemble

    print(disassemble(_load_image(Path(args.image))), end="")
    return 0


def _counter_rows(counters: dict[str, int]) -> list[tuple[str, int]]:
    return [(k, v) for k, v in counters.items() if v]


def _cmd_run(args: argparse.Namespace) -> int:
    from cffi_core.machine import MiB
    from cffi_core.platform import Platform

    image = _load_image(Path(args.program))
    disk = Path(args.disk).read_bytes() if args.disk else None
    platform = Platform(args.profile, args.memory * MiB, disk=disk)
    platform.load(image)
    result = platform.run(args.budget)
    ok = result.stop == "exit" and result.exit_code == 0
    if args.json:
        doc = {
            "program": str(args.program),
            "profile": args.profile,
            "stop": result.stop,
            "exit_code": result.exit_code,
            "console": result.console.decode("utf-8", errors="replace"),
            "clock": result.clock,
            "counters": result.counters,
        }
        print(json.dumps(doc, indent=2))
        return 0 if ok else 1
    sys.stdout.write(result.console.decode("utf-8", errors="replace"))
    if result.console and not result.console.endswith(b"\n"):
        sys.stdout.write("\n")
    print(f"-- stop: {result.stop}, exit code: {result.exit_code}, ticks: {result.clock}")
    print(tabulate(_counter_rows(result.counters), headers=["counter", "value"], tablefmt="simple"))
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    from cffi_core.platform import DEFAULT_BUDGET
    from cffi_core.profiles import DEFAULT_PROFILE, available_profiles

    parser = argparse.ArgumentParser(prog="popek", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("asm", help="assemble a .s file into an ELF64 image")
    p.add_argument("source")
    p.add_argument("-o", "--output", help="output file (default: the source with .elf)")
    p.set_defaults(func=_cmd_asm)

    p = sub.add_parser("disasm", help="disassemble an ELF64 image (or a .s file)")
    p.add_argument("image")
    p.set_defaults(func=_cmd_disasm)

    p = sub.add_parser("run", help="run a program natively on a bare P64 machine")
    p.add_argument("program", help="a .s source or an ELF64 image")
    p.add_argument("--profile", default=DEFAULT_PROFILE, choices=available_profiles())
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET, help="ticks before the run is stopped")
    p.add_argument("--memory", type=int, default=16, help="RAM in MiB (default 16)")
    p.add_argument("--disk", help="disk image file (a multiple of 512 bytes)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``popek`` console script."""
    from cffi_core.asm import AssemblyError
    from cffi_core.devices import DeviceError
    from cffi_core.image import ImageError
    from cffi_core.platform import MachineError
    from cffi_core.profiles import ProfileError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (``popek run x.s | head``): not an error of the user's input.
        # Point stdout at devnull so the interpreter's final flush does not complain again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (AssemblyError, ImageError, ProfileError, DeviceError, MachineError, OSError, ValueError) as e:
        print(f"popek: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
