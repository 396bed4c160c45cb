"""`pgvectorizer status` against the database."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from pgvectorizer.cli import main

from tests.helpers.cli import clear_worker_env, columns
from tests.helpers.db import PGHOST, PGPORT, create_vectorizer, vectorizer


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No worker variables from the caller's shell, and no .env from the caller's directory."""
    clear_worker_env(monkeypatch, tmp_path)


@pytest.fixture
def conninfo(db: psycopg.Connection) -> str:
    return f"host={PGHOST} port={PGPORT} dbname={db.info.dbname} user={db.info.user}"


def test_status_against_the_database(db: psycopg.Connection, conninfo: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "notes")
    db.execute("INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 3) AS g")
    name = vectorizer(db, vid)["name"]

    assert main(["status", "-d", conninfo]) == 0
    (row,) = columns(capsys.readouterr().out)
    assert (row["id"], row["name"], row["source_table"]) == (str(vid), name, "public.notes")
    assert (row["pending_items"], row["failed_items"], row["disabled"]) == ("3", "0", "no")

    assert main(["status", "-d", conninfo, "--json"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert (item["id"], item["name"], item["pending_items"], item["failed_items"]) == (vid, name, 3, 0)


def test_status_reads_the_db_url_variable(db: psycopg.Connection, conninfo: str,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PGAI_VECTORIZER_WORKER_DB_URL", conninfo)
    assert main(["status"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(0 vectorizers)"
