"""The local model inside the server: loaded once per backend and kept across calls, and not
loaded at all by a run that finds nothing to do (each pg_cron run is a new backend)."""

from __future__ import annotations

import psycopg

from tests.helpers.db import Connector, create_vectorizer, scalar

MODEL = "ai.embedding_sentence_transformers('all-MiniLM-L6-v2')"
# What this backend's Python holds: the ids of the cached models (none before the first load).
LOADED = """
CREATE FUNCTION pg_temp.loaded_models() RETURNS int8[] LANGUAGE plpython3u AS $$
import sys
module = sys.modules.get("pgvectorizer.embedders.sentence_transformers")
return [id(m) for m in module._models.values()] if module else []
$$"""


def _session(connect: Connector) -> psycopg.Connection:
    conn = connect()
    conn.execute(LOADED)
    return conn


def test_the_model_stays_loaded_across_calls(db: psycopg.Connection, connect: Connector) -> None:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "docs", embedding=MODEL, chunking="ai.chunking_none()")
    conn = _session(connect)
    assert scalar(conn, "SELECT pg_temp.loaded_models()") == []

    db.execute("INSERT INTO docs VALUES (1, 'first text'), (2, 'second text')")
    first = scalar(conn, "SELECT ai.execute_vectorizer(%s)", (vid,))
    assert (first["rows"], first["stopped"]) == (2, "queue_empty")
    models = scalar(conn, "SELECT pg_temp.loaded_models()")
    assert len(models) == 1

    db.execute("INSERT INTO docs VALUES (3, 'third text')")
    second = scalar(conn, "SELECT ai.execute_vectorizer(%s)", (vid,))
    assert second["rows"] == 1
    # The same object: the second call loaded nothing.
    assert scalar(conn, "SELECT pg_temp.loaded_models()") == models
    assert scalar(conn, "SELECT ai.embed(%s, 'third text') = embedding FROM docs_embedding_store "
                        "WHERE id = 3", (vid,)) is True
    assert scalar(conn, "SELECT pg_temp.loaded_models()") == models


def test_a_run_with_nothing_to_do_loads_no_model(db: psycopg.Connection, connect: Connector) -> None:
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "docs", embedding=MODEL)
    conn = _session(connect)
    done = scalar(conn, "SELECT ai.execute_vectorizer(%s)", (vid,))
    assert (done["rows"], done["stopped"]) == (0, "queue_empty")
    conn.execute("CALL ai._vectorizer_job(%s)", (vid,))
    assert scalar(conn, "SELECT pg_temp.loaded_models()") == []
