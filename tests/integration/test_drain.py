"""What both ways of draining a queue must do alike, each test run over both `path`s: a `--once`
pass of the external worker (in this process) and ai.execute_vectorizer (tests/helpers/worker.py
drain()). Where only the in-database call says what it did (its outcome), a test checks that too.

What only one path has: tests/integration/test_worker.py (a long-running worker, --once's
error report, several vectorizers in one pass) and tests/integration/test_indb.py (max_rows and
max_seconds, errors of the call itself, the server's Python).
The fake OpenAI server's vector for a text is fake_vector(text), so a stored vector shows which
text was embedded, bit for bit.
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest
from psycopg import sql

from tests.helpers.db import (
    create_vectorizer,
    failed_rows,
    queued,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.fake_openai import fake_stats
from tests.helpers.worker import (
    chunks_of,
    drain,
    embedding,
    is_vector_of,
    make_doc,
    outcome,
    parse,
    stored,
)


@pytest.fixture
def doc(db: psycopg.Connection, fake_url: str) -> int:
    return make_doc(db, embedding(fake_url))


def test_inserts_updates_deletes_and_filter_changes_reach_the_store(db: psycopg.Connection, path: str,
                                                                    doc: int) -> None:
    db.execute("INSERT INTO doc VALUES (1, 'A', 'alpha beta', true), (2, 'B', 'gamma', true), "
               "(3, 'C', 'delta', false)")
    out = drain(path, db, doc)
    if out is not None:
        assert outcome(out) == {"vectorizer_id": doc, "rows": 2, "chunks": 2, "embedded": 2, "reused": 0,
                                "retried": 0, "failed": 0, "batches": 1, "stopped": "queue_empty"}
        assert out["seconds"] >= 0
    assert chunks_of(db) == {1: ["alpha beta"], 2: ["gamma"]}
    assert is_vector_of(stored(db)[1][0][1], "A: alpha beta")
    assert queued(db, doc) == set()

    # Row 1 grows to two chunks, row 2 leaves the filter, row 3 enters it.
    db.execute("UPDATE doc SET body = 'alpha beta and a much longer tail' WHERE id = 1")
    db.execute("UPDATE doc SET published = false WHERE id = 2")
    db.execute("UPDATE doc SET published = true WHERE id = 3")
    out = drain(path, db, doc)
    if out is not None:
        assert (out["rows"], out["chunks"], out["embedded"], out["stopped"]) == (3, 3, 3, "queue_empty")
    assert chunks_of(db) == {1: ["alpha beta and a", "much longer tail"], 3: ["delta"]}
    got = stored(db)
    assert all(is_vector_of(vec, f"A: {chunk}") for chunk, vec in got[1])
    assert is_vector_of(got[3][0][1], "C: delta")

    # A delete, and a change of a template column alone.
    db.execute("DELETE FROM doc WHERE id = 1")
    db.execute("UPDATE doc SET title = 'New' WHERE id = 3")
    out = drain(path, db, doc)
    if out is not None:
        assert (out["rows"], out["chunks"], out["embedded"], out["stopped"]) == (2, 1, 1, "queue_empty")
    assert chunks_of(db) == {3: ["delta"]}
    assert is_vector_of(stored(db)[3][0][1], "New: delta")
    # Progress, through the view that folds in the worker's log; the call writes the totals.
    assert scalar(db, "SELECT success_count FROM ai._vectorizer_progress WHERE vectorizer_id = %s",
                  (doc,)) == 2 + 3 + 2
    if path == "indb":
        assert scalar(db, "SELECT success_count FROM ai._vectorizer_worker_progress WHERE vectorizer_id = %s",
                      (doc,)) == 2 + 3 + 2
    assert scalar(db, "SELECT pending_items FROM ai.vectorizer_status WHERE id = %s", (doc,)) == 0

    # Nothing queued: nothing done, and the call says why it stopped.
    out = drain(path, db, doc)
    if out is not None:
        assert outcome(out) == {"vectorizer_id": doc, "rows": 0, "chunks": 0, "embedded": 0,
                                "reused": 0, "retried": 0, "failed": 0, "batches": 0,
                                "stopped": "queue_empty"}
    assert chunks_of(db) == {3: ["delta"]}


def test_unchanged_chunks_keep_their_vectors(db: psycopg.Connection, path: str, doc: int,
                                             fake_url: str) -> None:
    db.execute("INSERT INTO doc VALUES (1, 'A', 'one two three four five six seven eight nine ten')")
    first = drain(path, db, doc)
    chunks = len(stored(db)[1])
    assert chunks >= 3
    if first is not None:
        assert first["embedded"] == first["chunks"] == chunks
    before = fake_stats(fake_url)["texts"]
    db.execute("UPDATE doc SET body = 'one two three four five six seven eight nine CHANGED' WHERE id = 1")
    out = drain(path, db, doc)
    # Only the last chunk changed: one text goes to the model, the others keep their vectors.
    if out is not None:
        assert (out["rows"], out["embedded"], out["reused"]) == (1, 1, chunks - 1)
    assert fake_stats(fake_url)["texts"] - before == 1
    got = stored(db)[1]
    assert got[-1][0].endswith("CHANGED")
    assert all(is_vector_of(vec, f"A: {chunk}") for chunk, vec in got)


def test_destination_column_and_composite_key(db: psycopg.Connection, path: str, fake_url: str) -> None:
    db.execute("CREATE TABLE note (tenant text, id int, txt text, PRIMARY KEY (tenant, id))")
    vid = create_vectorizer(db, "note", "txt", embedding=embedding(fake_url),
                            destination="ai.destination_column('emb')", chunking="ai.chunking_none()")
    db.execute("INSERT INTO note VALUES ('x', 1, 'first'), ('y', 1, 'second'), ('y', 2, NULL)")
    out = drain(path, db, vid)
    if out is not None:
        assert (out["rows"], out["stopped"]) == (3, "queue_empty")

    def column() -> dict[tuple[str, int], np.ndarray | None]:
        return {(t, i): None if e is None else parse(e)
                for t, i, e in rows(db, "SELECT tenant, id, emb::text FROM note")}

    got = column()
    assert got[("y", 2)] is None
    assert is_vector_of(got[("x", 1)], "first") and is_vector_of(got[("y", 1)], "second")
    assert queued(db, vid) == set()
    db.execute("UPDATE note SET txt = NULL WHERE tenant = 'x'")
    db.execute("UPDATE note SET txt = 'changed' WHERE tenant = 'y' AND id = 1")
    db.execute("DELETE FROM note WHERE tenant = 'y' AND id = 2")
    out = drain(path, db, vid)
    if out is not None:
        assert out["rows"] == 3
    got = column()
    assert got[("x", 1)] is None and is_vector_of(got[("y", 1)], "changed")
    assert scalar(db, "SELECT emb FROM note WHERE tenant = 'x'") is None
    assert set(got) == {("x", 1), ("y", 1)}
    assert queued(db, vid) == set()


def test_a_refused_row_fails_at_once_without_the_others(db: psycopg.Connection, path: str,
                                                        fake_url: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=embedding(fake_url), chunking="ai.chunking_none()",
                            loading="ai.loading_column('body', retries => 0)")
    db.execute("INSERT INTO doc VALUES (1, 'fine'), (2, 'FAIL400 refused'), (3, 'also fine')")
    out = drain(path, db, vid)
    if out is not None:
        assert (out["rows"], out["failed"], out["retried"], out["stopped"]) == (2, 1, 0, "queue_empty")
    assert chunks_of(db) == {1: ["fine"], 3: ["also fine"]}
    assert failed_rows(db, vid) == [2]
    assert queued(db, vid) == set()
    [(attempts, step, error)] = rows(db, sql.SQL("SELECT attempts, failure_step, error FROM {}").format(
        sql.Identifier("ai", vectorizer(db, vid)["queue_failed_table"])))
    assert (attempts, step) == (1, "embedding")
    assert "FAIL400" in error and "400" in error
