"""The extension's version and install scripts, as the repository has them."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import REPO

GUARD = '\\echo Use "CREATE EXTENSION ai'


def makefile_version() -> str:
    match = re.search(r"^EXTVERSION\s*=\s*(\S+)\s*$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, "Makefile sets no EXTVERSION"
    return match.group(1)


def first_statement(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("--"):
            return line
    raise AssertionError(f"{path} has no statement")
