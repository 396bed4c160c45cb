"""A vectorizer's tables are worked with its owner's rights, whoever runs the worker.

The owner is a vectorizer admin (not a superuser) who plants code where a worker's statements
would run it: a trigger on the store, a function in the row filter. The worker runs as the
cluster's superuser (the README's own example), in-database runs too; the planted code must run
as the owner, and must not get the superuser back (SET ROLE, RESET ROLE).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest
from pgvectorizer.worker import Worker
from psycopg import sql

from tests.helpers.db import (
    DIMS,
    KEY_ENDPOINTS,
    SERVER_KEY_VAR,
    Connector,
    rows,
    scalar,
)
from tests.helpers.worker import drain

Role = tuple[str, str]

# What the planted code tries; each attempt's outcome goes into content.log.
ATTEMPTS = """
    INSERT INTO content.log VALUES (current_user::text, 'ran');
    BEGIN
        EXECUTE format('ALTER ROLE %I SUPERUSER', current_user);
        INSERT INTO content.log VALUES (current_user::text, 'ALTER ROLE worked');
    EXCEPTION WHEN others THEN INSERT INTO content.log VALUES (current_user::text, 'ALTER ROLE: ' || SQLERRM);
    END;
    BEGIN
        RESET ROLE;
        INSERT INTO content.log VALUES (current_user::text, 'RESET ROLE worked');
    EXCEPTION WHEN others THEN INSERT INTO content.log VALUES (current_user::text, 'RESET ROLE: ' || SQLERRM);
    END;
    BEGIN
        RESET SESSION AUTHORIZATION;
        INSERT INTO content.log VALUES (current_user::text, 'RESET SESSION AUTHORIZATION worked');
    EXCEPTION WHEN others THEN INSERT INTO content.log VALUES (current_user::text, 'RESET SESSION: ' || SQLERRM);
    END;
"""


@pytest.fixture
def admin(db: psycopg.Connection, connect: Connector, make_role: Callable[[str], Role],
          fake_url: str) -> tuple[str, psycopg.Connection]:
    name, password = make_role("admin")
    db.execute("SELECT ai.grant_vectorizer_usage(%s, admin => true)", (name,))
    db.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(db.info.dbname),
                                                                   sql.Identifier(name)))
    conn = connect(user=name, password=password)
    conn.execute("""
        CREATE SCHEMA content;
        CREATE TABLE content.docs (id int PRIMARY KEY, body text NOT NULL);
        CREATE TABLE content.log (who text, what text);
        INSERT INTO content.docs VALUES (1, 'one'), (2, 'two');
    """)
    return name, conn


def openai(url: str) -> str:
    return (f"ai.embedding_openai('text-embedding-3-small', {DIMS}, base_url => {sql.quote(url)}, "
            f"api_key_name => {sql.quote(SERVER_KEY_VAR)})")


def create_docs_vectorizer(conn: psycopg.Connection, fake_url: str, **extra: str) -> int:
    """The admin's vectorizer on content.docs; extra arguments are SQL by parameter name."""
    more = "".join(f", {k} => {v}" for k, v in extra.items())
    return int(scalar(conn, f"SELECT ai.create_vectorizer('content.docs'::regclass, "
                            f"loading => ai.loading_column('body'), embedding => {openai(fake_url)}, "
                            f"scheduling => ai.scheduling_none(){more})"))


def run_worker(db: psycopg.Connection) -> None:
    dsn = f"host={db.info.host} port={db.info.port} dbname={db.info.dbname} user={db.info.user}"
    env = {SERVER_KEY_VAR: "test-key", "PGVECTORIZER_RETRY_SECONDS": "0", **KEY_ENDPOINTS}
    asyncio.run(Worker(dsn, once=True, env=env).run())


def is_superuser(db: psycopg.Connection, role: str) -> bool:
    return bool(scalar(db, "SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)))


def assert_ran_as_owner_only(db: psycopg.Connection, owner: str) -> None:
    log = rows(db, "SELECT who, what FROM content.log")
    assert log, "the planted code never ran"
    assert {who for who, _ in log} == {owner}, log
    assert not any(what.endswith("worked") for _, what in log), log
    assert not is_superuser(db, owner)


def plant_store_trigger(conn: psycopg.Connection) -> None:
    conn.execute(f"""
        CREATE FUNCTION content.planted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN {ATTEMPTS} RETURN NEW; END $$;
        CREATE TRIGGER planted BEFORE INSERT ON content.docs_embedding_store
            FOR EACH ROW EXECUTE FUNCTION content.planted();
    """)


def test_a_trigger_on_the_store_runs_as_the_owner(
        db: psycopg.Connection, path: str, admin: tuple[str, psycopg.Connection], fake_url: str) -> None:
    owner, conn = admin
    vid = create_docs_vectorizer(conn, fake_url)
    plant_store_trigger(conn)
    out = drain(path, db, vid)  # by the superuser
    if out is not None:
        assert out["rows"] == 2, out
    assert_ran_as_owner_only(db, owner)
    # The rows were stored all the same: the trigger let them through.
    assert scalar(db, "SELECT count(*) FROM content.docs_embedding_store") == 2


def test_a_function_in_the_row_filter_runs_as_the_owner(
        db: psycopg.Connection, path: str, admin: tuple[str, psycopg.Connection], fake_url: str) -> None:
    owner, conn = admin
    # IMMUTABLE on the outside, so the filter is accepted; VOLATILE work inside.
    conn.execute(f"""
        CREATE FUNCTION content.planted() RETURNS void LANGUAGE plpgsql AS $$ BEGIN {ATTEMPTS} END $$;
        CREATE FUNCTION content.body_ok(b text) RETURNS bool LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN PERFORM content.planted(); RETURN true; END $$;
    """)
    vid = create_docs_vectorizer(conn, fake_url, row_filter="'content.body_ok(body)'")
    conn.execute("DELETE FROM content.log")  # what create_vectorizer's backfill ran, as the owner
    drain(path, db, vid)
    assert_ran_as_owner_only(db, owner)
    assert scalar(db, "SELECT count(*) FROM content.docs_embedding_store") == 2


def test_an_ops_function_made_security_invoker_is_refused(
        db: psycopg.Connection, admin: tuple[str, psycopg.Connection], fake_url: str) -> None:
    owner, conn = admin
    vid = create_docs_vectorizer(conn, fake_url)
    # The owner owns its ops function, so it can make it run as the caller; in a queue schema
    # of its own it could also replace the body with anything.
    plant_store_trigger(conn)
    conn.execute(f"ALTER FUNCTION ai._vectorizer_ops_{vid}(text, jsonb) SECURITY INVOKER")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no longer SECURITY DEFINER"):
        db.execute("SELECT ai._vectorizer_ops_call(%s, 'probe')", (vid,))
    run_worker(db)
    assert rows(db, "SELECT * FROM content.log") == []
    assert not is_superuser(db, owner)
    message = scalar(db, "SELECT message FROM ai.vectorizer_errors WHERE id = %s ORDER BY recorded DESC LIMIT 1",
                     (vid,))
    assert "no longer SECURITY DEFINER" in message
    assert scalar(db, "SELECT count(*) FROM content.docs_embedding_store") == 0



def test_the_write_reads_staged_chunks_only_from_the_sessions_own_plain_table(
        db: psycopg.Connection, admin: tuple[str, psycopg.Connection], fake_url: str) -> None:
    _, conn = admin
    vid = create_docs_vectorizer(conn, fake_url)
    # A caller's view in its place would run with the owner's rights when the write reads it.
    db.execute("CREATE TEMP VIEW _ai_staged_chunks AS SELECT ARRAY['1'] AS key, 0 AS chunk_seq, "
               "'x' AS chunk, '[1,2,3,4]'::vector AS embedding, ''::bytea AS chunk_hash")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="staging table"):
        db.execute("SELECT ai._vectorizer_ops_call(%s, 'write', %s)",
                   (vid, '{"token": "00000000-0000-0000-0000-000000000001", "staged": true}'))
