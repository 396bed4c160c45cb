"""The store's HNSW index: ai._vectorizer_index_plan says what to run, the worker runs it.

The plan is checked on stores filled by hand; the worker (with the fake OpenAI server) builds
the index with CREATE INDEX CONCURRENTLY on a connection of its own, which must never hold up
the writers of the source or of the store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pgvectorizer import worker as worker_mod
from pgvectorizer.worker import Worker
from psycopg import sql

from tests.helpers.db import (
    EMBEDDING,
    PGPORT,
    TCP_HOST,
    VECTOR,
    Connector,
    create_vectorizer,
    dsn,
    queued,
    rows,
    scalar,
)
from tests.helpers.threads import Workers, wait_until
from tests.helpers.worker import (
    embedding,
    execute,
    is_vector_of,
    run_worker,
    stored,
    worker_env,
)

STORE = "doc_embedding_store"
INDEX = "doc_embedding_store_embedding_idx"  # the name the plan gives a store's index
BUILD = (f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON public.{STORE} "
         "USING hnsw (embedding public.vector_cosine_ops)")  # the plan with the defaults
BUILT = f"CREATE INDEX {INDEX} ON public.{STORE} USING hnsw (embedding vector_cosine_ops)"  # pg_get_indexdef
WRITER_MAX_WAIT = 5.0  # seconds a writer's transaction may take while an index is built


def plan(db: psycopg.Connection, vid: int) -> str | None:
    return scalar(db, "SELECT ai._vectorizer_index_plan(%s)", (vid,))


def fill_store(db: psycopg.Connection, first: int, last: int, table: str = STORE) -> None:
    db.execute(sql.SQL("INSERT INTO {} (id, chunk_seq, chunk, embedding) "
                       "SELECT g, 0, 'chunk ' || g, %s FROM generate_series(%s::int, %s::int) g")
               .format(sql.Identifier(table)), (VECTOR, first, last))


def doc(db: psycopg.Connection, indexing: str, embedding_sql: str = EMBEDDING, **args: Any) -> int:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    return create_vectorizer(db, "doc", embedding=embedding_sql, indexing=indexing,
                             chunking="ai.chunking_none()", **args)


def indexes(db: psycopg.Connection, table: str = STORE) -> dict[str, tuple[str, bool]]:
    """The table's indexes other than its keys: name -> (definition, valid)."""
    return {name: (definition, valid) for name, definition, valid in rows(db, """
        SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i
          JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND NOT i.indisunique""", (table,))}


def index_oid(db: psycopg.Connection, name: str = INDEX) -> int | None:
    return scalar(db, "SELECT to_regclass(%s)::oid", (name,))


# --- the plan -------------------------------------------------------------------------------------

def test_no_plan_without_hnsw_indexing(db: psycopg.Connection) -> None:
    vid = doc(db, "ai.indexing_none()")
    fill_store(db, 1, 50)
    assert plan(db, vid) is None


def test_the_plan_comes_at_min_rows_with_the_options(db: psycopg.Connection) -> None:
    vid = doc(db, "ai.indexing_hnsw(min_rows => 3, m => 8, ef_construction => 32)")
    assert plan(db, vid) is None
    fill_store(db, 1, 2)
    assert plan(db, vid) is None
    fill_store(db, 3, 3)
    statement = plan(db, vid)
    assert statement == BUILD + " WITH (m = 8, ef_construction = 32)"
    db.execute(statement)
    assert indexes(db) == {INDEX: (BUILT + " WITH (m='8', ef_construction='32')", True)}
    assert plan(db, vid) is None


def test_the_opclass_is_qualified_by_pgvectors_schema(db: psycopg.Connection) -> None:
    db.execute("CREATE SCHEMA pgv")
    db.execute("ALTER EXTENSION vector SET SCHEMA pgv")
    vid = doc(db, "ai.indexing_hnsw(min_rows => 1, opclass => 'vector_l2_ops')")
    fill_store(db, 1, 1)
    statement = plan(db, vid)
    # No options given: no WITH clause. search_path does not hold pgv: the name must be qualified.
    assert statement == (f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON public.{STORE} "
                         "USING hnsw (embedding pgv.vector_l2_ops)")
    db.execute(statement)
    assert indexes(db)[INDEX][1] is True


@pytest.mark.parametrize("method", ["hnsw", "ivfflat"])
def test_no_plan_when_the_user_indexed_the_column(db: psycopg.Connection, method: str) -> None:
    vid = doc(db, "ai.indexing_hnsw(min_rows => 1)")
    fill_store(db, 1, 5)
    db.execute("CREATE INDEX my_chunk_idx ON doc_embedding_store (chunk)")
    assert plan(db, vid) is not None  # an index on another column does not count
    db.execute(sql.SQL("CREATE INDEX my_vector_idx ON doc_embedding_store USING {} (embedding vector_l2_ops)")
               .format(sql.Identifier(method)))
    assert plan(db, vid) is None


def test_create_when_queue_empty_waits_for_the_queue(db: psycopg.Connection) -> None:
    vid = doc(db, "ai.indexing_hnsw(min_rows => 2, create_when_queue_empty => true)")
    fill_store(db, 1, 2)
    db.execute("INSERT INTO doc VALUES (1, 'queued')")
    assert queued(db, vid) == {1}
    assert plan(db, vid) is None
    db.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier("ai", f"_vectorizer_q_{vid}")))
    assert plan(db, vid) == BUILD


def test_the_worker_builds_the_index_once_the_queue_is_empty(db: psycopg.Connection, fake_url: str) -> None:
    vid = doc(db, "ai.indexing_hnsw(min_rows => 2, create_when_queue_empty => true)", embedding(fake_url))
    db.execute("INSERT INTO doc VALUES (1, 'one'), (2, 'two')")
    run_worker(db, vid)
    assert queued(db, vid) == set()
    assert indexes(db)[INDEX][1] is True


def test_an_invalid_index_is_dropped_first_unless_it_is_being_built(db: psycopg.Connection,
                                                                    connect: Connector) -> None:
    vid = doc(db, "ai.indexing_hnsw(min_rows => 1)")
    fill_store(db, 1, 3)
    create = plan(db, vid)
    assert create is not None

    # A build under way: its index is there but not yet valid. A writer's open transaction on
    # the store holds it in "waiting for writers".
    blocker = connect(autocommit=False)
    blocker.execute("DELETE FROM doc_embedding_store WHERE false")
    conn = connect()

    def build() -> None:
        conn.execute(create)

    builder = Workers()
    builder.start(build)
    try:
        # The index is in the catalog from this phase on.
        wait_until(lambda: scalar(db, "SELECT count(*) FROM pg_stat_progress_create_index WHERE relid = "
                                      "%s::regclass AND phase = 'waiting for writers before build'",
                                  (STORE,)) == 1, "the build waits for the writer")
        assert indexes(db)[INDEX][1] is False
        assert plan(db, vid) is None
    finally:
        blocker.rollback()
        builder.join()
    assert indexes(db)[INDEX][1] is True

    # A build that failed leaves an invalid index and no build: drop it, then build again.
    db.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", (INDEX,))
    drop = plan(db, vid)
    assert drop == f"DROP INDEX CONCURRENTLY IF EXISTS public.{INDEX}"
    db.execute(drop)
    assert plan(db, vid) == create


def test_the_plan_for_destination_column(db: psycopg.Connection) -> None:
    vid = doc(db, "ai.indexing_hnsw(min_rows => 2)", destination="ai.destination_column('emb')")
    db.execute("INSERT INTO doc SELECT g, 'text' FROM generate_series(1, 5) g")
    db.execute("UPDATE doc SET emb = %s WHERE id = 1", (VECTOR,))
    assert plan(db, vid) is None  # rows without a vector do not count
    db.execute("UPDATE doc SET emb = %s WHERE id = 2", (VECTOR,))
    statement = plan(db, vid)
    assert statement == ("CREATE INDEX CONCURRENTLY IF NOT EXISTS doc_emb_idx ON public.doc "
                         "USING hnsw (emb public.vector_cosine_ops)")
    db.execute(statement)
    built = "CREATE INDEX doc_emb_idx ON public.doc USING hnsw (emb vector_cosine_ops)"
    assert indexes(db, "doc") == {"doc_emb_idx": (built, True)}
    assert plan(db, vid) is None


# --- the worker builds it -----------------------------------------------------------------------

def index_statements(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pgvectorizer.worker"
            and "INDEX CONCURRENTLY" in r.getMessage()]


def test_the_worker_builds_the_index_at_min_rows_and_once(db: psycopg.Connection, fake_url: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pgvectorizer.worker")
    vid = doc(db, "ai.indexing_hnsw(min_rows => 4)", embedding(fake_url))
    db.execute("INSERT INTO doc SELECT g, 'text ' || g FROM generate_series(1, 3) g")
    run_worker(db, vid)
    assert scalar(db, "SELECT count(*) FROM doc_embedding_store") == 3
    assert indexes(db) == {} and index_statements(caplog) == []

    db.execute("INSERT INTO doc VALUES (4, 'text 4')")
    run_worker(db, vid)
    assert indexes(db) == {INDEX: (BUILT, True)}
    assert index_statements(caplog) == [f"vectorizer public_doc_embedding_store: {BUILD}"]
    oid = index_oid(db)

    caplog.clear()
    db.execute("INSERT INTO doc VALUES (5, 'text 5')")
    run_worker(db, vid)
    assert index_statements(caplog) == []
    assert index_oid(db) == oid
    assert scalar(db, "SELECT count(*) FROM doc_embedding_store") == 5


def test_the_worker_replaces_an_invalid_index(db: psycopg.Connection, fake_url: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="pgvectorizer.worker")
    vid = doc(db, "ai.indexing_hnsw(min_rows => 1)", embedding(fake_url))
    db.execute("INSERT INTO doc VALUES (1, 'one')")
    run_worker(db, vid)
    oid = index_oid(db)
    assert oid is not None
    db.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass", (INDEX,))
    caplog.clear()
    run_worker(db, vid)
    assert index_statements(caplog) == [f"vectorizer public_doc_embedding_store: {statement}" for statement in
                                        (f"DROP INDEX CONCURRENTLY IF EXISTS public.{INDEX}", BUILD)]
    assert indexes(db)[INDEX][1] is True and index_oid(db) != oid


def test_a_long_running_worker_builds_the_index_beside_its_batches(db: psycopg.Connection, fake_url: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker_mod, "INDEX_CHECK_INTERVAL", 0.2)
    vid = doc(db, "ai.indexing_hnsw(min_rows => 3)", embedding(fake_url))
    db.execute("INSERT INTO doc VALUES (1, 'one'), (2, 'two')")
    worker = Worker(dsn(db), poll_interval=3600, env=worker_env())
    loop = asyncio.new_event_loop()
    task = loop.create_task(worker.run())
    thread = threading.Thread(target=loop.run_until_complete, args=(task,))
    thread.start()
    try:
        wait_until(lambda: queued(db, vid) == set()
                   and scalar(db, "SELECT count(*) FROM doc_embedding_store") == 2, "the first rows")
        time.sleep(1.0)  # several index checks
        assert indexes(db) == {}
        db.execute("INSERT INTO doc VALUES (3, 'three')")
        wait_until(lambda: INDEX in indexes(db) and indexes(db)[INDEX][1], "the index")
    finally:
        asyncio.run_coroutine_threadsafe(worker.request_graceful_shutdown(), loop)
        thread.join(30)
    assert task.done() and task.result() is None
    loop.close()


def test_writers_go_on_while_the_worker_builds_the_index(db: psycopg.Connection, connect: Connector,
                                                         fake_url: str) -> None:
    vid = doc(db, "ai.indexing_hnsw(min_rows => 5)", embedding(fake_url))
    db.execute("INSERT INTO doc SELECT g, 'text ' || g FROM generate_series(1, 5) g")
    # An open transaction that wrote the store keeps the concurrent build waiting (as any
    # writer's would, briefly); a plain CREATE INDEX would queue behind it and every writer
    # would queue behind that.
    blocker = connect(autocommit=False)
    blocker.execute("DELETE FROM doc_embedding_store WHERE false")

    commits: list[float] = []  # how long each of the writer's transactions took, in seconds
    stop = threading.Event()

    def write() -> None:
        # Each transaction changes a source row and stores its chunk at once (execute_vectorizer).
        conn = connect(autocommit=False)
        n = 0
        while not stop.is_set():
            n += 1
            began = time.monotonic()
            with conn.transaction():
                conn.execute("INSERT INTO doc VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET body = "
                             "excluded.body", (100 + n % 7, f"written {n}"))
                conn.execute("SELECT ai.execute_vectorizer(%s, max_rows => 5)", (vid,))
            commits.append(time.monotonic() - began)
            time.sleep(0.02)

    writer, builder = Workers(), Workers()
    writer.start(write)
    try:
        wait_until(lambda: len(commits) >= 3 or bool(writer.errors), "the writer has committed")
        builder.start(run_worker, db, vid)
        in_progress = "SELECT count(*) FROM pg_stat_progress_create_index WHERE relid = %s::regclass"
        wait_until(lambda: scalar(db, in_progress, (STORE,)) == 1 or bool(builder.errors),
                   "the worker's build has started")
        seen = len(commits)
        wait_until(lambda: len(commits) >= seen + 10 or bool(writer.errors), "the writer commits meanwhile")
        assert scalar(db, in_progress, (STORE,)) == 1, "the build ended before the writer's commits"
        blocker.rollback()
        builder.join()
    finally:
        stop.set()
        blocker.rollback()
    writer.join()
    assert max(commits) < WRITER_MAX_WAIT
    assert indexes(db)[INDEX][1] is True
    # Nothing written meanwhile was lost: every row ends with the vector of its text.
    execute(db, vid)
    bodies = dict(rows(db, "SELECT id, body FROM doc"))
    got = stored(db)
    assert sorted(got) == sorted(bodies)
    assert all(is_vector_of(got[k][0][1], bodies[k]) for k in bodies)


def test_a_worker_that_does_not_own_the_store_warns_and_goes_on(db: psycopg.Connection, fake_url: str,
                                                                make_role: Callable[[str], tuple[str, str]],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    role, password = make_role("worker")
    db.execute("SELECT ai.grant_vectorizer_usage(%s)", (role,))
    vid = doc(db, "ai.indexing_hnsw(min_rows => 1)", embedding(fake_url), grant_to=f"ai.grant_to('{role}')")
    db.execute("INSERT INTO doc VALUES (1, 'one'), (2, 'two')")
    caplog.set_level(logging.INFO, logger="pgvectorizer.worker")
    worker = Worker(f"host={TCP_HOST} port={PGPORT} dbname={db.info.dbname} user={role} password={password}",
                    vectorizer_ids=[vid], once=True, env=worker_env())
    assert asyncio.run(worker.run()) is None
    assert scalar(db, "SELECT count(*) FROM doc_embedding_store") == 2
    assert indexes(db) == {}
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.name == "pgvectorizer.worker"
    assert warning.getMessage().startswith("vectorizer public_doc_embedding_store: this role may not build its "
                                           "vector index (must be owner of table doc_embedding_store)")
    assert scalar(db, "SELECT count(*) FROM ai.vectorizer_errors WHERE id = %s", (vid,)) == 0
