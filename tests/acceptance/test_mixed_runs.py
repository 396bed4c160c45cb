"""The worker process, in-database calls and writers on one vectorizer at once: the store ends
exactly as the source rows say, row by row (tests/helpers/mixed_runs.py)."""

from __future__ import annotations

import functools
import json
import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers.db import DIMS, Connector, dsn, queue_rows
from tests.helpers.fake_openai import start_fake_server
from tests.helpers.mixed_runs import (
    INDB,
    KEY_ENV,
    LATENCY_MS,
    WORKER,
    assert_consistent,
    call,
    make_doc,
)
from tests.helpers.processes import process_env

STRESS_SECONDS = 10.0  # how long the writers write
WAIT = 30.0  # seconds: the most a drain or a stop may take


@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    url, stop = start_fake_server(dimensions=DIMS, latency_ms=LATENCY_MS)
    yield url
    stop()


@pytest.fixture
def doc(db: psycopg.Connection, fake_url: str) -> int:
    return make_doc(db, fake_url)


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
            env=process_env(**KEY_ENV), stdout=log, stderr=subprocess.STDOUT, text=True)
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
