"""The two ways in (CREATE EXTENSION ai, pgvectorizer install) give the same schema ai, apart
from what a plain install cannot have; each refuses the other; the worker refuses versions it
does not know; a source dropped where no event trigger cleans up is named, not fatal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest
from pgvectorizer.db.install import InstallError, install, installed_version
from pgvectorizer.install.scripts import CURRENT
from pgvectorizer.worker import Worker

from tests.helpers.catalog import snapshot
from tests.helpers.db import rows, scalar
from tests.helpers.worker import WORKER_KEY, embedding, env
from tests.integration.conftest import url

Databases = Callable[[str], psycopg.Connection]


def _plain(databases: Databases, label: str) -> psycopg.Connection:
    conn = databases(label)
    conn.execute("CREATE EXTENSION vector")
    install(url(conn.info.dbname))
    return conn


def test_both_ways_in_give_the_same_objects(databases: Databases) -> None:
    ext = databases("ext")
    ext.execute("CREATE EXTENSION ai CASCADE")
    plain = _plain(databases, "plain")
    a, b = snapshot(ext), snapshot(plain)

    # What a plain install cannot have: event triggers, extension membership, and PL/Python,
    # whose functions are there with the same signatures, as PL/pgSQL that refuses.
    assert len(a.pop("event_triggers")) == 4 and b.pop("event_triggers") == []
    assert a.pop("extension_members") and b.pop("extension_members") == []
    python = {f[0] for f in a["functions"] if f[1] == "plpython3u"}
    assert python >= {"ai.execute_vectorizer(integer,bigint,double precision)", "ai._vectorizer_job(integer)",
                      "ai.embed(integer,text)", "ai.embed(text,text)", "ai.embed(jsonb,text)"}
    stubs = {f[0]: f for f in b["functions"] if f[0] in python}
    assert set(stubs) == python and {f[1] for f in stubs.values()} == {"plpgsql"}
    assert all("is not available here" in f[12] for f in stubs.values())

    def same(functions: list[tuple]) -> list[tuple]:   # all but language and body
        return [f[:1] + f[2:12] for f in functions]

    assert same(a.pop("functions")) == same(b.pop("functions"))
    assert a == b


def test_each_way_in_refuses_the_other(databases: Databases) -> None:
    ext = databases("ext")
    ext.execute("CREATE EXTENSION ai CASCADE")
    with pytest.raises(InstallError, match="ALTER EXTENSION ai UPDATE"):
        install(url(ext.info.dbname))
    plain = _plain(databases, "plain")
    with pytest.raises(psycopg.errors.DuplicateObject, match="plain install"):
        plain.execute("CREATE EXTENSION ai CASCADE")
    assert installed_version(plain) == CURRENT
    # Without pgvector, nothing at all.
    bare = databases("bare")
    with pytest.raises(InstallError, match="pgvector is not installed"):
        install(url(bare.info.dbname))
    assert scalar(bare, "SELECT to_regnamespace('ai')") is None


@pytest.mark.parametrize("version, says", [("0.1.0", "run ALTER EXTENSION ai UPDATE"),
                                           ("9.9.9", "upgrade the worker")])
def test_the_worker_refuses_a_version_it_does_not_know(
        databases: Databases, version: str, says: str) -> None:
    conn = databases("versions")
    if version == "0.1.0":
        conn.execute("CREATE EXTENSION ai VERSION '0.1.0' CASCADE")
    else:   # a database from a future release: a plain install whose ai.version() is newer
        conn.execute("CREATE EXTENSION vector")
        install(url(conn.info.dbname))
        conn.execute("CREATE OR REPLACE FUNCTION ai.version() RETURNS text LANGUAGE sql RETURN '9.9.9'")
    error = asyncio.run(Worker(url(conn.info.dbname), once=True, env=env()).run())
    assert error is not None and says in str(error) and "\n" not in str(error)


def test_a_vanished_source_is_named_and_its_queue_kept(databases: Databases, fake_url: str) -> None:
    conn = _plain(databases, "vanished")
    conn.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    conn.execute("INSERT INTO doc VALUES (1, 'one'), (2, 'two')")
    vid = scalar(conn, f"SELECT ai.create_vectorizer('doc', loading => ai.loading_column('body'), "
                       f"embedding => {embedding(fake_url)})")
    conn.execute("DROP TABLE doc CASCADE")   # no event trigger here to drop the vectorizer
    error = asyncio.run(Worker(url(conn.info.dbname), once=True, env=env(**WORKER_KEY)).run())
    assert error is not None and "its source table public.doc does not exist any more" in str(error)
    assert scalar(conn, "SELECT pending_items FROM ai.vectorizer_status") == 2
    assert "ai.drop_vectorizer" in scalar(conn, "SELECT message FROM ai.vectorizer_errors")
    conn.execute("SELECT ai.drop_vectorizer(%s, drop_all => true)", (vid,))
    assert rows(conn, "SELECT relname FROM pg_class WHERE relname ~ '^(_vectorizer_q|doc_embedding)'") == []
