"""Worker and in-database runs on one vectorizer at once: the shared source, and the check
that its store is exactly what the source rows make (tests/integration/test_indb_concurrency.py,
tests/acceptance/test_mixed_runs.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import psycopg
from pgvectorizer.chunking import make_chunker
from pgvectorizer.pipeline import digest
from psycopg import sql

from tests.helpers.db import (
    DIMS,
    KEY_ENDPOINTS,
    SERVER_KEY_VAR,
    create_vectorizer,
    queue_rows,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.fake_openai import fake_vector
from tests.helpers.worker import openai

# The fake server takes any key, so the worker gets a value of its own under the server's name.
KEY_ENV = {SERVER_KEY_VAR: "test-key", **KEY_ENDPOINTS}
INDB = "pgvt-indb"  # application_name of the tests' in-database sessions
WORKER = "pgvectorizer-worker"  # the worker's (db/connection.py), a prefix
# A few ms per request of the fake server, so that the worker's batches and in-database ones overlap.
LATENCY_MS = 3


def make_doc(db: psycopg.Connection, fake_url: str) -> int:
    """A source with a row filter and a template column; 1 to 3 chunks for a text of up to 90."""
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, title text NOT NULL DEFAULT 'T', body text, "
               "published bool NOT NULL DEFAULT true)")
    return create_vectorizer(
        db, "doc", embedding=openai(fake_url, api_key_name=f"'{SERVER_KEY_VAR}'"),
        formatting="ai.formatting_python_template('$title: $chunk')",
        chunking="ai.chunking_recursive_character_text_splitter(40, 10)",
        processing="ai.processing_default(batch_size => 10)", row_filter="published")


def call(conn: psycopg.Connection, vid: int, max_rows: int | None = None) -> dict[str, Any]:
    """ai.execute_vectorizer on conn, in its transaction if one is open; the outcome."""
    out = scalar(conn, "SELECT ai.execute_vectorizer(%s, max_rows => %s)", (vid, max_rows))
    assert isinstance(out, dict)
    return out


def store_problems(db: psycopg.Connection, vid: int) -> list[str]:
    """How the store differs from what the current source rows make: [] when it is exact.

    A row that passes the filter has exactly the chunks the chunker makes of its body, in
    order from chunk_seq 0, each with the fake server's vector of '<title>: <chunk>' (bit for
    bit) and that text's hash; any other row has none.
    """
    chunker = make_chunker(vectorizer(db, vid)["config"]["chunking"])
    want: dict[int, list[tuple[str, str]]] = {}
    for key, title, body, published in rows(db, "SELECT id, title, body, published FROM doc"):
        if published and body is not None:
            want[key] = [(c, f"{title}: {c}") for c in chunker(body)]
    got: dict[int, list[tuple[int, str, np.ndarray, bytes]]] = {}
    # Binary, so that a vector arrives as the float4 values stored, not a decimal rendering.
    with db.cursor(binary=True) as cur:
        cur.execute("SELECT id, chunk_seq, chunk, embedding::real[], chunk_hash FROM doc_embedding_store "
                    "ORDER BY id, chunk_seq")
        for key, seq, chunk, vec, hash_ in cur.fetchall():
            got.setdefault(key, []).append((seq, chunk, np.array(vec, dtype=np.float32),
                                             bytes(hash_ or b"")))
    problems = [f"row {key} is deleted, filtered out or empty but has {len(got[key])} chunk(s)"
                for key in sorted(set(got) - set(want)) if got[key]]
    for key, chunks in sorted(want.items()):
        have = got.get(key, [])
        if [(s, c) for s, c, _, _ in have] != [(s, c) for s, (c, _) in enumerate(chunks)]:
            problems.append(f"row {key}: chunks {[(s, c) for s, c, _, _ in have]}, "
                            f"want {[c for c, _ in chunks]}")
            continue
        for (seq, _, vec, hash_), (_, text) in zip(have, chunks, strict=True):
            if not np.array_equal(vec, fake_vector(text, DIMS)):
                problems.append(f"row {key} chunk {seq}: not the vector of {text!r}")
            if hash_ != digest(text):
                problems.append(f"row {key} chunk {seq}: not the hash of {text!r}")
    return problems


def assert_consistent(db: psycopg.Connection, vid: int) -> None:
    """Nothing queued, failed or recorded as an error, and the store exactly as the source says."""
    v = vectorizer(db, vid)
    failed = sql.Identifier(v["queue_schema"], v["queue_failed_table"])
    assert queue_rows(db, vid) == []
    assert rows(db, sql.SQL("SELECT * FROM {}").format(failed)) == []
    assert rows(db, "SELECT message FROM ai.vectorizer_errors WHERE id = %s", (vid,)) == []
    assert store_problems(db, vid) == []
