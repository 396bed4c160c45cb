"""Every file of the repository that its scripts and documents name is there (a moved test
helper once left the benchmarks pointing at nothing)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Repository paths as scripts and documents write them: tests/..., bench/..., scripts/...
NAMED = re.compile(r"(?:(?<=\$ROOT/)|(?<=\$REPO/)|(?<![\w/.-]))((?:tests|bench|scripts|sql|deploy|python_pkg)/[\w/.-]*\w\.(?:py|sh|sql|md|yml|txt))")
SOURCES = sorted([*REPO.glob("*.md"), *REPO.glob("bench/*.sh"), *REPO.glob("bench/*.py"),
                  *REPO.glob("bench/*.md"), *REPO.glob("scripts/*.sh"), REPO / "Makefile"])


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_named_files_exist(source: Path) -> None:
    text = source.read_text()
    missing = sorted({m for m in NAMED.findall(text)
                      if "*" not in m and "<" not in m and not (REPO / m).exists()
                      and not m.startswith("bench/out/")})
    assert missing == []
