"""Writers and workers at the same time, as real sessions: nobody waits, no change is lost.

Each thread has its own connection. Threads start together at a Barrier; `lock_timeout`
turns any wait on a lock into an error, so "finished without error" means "never waited"
(beyond the timeout, which is far longer than any of these statements takes on its own).
"""

from __future__ import annotations

import random
import threading

import psycopg
import pytest
from psycopg import sql

from tests.helpers.db import (
    Connector,
    create_vectorizer,
    queue_rows,
    queued,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.threads import JOIN_TIMEOUT, Workers, wait_until


def claim(conn: psycopg.Connection, vid: int, limit: int) -> list[int]:
    """A worker's claim, the way the spec does it, in conn's open transaction.

    Rows of the queue are locked with SKIP LOCKED, each distinct key is taken only if its
    advisory lock is free, and every queue row of a taken key is deleted.
    """
    v = vectorizer(conn, vid)
    queue = sql.Identifier(v["queue_schema"], v["queue_table"])
    query = sql.SQL("""
        WITH picked AS (
            SELECT id FROM {queue} ORDER BY queued_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
        ), taken AS (
            SELECT id FROM (SELECT DISTINCT id FROM picked) AS k
             WHERE pg_try_advisory_xact_lock(%(queue)s::regclass::oid::int, hashtext(id::text))
        ), deleted AS (
            DELETE FROM {queue} AS q USING taken WHERE q.id = taken.id
        )
        SELECT id FROM taken ORDER BY id""").format(queue=queue)
    params = {"limit": limit, "queue": f'"{v["queue_schema"]}"."{v["queue_table"]}"'}
    return [i for (i,) in rows(conn, query, params)]


@pytest.fixture
def docs(db: psycopg.Connection) -> int:
    """docs with rows 1..40, all queued."""
    db.execute("""
        CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL, note text);
        INSERT INTO docs SELECT i, 'body ' || i, NULL FROM generate_series(1, 40) AS i;
    """)
    vid = create_vectorizer(db, "docs", enqueue_existing=True)
    assert queued(db, vid) == set(range(1, 41))
    return vid


def test_writers_never_wait_for_a_worker_and_no_change_is_lost(
        db: psycopg.Connection, connect: Connector, docs: int) -> None:
    v = vectorizer(db, docs)
    store = sql.Identifier(v["config"]["destination"]["target_schema"], v["config"]["destination"]["target_table"])

    # The worker claims ten keys, reads their rows, writes their embeddings, and stays open.
    worker = connect(autocommit=False)
    claimed = claim(worker, docs, 10)
    assert claimed == list(range(1, 11))
    for i, body in rows(worker, "SELECT id, body FROM docs WHERE id = ANY(%s)", (claimed,)):
        worker.execute(sql.SQL("INSERT INTO {} (id, chunk_seq, chunk, embedding) VALUES (%s, 0, %s, '[1,1,1,1]')")
                       .format(store), (i, body))

    touched: dict[str, set[int]] = {"update": {1, 2, 3, 4}, "delete": {5, 6}, "key": {7},
                                    "insert": {100, 101}, "unread": {8}}
    start = threading.Barrier(5)

    def writer(kind: str) -> None:
        conn = connect(lock_timeout="2s")
        start.wait()
        for i in sorted(touched[kind]):
            if kind == "update":
                conn.execute("UPDATE docs SET body = body || ' (edited)' WHERE id = %s", (i,))
            elif kind == "delete":
                conn.execute("DELETE FROM docs WHERE id = %s", (i,))
            elif kind == "key":
                conn.execute("UPDATE docs SET id = %s WHERE id = %s", (i + 200, i))
            elif kind == "insert":
                conn.execute("INSERT INTO docs VALUES (%s, 'new')", (i,))
            else:
                conn.execute("UPDATE docs SET note = 'not read' WHERE id = %s", (i,))

    threads = Workers()
    for kind in touched:
        threads.start(writer, kind)
    threads.join()

    # Every writer committed while the worker still held its locks.
    assert worker.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    assert scalar(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s",
                  (worker.info.backend_pid,)) == 10
    assert scalar(db, "SELECT count(*) FROM docs WHERE body LIKE '%(edited)'") == 4
    assert scalar(db, "SELECT count(*) FROM docs") == 40 - 2 + 2

    # A second worker meanwhile skips everything the first one holds, including the keys
    # the writers queued again.
    second = connect(autocommit=False)
    second_claim = claim(second, docs, 100)
    assert set(second_claim).isdisjoint(claimed)
    assert set(second_claim) == set(range(11, 41)) | {100, 101, 207}
    second.rollback()

    worker.commit()
    requeued = {1, 2, 3, 4, 5, 6, 7, 207, 100, 101}
    assert queued(db, docs) == requeued | set(range(11, 41))
    assert scalar(db, sql.SQL("SELECT count(*) FROM {}").format(store)) == 10


def test_concurrent_updates_queue_exactly_the_updated_keys(
        db: psycopg.Connection, connect: Connector) -> None:
    db.execute("""
        CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL, note text);
        INSERT INTO docs SELECT i, 'body ' || i, NULL FROM generate_series(1, 300) AS i;
    """)
    vid = create_vectorizer(db, "docs")
    n_threads, n_updates = 8, 60
    start = threading.Barrier(n_threads)
    updated: list[set[int]] = [set() for _ in range(n_threads)]
    body_updates = [0] * n_threads

    def writer(t: int) -> None:
        rng = random.Random(t)
        conn = connect(lock_timeout="10s")
        start.wait()
        for n in range(n_updates):
            i = rng.randint(1, 300)
            if rng.random() < 0.6:
                # A value no other update writes, so every one of them is a real change.
                conn.execute("UPDATE docs SET body = %s WHERE id = %s", (f"t{t} u{n}", i))
                updated[t].add(i)
                body_updates[t] += 1
            else:
                conn.execute("UPDATE docs SET note = %s WHERE id = %s", (f"t{t} u{n}", i))

    threads = Workers()
    for t in range(n_threads):
        threads.start(writer, t)
    threads.join()

    keys = set().union(*updated)
    assert queued(db, vid) == keys
    assert len(queue_rows(db, vid)) == sum(body_updates)
    assert scalar(db, "SELECT count(*) FROM docs WHERE body LIKE 't% u%'") == len(keys)


def test_create_vectorizer_while_writers_insert_misses_no_row(
        db: psycopg.Connection, connect: Connector) -> None:
    db.execute("""
        CREATE TABLE docs (id int PRIMARY KEY, body text NOT NULL);
        INSERT INTO docs SELECT i, 'old ' || i FROM generate_series(1, 50) AS i;
    """)
    n_writers, before_create, after_create = 4, 20, 20
    warmed_up = [threading.Event() for _ in range(n_writers)]
    created = threading.Event()
    stop = threading.Event()

    def writer(w: int) -> None:
        conn = connect(lock_timeout="30s")
        n = 0
        after = 0
        while not stop.is_set() or after < after_create:
            base = 1000 * (w + 1) + 2 * n
            # Two rows per transaction: a window between the first insert and the commit.
            with conn.transaction():
                conn.execute("INSERT INTO docs VALUES (%s, 'new')", (base,))
                conn.execute("INSERT INTO docs VALUES (%s, 'new')", (base + 1,))
            n += 1
            if n == before_create:
                warmed_up[w].set()
            if created.is_set():
                after += 1

    # A writer whose transaction is open when create_vectorizer starts: an inserted row and an
    # update that the trigger cannot see, committed only once create_vectorizer waits for it.
    blocker = connect(autocommit=False)
    blocker.execute("INSERT INTO docs VALUES (999, 'in flight')")
    blocker.execute("UPDATE docs SET body = 'edited in flight' WHERE id = 1")

    threads = Workers()
    for w in range(n_writers):
        threads.start(writer, w)
    for event in warmed_up:
        assert event.wait(JOIN_TIMEOUT)

    creator = connect()
    result: list[int] = []

    def create() -> None:
        result.append(create_vectorizer(creator, "docs", enqueue_existing=True))
        created.set()

    creating = Workers()
    creating.start(create)
    wait_until(lambda: scalar(db, "SELECT count(*) FROM pg_locks WHERE pid = %s AND NOT granted",
                              (creator.info.backend_pid,)) > 0,
               "create_vectorizer waits for the open writer")
    blocker.commit()
    creating.join()
    stop.set()
    threads.join()

    vid = result[0]
    source = {i for (i,) in rows(db, "SELECT id FROM docs")}
    assert len(source) >= 50 + 1 + n_writers * 2 * (before_create + after_create)
    assert {1, 999} <= source
    assert source - queued(db, vid) == set()
    assert queued(db, vid) == source
