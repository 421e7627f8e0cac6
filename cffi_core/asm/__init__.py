"""The P64 assembler, Python program builder and disassembler (public API re-exported here)."""

from cffi_core.asm.assembler import AssemblyError, assemble, assemble_file, clear_caches, li_sequence
from cffi_core.asm.builder import Builder, Mem
from cffi_core.asm.disassembler import disassemble, disassemble_word

__all__ = [
    "AssemblyError",
    "Builder",
    "Mem",
    "assemble",
    "assemble_file",
    "clear_caches",
    "disassemble",
    "disassemble_word",
    "li_sequence",
]
