"""The embedded task store: one SQLite file in WAL mode (spec 002), for a single service.

All SQL runs on one thread that owns the connection: SQLite serializes writers anyway, and
one thread needs no locking of its own. synchronous=FULL: a task is on disk before its
request is answered, so neither a crash nor a power cut loses an accepted task.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pgvectorizer.service.store import (
    CANCELLED,
    CANCELLED_KIND,
    COMPLETED,
    EXPIRED,
    FAILED,
    LOST,
    PENDING,
    PROCESSING,
    Failure,
    Finished,
    NewTask,
    OpenTask,
    Result,
    Task,
    expired_error,
    failure_outcome,
    lost_error,
    result_problem,
)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000  # another process on the same file (a second service) waits this long

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    inputs TEXT NOT NULL,
    n_texts INTEGER NOT NULL,
    dimensions INTEGER,
    encoding_format TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT,
    lease_expires REAL,
    created_at REAL NOT NULL,
    finished_at REAL,
    error TEXT,
    result BLOB,
    result_dimensions INTEGER,
    tokens INTEGER NOT NULL DEFAULT 0,
    error_kind TEXT
);
CREATE INDEX IF NOT EXISTS tasks_open ON tasks (created_at)
    WHERE status IN ('pending', 'processing');
CREATE INDEX IF NOT EXISTS tasks_pending ON tasks (created_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS workers (worker_id TEXT PRIMARY KEY, last_seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS models (model TEXT PRIMARY KEY, dimensions INTEGER NOT NULL);
"""

_TASK_COLUMNS = ("id, model, inputs, dimensions, encoding_format, status, attempts, created_at, "
                 "finished_at, error, result, result_dimensions, tokens, error_kind")


def _task(row: tuple[Any, ...]) -> Task:
    # _TASK_COLUMNS are Task's fields in order; inputs are stored as JSON text.
    return Task(row[0], row[1], json.loads(row[2]), *row[3:])


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SqliteTaskStore:
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        # One thread: the connection is used only from it.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-store")

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            assert self._conn is not None, "the store is not open"
            return fn(self._conn)
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def open(self) -> None:
        def connect() -> None:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(SCHEMA)
            self._conn = conn
        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await asyncio.get_running_loop().run_in_executor(self._thread, disconnect)
        self._thread.shutdown()

    async def submit(self, task: NewTask) -> None:
        now = self._clock()

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO tasks (id, model, inputs, n_texts, dimensions, encoding_format, "
                "status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (task.id, task.model, json.dumps(task.inputs, ensure_ascii=False),
                 len(task.inputs), task.dimensions, task.encoding_format, PENDING, now))
        await self._run(insert)

    async def get(self, task_id: str) -> Task | None:
        def select(conn: sqlite3.Connection) -> Task | None:
            row = conn.execute(f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = ?",
                               (task_id,)).fetchone()
            return _task(row) if row else None
        return await self._run(select)

    async def status(self, task_id: str) -> str | None:
        def select(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()
            return str(row[0]) if row else None
        return await self._run(select)

    async def claim(self, worker_id: str, models: list[str], max_tasks: int, max_texts: int,
                    lease_seconds: float, max_attempts: int,
                    lost: list[str] | None = None) -> list[Task]:
        now = self._clock()

        def claim(conn: sqlite3.Connection) -> list[Task]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                failed = _fail_lost(conn, now, max_attempts)
                candidates = conn.execute(
                    f"SELECT id, n_texts FROM tasks WHERE (status = ? OR (status = ? AND "
                    f"lease_expires < ?)) AND model IN ({_marks(len(models))}) "
                    f"ORDER BY created_at, rowid LIMIT ?",
                    (PENDING, PROCESSING, now, *models, max_tasks)).fetchall()
                picked: list[str] = []
                texts = 0
                for task_id, n_texts in candidates:
                    if picked and texts + n_texts > max_texts:
                        break
                    picked.append(task_id)
                    texts += n_texts
                rows = conn.execute(
                    f"UPDATE tasks SET status = ?, worker_id = ?, attempts = attempts + 1, "
                    f"lease_expires = ? WHERE id IN ({_marks(len(picked))}) "
                    f"RETURNING {_TASK_COLUMNS}",
                    (PROCESSING, worker_id, now + lease_seconds, *picked)).fetchall()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            if lost is not None:
                lost.extend(failed)
            return sorted((_task(r) for r in rows), key=lambda t: t.created_at)
        return await self._run(claim)

    async def heartbeat(self, worker_id: str, task_ids: list[str],
                        lease_seconds: float) -> list[str]:
        now = self._clock()

        def extend(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"UPDATE tasks SET lease_expires = ? WHERE status = ? AND worker_id = ? "
                f"AND id IN ({_marks(len(task_ids))}) RETURNING id",
                (now + lease_seconds, PROCESSING, worker_id, *task_ids)).fetchall()
            return [r[0] for r in rows]
        return await self._run(extend) if task_ids else []

    async def finish(self, worker_id: str, results: list[Result], failures: list[Failure],
                     released: list[str], max_attempts: int) -> Finished:
        now = self._clock()

        def finish(conn: sqlite3.Connection) -> Finished:
            accepted: list[str] = []
            ignored: dict[str, str] = {}
            final: dict[str, float] = {}
            requeued = False
            conn.execute("BEGIN IMMEDIATE")
            try:
                for result in results:
                    task = _open_task(conn, result.id, ignored, now)
                    if task is None:
                        continue
                    reason = result_problem(result, task)
                    if reason:
                        ignored[result.id] = reason
                        continue
                    conn.execute(
                        "UPDATE tasks SET status = ?, result = ?, result_dimensions = ?, "
                        "tokens = ?, finished_at = ?, error = NULL, error_kind = NULL, "
                        "worker_id = ?, lease_expires = NULL WHERE id = ?",
                        (COMPLETED, result.vectors, result.dimensions, result.tokens, now,
                         worker_id, result.id))
                    accepted.append(result.id)
                    final[result.id] = task.age
                for failure in failures:
                    task = _open_task(conn, failure.id, ignored, now)
                    if task is None:
                        continue
                    action, detail = failure_outcome(failure, task, worker_id, max_attempts)
                    if action == "ignore":
                        ignored[failure.id] = str(detail)
                        continue
                    if action == "requeue":
                        conn.execute("UPDATE tasks SET status = ?, worker_id = NULL, "
                                     "lease_expires = NULL, error = ? WHERE id = ?",
                                     (PENDING, failure.error, failure.id))
                        requeued = True
                    else:
                        conn.execute("UPDATE tasks SET status = ?, error = ?, error_kind = ?, "
                                     "finished_at = ?, worker_id = ?, lease_expires = NULL "
                                     "WHERE id = ?",
                                     (FAILED, failure.error, detail, now, worker_id, failure.id))
                        final[failure.id] = task.age
                    accepted.append(failure.id)
                for task_id in released:
                    changed = conn.execute(
                        "UPDATE tasks SET status = ?, attempts = max(attempts - 1, 0), "
                        "worker_id = NULL, lease_expires = NULL WHERE id = ? AND status = ? "
                        "AND worker_id = ?", (PENDING, task_id, PROCESSING, worker_id)).rowcount
                    if changed:
                        accepted.append(task_id)
                        requeued = True
                    else:
                        ignored[task_id] = "not leased to this worker"
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return Finished(accepted, ignored, final, requeued)
        return await self._run(finish)

    async def cancel(self, task_id: str) -> bool:
        now = self._clock()

        def cancel(conn: sqlite3.Connection) -> bool:
            return conn.execute(
                "UPDATE tasks SET status = ?, error = ?, error_kind = ?, finished_at = ?, "
                "lease_expires = NULL WHERE id = ? AND status IN (?, ?)",
                (FAILED, CANCELLED, CANCELLED_KIND, now, task_id, PENDING, PROCESSING)
            ).rowcount > 0
        return await self._run(cancel)

    async def expire(self, max_attempts: int, retention: float,
                     pending_timeout: float) -> tuple[list[str], int]:
        now = self._clock()

        def expire(conn: sqlite3.Connection) -> tuple[list[str], int]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                lost = _fail_lost(conn, now, max_attempts)
                lost += [r[0] for r in conn.execute(
                    "UPDATE tasks SET status = ?, error = ?, error_kind = ?, finished_at = ? "
                    "WHERE status = ? AND created_at < ? RETURNING id",
                    (FAILED, expired_error(pending_timeout), EXPIRED, now, PENDING,
                     now - pending_timeout)).fetchall()]
                deleted = conn.execute(
                    "DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ?",
                    (now - retention,)).rowcount
                conn.execute("DELETE FROM workers WHERE last_seen < ?", (now - 86400,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return lost, deleted
        return await self._run(expire)

    async def counts(self) -> dict[str, int]:
        def count(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute("SELECT status, count(*) FROM tasks GROUP BY status"))
        return await self._run(count)

    async def note_worker(self, worker_id: str, dimensions: dict[str, int]) -> None:
        now = self._clock()

        def note(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO workers VALUES (?, ?) ON CONFLICT (worker_id) "
                         "DO UPDATE SET last_seen = excluded.last_seen", (worker_id, now))
            conn.executemany("INSERT INTO models VALUES (?, ?) ON CONFLICT (model) "
                             "DO UPDATE SET dimensions = excluded.dimensions",
                             list(dimensions.items()))
        await self._run(note)

    async def workers(self, seen_within: float) -> int:
        since = self._clock() - seen_within

        def count(conn: sqlite3.Connection) -> int:
            return int(conn.execute("SELECT count(*) FROM workers WHERE last_seen >= ?",
                                    (since,)).fetchone()[0])
        return await self._run(count)

    async def model_dimensions(self) -> dict[str, int]:
        def select(conn: sqlite3.Connection) -> dict[str, int]:
            return dict(conn.execute("SELECT model, dimensions FROM models"))
        return await self._run(select)


def _fail_lost(conn: sqlite3.Connection, now: float, max_attempts: int) -> list[str]:
    rows = conn.execute(
        "UPDATE tasks SET status = ?, error = ?, error_kind = ?, finished_at = ?, "
        "lease_expires = NULL WHERE status = ? AND lease_expires < ? AND attempts >= ? "
        "RETURNING id",
        (FAILED, lost_error(max_attempts), LOST, now, PROCESSING, now, max_attempts)).fetchall()
    return [r[0] for r in rows]


def _open_task(conn: sqlite3.Connection, task_id: str, ignored: dict[str, str],
               now: float) -> OpenTask | None:
    """The task if it is not final yet; else None, with the reason in ignored."""
    row = conn.execute("SELECT status, n_texts, dimensions, attempts, worker_id, created_at "
                       "FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        ignored[task_id] = "no such task (it may have expired)"
        return None
    if row[0] in (COMPLETED, FAILED):
        ignored[task_id] = f"the task is {row[0]} already"
        return None
    return OpenTask(n_texts=row[1], dimensions=row[2], attempts=row[3], worker_id=row[4],
                    age=now - row[5])
