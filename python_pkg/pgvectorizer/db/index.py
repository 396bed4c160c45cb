"""The vector index of a vectorizer's store, built by the worker once it has min_rows rows.

ai._vectorizer_index_plan says what to run next (CREATE INDEX CONCURRENTLY, or first the
DROP of an invalid index a failed build left); it cannot run it itself, since a concurrent
build is not allowed inside a function. Running it here, on a connection of its own, lets
the batches go on meanwhile: a concurrent build never blocks writers.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ..core import statements as st
from .connection import NO_TIMEOUTS, connect
from .driver import fetch


async def plan(conn: psycopg.AsyncConnection[Any], vectorizer_id: int) -> str | None:
    found = await fetch(conn, st.INDEX_PLAN, (vectorizer_id,))
    return str(found[0][0]) if found and found[0][0] else None


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
        locked = await fetch(conn, st.INDEX_TRY_LOCK, (vectorizer_id,))
        if not (locked and locked[0][0]):
            return done
        await conn.execute(NO_TIMEOUTS)
        try:
            while statement is not None and len(done) < 3:  # a drop, then a build, at most
                await conn.execute(statement)
                done.append(statement)
                statement = await plan(conn, vectorizer_id)
        finally:
            await fetch(conn, st.INDEX_UNLOCK, (vectorizer_id,))
    return done
