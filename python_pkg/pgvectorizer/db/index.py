"""The vector index of a vectorizer's store, built by the worker once it has min_rows rows.

ai._vectorizer_index_plan says what to run next (CREATE INDEX CONCURRENTLY, or first the
DROP of an invalid index a failed build left); it cannot run it itself, since a concurrent
build is not allowed inside a function. Running it here, on a connection of its own, lets
the batches go on meanwhile: a concurrent build never blocks writers.
"""

from __future__ import annotations

from typing import Any

import psycopg

from . import queries
from .connection import NO_TIMEOUTS, connect


async def plan(conn: psycopg.AsyncConnection[Any], vectorizer_id: int) -> str | None:
    row = await (await conn.execute(queries.INDEX_PLAN, (vectorizer_id,))).fetchone()
    return str(row[0]) if row and row[0] else None


async def keep(db_url: str, vectorizer_id: int) -> list[str]:
    """Run the plan's statements until there is nothing left to do; returns what was run.

    Another worker building the same index: returns at once. Raises psycopg errors (say,
    InsufficientPrivilege when this role does not own the store).
    """
    done: list[str] = []
    async with await connect(db_url, purpose="index") as conn:
        statement = await plan(conn, vectorizer_id)
        if statement is None:
            return done
        row = await (await conn.execute(queries.INDEX_TRY_LOCK, (vectorizer_id,))).fetchone()
        if not (row and row[0]):
            return done
        await conn.execute(NO_TIMEOUTS)
        try:
            while statement is not None and len(done) < 3:  # a drop, then a build, at most
                await conn.execute(statement)
                done.append(statement)
                statement = await plan(conn, vectorizer_id)
        finally:
            await conn.execute(queries.INDEX_UNLOCK, (vectorizer_id,))
    return done
