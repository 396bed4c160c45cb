"""The worker's hand-built binary COPY (db/copy_binary.py) against PostgreSQL's own reader:
what goes in comes back equal, through the staging table the worker really creates."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvectorizer.core import statements as st
from pgvectorizer.db.connection import connect
from pgvectorizer.db.copy_binary import staged_copy

from tests.helpers.db import dsn


def _roundtrip(db: psycopg.Connection, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    async def go() -> list[tuple[Any, ...]]:
        conn = await connect(dsn(db))
        try:
            vector = (await (await conn.execute(
                "SELECT pg_catalog.format('%I.vector', n.nspname) FROM pg_catalog.pg_extension e "
                "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
            )).fetchone())[0]
            async with conn.transaction():  # ON COMMIT DELETE ROWS: read before the commit
                await conn.execute(st.stage_create(vector).sql)
                async with conn.cursor() as cur, cur.copy(st.STAGE_COPY.sql) as copy:
                    await copy.write(staged_copy(rows, conn.info.encoding))
                cur = await conn.execute(
                    "SELECT key, chunk_seq, chunk, embedding::pg_catalog.text, chunk_hash "
                    "FROM pg_temp._ai_staged_chunks ORDER BY chunk_seq")
                return await cur.fetchall()
        finally:
            await conn.close()
    return asyncio.run(go())


def test_rows_come_back_equal(db: psycopg.Connection) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((3, 5)).astype(np.float32)
    vectors[1, 2] = -0.0
    rows = [(("1",), 0, "plain text", vectors[0], b"\x00\x01"),
            (("ä€😀", "2 two"), 1, "naïve — ünïcode 😀\n\ttabs", vectors[1], b""),
            (("",), 2, "", vectors[2], bytes(range(256)))]
    back = _roundtrip(db, rows)
    assert [r[0] for r in back] == [["1"], ["ä€😀", "2 two"], [""]]
    assert [r[1] for r in back] == [0, 1, 2]
    assert [r[2] for r in back] == [r[2] for r in rows]
    for (_, _, _, text, digest), row in zip(back, rows, strict=True):
        got = np.array([float(x) for x in text.strip("[]").split(",")], dtype=np.float32)
        assert np.array_equal(got, row[3])
        assert bytes(digest) == row[4]


def test_no_rows_is_an_empty_copy(db: psycopg.Connection) -> None:
    assert _roundtrip(db, []) == []


def test_vectors_of_different_sizes_are_refused() -> None:
    rows = [(("1",), 0, "a", np.zeros(3, np.float32), b""), (("2",), 1, "b", np.zeros(4, np.float32), b"")]
    with pytest.raises(ValueError, match="differ in size"):
        staged_copy(rows, "utf-8")
