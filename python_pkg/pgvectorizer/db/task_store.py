"""The embedding queue's task store in PostgreSQL, for several service replicas at once.

Tables live in schema embedding_queue, created on first open. Claims take tasks with
FOR UPDATE SKIP LOCKED, so replicas and workers never wait on each other's picks; every time
is the database's clock, so replicas on machines with skewed clocks agree on leases.
"""

from __future__ import annotations

import logging
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool

from pgvectorizer.db.connection import SESSION_SETUP
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
    parse_task_id,
    result_problem,
)

logger = logging.getLogger(__name__)

POOL_SIZE = 10  # connections per replica: one per concurrent store call; long polls hold none
SCHEMA_LOCK = 7_441_001  # advisory lock key: two replicas starting at once create tables once

SCHEMA = """
CREATE SCHEMA IF NOT EXISTS embedding_queue;
CREATE TABLE IF NOT EXISTS embedding_queue.tasks (
    id uuid PRIMARY KEY,
    model text NOT NULL,
    inputs json NOT NULL,  -- json, not text[]: text cannot hold NUL; json escapes it
    n_texts int NOT NULL,
    dimensions int,
    encoding_format text NOT NULL,
    status text NOT NULL,
    attempts int NOT NULL DEFAULT 0,
    worker_id text,
    lease_expires timestamptz,
    created_at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
    finished_at timestamptz,
    error text,
    result bytea,
    result_dimensions int,
    tokens int NOT NULL DEFAULT 0,
    error_kind text
);
CREATE INDEX IF NOT EXISTS tasks_open ON embedding_queue.tasks (created_at)
    WHERE status IN ('pending', 'processing');
CREATE INDEX IF NOT EXISTS tasks_pending ON embedding_queue.tasks (created_at)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS tasks_finished ON embedding_queue.tasks (finished_at)
    WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS embedding_queue.workers (
    worker_id text PRIMARY KEY, last_seen timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS embedding_queue.models (
    model text PRIMARY KEY, dimensions int NOT NULL);
"""

_COLUMNS = ("id::text, model, inputs, dimensions, encoding_format, status, attempts, "
            "extract(epoch FROM created_at)::float8, extract(epoch FROM finished_at)::float8, "
            "error, result, result_dimensions, tokens, error_kind")
_NOW = "pg_catalog.clock_timestamp()"

FAIL_LOST = f"""
UPDATE embedding_queue.tasks SET status = '{FAILED}', error = %(lost)s, error_kind = '{LOST}',
       finished_at = {_NOW}, lease_expires = NULL
 WHERE status = '{PROCESSING}' AND lease_expires < {_NOW} AND attempts >= %(max_attempts)s
RETURNING id::text"""

CLAIM = f"""
WITH candidates AS (
    SELECT id, n_texts, created_at FROM embedding_queue.tasks
     WHERE (status = '{PENDING}' OR (status = '{PROCESSING}' AND lease_expires < {_NOW}
                                     AND attempts < %(max_attempts)s))
       AND model = ANY(%(models)s)
     ORDER BY created_at, id LIMIT %(max_tasks)s
       FOR UPDATE SKIP LOCKED),
picked AS (
    SELECT id FROM (SELECT id, sum(n_texts) OVER w AS upto, row_number() OVER w AS n
                      FROM candidates WINDOW w AS (ORDER BY created_at, id)) c
     WHERE n = 1 OR upto <= %(max_texts)s)
UPDATE embedding_queue.tasks t
   SET status = '{PROCESSING}', worker_id = %(worker)s, attempts = t.attempts + 1,
       lease_expires = {_NOW} + pg_catalog.make_interval(secs => %(lease)s)
  FROM picked WHERE t.id = picked.id
RETURNING t.{_COLUMNS}"""


def _task(row: TupleRow) -> Task:
    # _COLUMNS are Task's fields in order; psycopg reads json as a list and bytea as bytes.
    return Task(*row)


async def _configure(conn: AsyncConnection[Any]) -> None:
    await conn.execute(SESSION_SETUP)


class PostgresTaskStore:
    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        self.url = url
        self._pool = AsyncConnectionPool(url, min_size=1, max_size=pool_size, open=False,
                                         configure=_configure,
                                         kwargs={"autocommit": True,
                                                 "application_name": "pgvectorizer-queue"})

    async def open(self) -> None:
        await self._pool.open(wait=True)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            await conn.execute(SCHEMA)

    async def close(self) -> None:
        await self._pool.close()

    async def submit(self, task: NewTask) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO embedding_queue.tasks (id, model, inputs, n_texts, dimensions, "
                "encoding_format, status) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (task.id, task.model, Json(task.inputs), len(task.inputs), task.dimensions,
                 task.encoding_format, PENDING))

    async def get(self, task_id: str) -> Task | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM embedding_queue.tasks "
                                     "WHERE id = %s", (parse_task_id(task_id),))
            row = await cur.fetchone()
        return _task(row) if row else None

    async def status(self, task_id: str) -> str | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT status FROM embedding_queue.tasks WHERE id = %s",
                                     (parse_task_id(task_id),))
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def claim(self, worker_id: str, models: list[str], max_tasks: int, max_texts: int,
                    lease_seconds: float, max_attempts: int,
                    lost: list[str] | None = None) -> list[Task]:
        params = {"lost": lost_error(max_attempts), "max_attempts": max_attempts,
                  "models": models, "max_tasks": max_tasks, "max_texts": max_texts,
                  "worker": worker_id, "lease": lease_seconds}
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(FAIL_LOST, params)
            failed = [r[0] for r in await cur.fetchall()]
            cur = await conn.execute(CLAIM, params)
            rows = await cur.fetchall()
        if lost is not None:
            lost.extend(failed)
        return sorted((_task(r) for r in rows), key=lambda t: t.created_at)

    async def heartbeat(self, worker_id: str, task_ids: list[str],
                        lease_seconds: float) -> list[str]:
        ids = [i for i in map(parse_task_id, task_ids) if i is not None]
        if not ids:
            return []
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE embedding_queue.tasks SET lease_expires = {_NOW} + "
                "pg_catalog.make_interval(secs => %s) WHERE status = %s AND worker_id = %s "
                "AND id = ANY(%s::uuid[]) RETURNING id::text",
                (lease_seconds, PROCESSING, worker_id, ids))
            return [r[0] for r in await cur.fetchall()]

    async def finish(self, worker_id: str, results: list[Result], failures: list[Failure],
                     released: list[str], max_attempts: int) -> Finished:
        accepted: list[str] = []
        ignored: dict[str, str] = {}
        final: dict[str, float] = {}
        requeued = False
        async with self._pool.connection() as conn, conn.transaction():
            for result in results:
                task = await _open_task(conn, result.id, ignored)
                if task is None:
                    continue
                reason = result_problem(result, task)
                if reason:
                    ignored[result.id] = reason
                    continue
                await conn.execute(
                    f"UPDATE embedding_queue.tasks SET status = %s, result = %s, "
                    f"result_dimensions = %s, tokens = %s, finished_at = {_NOW}, error = NULL, "
                    f"error_kind = NULL, worker_id = %s, lease_expires = NULL WHERE id = %s",
                    (COMPLETED, result.vectors, result.dimensions, result.tokens, worker_id,
                     result.id))
                accepted.append(result.id)
                final[result.id] = task.age
            for failure in failures:
                task = await _open_task(conn, failure.id, ignored)
                if task is None:
                    continue
                action, detail = failure_outcome(failure, task, worker_id, max_attempts)
                if action == "ignore":
                    ignored[failure.id] = str(detail)
                    continue
                if action == "requeue":
                    await conn.execute(
                        "UPDATE embedding_queue.tasks SET status = %s, worker_id = NULL, "
                        "lease_expires = NULL, error = %s WHERE id = %s",
                        (PENDING, failure.error, failure.id))
                    requeued = True
                else:
                    await conn.execute(
                        f"UPDATE embedding_queue.tasks SET status = %s, error = %s, "
                        f"error_kind = %s, finished_at = {_NOW}, worker_id = %s, "
                        f"lease_expires = NULL WHERE id = %s",
                        (FAILED, failure.error, detail, worker_id, failure.id))
                    final[failure.id] = task.age
                accepted.append(failure.id)
            for task_id in released:
                cur = await conn.execute(
                    "UPDATE embedding_queue.tasks SET status = %s, "
                    "attempts = greatest(attempts - 1, 0), worker_id = NULL, "
                    "lease_expires = NULL WHERE id = %s AND status = %s AND worker_id = %s",
                    (PENDING, parse_task_id(task_id), PROCESSING, worker_id))
                if cur.rowcount:
                    accepted.append(task_id)
                    requeued = True
                else:
                    ignored[task_id] = "not leased to this worker"
        return Finished(accepted, ignored, final, requeued)

    async def cancel(self, task_id: str) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE embedding_queue.tasks SET status = %s, error = %s, error_kind = %s, "
                f"finished_at = {_NOW}, lease_expires = NULL "
                f"WHERE id = %s AND status IN (%s, %s)",
                (FAILED, CANCELLED, CANCELLED_KIND, parse_task_id(task_id), PENDING, PROCESSING))
            return cur.rowcount > 0

    async def expire(self, max_attempts: int, retention: float,
                     pending_timeout: float) -> tuple[list[str], int]:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(FAIL_LOST, {"lost": lost_error(max_attempts),
                                                 "max_attempts": max_attempts})
            lost = [r[0] for r in await cur.fetchall()]
            cur = await conn.execute(
                f"UPDATE embedding_queue.tasks SET status = %s, error = %s, error_kind = %s, "
                f"finished_at = {_NOW} WHERE status = %s AND created_at < {_NOW} - "
                f"pg_catalog.make_interval(secs => %s) RETURNING id::text",
                (FAILED, expired_error(pending_timeout), EXPIRED, PENDING, pending_timeout))
            lost += [r[0] for r in await cur.fetchall()]
            cur = await conn.execute(
                f"DELETE FROM embedding_queue.tasks WHERE finished_at < {_NOW} - "
                "pg_catalog.make_interval(secs => %s)", (retention,))
            deleted = cur.rowcount
            await conn.execute(f"DELETE FROM embedding_queue.workers WHERE last_seen < {_NOW} "
                               "- interval '1 day'")
        return lost, deleted

    async def counts(self) -> dict[str, int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT status, count(*) FROM embedding_queue.tasks "
                                     "GROUP BY status")
            return {status: int(n) for status, n in await cur.fetchall()}

    async def note_worker(self, worker_id: str, dimensions: dict[str, int]) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO embedding_queue.workers VALUES (%s, {_NOW}) ON CONFLICT (worker_id) "
                "DO UPDATE SET last_seen = excluded.last_seen", (worker_id,))
            for model, size in sorted(dimensions.items()):
                await conn.execute(
                    "INSERT INTO embedding_queue.models VALUES (%s, %s) ON CONFLICT (model) "
                    "DO UPDATE SET dimensions = excluded.dimensions", (model, size))

    async def workers(self, seen_within: float) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT count(*) FROM embedding_queue.workers WHERE last_seen >= {_NOW} - "
                "pg_catalog.make_interval(secs => %s)", (seen_within,))
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    async def model_dimensions(self) -> dict[str, int]:
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT model, dimensions FROM embedding_queue.models")
            return {model: int(size) for model, size in await cur.fetchall()}


async def _open_task(conn: AsyncConnection[Any], task_id: str,
                     ignored: dict[str, str]) -> OpenTask | None:
    """The task if it is not final yet, locked for this transaction; else None, with the
    reason in ignored."""
    cur = await conn.execute(
        "SELECT status, n_texts, dimensions, attempts, worker_id, "
        f"extract(epoch FROM {_NOW} - created_at)::float8 FROM embedding_queue.tasks "
        "WHERE id = %s FOR UPDATE", (parse_task_id(task_id),))
    row = await cur.fetchone()
    if row is None:
        ignored[task_id] = "no such task (it may have expired)"
        return None
    if row[0] in (COMPLETED, FAILED):
        ignored[task_id] = f"the task is {row[0]} already"
        return None
    return OpenTask(n_texts=row[1], dimensions=row[2], attempts=row[3], worker_id=row[4],
                    age=row[5])
