"""Every repository path the manuals and READMEs name exists: no reference to a file that moved or never was."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    {
        *ROOT.glob("docs/*.md"),
        ROOT / "README.md",
        ROOT / "reference_vmm" / "READING_GUIDE.md",
        ROOT / "tests" / "README.md",
        ROOT / "conformance" / "guest_os" / "README.md",
    }
)
"""The manuals a user reads (docs/), the README, the reading guide to the reference VMMs and
the READMEs of the tests and of the guest OS."""

TOP_LEVEL = ("benchmarks", "cffi_core", "conformance", "docs", "examples", "reference_vmm", "reports", "tests")
"""A path that starts with one of these names the repository's own folder: it must exist from
the top of the checkout, exactly."""

NOT_IN_REPOSITORY = (
    "popek-report/",
    "popek-grade/",
    "popek-bench/",
    ".popek-results/",
    ".benchmarks/",
    "results/",
    "bench.json",
    "bench.md",
    "bench.html",
    "report.md",
    "report.html",
    "hello.elf",
    "cffi_core/_p64",
    "tiny.py",
    "mypkg/",
    "submissions/",
)
"""What the docs name that popek writes or the reader creates (output folders and files, the
compiled core, the reader's own VMM: the tutorial's module, a package, a folder of
submissions), not files of the repository: a named path that starts with one of these is not
looked up."""

_CODE = re.compile(r"`([^`\s]+)`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FILE_SUFFIX = re.compile(r"\.(md|py|s|toml|c|h|ini|sh|json|cfg|txt|yml|yaml)$")
_PLACEHOLDER = re.compile(r"[<>*{}…$=()\[\]'\",:|]|\.\.\.")


@cache
def _repository_files() -> tuple[str, ...]:
    """Every file and folder of the checkout, as paths from its top (``.git`` and build output
    left out)."""
    skip = {".git", "__pycache__", ".tox", ".hypothesis", "build"}
    out = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if skip & set(rel.parts) or rel.parts[0].endswith(".egg-info"):
            continue
        out.append(rel.as_posix())
    return tuple(out)


def named_paths(document: Path) -> list[tuple[int, str, bool]]:
    """The repository paths ``document`` names: ``(line, path, is_link)`` for every code span
    that looks like a path (a ``/`` in it, or a file suffix) and every relative Markdown link."""
    text = document.read_text(encoding="utf-8")
    found = []
    for pattern, is_link in ((_CODE, False), (_LINK, True)):
        for m in pattern.finditer(text):
            target = m.group(1).split("#")[0].rstrip(".,;")
            if not target or "://" in target or target.startswith(("-", "mailto")):
                continue
            if not is_link and (_PLACEHOLDER.search(target) or not ("/" in target or _FILE_SUFFIX.search(target))):
                continue
            if re.fullmatch(r"\.\w+", target):  # a bare suffix (".s"), not a file
                continue
            found.append((text.count("\n", 0, m.start()) + 1, target, is_link))
    return found


def exists(document: Path, target: str, is_link: bool) -> bool:
    """Whether ``target``, named in ``document``, is a file or folder of the repository.

    A link resolves from the document's folder, exactly. A code span resolves from the top of
    the checkout when it starts with a top-level folder (exactly), else from the document's
    folder, else as the tail of some repository path (``lib/end.s`` of a guest folder the
    sentence names, ``test_os.py`` of ``conformance/``): prose names files by the context it
    gives, and a stale reference names a file that is nowhere."""
    if target.startswith(NOT_IN_REPOSITORY):
        return True
    if (document.parent / target).exists():
        return True
    if is_link:
        return False
    clean = target.strip("/")
    if clean.split("/")[0] in TOP_LEVEL:
        return (ROOT / clean).exists()
    return any(path == clean or path.endswith("/" + clean) for path in _repository_files())


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_path_a_document_names_exists(document: Path) -> None:
    missing = [
        f"{document.relative_to(ROOT)}:{line}: {target}"
        for line, target, is_link in named_paths(document)
        if not exists(document, target, is_link)
    ]
    assert not missing, "paths named in the docs that do not exist:\n" + "\n".join(missing)


def test_the_checker_finds_a_stale_reference(tmp_path: Path) -> None:
    """The check can fail: a made-up path in each form is reported, a real one is not."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "See `conformance/guests/nosuch.s`, `docs/nosuch.md`, `nosuch_module.py`, [x](nosuch.md), "
        "and `reference_vmm/READING_GUIDE.md`, `lib/end.s`, `pkg.module:Class`.\n"
    )
    names = named_paths(doc)
    assert [t for _, t, _ in names] == [
        "conformance/guests/nosuch.s",
        "docs/nosuch.md",
        "nosuch_module.py",
        "reference_vmm/READING_GUIDE.md",
        "lib/end.s",
        "nosuch.md",
    ]
    assert [t for _, t, link in names if not exists(doc, t, link)] == [
        "conformance/guests/nosuch.s",
        "docs/nosuch.md",
        "nosuch_module.py",
        "nosuch.md",
    ]


def test_no_package_source_cites_a_design_file_users_do_not_have() -> None:
    """Docstrings and comments cite the manuals in docs/ (a design document is not shipped)."""
    offenders = []
    for package in ("benchmarks", "cffi_core", "conformance", "reference_vmm", "reports"):
        for path in sorted((ROOT / package).rglob("*")):
            if path.suffix not in (".py", ".s", ".toml", ".c", ".h", ".md") or "__pycache__" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"\bDESIGN\b", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    for document in DOCUMENTS:
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\bDESIGN\b", line):
                offenders.append(f"{document.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "citations of a design file users do not have:\n" + "\n".join(offenders)


def test_every_manual_the_sources_cite_exists() -> None:
    """Docstrings and comments cite manuals by path (``docs/vmx.md``): each must be there."""
    cited = re.compile(r"\bdocs/[\w./-]+\.md\b")
    missing = []
    sources = [ROOT / "tox.ini", ROOT / "pyproject.toml"]
    for folder in ("benchmarks", "cffi_core", "conformance", "reference_vmm", "reports", "examples", ".ci"):
        sources += sorted(p for p in (ROOT / folder).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in sources:
        if path.suffix not in (".py", ".s", ".toml", ".c", ".h", ".md", ".ini", ".sh", ".yml", ".yaml", ".json"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            missing += [
                f"{path.relative_to(ROOT)}:{number}: {m.group(0)}"
                for m in cited.finditer(line)
                if not (ROOT / m.group(0)).is_file()
            ]
    assert not missing, "manuals cited that do not exist:\n" + "\n".join(missing)
