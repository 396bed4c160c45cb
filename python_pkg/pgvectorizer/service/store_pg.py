"""The task store in PostgreSQL, for several service replicas at once.

Tables live in schema embedding_queue, created on first open. Claims take tasks with
FOR UPDATE SKIP LOCKED, so replicas and workers never wait on each other's picks; every time
is the database's clock, so replicas on machines with skewed clocks agree on leases. The SQL
and the logic are shared with SQLite (store_sql, store_flow); this module only runs them.
"""

from __future__ import annotations

from typing import Any, TypeVar

from psycopg import AsyncConnection
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool

from pgvectorizer.db.connection import SESSION_SETUP
from pgvectorizer.service.store import NewTask, parse_task_id
from pgvectorizer.service.store_flow import Course, Flow, Outcome, SqlTaskStore
from pgvectorizer.service.store_sql import POSTGRES, Statements

T = TypeVar("T")

POOL_SIZE = 10  # connections per replica: one per concurrent store call; long polls hold none
SCHEMA_LOCK = 7_441_001  # advisory lock key: two replicas starting at once create tables once

SQL = Statements(POSTGRES)


async def _configure(conn: AsyncConnection[Any]) -> None:
    await conn.execute(SESSION_SETUP)


class PostgresTaskStore(SqlTaskStore):
    def __init__(self, url: str, pool_size: int = POOL_SIZE) -> None:
        super().__init__(SQL)
        self.url = url
        self._pool = AsyncConnectionPool(url, min_size=1, max_size=pool_size, open=False,
                                         configure=_configure,
                                         kwargs={"autocommit": True,
                                                 "application_name": "pgvectorizer-queue"})

    async def open(self) -> None:
        await self._pool.open(wait=True)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            await conn.execute(self.sql.schema)

    async def close(self) -> None:
        await self._pool.close()

    async def _run(self, flow: Flow[T], *, atomic: bool = False) -> T:
        # Connections are in autocommit: a single statement needs no BEGIN and COMMIT.
        async with self._pool.connection() as conn:
            if not atomic:
                return await _drive(conn, flow)
            async with conn.transaction():
                return await _drive(conn, flow)

    async def _submit_group(self, tasks: list[NewTask]) -> None:
        # executemany pipelines the inserts: one round trip for the group, not one per task.
        async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(self.sql.submit, [self._submit_params(t) for t in tasks])

    def _key(self, task_id: str) -> str | None:
        # Ids are uuids here: text that is none would be an error rather than no match.
        return parse_task_id(task_id)

    def _dump_inputs(self, inputs: list[str]) -> Any:
        return Json(inputs)

    def _load_inputs(self, value: Any) -> list[str]:
        return value  # psycopg reads json as a list already


async def _drive(conn: AsyncConnection[Any], flow: Flow[T]) -> T:
    course = Course(flow)
    while course.step is not None:
        cur = await conn.execute(course.step.sql, course.step.params)
        found = await cur.fetchall() if cur.description is not None else []
        course.answer(Outcome(found, cur.rowcount))
    return course.value()
