"""The results writer of the pytest plugin: one JSON file per (VMM, profile) run, read by reports.

A file ``<vmm>--<profile>.json`` in the ``--popek-results`` directory (``RunKey.filename``: a VMM
outside popek's reference VMMs adds ``--<module>-<Class>``) holds::

    {
      "format": "popek-results", "schema": 1,
      "vmm": "emulate", "technique": "...", "vmm_class": "reference_vmm.emulate:EmulateVMM",
      "profile": "x86-2005",
      "hypothesis_profile": "ci",
      "partial": null, "vmm_path": null,
      "versions": {"popek": "0.1.0", "python": "3.11.7", "pytest": "9.0.3", "hypothesis": "6.155.2"},
      "summary": {"passed": 14, "failed": 0, ...},
      "tests": [
        {"nodeid": "...", "property": "equivalence", "category": "obstacle",
         "outcome": "passed", "duration": 0.01, "message": null, "counters": {...},
         "coverage": {"insn/smsw/cpl0/flat/tf0": 12, "adjacent/exit-after-sti": 3, ...}}
      ]
    }

``outcome`` is one of ``OUTCOMES``, taken from the test's final report only: a test that
started and never finished (the run was interrupted) is an ``error``; ``message`` is the failure report (the observation diff, the
counterexample) for failed and error outcomes, the reason for skipped and xfailed ones.
``hypothesis_profile`` is the hypothesis profile of popek's tests in the run, as
``--popek-hypothesis-profile`` names it (null in files of runs that did not record it).
``vmm_path`` is the directory a rerun needs on ``PYTHONPATH`` to import the VMM (a submission
graded from its folder), null for an installed one.
``partial`` is null for a run of every test collected, else what narrowed or cut it short
(``-k``/``-m`` expressions, deselected tests, ``-x``/``--maxfail``, an interruption): a grade of
a partial run speaks only for the tests it ran (absent in older files, read back as null).
``coverage`` counts, per cell of ``conformance.coverage``, the generated examples of the test
that exercised it (empty for a test without generated guests; absent in files written before it
existed, read back as empty).

``load_results`` reads a file back (``popek report``).  It checks ``format``, ``schema`` and the
keys above, and ignores keys it does not know: a newer writer may add fields, and a field added
to ``TestResult`` is read back by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT",
    "OUTCOMES",
    "SCHEMA",
    "SCHEMA_FILE",
    "ResultsError",
    "ResultsWriter",
    "RunKey",
    "RunResults",
    "TestResult",
    "load_results",
    "results_schema",
]

FORMAT = "popek-results"  # tells a results file from any other JSON (benchmarks write JSON too)
SCHEMA = 1
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
_MESSAGE_LIMIT = 8000  # characters of a failure report kept in the JSON
_INTERRUPTED = 2  # pytest.ExitCode.INTERRUPTED, without importing pytest into the reader
_UNFINISHED = "no outcome: the run ended (interrupted, or its process stopped) before this test finished"


@dataclass(frozen=True)
class RunKey:
    """Which run a test belongs to: the VMM and the machine profile."""

    vmm: str
    technique: str
    vmm_class: str
    profile: str

    @property
    def filename(self) -> str:
        """The run's results file name, unique per (VMM class, profile): ``<vmm>--<profile>.json``
        for popek's reference VMMs, ``<vmm>--<profile>--<module>-<Class>.json`` for any other, so
        that two submissions sharing a VMM ``name`` (or a name sharing a reference VMM's) never
        write over each other.  A class path that does not survive the file name as it is (other
        than ASCII letters, digits, ``.`` and ``_``, or too long) ends with a hash of the whole."""
        stem = _safe(f"{self.vmm}--{self.profile}")
        if not self.vmm_class.startswith(_REFERENCE_PACKAGE):
            module, _, cls = self.vmm_class.partition(":")
            safe = _safe(module) + "-" + _safe(cls)
            if safe != f"{module}-{cls}" or len(safe) > _CLASS_CHARS:
                digest = hashlib.sha1(self.vmm_class.encode("utf-8")).hexdigest()[:8]
                safe = f"{safe[:_CLASS_CHARS]}-{digest}"
            stem += f"--{safe}"
        return stem + ".json"


_REFERENCE_PACKAGE = "reference_vmm."  # popek's own VMMs keep the short names of their files
_CLASS_CHARS = 120  # of a class path in a file name (names stay well under 255 bytes)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _narrower_than_the_suite(config: Any) -> list[str]:
    """The command-line arguments of ``config`` that name part of the conformance package (a
    module, a test) rather than all of it: ``pytest conformance/test_safety.py`` is a partial run."""
    suite = Path(__file__).resolve().parent
    here = Path(getattr(getattr(config, "invocation_params", None), "dir", None) or Path.cwd())
    narrower = []
    for arg in getattr(config, "args", None) or []:
        where, sep, _ = str(arg).partition("::")
        path = (here / where).resolve()
        if not path.exists() and where.replace(".", "").replace("_", "").isalnum():  # --pyargs a.b
            parts = where.split(".")
            if parts[0] == suite.name:
                path = suite.joinpath(*parts[1:]).with_suffix(".py") if len(parts) > 1 else suite
        inside = path != suite and suite in path.parents
        if inside or (path == suite and sep):
            narrower.append(str(arg))
    return narrower


def _import_root(vmm_class: str) -> str | None:
    """The directory the VMM's top-level module was imported from, when a rerun elsewhere needs it
    on ``PYTHONPATH``: found through ``PYTHONPATH`` or the working directory (a submission, a
    student's folder), not installed.  None for popek's own VMMs and installed ones."""
    if vmm_class.startswith(_REFERENCE_PACKAGE):
        return None
    top = vmm_class.partition(":")[0].split(".")[0]
    origin = getattr(sys.modules.get(top), "__file__", None)
    if not origin:
        return None
    path = Path(origin).resolve()
    root = path.parent.parent if path.name == "__init__.py" else path.parent
    entries = {Path(e).resolve() for e in os.environ.get("PYTHONPATH", "").split(os.pathsep) if e}
    return str(root) if root in entries or root == Path.cwd().resolve() else None


@dataclass
class TestResult:
    """One test of one run, as it goes into the JSON."""

    __test__ = False  # not a pytest test class

    nodeid: str
    property: str | None
    category: str | None
    outcome: str | None = None
    """One of ``OUTCOMES``; None until the test's final report arrives (``ResultsWriter``
    writes a test that never got one as an error: a grade is never better than observed)."""
    duration: float = 0.0
    message: str | None = None
    counters: dict[str, int] = field(default_factory=dict)
    coverage: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "property": self.property,
            "category": self.category,
            "outcome": self.outcome,
            "duration": round(self.duration, 6),
            "message": self.message,
            "counters": dict(sorted(self.counters.items())),
            "coverage": dict(sorted(self.coverage.items())),
        }


def versions() -> dict[str, str]:
    """The versions a result depends on: popek, Python, pytest and hypothesis."""
    found = {"python": platform.python_version()}
    for dist in ("popek", "pytest", "hypothesis"):
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "unknown"
    return found


def _hypothesis_profile() -> str | None:
    """The hypothesis profile of popek's tests in this process, as ``--popek-hypothesis-profile``
    takes it (a rerun needs the same one)."""
    from conformance import hypothesis_profiles

    return hypothesis_profiles.active()


class ResultsWriter:
    """Collects test outcomes per run and writes one JSON file per run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.runs: dict[RunKey, dict[str, TestResult]] = {}
        self.partial: list[str] = []
        """Why the runs are partial (``note_partial``), in the order noted; empty for whole runs."""
        self._deselected = 0

    def note_partial(self, reason: str) -> None:
        """Record that the session did not run every test it collected, and why; written as the
        files' ``partial`` (reasons joined by ``; ``, each once)."""
        if reason not in self.partial:
            self.partial.append(reason)

    def deselected(self, items: Sequence[Any]) -> None:
        """Count the tests of a VMM among ``items`` that pytest deselected (``pytest_deselected``:
        ``-k``, ``-m``, ``--deselect``); other tests of the session are no part of a run."""
        self._deselected += sum(1 for item in items if "vmm" in getattr(getattr(item, "callspec", None), "params", {}))

    def finish(self, config: Any, exitstatus: int = 0, stopped: str | bool = False) -> None:
        """Note what made the session partial, from pytest's ``config`` (``-k``, ``-m``,
        ``--deselect``, arguments naming part of the conformance package), the deselected count,
        ``stopped`` (``session.shouldstop`` or ``shouldfail``: ``-x``, ``--maxfail``) and
        ``exitstatus`` (2: interrupted)."""
        option = getattr(config, "option", None)
        for flag, name in (("-k", "keyword"), ("-m", "markexpr")):
            value = getattr(option, name, None)
            if value:
                self.note_partial(f"{flag} {value}")
        if getattr(option, "deselect", None):
            self.note_partial(f"--deselect of {len(option.deselect)} test(s)")
        if self._deselected:
            self.note_partial(f"{self._deselected} test(s) deselected")
        for arg in _narrower_than_the_suite(config):
            self.note_partial(f"only {arg}")
        if stopped:
            self.note_partial(f"stopped early: {stopped}" if isinstance(stopped, str) else "stopped early")
        if exitstatus == _INTERRUPTED:
            self.note_partial("interrupted")

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
                if test.outcome is None:  # it started and never finished: the run was interrupted
                    test.outcome = "error"
                    test.message = _UNFINISHED
                summary[test.outcome] += 1
            document = {
                "format": FORMAT,
                "schema": SCHEMA,
                "vmm": key.vmm,
                "technique": key.technique,
                "vmm_class": key.vmm_class,
                "profile": key.profile,
                "hypothesis_profile": _hypothesis_profile(),
                "partial": "; ".join(self.partial) or None,
                "vmm_path": _import_root(key.vmm_class),
                "versions": versions(),
                "summary": summary,
                "tests": [t.as_json() for t in sorted(tests.values(), key=lambda t: t.nodeid)],
            }
            path = self.directory / key.filename
            path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            written.append(path)
        return written


def clip(text: str) -> str:
    """A failure report as the JSON keeps it: tidied (``conformance.checks.tidy_failure``: no
    advice its reader cannot act on, no duplicate diff, no blob of bytes), then cut to size."""
    from conformance.checks import tidy_failure

    text = tidy_failure(text)
    return (
        text
        if len(text) <= _MESSAGE_LIMIT
        else text[:_MESSAGE_LIMIT] + f"\n... ({len(text) - _MESSAGE_LIMIT} more characters)"
    )


# ---- reading ------------------------------------------------------------------------------


class ResultsError(ValueError):
    """A results file that cannot be read: the message names the file and what is wrong."""


@dataclass
class RunResults:
    """One results file read back: the run, its environment and its tests."""

    key: RunKey
    tests: list[TestResult]
    versions: dict[str, str] = field(default_factory=dict)
    hypothesis_profile: str | None = None
    source: Path | None = None
    partial: str | None = None
    """Why the run did not run every test (``ResultsWriter.note_partial``); None for a whole run."""
    vmm_path: str | None = None
    """The directory a rerun needs on ``PYTHONPATH`` to import the VMM (None: importable as installed)."""


_RUN_KEYS = ("vmm", "technique", "vmm_class", "profile")


def load_results(path: Path) -> RunResults:
    """Read one results file; ``ResultsError`` (naming ``path`` and the field) when it is missing,
    not JSON, not a popek results file, of another schema, or does not follow ``SCHEMA_FILE``
    (which allows fields it does not name: a newer writer may add some)."""

    def bad(what: str) -> ResultsError:
        return ResultsError(f"{path}: {what}")

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise bad("no such results file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise bad(f"cannot read: {e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise bad(f"not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f'not a popek results file (no "format": "{FORMAT}")')
    if doc.get("schema") != SCHEMA:
        raise bad(f'"schema" is {doc.get("schema")!r}; this popek reads schema {SCHEMA}')
    problem = _schema_problem(doc)
    if problem is not None:
        raise bad(problem)
    known = {f.name for f in fields(TestResult)}
    tests = []
    for raw in doc["tests"]:
        given = {k: v for k, v in raw.items() if k in known and k not in ("counters", "coverage")}
        record = TestResult(**{"property": None, "category": None} | given)  # the schema requires neither
        record.counters = dict(raw.get("counters") or {})
        record.coverage = dict(raw.get("coverage") or {})
        tests.append(record)
    env = doc.get("versions")
    hp = doc.get("hypothesis_profile")
    return RunResults(
        key=RunKey(*(doc[name] for name in _RUN_KEYS)),
        tests=tests,
        versions={str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {},
        hypothesis_profile=hp if isinstance(hp, str) else None,
        source=path,
        partial=doc["partial"] if isinstance(doc.get("partial"), str) else None,
        vmm_path=doc["vmm_path"] if isinstance(doc.get("vmm_path"), str) else None,
    )


SCHEMA_FILE = Path(__file__).with_name("results.schema.json")
"""The JSON Schema (draft 2020-12) of a results file, shipped with the package (docs/grading.md)."""


@cache
def results_schema() -> dict[str, Any]:
    """The JSON Schema of a results file (``SCHEMA_FILE``), parsed."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@cache
def _validator() -> Any:
    import jsonschema

    schema = results_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_problem(doc: dict[str, Any]) -> str | None:
    """What in ``doc`` breaks the schema, as one line naming the field, or None.  Of several
    faults the one with the first path is named (the file's own fields before its tests', test
    by test), so that a file names the same fault every time."""
    errors = list(_validator().iter_errors(doc))
    if not errors:
        return None
    error = min(errors, key=lambda e: [(0, p) if isinstance(p, int) else (1, str(p)) for p in e.absolute_path])
    path = list(error.absolute_path)
    where = ""
    if len(path) >= 2 and path[0] == "tests" and isinstance(path[1], int):
        test = doc["tests"][path[1]]
        nodeid = test.get("nodeid") if isinstance(test, dict) else None
        where = f"tests[{path[1]}]" + (f" ({nodeid})" if isinstance(nodeid, str) else "") + ": "
        path = path[2:]
    if error.validator == "required":
        missing = next((name for name in error.validator_value if name not in error.instance), "?")
        return f'{where}key "{".".join(map(str, [*path, missing]))}" is missing'
    if not path:  # the document or a test as a whole
        if error.validator == "type":
            return f"{where.removesuffix(': ') or 'the file'} is not an object"
        return f"{where}{error.message}"
    name = str(path[0])
    if name in ("counters", "coverage", "versions", "summary"):
        kind = "strings" if name == "versions" else "integers"
        detail = f" ({'.'.join(map(str, path[1:]))}: {error.message})" if len(path) > 1 else ""
        return f'{where}"{name}" is not an object of {kind}{detail}'
    if error.validator == "enum":
        return f'{where}"{name}" {error.instance!r} is not one of {", ".join(map(str, error.validator_value))}'
    if error.validator == "type":
        wanted = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f'{where}"{name}" is {json.dumps(error.instance)[:60]}, not {" or ".join(wanted)}'
    return f'{where}"{".".join(map(str, path))}": {error.message}'
