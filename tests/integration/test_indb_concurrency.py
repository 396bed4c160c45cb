"""ai.execute_vectorizer and the worker on one vectorizer at once: nothing lost, stale or doubled.

In-database runs hold their keys with transaction advisory locks, the worker with session
locks; both claim with the same statement (db/queries.py). The stress test runs a worker
process, in-database calls and writers together, then checks the store row by row. The other
tests drive an open in-database transaction against the worker's claim step by step, as
test_queue.py does for two workers. Three of them found bugs, fixed since: a slow claim that
stored an older text, a worker's write blocked by an open call's progress row, and a claim
that came back empty behind rows of keys held elsewhere.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvectorizer.chunking import make_chunker
from pgvectorizer.config import Vectorizer
from pgvectorizer.db.queue import QueueSession
from pgvectorizer.embedders import make_embedder
from pgvectorizer.pipeline import Pipeline, digest
from pgvectorizer.worker import Worker
from psycopg import sql

from .conftest import (
    DIMS,
    KEY_ENDPOINTS,
    SERVER_KEY_VAR,
    Connector,
    create_vectorizer,
    queue_rows,
    rows,
    scalar,
    vectorizer,
)
from .fake_openai import fake_vector, start_fake_server
from .test_worker import dsn, env, openai
from .test_worker_processes import worker_env

# The fake server takes any key, so the worker gets a value of its own under the server's name.
KEY_ENV = {SERVER_KEY_VAR: "test-key", **KEY_ENDPOINTS}
INDB = "pgvt-indb"  # application_name of the tests' in-database sessions
WORKER = "pgvectorizer-worker"  # the worker's (db/connection.py), a prefix
STRESS_SECONDS = 10.0  # how long the writers write
WAIT = 30.0  # seconds: the most a drain or a stop may take

@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    # A few ms per request, so that the worker's batches and in-database ones overlap.
    url, stop = start_fake_server(dimensions=DIMS, latency_ms=3)
    yield url
    stop()


@pytest.fixture
def doc(db: psycopg.Connection, fake_url: str) -> int:
    """A source with a row filter and a template column; 1 to 3 chunks for a text of up to 90."""
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, title text NOT NULL DEFAULT 'T', body text, "
               "published bool NOT NULL DEFAULT true)")
    return create_vectorizer(
        db, "doc", embedding=openai(fake_url, api_key_name=f"'{SERVER_KEY_VAR}'"),
        formatting="ai.formatting_python_template('$title: $chunk')",
        chunking="ai.chunking_recursive_character_text_splitter(40, 10)",
        processing="ai.processing_default(batch_size => 10)", row_filter="published")


# --- helpers ---------------------------------------------------------------------------------

def call(conn: psycopg.Connection, vid: int, max_rows: int | None = None) -> dict[str, Any]:
    """ai.execute_vectorizer on conn, in its transaction if one is open; the outcome."""
    out = scalar(conn, "SELECT ai.execute_vectorizer(%s, max_rows => %s)", (vid, max_rows))
    assert isinstance(out, dict)
    return out


def queue_of(db: psycopg.Connection, vid: int) -> sql.Identifier:
    v = vectorizer(db, vid)
    return sql.Identifier(v["queue_schema"], v["queue_table"])


def stored_text(db: psycopg.Connection, key: int) -> list[str]:
    return [r[0] for r in rows(db, "SELECT chunk FROM doc_embedding_store WHERE id = %s ORDER BY chunk_seq", (key,))]


def advisory_locks(db: psycopg.Connection, conn: psycopg.Connection) -> int:
    return int(scalar(db, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                          "AND pid = %s", (conn.info.backend_pid,)))


def store_problems(db: psycopg.Connection, vid: int) -> list[str]:
    """How the store differs from what the current source rows make: [] when it is exact.

    A row that passes the filter has exactly the chunks the chunker makes of its body, in
    order from chunk_seq 0, each with the fake server's vector of '<title>: <chunk>' (bit for
    bit) and that text's hash; any other row has none.
    """
    chunker = make_chunker(vectorizer(db, vid)["config"]["chunking"])
    want: dict[int, list[tuple[str, str]]] = {}
    for key, title, body, published in rows(db, "SELECT id, title, body, published FROM doc"):
        if published and body is not None:
            want[key] = [(c, f"{title}: {c}") for c in chunker(body)]
    got: dict[int, list[tuple[int, str, np.ndarray, bytes]]] = {}
    # Binary, so that a vector arrives as the float4 values stored, not a decimal rendering.
    with db.cursor(binary=True) as cur:
        cur.execute("SELECT id, chunk_seq, chunk, embedding::real[], chunk_hash FROM doc_embedding_store "
                    "ORDER BY id, chunk_seq")
        for key, seq, chunk, vec, hash_ in cur.fetchall():
            got.setdefault(key, []).append((seq, chunk, np.array(vec, dtype=np.float32),
                                             bytes(hash_ or b"")))
    problems = [f"row {key} is deleted, filtered out or empty but has {len(got[key])} chunk(s)"
                for key in sorted(set(got) - set(want)) if got[key]]
    for key, chunks in sorted(want.items()):
        have = got.get(key, [])
        if [(s, c) for s, c, _, _ in have] != [(s, c) for s, (c, _) in enumerate(chunks)]:
            problems.append(f"row {key}: chunks {[(s, c) for s, c, _, _ in have]}, "
                            f"want {[c for c, _ in chunks]}")
            continue
        for (seq, _, vec, hash_), (_, text) in zip(have, chunks, strict=True):
            if not np.array_equal(vec, fake_vector(text, DIMS)):
                problems.append(f"row {key} chunk {seq}: not the vector of {text!r}")
            if hash_ != digest(text):
                problems.append(f"row {key} chunk {seq}: not the hash of {text!r}")
    return problems


def assert_consistent(db: psycopg.Connection, vid: int) -> None:
    """Nothing queued, failed or recorded as an error, and the store exactly as the source says."""
    v = vectorizer(db, vid)
    failed = sql.Identifier(v["queue_schema"], v["queue_failed_table"])
    assert queue_rows(db, vid) == []
    assert rows(db, sql.SQL("SELECT * FROM {}").format(failed)) == []
    assert rows(db, "SELECT message FROM ai.vectorizer_errors WHERE id = %s", (vid,)) == []
    assert store_problems(db, vid) == []


Scenario = Callable[[QueueSession, Pipeline], Awaitable[None]]


def with_worker_session(db: psycopg.Connection, vid: int, scenario: Scenario) -> None:
    """Run scenario with one QueueSession (the worker's connection and statements) and its
    pipeline, embedding through the fake server."""
    v = Vectorizer.from_row(vectorizer(db, vid))

    async def main() -> None:
        session = await QueueSession.open(dsn(db), v, lease=60, retry_base=0)
        pipeline = Pipeline(v, make_embedder(v.embedding, KEY_ENV))
        try:
            await scenario(session, pipeline)
        finally:
            pipeline.embedder.close()
            await session.close()

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


# --- everything at once ------------------------------------------------------------------------

WORDS = ["red", "green", "blue", "a longer phrase", "ok.", "words", "x"]
FIRST_ROWS = 300
KEYS = 330  # writers also insert keys that were never there


def random_text(rnd: random.Random, tag: str) -> str:
    return f"{tag} " + " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 8)))


def test_worker_and_in_database_runs_with_writers_end_exact(
        db: psycopg.Connection, doc: int, connect: Connector, tmp_path: Path) -> None:
    rnd = random.Random(7)
    keys = list(range(1, FIRST_ROWS + 1))
    db.execute("INSERT INTO doc (id, title, body, published) SELECT * FROM unnest(%s::int[], %s::text[], "
               "%s::text[], %s::bool[])", (keys, [f"T{k}" for k in keys], [random_text(rnd, f"first{k}") for k in keys],
                                           [k % 7 != 0 for k in keys]))
    log_path = tmp_path / "worker.log"
    stop = threading.Event()
    errors: list[BaseException] = []
    indb_rows: list[int] = []
    job_rows: list[int] = []
    overlaps: list[int] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported by the test
                errors.append(e)
                stop.set()
        return run

    def write(seed: int) -> None:
        # A writer waits for nobody but another writer on the same row, and only for a moment.
        conn = connect(lock_timeout="2s")
        w = random.Random(seed)
        n = 0
        while not stop.is_set():
            n += 1
            key, action = w.randint(1, KEYS), w.random()
            if action < 0.35:
                conn.execute("UPDATE doc SET body = %s WHERE id = %s", (random_text(w, f"v{seed}.{n}"), key))
            elif action < 0.45:
                conn.execute("UPDATE doc SET title = %s WHERE id = %s", (f"T{seed}.{n}", key))
            elif action < 0.60:
                conn.execute("UPDATE doc SET published = NOT published WHERE id = %s", (key,))
            elif action < 0.75:
                conn.execute("DELETE FROM doc WHERE id = %s", (key,))
            elif action < 0.90:
                conn.execute("INSERT INTO doc (id, title, body) VALUES (%s, %s, %s) ON CONFLICT (id) DO "
                             "UPDATE SET title = excluded.title, body = excluded.body",
                             (key, f"T{seed}.{n}", random_text(w, f"re{seed}.{n}")))
            elif action < 0.95:
                conn.execute("UPDATE doc SET body = NULL WHERE id = %s", (key,))
            else:
                try:  # a new key for the row: the old one loses its chunks
                    conn.execute("UPDATE doc SET id = %s WHERE id = %s", (w.randint(1, KEYS), key))
                except psycopg.errors.UniqueViolation:
                    pass

    def execute_calls() -> None:
        # Mostly a call per transaction; sometimes an open transaction that holds its keys a
        # while, then commits or rolls back everything the call did.
        conn = connect(application_name=INDB)
        w = random.Random(1)
        while not stop.is_set():
            if w.random() < 0.7:
                indb_rows.append(call(conn, doc, max_rows=20)["rows"])
                continue
            with conn.transaction(force_rollback=w.random() < 0.5):
                call(conn, doc, max_rows=20)
                time.sleep(w.random() * 0.05)

    def job_notice(notice: psycopg.errors.Diagnostic) -> None:
        # What a run of the procedure did: "vectorizer 'name': {outcome}".
        if notice.message_primary and notice.message_primary.startswith("vectorizer "):
            job_rows.append(json.loads(notice.message_primary.split(": ", 1)[1])["rows"])

    def job_calls() -> None:
        conn = connect(application_name=INDB)
        conn.add_notice_handler(job_notice)
        while not stop.is_set():
            conn.execute("CALL ai._vectorizer_job(%s)", (doc,))

    def watch() -> None:
        # Evidence that both kinds of run held keys at the same moment.
        conn = connect()
        while not stop.is_set():
            row = conn.execute(
                "SELECT count(DISTINCT l.pid) FILTER (WHERE a.application_name LIKE %s), "
                "count(DISTINCT l.pid) FILTER (WHERE a.application_name = %s) "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()",
                (WORKER + "%", INDB)).fetchone()
            if row and row[0] and row[1]:
                overlaps.append(row[0] + row[1])
            time.sleep(0.01)

    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            ["pgvectorizer", "worker", "-d", dsn(db), "-i", str(doc), "-c", "2", "--poll-interval", "1",
             "--log-level", "DEBUG"],
            env=worker_env(**KEY_ENV), stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            runners = [threading.Thread(target=guarded(execute_calls)), threading.Thread(target=guarded(job_calls)),
                       threading.Thread(target=guarded(watch))]
            writers = [threading.Thread(target=guarded(functools.partial(write, s))) for s in (1, 2)]
            for t in runners + writers:
                t.start()
            stop.wait(STRESS_SECONDS)
            stop.set()
            for t in writers + runners:
                t.join(WAIT)
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(WAIT) == 0, log_path.read_text()[-3000:]
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert not errors, errors

    deadline = time.monotonic() + WAIT
    while call(db, doc)["stopped"] != "queue_empty" or queue_rows(db, doc):
        assert time.monotonic() < deadline, f"the queue does not drain: {queue_rows(db, doc)[:20]}"

    worker_rows = sum(int(n) for n in re.findall(r": (\d+) rows done", log_path.read_text()))
    assert worker_rows > 0 and sum(indb_rows) > 0 and sum(job_rows) > 0, (worker_rows, indb_rows, job_rows)
    assert overlaps, "the worker and the in-database runs never held keys at the same time"
    assert_consistent(db, doc)


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

    async def scenario(s: QueueSession, p: Pipeline) -> None:
        await s.conn.execute("SET statement_timeout = '5s'")  # a claim that waited would fail
        token, claimed = await s.claim(100)
        assert {int(r.key[0]) for r in claimed} == set(range(5, 11))
        assert next(r.values["body"] for r in claimed if r.key == ("5",)) == "newer text of row 5"
        await s.release(token)
        await s.unlock([r.lock for r in claimed])

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

    async def scenario(s: QueueSession, p: Pipeline) -> None:
        token, claimed = await s.claim(100)
        assert {int(r.key[0]) for r in claimed} == set(range(5, 11))
        await s.conn.execute("SET lock_timeout = '1s'")  # the worker's own is 10 s
        await s.write(token, claimed, p.run(claimed, await s.existing(token)))
        await s.unlock([r.lock for r in claimed])

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

    async def scenario(s: QueueSession, p: Pipeline) -> None:
        token, claimed = await s.claim(100)  # the held keys' new queue rows are left alone
        assert {int(r.key[0]) for r in claimed} == {5, 6}
        await s.release(token)
        await s.unlock([r.lock for r in claimed])

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

    async def scenario(s: QueueSession, p: Pipeline) -> None:
        token, claimed = await s.claim(4)  # read, not yet written: the model is working
        assert sorted(int(r.key[0]) for r in claimed) == [1, 2, 3, 4]
        writer.execute("UPDATE doc SET body = 'newer text of row 2' WHERE id = 2")
        out = call(indb, doc)
        assert (out["stopped"], out["rows"]) == ("queue_empty", 6)
        assert sorted(r[0] for r in rows(db, "SELECT id FROM doc_embedding_store")) == list(range(5, 11))
        await s.write(token, claimed, p.run(claimed, await s.existing(token)))
        await s.unlock([r.lock for r in claimed])

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

    async def scenario(s: QueueSession, p: Pipeline) -> None:
        token, claimed = await s.claim(100)
        assert sorted(int(r.key[0]) for r in claimed) == [1, 2, 3, 4, 5, 6]
        assert {r.attempts for r in claimed} == {1}  # the rolled-back claim counted nothing
        await s.write(token, claimed, p.run(claimed, await s.existing(token)))
        await s.unlock([r.lock for r in claimed])

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

    async def scenario(s: QueueSession, p: Pipeline) -> None:
        token, claimed = await s.claim(5)  # a batch no bigger than the held keys' rows ahead
        await s.release(token)
        await s.unlock([r.lock for r in claimed])
        assert sorted(int(r.key[0]) for r in claimed) == [6, 7, 8, 9, 10]

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

    async def scenario(s: QueueSession, p: Pipeline) -> None:
        await s.conn.execute("SET synchronize_seqscans = off")
        claim = asyncio.create_task(s.claim(10))
        busy = ("SELECT state = 'active' AND strpos(query, '_vectorizer_ops_call') > 0 "
                "FROM pg_stat_activity WHERE pid = %s")
        deadline = time.monotonic() + 10
        while not scalar(db, busy, (s.conn.info.backend_pid,)):
            assert time.monotonic() < deadline, "the claim never showed as running"
            await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # the claim has its snapshot and row 1's queue row, and scans on
        writer.execute("UPDATE doc SET body = 'version two' WHERE id = 1")
        pages = scalar(db, sql.SQL("SELECT array_agg(DISTINCT (ctid::text::point)[0]) FROM {} WHERE id = 1")
                       .format(queue))
        out = call(indb, doc, max_rows=1)  # takes the new queue row and stores version two
        if pages != [0]:
            pytest.fail(f"row 1's queue rows are not all on the queue's first page: {pages}")
        if not scalar(db, busy, (s.conn.info.backend_pid,)) or out["rows"] != 1:
            pytest.fail(f"the race was not set up: the claim ended first, or the call did {out}")
        assert stored_text(db, 1) == ["version two"]
        token, claimed = await claim
        await s.write(token, claimed, p.run(claimed, await s.existing(token)))
        await s.unlock([r.lock for r in claimed])

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
