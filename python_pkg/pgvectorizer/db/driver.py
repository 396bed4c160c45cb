"""The worker's adapter of the queue core: statements over one async psycopg connection.

The connection is the batch's: its session holds the keys' advisory locks until they are
unlocked or the connection dies, so a killed worker frees its keys at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from ..config import Vectorizer
from ..core import statements as st
from ..core.queue import VectorizerQueue
from ..core.statements import Statement
from ..core.steps import FAILED_RETRY
from .connection import connect
from .copy_binary import staged_copy


def _param(value: Any) -> Any:
    return Jsonb(dict(value)) if isinstance(value, Mapping) else value


async def fetch(conn: psycopg.AsyncConnection[Any], statement: Statement,
                params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run a statement with its own $n placeholders (a raw cursor: no rewriting)."""
    async with psycopg.AsyncRawCursor(conn) as cur:
        await cur.execute(statement.sql, [_param(p) for p in params])
        return await cur.fetchall() if cur.description is not None else []


class PsycopgDriver:
    """Implements core.queue.Driver; chunks go by binary COPY into a session temp table."""

    xact_locks = False  # session locks: they outlive the statement that took them

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def rows(self, statement: Statement, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return await fetch(self.conn, statement, params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self.conn.transaction():
            yield

    async def prepare_staging(self, v: Vectorizer) -> bool:
        found = await self.rows(st.OWNER_AND_VECTOR, (v.id,))
        if not found:
            raise psycopg.errors.UndefinedObject(f"vectorizer {v.name!r} is gone")
        owner, vector_type = found[0]
        await self.rows(st.stage_create(vector_type))
        await self.rows(st.stage_grant(owner))
        return True

    async def stage(self, rows: Sequence[tuple[Any, ...]]) -> None:
        data = staged_copy(rows, self.conn.info.encoding)
        async with self.conn.cursor() as cur, cur.copy(st.STAGE_COPY.sql) as copy:
            await copy.write(data)


async def open_queue(db_url: str, v: Vectorizer, *, lease: float, retry_base: float,
                     failed_retry: float = FAILED_RETRY) -> VectorizerQueue:
    """A queue over a connection of its own; close it with close_queue()."""
    conn = await connect(db_url, purpose=f"vectorizer {v.id}")
    try:
        # A batch's write need not wait for its WAL to reach the disk: what it commits is derived
        # from the source and the queue in one transaction, so a crash that loses the last
        # commits (a fraction of a second's, never part of one) leaves their rows queued, and
        # they are embedded again. The source's own writes keep their settings.
        await conn.execute(st.ASYNC_COMMIT.sql)
        return await VectorizerQueue(PsycopgDriver(conn), v, lease=lease, retry_base=retry_base,
                                     failed_retry=failed_retry).open()
    except BaseException:
        await conn.close()
        raise


async def close_queue(queue: VectorizerQueue) -> None:
    driver = queue.driver
    assert isinstance(driver, PsycopgDriver)
    await driver.conn.close()
