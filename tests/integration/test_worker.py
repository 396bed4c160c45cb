"""The worker against real Postgres and a fake OpenAI-compatible server on loopback: what only
the worker does (several vectorizers in one pass, --once's error report, retries it waits for,
a long-running worker). What it shares with ai.execute_vectorizer: test_drain.py.

The fake server's vector for a text is a function of the text alone (fake_vector), so a
stored vector shows exactly which text was embedded.
"""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest
from pgvectorizer.worker import Worker

from tests.helpers.db import (
    Connector,
    create_vectorizer,
    dsn,
    failed_rows,
    queued,
    rows,
    scalar,
)
from tests.helpers.worker import (
    env,
    make_doc,
    openai,
    run_once,
    stored,
)


@pytest.fixture
def doc(db: psycopg.Connection, fake_url: str) -> int:
    return make_doc(db, openai(fake_url))


def test_provider_errors_retry_then_fail_while_others_proceed(db: psycopg.Connection, fake_url: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=openai(fake_url), loading="ai.loading_column('body', retries => 2)")
    db.execute("INSERT INTO doc VALUES (1, 'fine'), (2, 'FAIL400 bad input'), (3, 'also fine'), "
               "(4, 'FAIL500 crashes the server'), (5, 'fine again')")
    run_once(db)
    assert sorted(stored(db)) == [1, 3, 5]
    assert failed_rows(db, vid) == [2, 4]
    failed = rows(db, "SELECT id, attempts, failure_step, error FROM ai._vectorizer_q_failed_1 ORDER BY id")
    assert [(i, a, s) for i, a, s, _ in failed] == [(2, 3, "embedding"), (4, 3, "embedding")]
    assert "FAIL400" in failed[0][3] or "400" in failed[0][3]
    assert queued(db, vid) == set()
    errors = [m for (m,) in rows(db, "SELECT message FROM ai.vectorizer_errors WHERE id = %s", (vid,))]
    assert errors and all(m.startswith("embedding: ") for m in errors)
    # A row that later gets good text is tried again.
    db.execute("UPDATE doc SET body = 'repaired' WHERE id = 2")
    run_once(db)
    assert sorted(stored(db)) == [1, 2, 3, 5]
    assert failed_rows(db, vid) == [4]


def test_missing_api_key_stops_only_its_vectorizer(db: psycopg.Connection, fake_url: str) -> None:
    db.execute("CREATE TABLE a (id int PRIMARY KEY, body text)")
    db.execute("CREATE TABLE b (id int PRIMARY KEY, body text)")
    bad = create_vectorizer(db, "a", embedding="ai.embedding_openai('text-embedding-3-small', 4, "
                                                "api_key_name => 'PGVT_MISSING_API_KEY')")
    good = create_vectorizer(db, "b", embedding=openai(fake_url))
    db.execute("INSERT INTO a VALUES (1, 'x')")
    db.execute("INSERT INTO b VALUES (1, 'y')")
    # --once reports it (a cron job exits non-zero), after the other vectorizer's work.
    run_once(db, expect_error="PGVT_MISSING_API_KEY")
    assert scalar(db, "SELECT count(*) FROM b_embedding_store") == 1
    assert queued(db, bad) == {1}
    assert scalar(db, "SELECT attempts FROM ai._vectorizer_q_1") == 0
    [message] = [m for (m,) in rows(db, "SELECT message FROM ai.vectorizer_errors WHERE id = %s", (bad,))]
    assert "PGVT_MISSING_API_KEY" in message
    assert queued(db, good) == set()


def test_a_hanging_provider_times_out_and_blocks_no_writer(db: psycopg.Connection, fake_url: str,
                                                           connect: Connector) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=openai(fake_url), loading="ai.loading_column('body', retries => 0)")
    db.execute("INSERT INTO doc VALUES (1, 'SLOWHANG forever'), (2, 'other')")
    done = threading.Event()
    def work() -> None:
        run_once(db, PGVECTORIZER_HTTP_TIMEOUT="3")
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    time.sleep(1.0)
    # While the provider hangs the worker holds no transaction: writers go straight through.
    writer = connect(lock_timeout="500ms")
    writer.execute("UPDATE doc SET body = 'SLOWHANG edited' WHERE id = 1")
    writer.execute("DELETE FROM doc WHERE id = 2")
    assert scalar(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                      "AND state = 'idle in transaction'") == 0
    thread.join(30)
    assert done.is_set()
    # The hanging batch failed after the timeout (no retries configured), then the edits
    # queued meanwhile were processed: the deleted row left nothing behind.
    assert failed_rows(db, vid) == [1] and queued(db, vid) == set()
    assert scalar(db, "SELECT count(*) FROM doc_embedding_store") == 0


def test_disabled_vectorizer_is_skipped(db: psycopg.Connection, doc: int) -> None:
    db.execute("SELECT ai.disable_vectorizer_schedule(%s)", (doc,))
    db.execute("INSERT INTO doc VALUES (1, 'A', 'x')")
    run_once(db)
    assert queued(db, doc) == {1}
    db.execute("SELECT ai.enable_vectorizer_schedule(%s)", (doc,))
    run_once(db)
    assert queued(db, doc) == set()


def test_once_reports_an_unknown_vectorizer_id(db: psycopg.Connection, doc: int) -> None:
    run_once(db, doc, 999, expect_error="no vectorizer with id 999")


def test_a_configuration_error_is_not_retried_every_few_seconds(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE a (id int PRIMARY KEY, body text)")
    bad = create_vectorizer(db, "a", embedding="ai.embedding_openai('text-embedding-3-small', 4, "
                                                "api_key_name => 'PGVT_MISSING_API_KEY')")
    db.execute("INSERT INTO a VALUES (1, 'x')")
    worker = Worker(dsn(db), poll_interval=3600, env=env())

    async def main() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(6)  # three of the watcher's looks at the (non-empty) queue
        await worker.request_graceful_shutdown()
        assert await asyncio.wait_for(task, 10) is None

    asyncio.run(main())
    assert scalar(db, "SELECT count(*) FROM ai.vectorizer_errors WHERE id = %s", (bad,)) == 1
