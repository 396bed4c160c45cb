"""Driving a vectorizer's queue from the tests: the worker in this process, or in the database.

A drain either runs one `--once` pass of the external worker here (what `pgvectorizer worker
--once` does, without the process) or calls `SELECT ai.execute_vectorizer(id)`. Tests of
behaviour both must share take the `path` fixture (tests/integration/conftest.py) and drain
with drain(path, ...).

The fake OpenAI server's vector for a text is a function of the text alone (fake_vector), so a
stored vector shows exactly which text was embedded.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import psycopg
from pgvectorizer.worker import Worker
from psycopg import sql

from tests.helpers.db import (
    DIMS,
    KEY_ENDPOINTS,
    SERVER_KEY_VAR,
    create_vectorizer,
    dsn,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.fake_openai import fake_vector

PATHS = ("worker", "indb")  # the two ways a queue is drained: the external worker, in-database
# The worker runs in this process, with the variable the server's environment sets.
WORKER_KEY = {SERVER_KEY_VAR: "test-key-not-a-secret"}


def env(**extra: str) -> dict[str, str]:
    """The in-process worker's environment."""
    return {"OPENAI_API_KEY": "test-key", "PGVECTORIZER_RETRY_SECONDS": "0", **KEY_ENDPOINTS,
            "PGVECTORIZER_HTTP_TIMEOUT": "2", **extra}


def run_once(db: psycopg.Connection, *ids: int, expect_error: str | None = None, **extra: str) -> None:
    """One `--once` pass of the worker in this process over ids (all vectorizers when none)."""
    worker = Worker(dsn(db), vectorizer_ids=list(ids) or None, once=True, env=env(**extra))
    error = asyncio.run(worker.run())
    if expect_error is None:
        assert error is None
    else:
        assert error is not None and expect_error in str(error)


def worker_env() -> dict[str, str]:
    """The external worker's environment: env(), with the key the configs name."""
    return env(**WORKER_KEY)


def run_worker(db: psycopg.Connection, *ids: int) -> None:
    """One `--once` pass of the external worker (in this process); it must report no error."""
    run_once(db, *ids, **WORKER_KEY)


def execute(conn: psycopg.Connection, vid: int, **bounds: float) -> dict[str, Any]:
    """ai.execute_vectorizer(vid, max_rows => ..., max_seconds => ...): its jsonb as a dict."""
    args = "".join(f", {name} => %s" for name in bounds)
    return scalar(conn, f"SELECT ai.execute_vectorizer(%s::int4{args})", (vid, *bounds.values()))


def drain(path: str, db: psycopg.Connection, vid: int) -> dict[str, Any] | None:
    """Drain vid's queue by path: a worker pass that must report no error (None), or one
    ai.execute_vectorizer call on db (its outcome)."""
    if path == "worker":
        run_worker(db, vid)
        return None
    assert path == "indb", path
    return execute(db, vid)


def openai(url: str, **kw: str) -> str:
    """ai.embedding_openai for the fake server at url; kw are more arguments, as SQL."""
    args = "".join(f", {k} => {v}" for k, v in kw.items())
    return f"ai.embedding_openai('text-embedding-3-small', {DIMS}, base_url => '{url}'{args})"


def embedding(url: str) -> str:
    """ai.embedding_openai for the fake server at url, with a key the server's environment has."""
    return openai(url, api_key_name=sql.quote(SERVER_KEY_VAR))


def make_doc(db: psycopg.Connection, embedding: str) -> int:
    """Table doc and its vectorizer: a title template, 20-character chunks, a row filter."""
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, title text, body text, published bool DEFAULT true)")
    return create_vectorizer(db, "doc", embedding=embedding,
                             formatting="ai.formatting_python_template('$title: $chunk')",
                             chunking="ai.chunking_character_text_splitter(20, 0, ' ')",
                             row_filter="published")


def stored(db: psycopg.Connection, table: str = "doc_embedding_store") -> dict[int, list[tuple[str, list[float]]]]:
    out: dict[int, list[tuple[str, list[float]]]] = {}
    for key, chunk, emb in rows(db, f"SELECT id, chunk, embedding::text FROM {table} ORDER BY id, chunk_seq"):
        out.setdefault(key, []).append((chunk, [float(x) for x in emb.strip("[]").split(",")]))
    return out


def chunks_of(db: psycopg.Connection, table: str = "doc_embedding_store") -> dict[Any, list[str]]:
    return {k: [c for c, _ in v] for k, v in stored(db, table).items()}


def assert_vector_of(vec: list[float], text: str) -> None:
    assert np.allclose(vec, fake_vector(text, DIMS), atol=1e-6), f"not the vector of {text!r}"


def parse(text: str) -> np.ndarray:
    """pgvector's text form as float32: the repr of each float32 parses back to itself."""
    return np.array(text.strip("[]").split(","), dtype=np.float32)


def is_vector_of(vec: np.ndarray | list[float] | None, text: str) -> bool:
    """Exactly the fake's vector of text (a stored float32 read as a float is the same float32)."""
    return vec is not None and np.array_equal(np.asarray(vec, dtype=np.float32), fake_vector(text, DIMS))


def queue_table(db: psycopg.Connection, vid: int) -> sql.Identifier:
    v = vectorizer(db, vid)
    return sql.Identifier(v["queue_schema"], v["queue_table"])


def outcome(out: dict[str, Any]) -> dict[str, Any]:
    """The counts of an in-database run's outcome, without its timing."""
    return {k: v for k, v in out.items() if k != "seconds"}
