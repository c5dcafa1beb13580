"""The shipped code and docs stand alone: no pointer to design notes that live outside the repo.

A user reads ``README.md``, ``docs/`` and the package's docstrings, comments and
help texts; none of them may send the reader to a document they cannot see
(a "DESIGN §3", a "STYLE habit 5", "NOTES.md", "../shared/...", "issue 4").
Explain the rule in place, or point to the page under ``docs/`` that explains it.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PATTERN = re.compile(
    r"DESIGN ?§|DESIGN\.md|STYLE habit|STYLE\.md|NOTES\.md|\.\./shared|\bissue \d+\b",
    re.IGNORECASE,
)
PACKAGE_SUFFIXES = {".py", ".cu", ".cuh", ".h", ".json"}


def _files() -> list[Path]:
    files = [p for p in (ROOT / "avs_engine").rglob("*") if p.is_file() and p.suffix in PACKAGE_SUFFIXES]
    files += [p for p in (ROOT / "docs").rglob("*") if p.is_file() and p.suffix == ".md"]
    files.append(ROOT / "README.md")
    return sorted(p for p in files if "__pycache__" not in p.parts)


def _hits() -> list[str]:
    hits = []
    for path in _files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            m = PATTERN.search(line)
            if m:
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {m.group(0)!r} in {line.strip()[:100]}")
    return hits


def test_scan_covers_the_package_and_the_docs():
    names = {p.relative_to(ROOT).as_posix() for p in _files()}
    assert "README.md" in names
    assert "avs_engine/metrics.py" in names
    assert any(n.startswith("docs/") for n in names)
    assert any(n.endswith(".cu") for n in names)


def test_pattern_catches_the_usual_forms():
    for text in ("see DESIGN §6", "DESIGN§1.2", "STYLE habit 12", "design.md", "notes.md",
                 "../shared/DESIGN.md", "Issue 5, step 1"):
        assert PATTERN.search(text), text
    for text in ("designs", "the tissue 5", "issues 12 and 13", "docs/metrics.md"):
        assert not PATTERN.search(text), text


def test_no_pointers_outside_the_repo():
    hits = _hits()
    assert not hits, "pointers to documents outside the repo (explain in place or point into docs/):\n" + "\n".join(hits)
