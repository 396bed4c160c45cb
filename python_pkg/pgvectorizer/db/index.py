"""The vector index of a vectorizer's store, built by the worker once it has min_rows rows.

ai._vectorizer_index_plan says what to run next (CREATE INDEX CONCURRENTLY, or first the
DROP of an invalid index a failed build left); it cannot run it itself, since a concurrent
build is not allowed inside a function. Running it here, on a connection of its own, lets
the batches go on meanwhile: a concurrent build never blocks writers.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .connection import connect

PLAN = "SELECT ai._vectorizer_index_plan(%s)"
# One builder per vectorizer among all workers; a second would only queue behind the first.
TRY_LOCK = "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('pgvectorizer index', %s))"
UNLOCK = "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('pgvectorizer index', %s))"
# A concurrent build waits for every older transaction (an in-database run may last a minute);
# the worker's usual 10 s lock_timeout would fail it half-way and leave an invalid index.
NO_TIMEOUTS = ("SELECT pg_catalog.set_config('lock_timeout', '0', false), "
               "pg_catalog.set_config('statement_timeout', '0', false)")


async def plan(conn: psycopg.AsyncConnection[Any], vectorizer_id: int) -> str | None:
    row = await (await conn.execute(PLAN, (vectorizer_id,))).fetchone()
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
        row = await (await conn.execute(TRY_LOCK, (vectorizer_id,))).fetchone()
        if not (row and row[0]):
            return done
        await conn.execute(NO_TIMEOUTS)
        try:
            while statement is not None and len(done) < 3:  # a drop, then a build, at most
                await conn.execute(statement)
                done.append(statement)
                statement = await plan(conn, vectorizer_id)
        finally:
            await conn.execute(UNLOCK, (vectorizer_id,))
    return done
