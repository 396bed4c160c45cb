"""One connection working one vectorizer's queue: claim, read, write back, unlock.

The statements and why they are safe are in queries.py; this module only runs them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ..config import Vectorizer
from ..pipeline import BatchResult, Key, SourceRow, StoredChunk
from . import queries, steps
from .connection import connect


class QueueSession:
    """Works one vectorizer's queue over its own connection (it holds the batch's locks)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], v: Vectorizer, *, lease: float,
                 retry_base: float) -> None:
        self.conn = conn
        self.v = v
        self.q = queries.Queries(v)
        self.lease = lease
        self.retry_base = retry_base
        self.lock_space = 0
        self._copy_types: list[int] | None = None

    @classmethod
    async def open(cls, db_url: str, v: Vectorizer, *, lease: float, retry_base: float
                   ) -> QueueSession:
        conn = await connect(db_url, purpose=f"vectorizer {v.id}")
        session = cls(conn, v, lease=lease, retry_base=retry_base)
        try:
            await session._setup()
        except BaseException:
            await conn.close()
            raise
        return session

    async def close(self) -> None:
        await self.conn.close()

    async def _setup(self) -> None:
        row = await (await self.conn.execute(self.q.lock_space)).fetchone()
        if row is None:
            raise psycopg.errors.UndefinedTable(
                f"vectorizer {self.v.name!r}: its queue {self.v.queue_schema}.{self.v.queue_table} is gone")
        self.lock_space = int(row[0])
        if not self.v.to_column:
            dest = self.v.destination
            cur = await self.conn.execute(queries.STORE_TYPES, (dest["target_schema"], dest["target_table"]))
            types = {name: oid for name, oid, _ in await cur.fetchall()}
            self._copy_types = [int(types[c]) for c in self.v.pk + queries.STORE_COLUMNS]

    # --- claim ------------------------------------------------------------------------------

    async def claim(self, limit: int) -> tuple[uuid.UUID, list[SourceRow]]:
        """Lease up to `limit` queue rows; returns the batch's token and its source rows."""
        token = uuid.uuid4()
        cur = await self.conn.execute(self.q.claim, {
            "limit": limit, "lock_space": self.lock_space, "token": token, "lease": self.lease})
        claimed = await cur.fetchall()
        read = await (await self.conn.execute(self.q.read, {"token": token})).fetchall() if claimed else []
        rows, orphans = steps.rows_from_claim(self.v, claimed, read)
        if orphans:
            await self.unlock(orphans)
        return token, rows

    async def existing(self, token: uuid.UUID) -> dict[Key, dict[bytes, np.ndarray]]:
        """Stored vectors of the batch's keys, by content hash."""
        if self.v.to_column:
            return {}
        out: dict[Key, dict[bytes, np.ndarray]] = {}
        n = len(self.v.pk)
        async with self.conn.cursor(binary=True) as cur:
            await cur.execute(self.q.existing, {"token": token})
            for rec in await cur.fetchall():
                out.setdefault(tuple(rec[:n]), {})[bytes(rec[n])] = rec[n + 1]
        return out

    # --- write ------------------------------------------------------------------------------

    async def write(self, token: uuid.UUID, rows: Iterable[SourceRow], result: BatchResult) -> None:
        """One transaction: errors back to the queue (or to failed items), the rest stored."""
        async with self.conn.transaction(), self.conn.cursor() as cur:
            for name, params in steps.write_steps(self.v, token, list(rows), result,
                                                  retry_base=self.retry_base):
                if name == steps.CHUNKS:
                    await self._copy(cur, params)
                elif len(params) == 1:
                    await cur.execute(steps.statement(self.q, name), params[0])
                else:
                    await cur.executemany(steps.statement(self.q, name), params)

    async def _copy(self, cur: psycopg.AsyncCursor[Any], chunks: list[StoredChunk]) -> None:
        assert self._copy_types is not None
        async with cur.copy(self.q.copy_chunks) as copy:
            copy.set_types(self._copy_types)
            for c in chunks:
                await copy.write_row((*c.key, c.seq, c.chunk, c.vector, c.digest))

    async def release(self, token: uuid.UUID) -> None:
        """Give the batch's rows back untouched (shutdown, configuration error)."""
        await self.conn.execute(self.q.release, {"token": token})

    async def unlock(self, locks: list[int]) -> None:
        if locks:
            await self.conn.execute(self.q.unlock, {"lock_space": self.lock_space, "locks": locks})


async def load_vectorizers(conn: psycopg.AsyncConnection[Any],
                           ids: Iterable[int] | None = None) -> list[Mapping[str, Any]]:
    """Rows of ai.vectorizer (all, or those with the given ids)."""
    async with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        await cur.execute(queries.VECTORIZERS)
        rows = await cur.fetchall()
    wanted = set(ids) if ids else None
    return [r for r in rows if wanted is None or r["id"] in wanted]


async def record_error(conn: psycopg.AsyncConnection[Any], vectorizer_id: int, message: str,
                       details: Mapping[str, Any] | None = None) -> None:
    await conn.execute(queries.RECORD_ERROR, (vectorizer_id, message, json.dumps(details or {})))


async def pending(conn: psycopg.AsyncConnection[Any], vectorizer_id: int) -> int:
    row = await (await conn.execute(queries.PENDING, (vectorizer_id,))).fetchone()
    return int(row[0]) if row else 0


async def vectorizer_ids(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    """Ids of the enabled vectorizers."""
    cur = await conn.execute(queries.ENABLED_IDS)
    return [int(r[0]) for r in await cur.fetchall()]


async def has_work(conn: psycopg.AsyncConnection[Any], probe: sql.Composed) -> bool:
    row = await (await conn.execute(probe)).fetchone()
    return bool(row and row[0])
