"""A managed PostgreSQL, as RDS or Cloud SQL give it: the database belongs to a role that is no
superuser (CREATEROLE, as the services' admin users have), which cannot create plpython3u or
event triggers; an administrator created pgvector. `pgvectorizer install` as that role, then
vectorizers by it and by a second role it granted, an unprivileged writer, the worker, status
and search, all as those roles over TCP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from pgvectorizer.search import search
from pgvectorizer.worker import Worker
from psycopg import sql

from tests.helpers.db import DBNAME, PGHOST, PGPORT, PGUSER, TCP_HOST, rows, scalar
from tests.helpers.worker import WORKER_KEY, embedding, env


@pytest.fixture
def managed(db: psycopg.Connection, make_role) -> Iterator[dict[str, str]]:  # type: ignore[no-untyped-def]
    """The database, its owner, a second admin and a writer: name -> role and URLs."""
    owner, owner_pw = make_role("owner")
    second, second_pw = make_role("second")
    writer, writer_pw = make_role("writer")
    db.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(owner)))
    name = f"{DBNAME}_managed"
    db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    db.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
    with psycopg.connect(host=PGHOST, port=PGPORT, user=PGUSER, dbname=name, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION vector")   # the service's administrator

    def url(role: str, password: str) -> str:
        return f"host={TCP_HOST} port={PGPORT} dbname={name} user={role} password={password}"

    yield {"db": name, "owner": owner, "second": second, "writer": writer,
           "owner_url": url(owner, owner_pw), "second_url": url(second, second_pw),
           "writer_url": url(writer, writer_pw)}
    db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgvectorizer", *args], check=False, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env(**WORKER_KEY)})


def test_a_managed_database_runs_vectorizers_without_superuser(
        managed: dict[str, str], fake_url: str) -> None:
    owner_url = managed["owner_url"]
    with psycopg.connect(owner_url, autocommit=True) as conn:
        # What the service refuses such a role, and what the extension would need.
        for statement in ("CREATE EXTENSION plpython3u",
                          "CREATE EVENT TRIGGER t ON ddl_command_start EXECUTE FUNCTION pg_catalog.now()"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)

    done = _cli("install", "-d", owner_url)
    assert done.returncode == 0, done.stderr
    assert "installed pgvectorizer" in done.stdout
    again = _cli("install", "-d", owner_url)
    assert again.returncode == 0 and "already installed" in again.stdout

    emb = embedding(fake_url)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        assert scalar(conn, "SELECT ai.install_mode()") == "plain"
        conn.execute("CREATE TABLE note (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO note VALUES (1, 'the owner wrote this'), (2, 'and this')")
        scalar(conn, f"SELECT ai.create_vectorizer('note', loading => ai.loading_column('body'), "
                     f"embedding => {emb}, chunking => ai.chunking_none())")
        conn.execute(sql.SQL("SELECT ai.grant_vectorizer_usage({}, admin => true)").format(
            sql.Literal(managed["second"])))
        conn.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(managed["second"])))
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="pgvectorizer worker"):
            conn.execute("SELECT ai.execute_vectorizer(1)")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="pgvectorizer search"):
            conn.execute("SELECT ai.embed(1, 'query')")

    with psycopg.connect(managed["second_url"], autocommit=True) as conn:
        conn.execute("CREATE TABLE public.memo (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO memo VALUES (1, 'a memo about ducks')")
        scalar(conn, f"SELECT ai.create_vectorizer('memo', loading => ai.loading_column('body'), "
                     f"embedding => {emb}, chunking => ai.chunking_none())")
        # Its queue is its own, and schema ai gave it no CREATE on the way.
        assert scalar(conn, "SELECT pg_get_userbyid(relowner) FROM pg_class "
                            "WHERE oid = 'ai._vectorizer_q_2'::regclass") == managed["second"]
        assert not scalar(conn, "SELECT has_schema_privilege('ai', 'CREATE')")
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON memo TO {}").format(sql.Identifier(managed["writer"])))

    # A writer with no rights on schema ai: its writes queue through the triggers.
    with psycopg.connect(managed["writer_url"], autocommit=True) as conn:
        conn.execute("INSERT INTO public.memo VALUES (2, 'a memo about geese')")
        conn.execute("UPDATE public.memo SET body = 'a memo about swans' WHERE id = 1")

    status = _cli("status", "-d", owner_url, "--json")
    assert status.returncode == 0, status.stderr
    assert [(r["name"], r["pending_items"]) for r in json.loads(status.stdout)] == [
        ("public_note_embedding_store", 2), ("public_memo_embedding_store", 2)]

    error = asyncio.run(Worker(owner_url, once=True, env=env(**WORKER_KEY)).run())
    assert error is None
    with psycopg.connect(owner_url, autocommit=True) as conn:
        assert rows(conn, "SELECT name, pending_items, failed_items, install_mode FROM ai.vectorizer_status "
                          "ORDER BY id") == [("public_note_embedding_store", 0, 0, "plain"),
                                             ("public_memo_embedding_store", 0, 0, "plain")]
        assert scalar(conn, "SELECT count(*) FROM memo_embedding_store") == 2
    hits = search(owner_url, "public_memo_embedding_store", "a memo about swans", limit=1, env=env(**WORKER_KEY))
    assert hits[0].chunk == "a memo about swans"
