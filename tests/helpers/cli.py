"""What the command line's tests share: the worker's variables, kept out of a test's way, and a
reader for the `status` table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ENV_VARS = ("PGAI_VECTORIZER_WORKER_DB_URL", "VECTORIZER_DB_URL",
            "PGAI_VECTORIZER_WORKER_VECTORIZER_IDS", "PGAI_VECTORIZER_WORKER_POLL_INTERVAL",
            "PGAI_VECTORIZER_WORKER_CONCURRENCY", "PGAI_VECTORIZER_WORKER_ONCE")
SUBPROCESS_TIMEOUT = 30  # seconds; a hung child fails the test instead of the whole run


def clear_worker_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No worker variables from the caller's shell, and no .env from the caller's directory."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def columns(table: str) -> list[dict[str, str]]:
    """Parses format_status_table's output back into cells, by the dashes under each header."""
    lines = table.splitlines()
    spans = [m.span() for m in re.finditer(r"-+", lines[1])]
    header = [lines[0][a:b].strip() for a, b in spans]
    return [dict(zip(header, [line[a:b].strip() for a, b in spans], strict=True)) for line in lines[2:-1]]
