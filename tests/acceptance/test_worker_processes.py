"""The worker as real processes: console scripts, wake-ups, SIGTERM, SIGKILL, two workers at once,
and a database outage under a running worker."""

from __future__ import annotations

import random
import signal
import sys
import threading
import time

import psycopg
from pgvectorizer.chunking import make_chunker
from psycopg import sql

from tests.helpers.db import (
    DIMS,
    PGHOST,
    PGPORT,
    PGUSER,
    Connector,
    create_vectorizer,
    dsn,
    failed_rows,
    queued,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.fake_openai import start_fake_server
from tests.helpers.processes import WAIT, finish, spawn, wait_for
from tests.helpers.worker import assert_vector_of, openai, stored


def two_tables(db: psycopg.Connection, url: str) -> tuple[int, int]:
    ids = []
    for t in ("a", "b"):
        db.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, body text)")
        ids.append(create_vectorizer(db, t, embedding=openai(url)))
        db.execute(f"INSERT INTO {t} VALUES (1, 'text of {t}')")
    return ids[0], ids[1]


def test_console_scripts_and_module_run_the_worker(db: psycopg.Connection, fake_url: str) -> None:
    a, b = two_tables(db, fake_url)
    finish(spawn(["pgvectorizer", "worker", "-d", dsn(db), "-i", str(a), "--once"]))
    assert (queued(db, a), queued(db, b)) == (set(), {1})

    db.execute("INSERT INTO a VALUES (2, 'more')")
    finish(spawn(["vectorizer"], PGAI_VECTORIZER_WORKER_DB_URL=dsn(db),
                 PGAI_VECTORIZER_WORKER_VECTORIZER_IDS=str(b), PGAI_VECTORIZER_WORKER_ONCE="true"))
    assert (queued(db, a), queued(db, b)) == ({2}, set())

    finish(spawn([sys.executable, "-m", "pgvectorizer", "worker", "--once"], VECTORIZER_DB_URL=dsn(db)))
    assert (queued(db, a), queued(db, b)) == (set(), set())
    assert scalar(db, "SELECT count(*) FROM a_embedding_store") == 2


def test_a_sleeping_worker_wakes_on_changes_and_drains_on_sigterm(db: psycopg.Connection, fake_url: str) -> None:
    a, _ = two_tables(db, fake_url)
    proc = spawn(["pgvectorizer", "worker", "-d", dsn(db), "--poll-interval", "1h"])
    try:
        wait_for(lambda: not queued(db, a), "the first drain")
        time.sleep(0.5)  # asleep now, for an hour unless new work wakes it
        db.execute("INSERT INTO a VALUES (2, 'arrives while the worker sleeps')")
        wait_for(lambda: scalar(db, "SELECT count(*) FROM a_embedding_store") == 2, "the wake-up")
        # A vectorizer made while it runs is picked up too.
        db.execute("CREATE TABLE c (id int PRIMARY KEY, body text)")
        create_vectorizer(db, "c", embedding=openai(fake_url))
        db.execute("INSERT INTO c VALUES (1, 'new vectorizer')")
        wait_for(lambda: scalar(db, "SELECT count(*) FROM c_embedding_store") == 1, "the new vectorizer")
    finally:
        proc.send_signal(signal.SIGTERM)
    out = finish(proc, timeout=15)
    assert "shutting down" in out


def test_a_killed_worker_loses_nothing(db: psycopg.Connection) -> None:
    slow_url, stop = start_fake_server(dimensions=DIMS, latency_ms=2000)
    try:
        db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
        vid = create_vectorizer(db, "doc", embedding=openai(slow_url))
        db.execute("INSERT INTO doc SELECT g, 'text ' || g FROM generate_series(1, 20) g")
        q = vectorizer(db, vid)["queue_table"]
        victim = spawn(["pgvectorizer", "worker", "-d", dsn(db), "--once"], PGVECTORIZER_LEASE_SECONDS="1")
        wait_for(lambda: scalar(db, f"SELECT count(*) FROM ai.{q} WHERE claimed_by IS NOT NULL") == 20,
                 "the claim")
        victim.kill()
        victim.wait()
        # Claimed rows stay queued; the dead session's advisory locks are gone with it.
        assert queued(db, vid) == set(range(1, 21))
        assert scalar(db, "SELECT count(*) FROM doc_embedding_store") == 0
        time.sleep(1.1)  # the lease
        finish(spawn(["pgvectorizer", "worker", "-d", dsn(db), "--once"]))
        assert queued(db, vid) == set()
        got = stored(db)
        assert sorted(got) == list(range(1, 21))
        for key, chunks in got.items():
            assert_vector_of(chunks[0][1], f"text {key}")
        assert scalar(db, f"SELECT max(attempts) FROM ai._vectorizer_q_failed_{vid}") is None
    finally:
        stop()


def test_two_workers_and_concurrent_writers_end_consistent(db: psycopg.Connection, fake_url: str,
                                                          connect: Connector) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=openai(fake_url),
                            chunking="ai.chunking_recursive_character_text_splitter(40, 10)",
                            processing="ai.processing_default(batch_size => 5)")
    db.execute("INSERT INTO doc SELECT g, 'first version of row ' || g FROM generate_series(1, 40) g")
    workers = [spawn(["pgvectorizer", "worker", "-d", dsn(db), "--poll-interval", "1", "-c", "2"])
               for _ in range(2)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        rnd = random.Random(seed)
        conn = connect()
        try:
            n = 0
            while not stop.is_set():
                key = rnd.randint(1, 50)
                n += 1
                words = " ".join(rnd.choice(["red", "green", "blue", "long sentence here", "."])
                                 for _ in range(rnd.randint(1, 20)))
                action = rnd.random()
                if action < 0.15:
                    conn.execute("DELETE FROM doc WHERE id = %s", (key,))
                else:
                    conn.execute("INSERT INTO doc VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                                 (key, f"v{seed}.{n} {words}"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            conn.close()

    writers = [threading.Thread(target=write, args=(s,)) for s in range(3)]
    try:
        for t in writers:
            t.start()
        time.sleep(5)
        stop.set()
        for t in writers:
            t.join()
        assert not errors
        wait_for(lambda: not queued(db, vid), "the queue to drain")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            finish(w, timeout=15)

    chunker = make_chunker(vectorizer(db, vid)["config"]["chunking"])
    current = dict(rows(db, "SELECT id, body FROM doc"))
    got = stored(db)
    assert sorted(got) == sorted(current), "a deleted row kept chunks, or a row has none"
    for key, body in current.items():
        assert [c for c, _ in got[key]] == chunker(body), f"row {key} has chunks of an older text"
        for chunk, vec in got[key]:
            assert_vector_of(vec, chunk)


def test_search_finds_the_row_whose_text_matches(db: psycopg.Connection, fake_url: str) -> None:
    two_tables(db, fake_url)
    db.execute("INSERT INTO a VALUES (2, 'another text')")
    finish(spawn(["pgvectorizer", "worker", "-d", dsn(db), "--once"]))
    out = finish(spawn(["pgvectorizer", "search", "-d", dsn(db), "public_a_embedding_store", "another text",
                        "--limit", "2", "--columns", "body"]))
    first = out.strip().splitlines()[0]
    assert first.startswith("1. distance 0.0000  [2]  body=another text")
    bad = spawn(["pgvectorizer", "search", "-d", dsn(db), "no_such_vectorizer", "x"])
    out, _ = bad.communicate(timeout=WAIT)
    assert bad.returncode == 1 and "no vectorizer named 'no_such_vectorizer'" in out


def test_once_on_a_backlog_reports_progress(db: psycopg.Connection, fake_url: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    create_vectorizer(db, "doc", embedding=openai(fake_url))
    db.execute("INSERT INTO doc SELECT g, 'row ' || g FROM generate_series(1, 1200) g")
    out = finish(spawn(["pgvectorizer", "worker", "-d", dsn(db), "--once"]))
    # Not a terminal: plain log lines, the last with the totals and the average rate.
    assert "vectorizing: 1200/1200 rows in " in out and "rows/s average" in out


# --- faults ------------------------------------------------------------------------------------

def allow(db: psycopg.Connection, connections: bool) -> None:
    """Let new sessions into the test database, or not (said from another database)."""
    with psycopg.connect(host=PGHOST, port=PGPORT, user=PGUSER, dbname="postgres", autocommit=True) as other:
        other.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(db.info.dbname), sql.SQL("true" if connections else "false")))


def test_a_running_worker_rides_out_a_database_outage(db: psycopg.Connection) -> None:
    slow_url, stop = start_fake_server(dimensions=DIMS, latency_ms=1500)
    try:
        db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
        vid = create_vectorizer(db, "doc", embedding=openai(slow_url), chunking="ai.chunking_none()",
                                processing="ai.processing_default(batch_size => 5)")
        db.execute("INSERT INTO doc SELECT g, 'text ' || g FROM generate_series(1, 20) g")
        proc = spawn(["pgvectorizer", "worker", "-d", dsn(db), "--poll-interval", "1h"],
                     PGVECTORIZER_LEASE_SECONDS="600")
        try:
            wait_for(lambda: scalar(db, f"SELECT count(*) FROM ai._vectorizer_q_{vid} "
                                        "WHERE claimed_by IS NOT NULL") > 0, "a batch in hand")
            # The outage: the worker's sessions die mid-batch and no new one is let in for 3 s.
            allow(db, False)
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            time.sleep(3)
            allow(db, True)
            # Within a few backoffs (not the 10-minute lease) every row is stored, once.
            wait_for(lambda: not queued(db, vid) and
                     scalar(db, "SELECT count(*) FROM doc_embedding_store") == 20, "the rest after the outage")
        finally:
            allow(db, True)
            proc.send_signal(signal.SIGTERM)
        out = finish(proc, timeout=20)
    finally:
        stop()
    assert scalar(db, "SELECT count(DISTINCT id) FROM doc_embedding_store") == 20
    assert failed_rows(db, vid) == []
    assert out.count("lost the database") == 1, out
    assert "the database is back" in out
