"""ai.embed: a query's vector from a vectorizer's model, to search its store in one statement.

With the fake OpenAI server a query vector must be the stored vector of the same text, bit for
bit, whichever of execute_vectorizer or the external worker wrote it. With the real local model
(all-MiniLM-L6-v2) one test checks the same within a stated tolerance.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import psycopg
import pytest
from pgvectorizer.worker import Worker

from tests.helpers.db import (
    DIMS,
    Connector,
    create_vectorizer,
    dsn,
    queued,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.fake_openai import fake_vector
from tests.helpers.worker import embedding, execute, parse, run_worker

QUERY = "what the fake server makes of a question"


@pytest.fixture
def docs(db: psycopg.Connection, fake_url: str) -> int:
    """Vectorizer `docs`: rows 1-3 embedded by execute_vectorizer, rows 4-6 by the worker."""
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", name="'docs'", embedding=embedding(fake_url), chunking="ai.chunking_none()")
    db.execute("INSERT INTO doc SELECT g, 'document number ' || g FROM generate_series(1, 3) g")
    assert execute(db, vid)["rows"] == 3
    db.execute("INSERT INTO doc SELECT g, 'document number ' || g FROM generate_series(4, 6) g")
    run_worker(db, vid)
    assert queued(db, vid) == set()
    return vid


def test_the_query_vector_is_the_stored_vector_of_the_same_text(db: psycopg.Connection, docs: int) -> None:
    for text in ("document number 1", QUERY, "ünïcödé ✓"):
        assert np.array_equal(parse(scalar(db, "SELECT ai.embed(%s, %s)::text", (docs, text))),
                              fake_vector(text, DIMS)), text
    # Default formatting: the model saw the chunk itself.
    same = rows(db, "SELECT id, embedding = ai.embed(%s, chunk) FROM doc_embedding ORDER BY id", (docs,))
    assert same == [(k, True) for k in range(1, 7)]  # 1-3 from execute_vectorizer, 4-6 from the worker


def test_by_id_by_name_and_by_config_agree(db: psycopg.Connection, docs: int) -> None:
    config = json.dumps(vectorizer(db, docs)["config"]["embedding"])
    by_id, by_name, by_config = rows(db, "SELECT ai.embed(%s, %s)::text, ai.embed('docs', %s)::text, "
                                         "ai.embed(%s::jsonb, %s)::text", (docs, QUERY, QUERY, config, QUERY))[0]
    assert by_id == by_name == by_config
    assert np.array_equal(parse(by_id), fake_vector(QUERY, DIMS))


def test_search_in_one_statement(db: psycopg.Connection, docs: int) -> None:
    top = [k for (k,) in rows(db, "SELECT id FROM doc_embedding ORDER BY embedding <=> ai.embed('docs', %s) "
                                  "LIMIT 3", ("document number 5",))]
    assert top[0] == 5
    # For any other query, the nearest rows by cosine distance between the fake's vectors.
    q = fake_vector(QUERY, DIMS)
    want = sorted(range(1, 7), key=lambda k: 1 - float(np.dot(q, fake_vector(f"document number {k}", DIMS))))
    got = [k for (k,) in rows(db, "SELECT id FROM doc_embedding ORDER BY embedding <=> ai.embed('docs', %s) "
                                  "LIMIT 3", (QUERY,))]
    assert got == want[:3]


def test_the_query_vector_is_computed_once_per_statement(db: psycopg.Connection, connect: Connector,
                                                         docs: int) -> None:
    search = "SELECT id FROM doc_embedding ORDER BY embedding <=> ai.embed('docs', 'a query') LIMIT 3"
    plan = "\n".join(r for (r,) in rows(db, "EXPLAIN (VERBOSE, COSTS OFF) " + search))
    # IMMUTABLE: the planner folds the call into a constant vector.
    assert "embed(" not in plan
    assert "(t.embedding <=> '[" in plan and "]'::vector)" in plan
    conn = connect(autocommit=False)
    calls = "SELECT pg_stat_get_xact_function_calls('ai.embed(text, text)'::regprocedure)"
    with conn.transaction():
        conn.execute("SET LOCAL track_functions = 'all'")
        before = scalar(conn, calls) or 0
        assert len(rows(conn, search.replace("LIMIT 3", ""))) == 6
        assert scalar(conn, calls) - before == 1  # once, not once per row (6)


def test_null_text_and_unknown_vectorizers(db: psycopg.Connection, docs: int) -> None:
    config = json.dumps(vectorizer(db, docs)["config"]["embedding"])
    assert rows(db, "SELECT ai.embed(%s, NULL), ai.embed('docs', NULL), ai.embed(%s::jsonb, NULL)",
                (docs, config)) == [(None, None, None)]
    with pytest.raises(psycopg.Error) as info:
        db.execute("SELECT ai.embed('no_such_vectorizer', 'x')")
    assert "ai.embed (vectorizer 'no_such_vectorizer'): vectorizer 'no_such_vectorizer' does not exist" \
        in str(info.value.diag.message_primary)
    with pytest.raises(psycopg.Error, match="vectorizer 9999 does not exist"):
        db.execute("SELECT ai.embed(9999, 'x')")
    with pytest.raises(psycopg.Error, match="embedding config must be a json object"):
        db.execute("SELECT ai.embed('[1, 2]'::jsonb, 'x')")


# --- the real local model ------------------------------------------------------------------------

WORDS = ["database", "vector", "search", "embedding", "queue", "worker", "row", "update", "postgres",
         "model", "chunk", "index"]
# How far a stored vector may be from ai.embed of the same text: measured up to 1.5e-7 (a few
# float32 ulps). Not zero because sentence-transformers pads a batch to its longest text, and
# a text embedded inside a batch takes other kernel paths than the same text alone, which is
# how ai.embed sees it. The interpreters are not the cause: the worker, the server and a plain
# encode give the same bits for the same batch. A wrong text is about 0.1 away.
TOLERANCE = 1e-5


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.usefixtures("offline")
def test_local_model_query_vectors_match_the_stored_ones(db: psycopg.Connection, connect: Connector) -> None:
    """all-MiniLM-L6-v2 in the server and in the worker; 10 rows, about 40 texts in all."""
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, title text, body text)")
    model = "ai.embedding_sentence_transformers('all-MiniLM-L6-v2')"
    # Chunks of a template: the model sees "title: chunk", the store keeps the chunk.
    chunked = create_vectorizer(db, "doc", name="'minilm_chunks'", embedding=model,
                                formatting="ai.formatting_python_template('$title: $chunk')",
                                chunking="ai.chunking_recursive_character_text_splitter(40, 0)")
    # One text per row and per batch: each is embedded alone, as ai.embed embeds a query.
    single = create_vectorizer(db, "doc", name="'minilm_rows'", embedding=model, chunking="ai.chunking_none()",
                               processing="ai.processing_default(batch_size => 1)",
                               destination="ai.destination_table(target_table => 'doc_rows_store', "
                                           "view_name => 'doc_rows')")
    rnd = np.random.default_rng(7)

    def insert(keys: range) -> None:
        for k in keys:
            words = " ".join(rnd.choice(WORDS, size=int(rnd.integers(3, 10))))
            db.execute("INSERT INTO doc VALUES (%s, %s, %s)", (k, f"Title {k}", f"{words} number {k}"))

    conn = connect()  # one backend: it loads the model once for everything below
    insert(range(1, 6))
    assert execute(conn, chunked)["rows"] == 5
    assert execute(conn, single)["rows"] == 5
    insert(range(6, 11))
    error = asyncio.run(Worker(dsn(db), once=True, env={}).run())
    assert error is None
    assert queued(db, chunked) == set() and queued(db, single) == set()
    assert scalar(db, "SELECT count(*) FROM doc_embedding WHERE chunk_seq > 0") > 0, "no row has two chunks"

    got = rows(conn, "SELECT id, embedding::text, ai.embed(%s, title || ': ' || chunk)::text "
                     "FROM doc_embedding ORDER BY id, chunk_seq", (chunked,))
    assert sorted({k for k, _, _ in got}) == list(range(1, 11))
    diffs = {k: 0.0 for k in range(1, 11)}
    for k, stored_vec, query_vec in got:
        diffs[k] = max(diffs[k], float(np.abs(parse(stored_vec) - parse(query_vec)).max()))
    # Rows 1-5 from execute_vectorizer, 6-10 from the worker process.
    assert max(diffs.values()) < TOLERANCE, diffs
    # A text other than the one the model saw is far off: the check can tell.
    wrong = rows(conn, "SELECT max(abs(a - b)) FROM doc_embedding, LATERAL unnest(embedding::real[], "
                       "ai.embed(%s, chunk)::real[]) AS u(a, b) WHERE id = 1 AND chunk_seq = 0", (chunked,))[0][0]
    assert wrong > 100 * TOLERANCE

    # Embedded alone, in the server or in the worker, a text gets exactly ai.embed's bits.
    same = rows(conn, "SELECT id, embedding = ai.embed(%s, chunk) FROM doc_rows ORDER BY id", (single,))
    assert same == [(k, True) for k in range(1, 11)]
