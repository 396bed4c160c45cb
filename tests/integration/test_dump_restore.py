"""pg_dump and pg_restore carry vectorizers over: catalog rows, queue, triggers and the id
sequence (the catalog tables are marked with pg_extension_config_dump), for the extension and
for a plain install (pgvectorizer install: plain tables, dumped like any other)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pgvectorizer.db.install import install
from psycopg import sql

from tests.helpers.db import (
    PGHOST,
    PGPORT,
    PGUSER,
    Connector,
    create_vectorizer,
    queue_rows,
    rows,
    scalar,
)

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _tool(name: str) -> str:
    path = PG_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not found")
    return found


@pytest.fixture
def restored_name(db: psycopg.Connection) -> Iterator[str]:
    """A database name for the restore, dropped afterwards."""
    name = f"{db.info.dbname}_restored"
    yield name
    db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["extension", "plain"])
def source_db(request: pytest.FixtureRequest, db: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """The database to dump: the test's own (the extension), or a new one with a plain install."""
    if request.param == "extension":
        yield db
        return
    name = f"{db.info.dbname}_plain"
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn = psycopg.connect(host=PGHOST, port=PGPORT, user=PGUSER, dbname=name, autocommit=True)
    try:
        conn.execute("CREATE EXTENSION vector")
        install(f"host={PGHOST} port={PGPORT} user={PGUSER} dbname={name}")
        yield conn
    finally:
        conn.close()
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_dump_and_restore_keep_vectorizers_working(
        source_db: psycopg.Connection, restored_name: str, tmp_path: Path) -> None:
    db = source_db
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text, published bool)")
    db.execute("INSERT INTO docs VALUES (1, 'one', true), (2, 'two', false)")
    vid = create_vectorizer(db, "docs", row_filter="published", enqueue_existing=True)
    assert queue_rows(db, vid) == [1]

    dump = tmp_path / "db.dump"
    conn_args = ["-h", PGHOST, "-p", str(PGPORT), "-U", PGUSER]
    subprocess.run([_tool("pg_dump"), *conn_args, "-Fc", "-f", str(dump), db.info.dbname],
                   check=True, capture_output=True, text=True)
    db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(restored_name)))
    restore = subprocess.run([_tool("pg_restore"), *conn_args, "-d", restored_name, str(dump)],
                             check=False, capture_output=True, text=True)
    assert restore.returncode == 0, restore.stderr

    restored = Connector(restored_name)
    try:
        r = restored()
        mode = "plain" if db.info.dbname.endswith("_plain") else "extension"
        assert scalar(r, "SELECT ai.install_mode()") == mode
        assert rows(r, "SELECT id, name, pending_items, failed_items FROM ai.vectorizer_status") == [
            (vid, "public_docs_embedding_store", 1, 0)]
        # The triggers came back and still only queue what the filter admits.
        r.execute("INSERT INTO docs VALUES (3, 'three', true), (4, 'four', false)")
        r.execute("UPDATE docs SET body = 'one!' WHERE id = 1")
        assert sorted(queue_rows(r, vid)) == [1, 1, 3]
        # The id sequence came back too: a new vectorizer does not collide with the old one.
        r.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        assert create_vectorizer(r, "notes") > vid
        r.execute("SELECT ai.drop_vectorizer(%s, drop_all => true)", (vid,))
        assert scalar(r, "SELECT to_regclass('docs_embedding_store')") is None
    finally:
        restored.close_all()
