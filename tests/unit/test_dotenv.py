"""The .env reader."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgvectorizer.dotenv import load_env, parse_env


def test_parse_forms() -> None:
    text = """
# a comment
OPENAI_API_KEY=sk-plain
export EXPORTED = spaced   # trailing comment
SINGLE='literal # not a comment \\n'
DOUBLE="line1\\nline2 \\"quoted\\" # kept"
HASH_IN_VALUE=a#b
EMPTY=
not a variable line
1BAD=skipped
"""
    assert parse_env(text) == {
        "OPENAI_API_KEY": "sk-plain",
        "EXPORTED": "spaced",
        "SINGLE": "literal # not a comment \\n",
        "DOUBLE": 'line1\nline2 "quoted" # kept',
        "HASH_IN_VALUE": "a#b",
        "EMPTY": "",
    }


def test_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("A=from-file\nB=from-file\n", encoding="utf-8")
    assert load_env(env_file, {"B": "from-env", "C": "env-only"}) == {
        "A": "from-file", "B": "from-env", "C": "env-only"}


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert load_env(tmp_path / "nope.env", {"X": "1"}) == {"X": "1"}


def test_defaults_to_os_environ_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("FROM_DOTENV_TEST=file\nPGV_DOTENV_TEST=file\n",
                                   encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGV_DOTENV_TEST", "process")
    env = load_env()
    assert env["FROM_DOTENV_TEST"] == "file"
    assert env["PGV_DOTENV_TEST"] == "process"
