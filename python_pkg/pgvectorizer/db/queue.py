"""One connection working one vectorizer's queue: claim, read, write back, unlock.

The operations and why they are safe are in sql/055_queue_ops.sql (see queries.py); this
module only sends them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..config import Vectorizer
from ..pipeline import BatchResult, Key, SourceRow
from . import queries, steps
from .connection import connect


class QueueSession:
    """Works one vectorizer's queue over its own connection (it holds the batch's locks)."""

    def __init__(self, conn: psycopg.AsyncConnection[Any], v: Vectorizer, *, lease: float,
                 retry_base: float, failed_retry: float = steps.FAILED_RETRY) -> None:
        self.conn = conn
        self.v = v
        self.lease = lease
        self.retry_base = retry_base
        self.failed_retry = failed_retry
        self.lock_space = 0

    @classmethod
    async def open(cls, db_url: str, v: Vectorizer, *, lease: float, retry_base: float,
                   failed_retry: float = steps.FAILED_RETRY) -> QueueSession:
        conn = await connect(db_url, purpose=f"vectorizer {v.id}")
        session = cls(conn, v, lease=lease, retry_base=retry_base, failed_retry=failed_retry)
        try:
            await session._setup()
        except BaseException:
            await conn.close()
            raise
        return session

    async def close(self) -> None:
        await self.conn.close()

    async def _setup(self) -> None:
        cur = await self.conn.execute(queries.LOCK_SPACE, (self.v.queue_schema, self.v.queue_table))
        row = await cur.fetchone()
        if row is None:
            raise psycopg.errors.UndefinedTable(
                f"vectorizer {self.v.name!r}: its queue {self.v.queue_schema}.{self.v.queue_table} is gone")
        self.lock_space = int(row[0])
        self._stage_types: list[int] = []
        if not self.v.to_column:
            cur = await self.conn.execute(queries.OWNER_AND_VECTOR, (self.v.id,))
            found = await cur.fetchone()
            if found is None:
                raise psycopg.errors.UndefinedObject(f"vectorizer {self.v.name!r} is gone")
            owner, vector_type = found
            await self.conn.execute(queries.STAGE_CREATE.format(vector=sql.SQL(vector_type)))
            await self.conn.execute(queries.STAGE_GRANT.format(owner=sql.Identifier(owner)))
            cur = await self.conn.execute(queries.STAGE_TYPES)
            self._stage_types = [int(r[0]) for r in await cur.fetchall()]

    async def _op(self, op: str, args: Mapping[str, Any] | None = None) -> list[Any]:
        cur = await self.conn.execute(queries.OPS_CALL, (self.v.id, op, Jsonb(dict(args or {}))))
        return [r[0] for r in await cur.fetchall()]

    # --- claim ------------------------------------------------------------------------------

    async def claim(self, limit: int) -> tuple[uuid.UUID, list[SourceRow]]:
        """Lease up to `limit` queue rows; returns the batch's token and its source rows."""
        token = uuid.uuid4()
        claimed = await self._op("claim", steps.claim_args(
            limit=limit, token=token, lease=self.lease, lock_space=self.lock_space, xact=False))
        read = await self._op("read", {"token": str(token)}) if claimed else []
        rows, orphans = steps.rows_from_claim(self.v, claimed, read)
        if orphans:
            await self.unlock(orphans)
        return token, rows

    async def existing(self, token: uuid.UUID) -> dict[Key, dict[bytes, np.ndarray]]:
        """Stored vectors of the batch's keys, by content hash."""
        if self.v.to_column:
            return {}
        return steps.existing_from(await self._op("existing", {"token": str(token)}))

    # --- write ------------------------------------------------------------------------------

    async def write(self, token: uuid.UUID, rows: Iterable[SourceRow], result: BatchResult) -> dict[str, int]:
        """One transaction: errors back to the queue (or to failed items), the rest stored.
        Returns how many rows went back to the queue (retry) or to the failed items (give_up)."""
        args = steps.write_args(self.v, token, list(rows), result, retry_base=self.retry_base,
                                failed_retry=self.failed_retry, staged=bool(self._stage_types))
        async with self.conn.transaction():
            if args.get("staged") and result.chunks:
                async with self.conn.cursor() as cur, cur.copy(queries.STAGE_COPY) as copy:
                    copy.set_types(self._stage_types)
                    for c in result.chunks:
                        await copy.write_row((list(c.key), c.seq, c.chunk, c.vector, c.digest))
            out = await self._op("write", args)
        return {k: int(n) for k, n in out[0].items()}

    async def release(self, token: uuid.UUID) -> None:
        """Give the batch's rows back untouched (shutdown, configuration error)."""
        await self._op("release", {"token": str(token)})

    async def unlock(self, locks: list[int]) -> None:
        if locks:
            await self.conn.execute(queries.UNLOCK, (self.lock_space, locks))


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


async def has_work(conn: psycopg.AsyncConnection[Any], vectorizer_id: int) -> bool:
    """Is there a row of the vectorizer's to claim now (or a failed item due again)?"""
    cur = await conn.execute(queries.OPS_CALL, (vectorizer_id, "probe", Jsonb({})))
    row = await cur.fetchone()
    return bool(row and row[0]["work"])
