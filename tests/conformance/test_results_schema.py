"""The published JSON Schema of a results file: every file the writer produces follows it, and a file that breaks it is one error naming the file and the field."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest

import conformance
from conformance.results import (
    OUTCOMES,
    SCHEMA_FILE,
    ResultsError,
    ResultsWriter,
    RunKey,
    load_results,
    results_schema,
)

KEY = RunKey("toy", "a toy technique", "toys.monitor:ToyVMM", "x86-2005")
ROOT = Path(conformance.__file__).resolve().parents[1]


def _validate(path: Path) -> None:
    jsonschema.Draft202012Validator(results_schema()).validate(json.loads(path.read_text()))


def test_the_schema_is_a_valid_draft_2020_12_schema_shipped_with_the_package():
    jsonschema.Draft202012Validator.check_schema(results_schema())
    assert SCHEMA_FILE.parent == Path(conformance.__file__).parent
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert SCHEMA_FILE.name in data["conformance"]
    schema = results_schema()
    assert schema["properties"]["tests"]["items"]["properties"]["outcome"]["enum"] == list(OUTCOMES)
    assert schema["properties"]["format"]["const"] == "popek-results"


def test_every_outcome_the_writer_records_follows_the_schema(tmp_path):
    writer = ResultsWriter(tmp_path)
    for i, outcome in enumerate((*OUTCOMES, None)):  # None: a test that never finished
        record = writer.result(KEY, f"conformance/test_x.py::test_x[toy-{i}]", "equivalence" if i else None, None)
        record.outcome = outcome
        record.message = "a \x00 message\n" if outcome else None
        record.duration = 0.5 * i
        record.counters = {"traps": i}
        record.coverage = {"insn/smsw/cpl0/flat/tf0": i}
    other = writer.result(RunKey("toy", "t", "toys.monitor:ToyVMM", "classic-1974"), "n", None, None)
    other.outcome = "passed"
    for path in writer.write():
        _validate(path)
        load_results(path)


def test_the_files_of_a_real_run_follow_the_schema(tmp_path):
    results = tmp_path / "results"
    subprocess.run(
        [sys.executable, "-m", "pytest", "conformance/test_equivalence.py", "--popek-vmm", "trap-and-emulate",
         "--popek-profile", "x86-2005", "-k", "smsw or paging", "-p", "no:cacheprovider", "-q",
         f"--popek-results={results}"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    (path,) = results.glob("*.json")
    _validate(path)
    assert {t.outcome for t in load_results(path).tests} == {"passed", "xfailed"}


def _broken(tmp_path: Path, mangle) -> Path:
    writer = ResultsWriter(tmp_path)
    for name in ("smsw", "sidt"):
        record = writer.result(KEY, f"conformance/test_x.py::test_x[toy-{name}]", "equivalence", "obstacle")
        record.outcome, record.counters = "passed", {"traps": 1}
    (path,) = writer.write()
    doc = json.loads(path.read_text())
    mangle(doc)
    path.write_text(json.dumps(doc))
    return path


SECOND = "tests[1] (conformance/test_x.py::test_x[toy-smsw])"  # the writer sorts tests by node id


@pytest.mark.parametrize(
    ("mangle", "words"),
    [
        (lambda d: d.pop("vmm_class"), 'key "vmm_class" is missing'),
        (lambda d: d.update(vmm=7), '"vmm" is 7, not string'),
        (lambda d: d.update(tests={}), '"tests" is {}, not array'),
        (lambda d: d.update(vmm_path=3), '"vmm_path" is 3, not string or null'),
        (lambda d: d["tests"][1].update(outcome="great"), f"{SECOND}: \"outcome\" 'great' is not one of passed,"),
        (lambda d: d["tests"][1].pop("nodeid"), 'tests[1]: key "nodeid" is missing'),
        (lambda d: d["tests"][1].update(duration="long"), f'{SECOND}: "duration" is "long", not number'),
        (lambda d: d["tests"][1].update(message=3), f'{SECOND}: "message" is 3, not string or null'),
        (lambda d: d["tests"][1]["counters"].update(traps="1"), f'{SECOND}: "counters" is not an object of integers'),
        (lambda d: d["tests"][1].update(coverage=[1]), f'{SECOND}: "coverage" is not an object of integers'),
        (lambda d: d["versions"].update(python=3.11), '"versions" is not an object of strings'),
        (lambda d: d["tests"].__setitem__(0, "a test"), "tests[0] is not an object"),
    ],
)
def test_a_broken_file_is_one_error_naming_the_file_and_the_field(tmp_path, mangle, words):
    path = _broken(tmp_path, mangle)
    with pytest.raises(ResultsError) as info:
        load_results(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and words in message
    assert "\n" not in message


def test_of_several_faults_the_first_field_is_named_every_time(tmp_path):
    def mangle(d):
        d["tests"][1]["outcome"] = "late"
        d["tests"][0]["outcome"] = "early"

    path = _broken(tmp_path, mangle)
    with pytest.raises(ResultsError, match=r"tests\[0\].*'early'"):
        load_results(path)


def test_fields_the_schema_does_not_name_and_the_optional_ones_are_accepted(tmp_path):
    def mangle(d):
        d["partial"] = "-k smsw"
        d["new_run_field"] = {"anything": [1]}
        d["tests"][0]["new_test_field"] = None
        for name in ("hypothesis_profile", "versions", "summary"):
            d.pop(name)
        for name in ("property", "category", "message", "duration", "counters", "coverage"):
            d["tests"][1].pop(name)

    run = load_results(_broken(tmp_path, mangle))
    assert len(run.tests) == 2 and run.tests[1].counters == {} and run.versions == {}
