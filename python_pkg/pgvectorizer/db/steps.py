"""A batch's claim and write as plain data, shared by the worker (psycopg) and PL/Python (SPI).

Both run the same named statements of queries.py in the same order; only how a statement is
sent differs. Keeping the order here means the two can never drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from psycopg import sql

from ..config import Vectorizer
from ..pipeline import BatchResult, Key, SourceRow, StoredChunk, retry_delay
from . import queries

# A step: the name of a statement (an attribute of queries.Queries, or one of the catalog
# statements below) and the parameter sets to run it with; "chunks" is the store write.
Step = tuple[str, list[Any]]
RECORD_SUCCESS = "record_success"
RECORD_ERROR = "record_error"
CHUNKS = "chunks"


def statement(q: queries.Queries, name: str) -> sql.SQL | sql.Composed:
    """The statement a step names."""
    if name == RECORD_SUCCESS:
        return queries.RECORD_SUCCESS
    if name == RECORD_ERROR:
        return queries.RECORD_ERROR
    found: sql.Composed = getattr(q, name)
    return found


def rows_from_claim(v: Vectorizer, claimed: Sequence[Sequence[Any]],
                    read: Sequence[Sequence[Any]]) -> tuple[list[SourceRow], list[int]]:
    """The claim's keys with what the read found of their source rows, and the lock hashes of
    keys that got no queue row.

    A claimed record is the key, its lock hash and the attempt count; a read record is the
    key, found, match, then read_columns.
    """
    n = len(v.pk)
    source = {tuple(rec[:n]): rec[n:] for rec in read}
    rows: list[SourceRow] = []
    orphans: list[int] = []
    for rec in claimed:
        key, (lock, attempts) = tuple(rec[:n]), rec[n:n + 2]
        if attempts is None:
            orphans.append(lock)  # locked, but every queue row went to someone else
            continue
        found, match, *values = source.get(key) or (None, None, *[None] * len(v.read_columns))
        rows.append(SourceRow(key, lock, attempts, bool(found), bool(match),
                              dict(zip(v.read_columns, values, strict=True))))
    return rows, orphans


def write_steps(v: Vectorizer, token: Any, rows: Sequence[SourceRow], result: BatchResult, *,
                retry_base: float) -> Iterator[Step]:
    """The statements of a batch's write transaction: errors back to the queue (or to the
    failed items), the rest stored, the queue rows acknowledged, progress recorded."""
    attempts = {r.key: r.attempts for r in rows}
    for err in result.errors:
        # A provider may recover; a text that cannot be chunked will not.
        if err.step != "chunking" and attempts[err.key] < v.max_attempts:
            delay = retry_delay(attempts[err.key], retry_base, err.retry_after)
            yield "retry", [(delay, token, *err.key)]
        else:
            yield "give_up", [(token, *err.key, err.step, err.message)]
            # A row given up on keeps no embedding of an older text.
            if v.to_column:
                yield "set_column", [(None, *err.key)]
            else:
                yield "delete_key_chunks", [err.key]
    if v.to_column:
        if result.column_values:
            yield "set_column", [(vec, *key) for key, vec in result.column_values]
    else:
        yield "delete_chunks", [{"token": token}]
        if result.chunks:
            yield CHUNKS, list(result.chunks)
    yield "clear_failed", [{"token": token}]
    yield "ack", [{"token": token}]
    if result.done:
        yield RECORD_SUCCESS, [(v.id, result.done)]
    for message, details in error_records(result):
        yield RECORD_ERROR, [(v.id, message, json.dumps(details))]


def chunk_arrays(pk_size: int, chunks: Sequence[StoredChunk]) -> list[list[Any]]:
    """Chunks as column arrays (key columns, seq, chunk, vector, hash), for an unnest insert."""
    cols: list[list[Any]] = [[] for _ in range(pk_size + 4)]
    for c in chunks:
        for i, value in enumerate((*c.key, c.seq, c.chunk, c.vector, c.digest)):
            cols[i].append(value)
    return cols


def error_records(result: BatchResult) -> list[tuple[str, dict[str, Any]]]:
    """One ai.vectorizer_errors row per distinct message in the batch, with the keys it hit."""
    grouped: dict[tuple[str, str], list[Key]] = {}
    for err in result.errors:
        grouped.setdefault((err.step, err.message), []).append(err.key)
    return [(f"{step}: {message}", {"step": step, "keys": [list(k) for k in keys[:100]],
                                    "rows": len(keys)})
            for (step, message), keys in grouped.items()]
