"""Claiming, step by step, with two sessions: the races of spec 003 cannot happen.

Each test drives two VectorizerQueues (two connections, as two workers would have) by hand, so
the interleaving is exact rather than left to timing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest
from pgvectorizer.config import Vectorizer
from pgvectorizer.core.queue import VectorizerQueue
from pgvectorizer.db.driver import close_queue, open_queue
from pgvectorizer.pipeline import Pipeline

from tests.helpers.db import create_vectorizer, dsn, queued, rows, scalar, vectorizer
from tests.helpers.fake_embedders import FakeEmbedder

Scenario = Callable[[VectorizerQueue, VectorizerQueue, Pipeline], Awaitable[None]]


@pytest.fixture
def doc(db: psycopg.Connection) -> int:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding="ai.embedding_openai('text-embedding-3-small', 3)",
                            chunking="ai.chunking_none()")
    db.execute("INSERT INTO doc VALUES (1, 'version one')")
    return vid


def run(db: psycopg.Connection, vid: int, scenario: Scenario, *, lease: float = 60) -> None:
    v = Vectorizer.from_row(vectorizer(db, vid))

    async def main() -> None:
        a = await open_queue(dsn(db), v, lease=lease, retry_base=0)
        b = await open_queue(dsn(db), v, lease=lease, retry_base=0)
        try:
            await scenario(a, b, Pipeline(v, FakeEmbedder()))
        finally:
            await close_queue(a)
            await close_queue(b)

    asyncio.run(main())


async def process(session: VectorizerQueue, pipeline: Pipeline, limit: int = 10) -> list[Any]:
    """Claim, embed and write one batch; returns the keys it processed."""
    batch = await session.claim(limit)
    result = pipeline.run(batch.rows, await session.existing(batch))
    await session.write(batch, result)
    await session.unlock(batch)
    return [int(r.key[0]) for r in batch.rows]  # keys travel as text


def chunks(db: psycopg.Connection) -> list[tuple[int, str]]:
    return rows(db, "SELECT id, chunk FROM doc_embedding_store ORDER BY id, chunk_seq")


def test_an_older_text_never_overwrites_a_newer_one(db: psycopg.Connection, doc: int) -> None:
    async def scenario(a: VectorizerQueue, b: VectorizerQueue, p: Pipeline) -> None:
        batch = await a.claim(10)  # A reads version one
        assert [r.values["body"] for r in batch.rows] == ["version one"]
        db.execute("UPDATE doc SET body = 'version two' WHERE id = 1")
        # B sees the new queue row but cannot take the key while A holds it.
        assert await process(b, p) == []
        await a.write(batch, p.run(batch.rows))
        await a.unlock(batch)
        assert chunks(db) == [(1, "version one")]
        # Now B takes it, and reads the newer text.
        assert await process(b, p) == [1]

    run(db, doc, scenario)
    assert chunks(db) == [(1, "version two")]
    assert queued(db, doc) == set()


def test_a_row_deleted_during_embedding_leaves_no_chunks(db: psycopg.Connection, doc: int) -> None:
    async def scenario(a: VectorizerQueue, b: VectorizerQueue, p: Pipeline) -> None:
        batch = await a.claim(10)  # A reads the row
        db.execute("DELETE FROM doc WHERE id = 1")
        await a.write(batch, p.run(batch.rows))  # and stores its chunks after the delete
        await a.unlock(batch)
        assert chunks(db) == [(1, "version one")]
        # The view already hides them; the delete's queue row removes them.
        assert scalar(db, "SELECT count(*) FROM doc_embedding") == 0
        assert await process(b, p) == [1]

    run(db, doc, scenario)
    assert chunks(db) == []
    assert queued(db, doc) == set()


def test_duplicates_of_a_key_are_claimed_together(db: psycopg.Connection, doc: int) -> None:
    db.execute("UPDATE doc SET body = 'v2' WHERE id = 1")
    db.execute("UPDATE doc SET body = 'v3' WHERE id = 1")

    async def scenario(a: VectorizerQueue, b: VectorizerQueue, p: Pipeline) -> None:
        batch = await a.claim(1)  # one queue row picked, all three marked
        assert len(batch.rows) == 1
        assert scalar(db, "SELECT count(*) FROM ai._vectorizer_q_1 WHERE claimed_by = %s", (batch.token,)) == 3
        await a.write(batch, p.run(batch.rows))
        await a.unlock(batch)

    run(db, doc, scenario)
    assert chunks(db) == [(1, "v3")] and queued(db, doc) == set()


def test_a_lost_session_frees_its_keys_after_the_lease(db: psycopg.Connection, doc: int) -> None:
    async def scenario(a: VectorizerQueue, b: VectorizerQueue, p: Pipeline) -> None:
        await a.claim(10)
        assert await process(b, p) == []  # leased
        await close_queue(a)  # the worker dies: its advisory locks go with the session
        await asyncio.sleep(0.6)  # the lease
        assert await process(b, p) == [1]
        assert scalar(db, "SELECT count(*) FROM doc_embedding_store") == 1

    run(db, doc, scenario, lease=0.5)
    assert queued(db, doc) == set()


def test_a_live_worker_keeps_its_keys_past_the_lease(db: psycopg.Connection, doc: int) -> None:
    async def scenario(a: VectorizerQueue, b: VectorizerQueue, p: Pipeline) -> None:
        batch = await a.claim(10)
        await asyncio.sleep(0.6)  # the lease ran out, but A's session still holds the lock
        db.execute("UPDATE doc SET body = 'version two' WHERE id = 1")
        assert await process(b, p) == []
        await a.write(batch, p.run(batch.rows))
        await a.unlock(batch)
        assert await process(b, p) == [1]

    run(db, doc, scenario, lease=0.5)
    assert chunks(db) == [(1, "version two")]


def test_writers_never_wait_on_a_claimed_batch(db: psycopg.Connection, doc: int) -> None:
    async def scenario(a: VectorizerQueue, b: VectorizerQueue, p: Pipeline) -> None:
        await a.claim(10)  # a batch "in the model": no transaction is open
        db.execute("SET lock_timeout = '100ms'")
        db.execute("UPDATE doc SET body = 'x' WHERE id = 1")
        db.execute("DELETE FROM doc WHERE id = 1")
        db.execute("INSERT INTO doc VALUES (1, 'back')")
        db.execute("TRUNCATE doc")
        assert scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()") == 0

    run(db, doc, scenario)


def test_a_row_claimed_to_its_limit_without_a_result_goes_to_the_failed_items(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding="ai.embedding_openai('text-embedding-3-small', 4)",
                            chunking="ai.chunking_none()", loading="ai.loading_column('body', retries => 1)")
    db.execute("INSERT INTO doc VALUES (1, 'dies with its worker'), (2, 'fine')")

    async def scenario(a: VectorizerQueue, b: VectorizerQueue, p: Pipeline) -> None:
        for _ in range(2):  # two workers die holding row 1 (claimed, never written back)
            await b.claim(10)
            await b.driver.conn.close()
            b.driver.conn = await psycopg.AsyncConnection.connect(dsn(db), autocommit=True)
            db.execute(f"UPDATE ai._vectorizer_q_{vid} SET retry_after = now() - interval '1 s'")
        assert await process(a, p) == []  # both rows used their two attempts
        assert scalar(db, f"SELECT count(*) FROM ai._vectorizer_q_{vid}") == 0

    run(db, vid, scenario)
    got = rows(db, f"SELECT id, attempts, failure_step, error FROM ai._vectorizer_q_failed_{vid} ORDER BY id")
    assert [(i, n, step) for i, n, step, _ in got] == [(1, 2, "lost"), (2, 2, "lost")]
    assert "claimed 2 times without a result" in got[0][3]


@pytest.mark.parametrize("backlog", [0, 20_000])
def test_a_backfilled_queue_has_statistics_for_the_claim(db: psycopg.Connection, backlog: int) -> None:
    """Without them, until autovacuum first analyzes a fresh queue, the claim's look for lost
    leases plans a scan of the whole backlog instead of the partial index on claimed_by."""
    db.execute("CREATE TABLE big (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO big SELECT g, 'row ' || g FROM generate_series(1, %s) g", (backlog,))
    vid = create_vectorizer(db, "big", enqueue_existing=True)
    queue = f'ai."{vectorizer(db, vid)["queue_table"]}"'
    analyzed = scalar(db, "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relid = %s::regclass",
                      (queue,))
    assert analyzed is (backlog > 0)   # an empty backfill costs nothing
    if backlog:
        assert scalar(db, "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (queue,)) == backlog
        plan = "\n".join(r for (r,) in rows(db, f"EXPLAIN SELECT ctid FROM {queue} WHERE claimed_by IS NOT NULL"))
        assert "claimed_by_idx" in plan and "Seq Scan" not in plan, plan


def test_a_store_keeps_its_rows_whole_in_the_heap(db: psycopg.Connection) -> None:
    """A 768-float vector (3 kB) and an 800-character chunk stay in the heap, uncompressed;
    TOAST would otherwise move the vector out of line after trying to compress it."""
    db.execute("CREATE TABLE wide (id int PRIMARY KEY, body text)")
    create_vectorizer(db, "wide", embedding="ai.embedding_openai('text-embedding-3-small', 768)")
    store = "public.wide_embedding_store"
    assert scalar(db, "SELECT reloptions FROM pg_class WHERE oid = %s::regclass", (store,)) == ["toast_tuple_target=8160"]
    assert scalar(db, "SELECT attstorage FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'embedding'",
                  (store,)) == "e"
    db.execute(f"INSERT INTO {store} (id, chunk_seq, chunk, embedding) "
               "SELECT g, 0, repeat('word ', 160), array_fill(g::real / 1000, ARRAY[768])::vector "
               "FROM generate_series(1, 200) g")
    assert scalar(db, "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = %s::regclass", (store,)) == 0
