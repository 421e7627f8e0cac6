"""Mutants of the reference VMMs: one-idea bugs the conformance suite should kill (docs/mutants.md).

``MUTANTS`` is the catalog ``python -m conformance.mutation`` grades; ``ENTRIES`` pairs each
with its witness, checked by ``tests/mutants/test_mutants.py``.
"""

from __future__ import annotations

from tests.mutants.catalog import ENTRIES, Entry

__all__ = ["ENTRIES", "MUTANTS", "Entry"]

MUTANTS = tuple(entry.mutant for entry in ENTRIES)
