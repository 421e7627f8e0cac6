"""The tutorial of docs/vmm-api.md §7, taken from the Markdown as a student would copy it, passes what the text says it passes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.api import VMM, load_vmm

ROOT = Path(__file__).resolve().parents[2]
MANUAL = ROOT / "docs" / "vmm-api.md"
PROFILE = "x86-2005"
"""The profile the suite runs the tutorial's VMM on: the default one, and x86-like (the
tutorial's emulator must pass where trap-and-emulate cannot)."""

PASSES = (
    "test_equivalence.py",
    "test_generated.py",
    "test_generated_rings.py",
    "test_os.py",
    "test_safety.py",
    "test_compression.py",
    "test_stateful.py",
)
"""The conformance files §7 says `TinyEmulator` passes ("the equivalence tests ... and the safety
tests")."""
FAILS = ("test_efficiency.py",)
"""The conformance files §7 says it fails: a full emulator runs nothing directly."""


def _section(text: str, number: int) -> str:
    start = text.index(f"\n## {number}. ")
    return text[start : text.index("\n## ", start + 1)]


def tutorial_module() -> str:
    """The code blocks of §7's five steps, in order: the module ``tiny.py`` the text describes."""
    section = _section(MANUAL.read_text(encoding="utf-8"), 7)
    steps = section[section.index("**Step 1") : section.index("Try it against the oracle")]
    blocks = re.findall(r"```python\n(.*?)```", steps, re.S)
    assert len(blocks) == 5, f"§7 has {len(blocks)} code blocks in its five steps"
    return "\n\n".join(blocks)


def tutorial_try_it() -> str:
    """§7's "Try it against the oracle" block."""
    section = _section(MANUAL.read_text(encoding="utf-8"), 7)
    rest = section[section.index("Try it against the oracle") :]
    return re.search(r"```python\n(.*?)```", rest, re.S).group(1)


@pytest.fixture(scope="module")
def student_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding ``tiny.py`` as the tutorial builds it, as a student's working folder."""
    folder = tmp_path_factory.mktemp("student")
    (folder / "tiny.py").write_text(tutorial_module(), encoding="utf-8")
    return folder


def _env(folder: Path | None = None) -> dict[str, str]:
    """The caller's environment, with ``folder`` first on ``PYTHONPATH`` if given."""
    env = dict(os.environ)
    if folder is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    env.pop("POPEK_HYPOTHESIS_PROFILE", None)
    return env


def test_the_tutorial_module_is_a_vmm(student_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(student_folder))
    monkeypatch.delitem(sys.modules, "tiny", raising=False)
    cls = load_vmm("tiny:TinyEmulator")
    assert issubclass(cls, VMM)
    assert cls.name == "tiny"
    assert cls.requires == frozenset()


def test_the_tutorial_vmm_matches_the_oracle_as_the_text_shows(student_folder: Path) -> None:
    """The "try it" block runs from the repository's top folder and its assertion holds."""
    done = subprocess.run(
        [sys.executable, "-c", tutorial_try_it()],
        cwd=ROOT,
        env=_env(student_folder),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("given", ["tiny.py", "tiny.py:TinyEmulator", "tiny:TinyEmulator"])
def test_popek_grade_finds_the_tutorial_vmm_as_section_12_says(
    student_folder: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """`popek grade --vmm` takes the file, the file and class, or module:Class from the current
    folder, without PYTHONPATH, and hands the folder to the pytest runs it starts."""
    from reports.demo import resolve_vmm

    monkeypatch.chdir(student_folder)
    monkeypatch.setattr(sys, "path", list(sys.path))  # resolve_vmm may add the folder: undone after
    monkeypatch.delitem(sys.modules, "tiny", raising=False)  # found afresh, not from another test
    submission = resolve_vmm(given)
    assert submission.vmm.__name__ == "TinyEmulator"
    assert submission.spec == "tiny:TinyEmulator"
    assert submission.path == student_folder


@pytest.mark.parametrize("test_file", PASSES + FAILS)
def test_the_suite_grades_the_tutorial_vmm_as_the_text_says(
    student_folder: Path, tmp_path: Path, test_file: str
) -> None:
    """One conformance file on the tutorial's VMM, run as §12 says a student runs it (``python -m
    pytest`` in the folder of ``tiny.py``, hypothesis profile ``dev``): every test of a file §7
    says it passes passes or is skipped for its reason, every test of a file it fails fails."""
    results = tmp_path / "results"
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "no:xdist",
        "--pyargs", f"conformance.{test_file.removesuffix('.py')}",
        "--popek-vmm", "tiny:TinyEmulator", "--popek-profile", PROFILE,
        "--popek-hypothesis-profile", "dev", "--popek-results", str(results),
    ]  # fmt: skip
    # No PYTHONPATH for the folder: `python -m pytest` finds tiny.py in the current folder (§12).
    done = subprocess.run(command, cwd=student_folder, env=_env(), capture_output=True, text=True, timeout=1800)
    files = sorted(results.glob("*.json"))
    assert len(files) == 1, f"no results file; pytest said:\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
    tests = json.loads(files[0].read_text(encoding="utf-8"))["tests"]
    outcomes = {t["nodeid"].split("::", 1)[-1]: t["outcome"] for t in tests}
    assert outcomes, done.stdout[-4000:]
    if test_file in FAILS:
        assert set(outcomes.values()) == {"failed"}, outcomes
        assert done.returncode == 1
    else:
        wrong = {k: v for k, v in outcomes.items() if v not in ("passed", "skipped")}
        assert not wrong, f"{wrong}\n{done.stdout[-6000:]}"
        assert "passed" in outcomes.values()
        assert done.returncode == 0, done.stdout[-4000:]
