"""What the worker asks of the catalog, beside one vectorizer's batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

from ..core import statements as st
from ..install.scripts import check_understood
from .driver import fetch
from .install import installed_version_async


async def load_vectorizers(conn: psycopg.AsyncConnection[Any],
                           ids: Iterable[int] | None = None) -> list[Mapping[str, Any]]:
    """Rows of ai.vectorizer (all, or those with the given ids); VersionMismatch first when the
    database's pgvectorizer is of a version this package does not work with."""
    check_understood(await installed_version_async(conn))
    async with psycopg.AsyncRawCursor(conn, row_factory=psycopg.rows.dict_row) as cur:
        await cur.execute(st.VECTORIZERS.sql)
        rows = await cur.fetchall()
    wanted = set(ids) if ids else None
    return [r for r in rows if wanted is None or r["id"] in wanted]


async def record_error(conn: psycopg.AsyncConnection[Any], vectorizer_id: int, message: str,
                       details: Mapping[str, Any] | None = None) -> None:
    await fetch(conn, st.RECORD_ERROR, (vectorizer_id, message, dict(details or {})))


async def pending(conn: psycopg.AsyncConnection[Any], vectorizer_id: int) -> int:
    found = await fetch(conn, st.PENDING, (vectorizer_id,))
    return int(found[0][0]) if found else 0


async def vectorizer_ids(conn: psycopg.AsyncConnection[Any]) -> list[int]:
    """Ids of the enabled vectorizers."""
    return [int(r[0]) for r in await fetch(conn, st.ENABLED_IDS)]


async def has_work(conn: psycopg.AsyncConnection[Any], vectorizer_id: int) -> bool:
    """Is there a row of the vectorizer's to claim now (or a failed item due again)?"""
    found = await fetch(conn, st.OPS_CALL, (vectorizer_id, "probe", {}))
    return bool(found and found[0][0]["work"])
