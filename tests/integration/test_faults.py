"""Faults the worker and in-database runs must survive without losing or stalling a row.

Every key type a primary key accepts, providers that go away or answer nonsense, a broken
vectorizer beside healthy ones. Real PostgreSQL, a fake provider on loopback (tests/helpers/
fake_openai.py). A database that goes away under a running worker process: tests/acceptance/
test_worker_processes.py.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from tests.helpers.db import (
    DIMS,
    SERVER_KEY_VAR,
    Connector,
    create_vectorizer,
    failed_rows,
    queued,
    rows,
    scalar,
)
from tests.helpers.fake_openai import start_fake_server
from tests.helpers.worker import openai, run_once, stored

# Key types that tripped the worker (a Python NaN is not equal to itself; jsonb is a dict; the
# driver has no binary dumper for an enum or a domain; Python has no infinite or BC dates).
KEY_TYPES = [
    ("numeric", ["'NaN'", "1.5"]),
    ("float8", ["'NaN'", "'-Infinity'"]),
    ("jsonb", ["'{\"a\": [1, 2]}'", "'\"x\"'"]),
    ("mood", ["'sad'", "'ok'"]),
    ("short_text", ["'abc'", "'de'"]),
    ("char(5)", ["'ab'", "'abcde'"]),
    ("timestamptz", ["'infinity'", "'2020-02-29 12:00+00'"]),
    ("date", ["'0044-03-15 BC'", "'-infinity'"]),
    ("int4[]", ["'{1,2}'", "'{}'"]),
]


@pytest.fixture
def key_types(db: psycopg.Connection) -> None:
    db.execute("CREATE TYPE mood AS ENUM ('sad', 'ok')")
    db.execute("CREATE DOMAIN short_text AS text CHECK (length(VALUE) < 5)")


def test_every_key_type_is_embedded(db: psycopg.Connection, fake_url: str, key_types: None,
                                    path: str) -> None:
    for i, (typ, values) in enumerate(KEY_TYPES):
        db.execute(f"CREATE TABLE t{i} (k {typ} PRIMARY KEY, body text)")
        vid = create_vectorizer(db, f"t{i}", embedding=openai(fake_url, api_key_name=f"'{SERVER_KEY_VAR}'"))
        db.execute(f"INSERT INTO t{i} VALUES ({values[0]}, 'first'), ({values[1]}, 'second')")
        if path == "worker":
            run_once(db, vid, **{SERVER_KEY_VAR: "test-key"})
        else:
            out = scalar(db, "SELECT ai.execute_vectorizer(%s)", (vid,))
            assert (out["rows"], out["failed"]) == (2, 0), (typ, out)
        assert queued(db, vid) == set(), typ
        assert failed_rows(db, vid) == [], typ
        got = rows(db, f"SELECT s.chunk FROM t{i}_embedding_store s JOIN t{i} t ON t.k = s.k ORDER BY s.chunk")
        assert got == [("first",), ("second",)], typ
        # A change to a stored row replaces its chunks (the key's text form comes back right).
        db.execute(f"UPDATE t{i} SET body = 'changed' WHERE k = {values[0]}")
        if path == "worker":
            run_once(db, vid, **{SERVER_KEY_VAR: "test-key"})
        else:
            scalar(db, "SELECT ai.execute_vectorizer(%s)", (vid,))
        assert scalar(db, f"SELECT count(*) FROM t{i}_embedding_store") == 2, typ
        assert scalar(db, f"SELECT chunk FROM t{i}_embedding_store WHERE k = {values[0]}") == "changed", typ


def test_an_outage_past_the_retries_keeps_the_embeddings_and_comes_back(db: psycopg.Connection) -> None:
    url, stop = start_fake_server(dimensions=DIMS)
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:
        db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
        vid = create_vectorizer(db, "doc", embedding=openai(url), chunking="ai.chunking_none()",
                                loading="ai.loading_column('body', retries => 0)")
        db.execute("INSERT INTO doc SELECT g, 'text ' || g FROM generate_series(1, 10) g")
        run_once(db)
        assert len(stored(db)) == 10
    finally:
        stop()
    # The provider is gone; every row changes and its one attempt fails.
    db.execute("UPDATE doc SET body = body || ' v2'")
    run_once(db, PGVECTORIZER_FAILED_RETRY_SECONDS="1")
    assert failed_rows(db, vid) == list(range(1, 11))
    assert len(stored(db)) == 10, "an outage deleted good embeddings"
    assert all(r[0] is not None for r in rows(db, f"SELECT retry_at FROM ai._vectorizer_q_failed_{vid}"))

    # Back on the same port: failed items whose retry time has come are queued by themselves.
    _, stop2 = start_fake_server(dimensions=DIMS, port=port)
    try:
        time.sleep(1.2)
        run_once(db, PGVECTORIZER_FAILED_RETRY_SECONDS="1")
        assert failed_rows(db, vid) == []
        assert {k: [c for c, _ in v] for k, v in stored(db).items()} == {
            i: [f"text {i} v2"] for i in range(1, 11)}
    finally:
        stop2()


def test_retry_failed_queues_the_failed_items_again(db: psycopg.Connection, fake_url: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=openai(fake_url), chunking="ai.chunking_none()",
                            loading="ai.loading_column('body', retries => 0)")
    db.execute("INSERT INTO doc VALUES (1, 'FAIL400 refused'), (2, 'fine')")
    run_once(db)
    assert failed_rows(db, vid) == [1]
    # A row's own fault: no automatic retry, and its old chunks (none here) are dropped.
    assert scalar(db, f"SELECT retry_at FROM ai._vectorizer_q_failed_{vid}") is None
    db.execute("UPDATE doc SET body = 'accepted now' WHERE id = 1")
    db.execute(f"DELETE FROM ai._vectorizer_q_{vid}")  # as if the change had been lost
    assert scalar(db, "SELECT ai.retry_failed(%s)", (vid,)) == 1
    assert scalar(db, "SELECT ai.retry_failed('public_doc_embedding_store')") == 0
    run_once(db)
    assert failed_rows(db, vid) == []
    assert sorted(stored(db)) == [1, 2]


@pytest.mark.parametrize("marker", ["WRONGDIMS", "SHORTANSWER"])
def test_a_provider_answering_nonsense_stops_the_vectorizer_and_keeps_the_queue(
        db: psycopg.Connection, fake_url: str, marker: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=openai(fake_url), chunking="ai.chunking_none()")
    # Every row carries the marker: the worker keeps two batches in flight, and how the three
    # rows fall into them is a race; a batch without the marker would be stored.
    db.execute(f"INSERT INTO doc VALUES (1, 'one {marker}'), (2, 'two {marker}'), (3, 'three {marker}')")
    run_once(db, expect_error="vectorizer public_doc_embedding_store")
    assert queued(db, vid) == {1, 2, 3}
    assert failed_rows(db, vid) == []
    assert scalar(db, "SELECT count(*) FROM doc_embedding_store") == 0
    attempts = scalar(db, f"SELECT max(attempts) FROM ai._vectorizer_q_{vid}")
    assert attempts == 0, "a provider's error used up the rows' attempts"
    message = scalar(db, "SELECT last_error FROM ai.vectorizer_status WHERE id = %s", (vid,))
    assert "configuration" in message, message


def test_a_nan_vector_fails_only_its_row(db: psycopg.Connection, fake_url: str, path: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=openai(fake_url, api_key_name=f"'{SERVER_KEY_VAR}'"),
                            chunking="ai.chunking_none()", loading="ai.loading_column('body', retries => 1)")
    db.execute("INSERT INTO doc SELECT g, CASE WHEN g = 4 THEN 'NANVEC' ELSE 'text ' || g END "
               "FROM generate_series(1, 10) g")
    for _ in range(2):  # two attempts, then the row is given up on
        if path == "worker":
            run_once(db, **{SERVER_KEY_VAR: "test-key"})
        else:
            scalar(db, "SELECT ai.execute_vectorizer(%s)", (vid,))
        db.execute(f"UPDATE ai._vectorizer_q_{vid} SET retry_after = NULL")
    assert sorted(stored(db)) == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert failed_rows(db, vid) == [4]
    assert "non-finite" in scalar(db, f"SELECT error FROM ai._vectorizer_q_failed_{vid}")


def test_a_broken_vectorizer_never_stops_the_others(db: psycopg.Connection, fake_url: str) -> None:
    ids = []
    for t in ("a", "b"):
        db.execute(f"CREATE TABLE {t} (id int PRIMARY KEY, body text)")
        ids.append(create_vectorizer(db, t, embedding=openai(fake_url)))
        db.execute(f"INSERT INTO {t} VALUES (1, 'text of {t}')")
    # A separator that is not a valid regex, as an older version would have accepted.
    db.execute("UPDATE ai.vectorizer SET config = jsonb_set(config, '{chunking}', "
               "'{\"implementation\": \"character_text_splitter\", \"config_type\": \"chunking\", "
               "\"chunk_size\": 10, \"chunk_overlap\": 0, \"separator\": \"(\", \"is_separator_regex\": true}') "
               "WHERE id = %s", (ids[0],))
    run_once(db, expect_error="vectorizer public_a_embedding_store")
    assert queued(db, ids[0]) == {1}
    assert queued(db, ids[1]) == set()
    assert scalar(db, "SELECT count(*) FROM b_embedding_store") == 1
    assert "separator" in scalar(db, "SELECT last_error FROM ai.vectorizer_status WHERE id = %s", (ids[0],))


def test_execute_vectorizer_gives_way_to_max_seconds_and_cancels(db: psycopg.Connection, fake_url: str,
                                                                 connect: Connector) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc", embedding=openai(fake_url, api_key_name=f"'{SERVER_KEY_VAR}'"),
                            chunking="ai.chunking_none()")
    db.execute("INSERT INTO doc VALUES (1, 'SLOWHANG')")
    began = time.monotonic()
    out = scalar(db, "SELECT ai.execute_vectorizer(%s, max_seconds => 2)", (vid,))
    assert out["stopped"] == "max_seconds" and time.monotonic() - began < 6, out
    assert scalar(db, f"SELECT attempts FROM ai._vectorizer_q_{vid}") == 0  # given back untouched

    other = connect()
    other.execute("SET statement_timeout = '1500ms'")
    began = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        other.execute("SELECT ai.execute_vectorizer(%s, max_seconds => 60)", (vid,))
    assert time.monotonic() - began < 5

    other.execute("SET statement_timeout = 0")
    pid = other.info.backend_pid
    began = time.monotonic()
    threading.Timer(1.0, lambda: db.execute("SELECT pg_cancel_backend(%s)", (pid,))).start()
    with pytest.raises(psycopg.errors.QueryCanceled):
        other.execute("SELECT ai.execute_vectorizer(%s, max_seconds => 60)", (vid,))
    assert time.monotonic() - began < 5
    assert queued(db, vid) == {1}


def test_a_row_filter_that_fails_on_a_row_skips_that_row_only(db: psycopg.Connection, fake_url: str,
                                                             path: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, n int, body text)")
    vid = create_vectorizer(db, "doc", embedding=openai(fake_url, api_key_name=f"'{SERVER_KEY_VAR}'"),
                            chunking="ai.chunking_none()", row_filter="100 / n > 1")
    db.execute("INSERT INTO doc VALUES (1, 5, 'one'), (2, 10, 'two'), (3, 20, 'three')")
    # Row 1 now makes the filter raise (n = 0) when the worker reads it; the writer's change
    # goes in without the triggers, as if it had been made before the filter was.
    db.execute("ALTER TABLE doc DISABLE TRIGGER USER")
    db.execute("UPDATE doc SET n = 0 WHERE id = 1")
    db.execute("ALTER TABLE doc ENABLE TRIGGER USER")
    if path == "worker":
        run_once(db, **{SERVER_KEY_VAR: "test-key"})
    else:
        out = scalar(db, "SELECT ai.execute_vectorizer(%s)", (vid,))
        assert out["rows"] == 3, out
    assert sorted(stored(db)) == [2, 3]
    assert queued(db, vid) == set() and failed_rows(db, vid) == []
    errors = [m for (m,) in rows(db, "SELECT message FROM ai.vectorizer_errors WHERE id = %s", (vid,))]
    assert any("row_filter failed" in m and "division by zero" in m for m in errors), errors
