"""The results writer of the pytest plugin: one JSON file per (VMM, profile) run, read by reports.

A file ``<vmm>--<profile>.json`` in the ``--popek-results`` directory holds::

    {
      "schema": 1,
      "vmm": "emulate", "technique": "...", "vmm_class": "reference_vmm.emulate:EmulateVMM",
      "profile": "x86-2005",
      "versions": {"popek": "0.1.0", "python": "3.11.7"},
      "summary": {"passed": 14, "failed": 0, ...},
      "tests": [
        {"nodeid": "...", "property": "equivalence", "category": "obstacle",
         "outcome": "passed", "duration": 0.01, "message": null, "counters": {...}}
      ]
    }

``outcome`` is one of ``OUTCOMES``; ``message`` is the failure report (the observation diff, the
counterexample) for failed and error outcomes, the reason for skipped and xfailed ones.
"""

from __future__ import annotations

import json
import platform
import re
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["OUTCOMES", "SCHEMA", "ResultsWriter", "RunKey", "TestResult"]

SCHEMA = 1
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
_MESSAGE_LIMIT = 8000  # characters of a failure report kept in the JSON


@dataclass(frozen=True)
class RunKey:
    """Which run a test belongs to: the VMM and the machine profile."""

    vmm: str
    technique: str
    vmm_class: str
    profile: str

    @property
    def filename(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.vmm}--{self.profile}") + ".json"


@dataclass
class TestResult:
    """One test of one run, as it goes into the JSON."""

    __test__ = False  # not a pytest test class

    nodeid: str
    property: str | None
    category: str | None
    outcome: str = "passed"
    duration: float = 0.0
    message: str | None = None
    counters: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "property": self.property,
            "category": self.category,
            "outcome": self.outcome,
            "duration": round(self.duration, 6),
            "message": self.message,
            "counters": dict(sorted(self.counters.items())),
        }


def versions() -> dict[str, str]:
    """The versions a result depends on: popek itself and Python."""
    try:
        popek = metadata.version("popek")
    except metadata.PackageNotFoundError:
        popek = "unknown"
    return {"popek": popek, "python": platform.python_version()}


class ResultsWriter:
    """Collects test outcomes per run and writes one JSON file per run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.runs: dict[RunKey, dict[str, TestResult]] = {}

    def result(self, key: RunKey, nodeid: str, prop: str | None, category: str | None) -> TestResult:
        """The record of ``nodeid`` in run ``key``, created on first use."""
        tests = self.runs.setdefault(key, {})
        if nodeid not in tests:
            tests[nodeid] = TestResult(nodeid, prop, category)
        return tests[nodeid]

    def write(self) -> list[Path]:
        """Write every run's file (the directory is created); return the paths written."""
        self.directory.mkdir(parents=True, exist_ok=True)
        written = []
        for key, tests in sorted(self.runs.items(), key=lambda kv: kv[0].filename):
            summary = dict.fromkeys(OUTCOMES, 0)
            for test in tests.values():
                summary[test.outcome] += 1
            document = {
                "schema": SCHEMA,
                "vmm": key.vmm,
                "technique": key.technique,
                "vmm_class": key.vmm_class,
                "profile": key.profile,
                "versions": versions(),
                "summary": summary,
                "tests": [t.as_json() for t in sorted(tests.values(), key=lambda t: t.nodeid)],
            }
            path = self.directory / key.filename
            path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            written.append(path)
        return written


def clip(text: str) -> str:
    """A failure report cut to the size kept in the JSON."""
    return (
        text
        if len(text) <= _MESSAGE_LIMIT
        else text[:_MESSAGE_LIMIT] + f"\n... ({len(text) - _MESSAGE_LIMIT} more characters)"
    )
