"""A batch's claim and write as plain data, shared by the worker (psycopg) and PL/Python (SPI).

Both send the same operations to ai._vectorizer_ops_call with the same jsonb arguments; only
how a statement is sent differs, so the two can never drift apart. The decisions (retry or
give up, keep or drop a row's old chunks) are made here, in Python; the SQL side applies them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..config import Vectorizer
from ..pipeline import BatchResult, Key, SourceRow, retry_delay
from ..vectors import parse_vector, vector_text

# A row that failed through its provider's fault (an outage past its retries) is tried again
# by itself after this long, from the failed items.
FAILED_RETRY = 3600.0  # seconds


def key_of(value: Any) -> Key:
    """A key's text form (a json array of text) as the tuple the pipeline works with."""
    return tuple(value)


def claim_args(*, limit: int, token: Any, lease: float, lock_space: int, xact: bool) -> dict[str, Any]:
    return {"limit": limit, "token": str(token), "lease": lease, "lock_space": lock_space,
            "xact": xact}


def rows_from_claim(v: Vectorizer, claimed: Sequence[Mapping[str, Any]],
                    read: Sequence[Mapping[str, Any]]) -> tuple[list[SourceRow], list[int]]:
    """The claim's keys with what the read found of their source rows, and the lock hashes of
    keys that got no queue row.

    A claimed record is {key, lock, attempts}; a read record is {key, found, match, values},
    values in the order of read_columns.
    """
    source = {key_of(rec["key"]): rec for rec in read}
    columns = v.read_columns  # computed from the config: once, not per row
    rows: list[SourceRow] = []
    orphans: list[int] = []
    for rec in claimed:
        key, lock, attempts = key_of(rec["key"]), int(rec["lock"]), rec["attempts"]
        if attempts is None:
            orphans.append(lock)  # locked, but every queue row went to someone else
            continue
        found = source.get(key) or {}
        values = list(found.get("values") or [])
        values += [None] * (len(columns) - len(values))
        rows.append(SourceRow(key, lock, int(attempts), bool(found.get("found")),
                              bool(found.get("match")), dict(zip(columns, values, strict=True))))
    return rows, orphans


def existing_from(records: Sequence[Mapping[str, Any]]) -> dict[Key, dict[bytes, np.ndarray]]:
    """Stored vectors by key and content hash, from the existing operation's records."""
    out: dict[Key, dict[bytes, np.ndarray]] = {}
    for rec in records:
        out.setdefault(key_of(rec["key"]), {})[bytes.fromhex(rec["hash"])] = parse_vector(rec["embedding"])
    return out


def write_args(v: Vectorizer, token: Any, rows: Sequence[SourceRow], result: BatchResult, *,
               retry_base: float, failed_retry: float = FAILED_RETRY, staged: bool = False) -> dict[str, Any]:
    """The write operation's arguments: errors back to the queue (or to the failed items), the
    rest stored, the queue rows acknowledged, progress recorded. staged: the chunks are in the
    session's staging table (the worker's binary COPY), not in the arguments."""
    attempts = {r.key: r.attempts for r in rows}
    retry: list[Any] = []
    give_up: list[Any] = []
    for err in result.errors:
        # A provider may recover; a text that cannot be chunked will not.
        if err.step != "chunking" and attempts[err.key] < v.max_attempts:
            retry.append([retry_delay(attempts[err.key], retry_base, err.retry_after), list(err.key)])
        else:
            # A provider's fault (an outage) says nothing against the row: its stored chunks
            # stay, and it is tried again later by itself. A row's own fault drops its chunks,
            # which were made from an older text.
            providers = err.transient
            give_up.append([list(err.key), err.step, err.message,
                            failed_retry if providers else None, providers])
    return {
        "token": str(token),
        "retry": retry,
        "give_up": give_up,
        "staged": staged,
        "chunks": [] if staged else [[list(c.key), c.seq, c.chunk, vector_text(c.vector), c.digest.hex()]
                                     for c in result.chunks],
        "columns": [[list(key), None if vec is None else vector_text(vec)]
                    for key, vec in result.column_values],
        "done": result.done,
        "errors": [[message, details] for message, details in error_records(result)],
    }


def error_records(result: BatchResult) -> list[tuple[str, dict[str, Any]]]:
    """One ai.vectorizer_errors row per distinct message in the batch, with the keys it hit."""
    grouped: dict[tuple[str, str], list[Key]] = {}
    for err in result.errors:
        grouped.setdefault((err.step, err.message), []).append(err.key)
    return [(f"{step}: {message}", {"step": step, "keys": [list(k) for k in keys[:100]],
                                    "rows": len(keys)})
            for (step, message), keys in grouped.items()]
