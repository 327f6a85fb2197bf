"""The documentation stands on its own and agrees with the README.

Two promises are checked over every tracked file:

- Nothing cites the design notes the project was written from. They are not in the
  repository, so a reader could not follow such a citation; what they say is explained in
  ``docs/`` instead (protocols, wire format, Ethereum contracts and encodings).
- No page calls a feature "in progress" or "planned" that the README's feature table marks
  as done.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Built from parts so that this file does not trip its own check.
_NOTES = ("PROTOCOL", "DESIGN", "ETHEREUM")
_SECTION = "\u00a7"
CITATION = re.compile(
    "|".join(re.escape(name + ".md") for name in _NOTES)
    + "|"
    + re.escape(_SECTION)
    + "|"
    + r"\b(?:"
    + "|".join(_NOTES)
    + r")\s+"
    + re.escape(_SECTION)
)

DONE = "\u2705"
# Phrases that say a feature is not there yet.
NOT_YET = re.compile(
    r"in progress|planned|later release|future release|coming soon|comes? in a later|"
    r"not yet (?:supported|implemented|available|done)",
    re.IGNORECASE,
)
# Features by words that name them in prose; each must appear in a done row of the README
# (checked below), so the list cannot silently drift from the table.
FEATURES = {
    "LevelDB": r"\bleveldb\b",
    "RocksDB": r"\brocksdb\b",
    "TCP bus": r"\btcp\b",
    "Unix-socket bus": r"unix[- ]socket",
    "Ethereum backend": r"\bethereum\b|perun-eth",
    "sub-channels": r"sub-channel",
    "app channels": r"app channels?",
    "benchmarks": r"\bbenchmarks?\b",
    "disputes": r"\bdisputes?\b",
    "restore": r"\brestore\b",
}


def tracked_files() -> list[Path]:
    """Every file git tracks in this checkout (no .git, nothing untracked)."""
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def text_of(path: Path) -> str | None:
    """The file's text, or None for binary files (and files absent from the work tree)."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def readme_rows() -> list[str]:
    """The rows of the README's feature table (lines of a table whose last cell has a status)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.startswith("|") and line.count("|") >= 3]


def done_rows() -> list[str]:
    """The feature rows the README marks as done."""
    return [row for row in readme_rows() if DONE in row.rsplit("|", 2)[-2]]


def clauses(text: str) -> list[str]:
    """Sentences and table cells, split further at semicolons: a status word applies only
    to what its own clause names."""
    flat = re.sub(r"\s*\n\s*", " ", text)
    return [c for c in re.split(r"(?<=[.!?])\s+|;|\|", flat) if c.strip()]


def test_the_citation_check_works() -> None:
    for cited in (_NOTES[0] + ".md", "see " + _NOTES[2] + " " + _SECTION + "7.5", _SECTION + "5"):
        assert CITATION.search(cited), cited
    assert not CITATION.search("docs/protocols.md, rules U1-U13, PROTOCOL_VERSION")


def test_no_file_cites_the_design_notes() -> None:
    offenders = []
    files = tracked_files()
    assert any(p.name == "README.md" for p in files)
    for path in files:
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if CITATION.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "citations of notes that are not in the repository:\n" + "\n".join(
        offenders
    )


def test_every_listed_feature_is_done_in_the_readme() -> None:
    rows = done_rows()
    assert rows, "the README has no feature rows marked done"
    for name, pattern in FEATURES.items():
        assert any(re.search(pattern, row, re.IGNORECASE) for row in rows), (
            f"{name} is not marked done in the README: update FEATURES in this test"
        )


def pages() -> list[Path]:
    """The user-facing pages: docs/ and every README."""
    return [
        p
        for p in tracked_files()
        if p.suffix == ".md"
        and (p.is_relative_to(ROOT / "docs") or p.name == "README.md")
        and p.exists()
    ]


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_page_calls_a_done_feature_unfinished(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    if page == ROOT / "README.md":
        # The table itself is the reference; its own rows are not prose to check.
        text = "\n".join(line for line in text.splitlines() if line not in readme_rows())
    wrong = []
    for clause in clauses(text):
        if not NOT_YET.search(clause):
            continue
        for name, pattern in FEATURES.items():
            if re.search(pattern, clause, re.IGNORECASE):
                wrong.append(f"{name}: {clause.strip()}")
    assert not wrong, f"{page.relative_to(ROOT)} calls done features unfinished:\n" + "\n".join(
        wrong
    )


def test_the_status_check_catches_a_stale_page() -> None:
    stale = "In progress for later releases: persistent stores (LevelDB, RocksDB), the TCP bus."
    hits = [
        name
        for clause in clauses(stale)
        if NOT_YET.search(clause)
        for name, pattern in FEATURES.items()
        if re.search(pattern, clause, re.IGNORECASE)
    ]
    assert {"LevelDB", "RocksDB", "TCP bus"} <= set(hits)
