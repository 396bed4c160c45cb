"""ai.execute_vectorizer and the worker on one vectorizer at once: nothing lost, stale or doubled.

In-database runs hold their keys with transaction advisory locks, the worker with session
locks; both claim with the same statement (core/statements.py). These tests drive an open
in-database transaction against the worker's claim step by step, as test_queue.py does for two
workers (the stress test, with a worker process, is tests/acceptance/test_mixed_runs.py).
Three of them found bugs, fixed since: a slow claim that stored an older text, a worker's
write blocked by an open call's progress row, and a claim that came back empty behind rows of
keys held elsewhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import psycopg
import pytest
from pgvectorizer.config import Vectorizer
from pgvectorizer.core.queue import VectorizerQueue
from pgvectorizer.db.driver import close_queue, open_queue
from pgvectorizer.embedders import make_embedder
from pgvectorizer.pipeline import Pipeline
from pgvectorizer.worker import Worker
from psycopg import sql

from tests.helpers.db import (
    DIMS,
    Connector,
    dsn,
    queue_rows,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.fake_openai import start_fake_server
from tests.helpers.mixed_runs import (
    INDB,
    KEY_ENV,
    LATENCY_MS,
    assert_consistent,
    call,
    make_doc,
    store_problems,
)
from tests.helpers.worker import env


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    url, stop = start_fake_server(dimensions=DIMS, latency_ms=LATENCY_MS)
    yield url
    stop()


@pytest.fixture
def doc(db: psycopg.Connection, fake_url: str) -> int:
    return make_doc(db, fake_url)


# --- helpers ---------------------------------------------------------------------------------

def queue_of(db: psycopg.Connection, vid: int) -> sql.Identifier:
    v = vectorizer(db, vid)
    return sql.Identifier(v["queue_schema"], v["queue_table"])


def stored_text(db: psycopg.Connection, key: int) -> list[str]:
    return [r[0] for r in rows(db, "SELECT chunk FROM doc_embedding_store WHERE id = %s ORDER BY chunk_seq", (key,))]


def advisory_locks(db: psycopg.Connection, conn: psycopg.Connection) -> int:
    return int(scalar(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                          "AND pid = %s", (conn.info.backend_pid,)))


Scenario = Callable[[VectorizerQueue, Pipeline], Awaitable[None]]


def with_worker_session(db: psycopg.Connection, vid: int, scenario: Scenario) -> None:
    """Run scenario with one VectorizerQueue (the worker's connection and statements) and its
    pipeline, embedding through the fake server."""
    v = Vectorizer.from_row(vectorizer(db, vid))

    async def main() -> None:
        session = await open_queue(dsn(db), v, lease=60, retry_base=0)
        pipeline = Pipeline(v, make_embedder(v.embedding, KEY_ENV))
        try:
            await scenario(session, pipeline)
        finally:
            pipeline.embedder.close()
            await close_queue(session)

    asyncio.run(main())


def run_worker_once(db: psycopg.Connection, vid: int) -> None:
    error = asyncio.run(Worker(dsn(db), vectorizer_ids=[vid], once=True, env=env(**KEY_ENV)).run())
    assert error is None


def insert_rows(db: psycopg.Connection, keys: range) -> None:
    db.execute("INSERT INTO doc (id, body) SELECT g, 'text of row ' || g FROM unnest(%s::int[]) g", (list(keys),))


# --- the checker can fail ----------------------------------------------------------------------

def test_the_store_check_sees_stray_missing_and_wrong_chunks(db: psycopg.Connection, doc: int) -> None:
    insert_rows(db, range(1, 6))
    db.execute("UPDATE doc SET body = 'a text long enough to be cut into two or three chunks' WHERE id = 1")
    assert call(db, doc)["stopped"] == "queue_empty"
    assert_consistent(db, doc)
    assert len(stored_text(db, 1)) > 1

    db.execute("INSERT INTO doc_embedding_store (id, chunk_seq, chunk, embedding) "
               "SELECT id, chunk_seq + 1, chunk, embedding FROM doc_embedding_store WHERE id = 2")
    db.execute("DELETE FROM doc_embedding_store WHERE id = 1 AND chunk_seq = 1")
    db.execute("UPDATE doc_embedding_store SET embedding = (SELECT embedding FROM doc_embedding_store "
               "WHERE id = 4) WHERE id = 3")
    db.execute("ALTER TABLE doc DISABLE TRIGGER USER")  # a row gone without a queue row
    db.execute("DELETE FROM doc WHERE id = 5")
    problems = store_problems(db, doc)
    assert [p.split(":")[0].split(" is ")[0] for p in problems] == [
        "row 5", "row 1", "row 2", "row 3 chunk 0"], problems


# --- an open in-database transaction against the worker's claim -----------------------------------

def test_the_worker_skips_the_keys_an_open_call_holds_and_claims_the_rest(
        db: psycopg.Connection, doc: int, connect: Connector) -> None:
    insert_rows(db, range(1, 11))
    tx = connect(autocommit=False, application_name=INDB)
    assert call(tx, doc, max_rows=4)["rows"] == 4
    held = {r[0] for r in rows(tx, "SELECT id FROM doc_embedding_store")}  # its own writes
    assert held == {1, 2, 3, 4} and advisory_locks(db, tx) == 4
    writer = connect(lock_timeout="200ms")
    writer.execute("UPDATE doc SET body = 'newer text of row 1' WHERE id = 1")  # held: queued again
    writer.execute("UPDATE doc SET body = 'newer text of row 5' WHERE id = 5")

    async def scenario(s: VectorizerQueue, p: Pipeline) -> None:
        await s.driver.conn.execute("SET statement_timeout = '5s'")  # a claim that waited would fail
        batch = await s.claim(100)
        assert {int(r.key[0]) for r in batch.rows} == set(range(5, 11))
        assert next(r.values["body"] for r in batch.rows if r.key == ("5",)) == "newer text of row 5"
        await s.release(batch.token)
        await s.unlock(batch)

    with_worker_session(db, doc, scenario)
    assert rows(db, "SELECT id FROM doc_embedding_store") == []  # nothing committed yet
    tx.commit()
    assert advisory_locks(db, tx) == 0
    assert stored_text(db, 1) == ["text of row 1"]  # the text the call read, now queued again
    run_worker_once(db, doc)
    assert stored_text(db, 1) == ["newer text of row 1"]
    assert_consistent(db, doc)


def test_the_worker_writes_other_keys_while_a_call_is_open(
        db: psycopg.Connection, doc: int, connect: Connector) -> None:
    insert_rows(db, range(1, 11))
    tx = connect(autocommit=False, application_name=INDB)
    assert call(tx, doc, max_rows=4)["rows"] == 4

    async def scenario(s: VectorizerQueue, p: Pipeline) -> None:
        batch = await s.claim(100)
        assert {int(r.key[0]) for r in batch.rows} == set(range(5, 11))
        await s.driver.conn.execute("SET lock_timeout = '1s'")  # the worker's own is 10 s
        await s.write(batch, p.run(batch.rows, await s.existing(batch)))
        await s.unlock(batch)

    try:
        with_worker_session(db, doc, scenario)
        assert sorted(r[0] for r in rows(db, "SELECT id FROM doc_embedding_store")) == list(range(5, 11))
    finally:
        tx.rollback()


def test_changes_to_held_keys_never_wait_and_win_after_commit(
        db: psycopg.Connection, doc: int, connect: Connector) -> None:
    insert_rows(db, range(1, 7))
    tx = connect(autocommit=False, application_name=INDB)
    assert call(tx, doc, max_rows=4)["rows"] == 4  # holds 1-4, with the texts it read
    # lock_timeout: a writer that waited on the open call would fail.
    writer = connect(lock_timeout="200ms")
    writer.execute("UPDATE doc SET body = 'newer text of row 1' WHERE id = 1")
    writer.execute("UPDATE doc SET published = false WHERE id = 2")
    writer.execute("DELETE FROM doc WHERE id = 3")
    writer.execute("DELETE FROM doc WHERE id = 4")
    writer.execute("INSERT INTO doc (id, title, body) VALUES (4, 'New', 'row 4 is back')")
    writer.execute("UPDATE doc SET title = 'Retitled' WHERE id = 6")

    async def scenario(s: VectorizerQueue, p: Pipeline) -> None:
        batch = await s.claim(100)  # the held keys' new queue rows are left alone
        assert {int(r.key[0]) for r in batch.rows} == {5, 6}
        await s.release(batch.token)
        await s.unlock(batch)

    with_worker_session(db, doc, scenario)
    tx.commit()
    # What the call stored is already stale; the changes' queue rows are still there.
    assert stored_text(db, 1) == ["text of row 1"] and stored_text(db, 3) == ["text of row 3"]
    assert set(queue_rows(db, doc)) == {1, 2, 3, 4, 5, 6}
    run_worker_once(db, doc)
    assert stored_text(db, 1) == ["newer text of row 1"] and stored_text(db, 4) == ["row 4 is back"]
    assert_consistent(db, doc)


def test_a_call_skips_the_keys_a_worker_holds_and_nothing_is_stored_twice(
        db: psycopg.Connection, doc: int, connect: Connector) -> None:
    insert_rows(db, range(1, 11))
    indb = connect(application_name=INDB, statement_timeout="10s")  # a call that waited would fail
    writer = connect(lock_timeout="200ms")

    async def scenario(s: VectorizerQueue, p: Pipeline) -> None:
        batch = await s.claim(4)  # read, not yet written: the model is working
        assert sorted(int(r.key[0]) for r in batch.rows) == [1, 2, 3, 4]
        writer.execute("UPDATE doc SET body = 'newer text of row 2' WHERE id = 2")
        out = call(indb, doc)
        assert (out["stopped"], out["rows"]) == ("queue_empty", 6)
        assert sorted(r[0] for r in rows(db, "SELECT id FROM doc_embedding_store")) == list(range(5, 11))
        await s.write(batch, p.run(batch.rows, await s.existing(batch)))
        await s.unlock(batch)

    with_worker_session(db, doc, scenario)
    assert stored_text(db, 2) == ["text of row 2"] and queue_rows(db, doc) == [2]
    assert call(indb, doc)["rows"] == 1
    assert stored_text(db, 2) == ["newer text of row 2"]
    assert_consistent(db, doc)


def test_a_rolled_back_call_leaves_the_queue_as_it_was_and_frees_its_keys(
        db: psycopg.Connection, doc: int, connect: Connector) -> None:
    insert_rows(db, range(1, 7))
    queue = queue_of(db, doc)
    snapshot = sql.SQL("SELECT id, queued_at, attempts, retry_after, claimed_by FROM {} ORDER BY id").format(queue)
    before = rows(db, snapshot)
    progress = rows(db, "SELECT * FROM ai._vectorizer_worker_progress")
    tx = connect(autocommit=False, application_name=INDB)
    assert call(tx, doc, max_rows=3)["rows"] == 3
    assert advisory_locks(db, tx) == 3
    tx.rollback()
    assert advisory_locks(db, tx) == 0
    assert rows(db, snapshot) == before
    assert rows(db, "SELECT id FROM doc_embedding_store") == []
    assert rows(db, "SELECT * FROM ai._vectorizer_worker_progress") == progress

    async def scenario(s: VectorizerQueue, p: Pipeline) -> None:
        batch = await s.claim(100)
        assert sorted(int(r.key[0]) for r in batch.rows) == [1, 2, 3, 4, 5, 6]
        assert {r.attempts for r in batch.rows} == {1}  # the rolled-back claim counted nothing
        await s.write(batch, p.run(batch.rows, await s.existing(batch)))
        await s.unlock(batch)

    with_worker_session(db, doc, scenario)
    assert_consistent(db, doc)


def test_a_claim_finds_free_keys_behind_new_rows_of_held_keys(
        db: psycopg.Connection, doc: int, connect: Connector) -> None:
    queue = queue_of(db, doc)
    # Free line pointers at the front of the queue's first page, where the next inserts go
    # (as after any VACUUM of a busy queue); then keys 1-5 and 6-10 behind them.
    db.execute(sql.SQL("INSERT INTO {} (id) SELECT -g FROM generate_series(1, 10) g").format(queue))
    insert_rows(db, range(1, 11))
    db.execute(sql.SQL("DELETE FROM {} WHERE id < 0").format(queue))
    db.execute(sql.SQL("VACUUM (INDEX_CLEANUP ON) {}").format(queue))
    tx = connect(autocommit=False, application_name=INDB)
    assert call(tx, doc, max_rows=5)["rows"] == 5
    db.execute("UPDATE doc SET body = body || ' again' WHERE id <= 5")  # held keys, queued again
    first = [r[0] for r in rows(db, sql.SQL("SELECT id FROM {} ORDER BY ctid LIMIT 5").format(queue))]
    if first != [1, 2, 3, 4, 5]:
        pytest.fail(f"the queue is not laid out as this test needs: {first}")

    async def scenario(s: VectorizerQueue, p: Pipeline) -> None:
        batch = await s.claim(5)  # a batch no bigger than the held keys' rows ahead
        await s.release(batch.token)
        await s.unlock(batch)
        assert sorted(int(r.key[0]) for r in batch.rows) == [6, 7, 8, 9, 10]

    try:
        with_worker_session(db, doc, scenario)
    finally:
        tx.rollback()


# A backlog in backoff, as a provider's outage leaves it: rows a claim scans past but cannot
# take. Scanning them keeps a claim statement busy for some 100-200 ms.
BACKOFF_ROWS = 2_000_000


def test_a_slow_claim_never_stores_a_text_older_than_a_call_stored(
        db: psycopg.Connection, doc: int, connect: Connector) -> None:
    queue = queue_of(db, doc)
    # Each scan starts at the first page, as it does wherever the queue is under a quarter of
    # shared_buffers (synchronized scans would start the second scan where the first one is).
    indb = connect(application_name=INDB, synchronize_seqscans="off")
    insert_rows(db, range(1))
    call(indb, doc)  # loads the package into this backend: its next call takes some 20-60 ms
    db.execute("INSERT INTO doc (id, body) VALUES (1, 'version one')")
    db.execute(sql.SQL("INSERT INTO {} (id) SELECT -1 FROM generate_series(1, 100)").format(queue))
    db.execute(sql.SQL("INSERT INTO {} (id, retry_after) SELECT -g - 1, 'infinity' "
                       "FROM generate_series(1, %s) g").format(queue), (BACKOFF_ROWS,))
    db.execute(sql.SQL("DELETE FROM {} WHERE id = -1").format(queue))  # room on the first page
    db.execute(sql.SQL("VACUUM (INDEX_CLEANUP ON, ANALYZE) {}").format(queue))
    # Three more keys behind row 1's on the first page: the call's pick (four rows per key it
    # may take) fills up there and returns at once, while the worker's claim (ten keys) scans
    # the whole backlog.
    db.execute(sql.SQL("INSERT INTO {} (id) VALUES (2), (3), (4)").format(queue))
    writer = connect(lock_timeout="200ms")  # a new backend: its insert goes where the room is

    async def scenario(s: VectorizerQueue, p: Pipeline) -> None:
        await s.driver.conn.execute("SET synchronize_seqscans = off")
        claim = asyncio.create_task(s.claim(10))
        busy = ("SELECT state = 'active' AND strpos(query, '_vectorizer_ops_call') > 0 "
                "FROM pg_stat_activity WHERE pid = %s")
        deadline = time.monotonic() + 10
        while not scalar(db, busy, (s.driver.conn.info.backend_pid,)):
            assert time.monotonic() < deadline, "the claim never showed as running"
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # the claim has its snapshot and row 1's queue row, and scans on
        writer.execute("UPDATE doc SET body = 'version two' WHERE id = 1")
        pages = scalar(db, sql.SQL("SELECT array_agg(DISTINCT (ctid::text::point)[0]) FROM {} WHERE id = 1")
                       .format(queue))
        out = call(indb, doc, max_rows=1)  # takes the new queue row and stores version two
        if pages != [0]:
            pytest.fail(f"row 1's queue rows are not all on the queue's first page: {pages}")
        if not scalar(db, busy, (s.driver.conn.info.backend_pid,)) or out["rows"] != 1:
            pytest.fail(f"the race was not set up: the claim ended first, or the call did {out}")
        assert stored_text(db, 1) == ["version two"]
        batch = await claim
        await s.write(batch, p.run(batch.rows, await s.existing(batch)))
        await s.unlock(batch)

    with_worker_session(db, doc, scenario)
    # Off with the backlog, by TRUNCATE: its buffers are dropped rather than written out at
    # the checkpoint that dropping the test's database makes.
    kept = rows(db, sql.SQL("SELECT * FROM {} WHERE id >= 0").format(queue))
    db.execute(sql.SQL("TRUNCATE {}").format(queue))
    with db.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s, %s)").format(queue), kept)
    assert call(indb, doc)["stopped"] == "queue_empty"
    assert stored_text(db, 1) == ["version two"]  # today: ['version one'], and nothing queued
    assert_consistent(db, doc)
