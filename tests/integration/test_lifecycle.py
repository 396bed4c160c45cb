"""A vectorizer over the source's life: partitions that leave it, and the extension dropped."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors, sql

from tests.helpers.db import (
    VECTOR,
    clear_queue,
    create_vectorizer,
    queue_rows,
    rows,
    scalar,
    store_name,
)

EVENTS = """
CREATE TABLE ev (id int, region text, body text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE ev_eu PARTITION OF ev FOR VALUES IN ('eu');
CREATE TABLE ev_us PARTITION OF ev FOR VALUES IN ('us');
CREATE TABLE ev_as PARTITION OF ev FOR VALUES IN ('as') PARTITION BY LIST (id);
CREATE TABLE ev_as_1 PARTITION OF ev_as FOR VALUES IN (1);
CREATE TABLE ev_as_2 PARTITION OF ev_as FOR VALUES IN (2);
INSERT INTO ev VALUES (1, 'eu', 'a'), (2, 'eu', 'b'), (1, 'us', 'c'), (1, 'as', 'd'), (2, 'as', 'e');
"""


@pytest.fixture
def events(db: psycopg.Connection) -> int:
    """A partitioned source (one partition partitioned again) with every row in the store."""
    db.execute(EVENTS)
    vid = create_vectorizer(db, "ev")
    for key in rows(db, "SELECT id, region FROM ev"):
        for seq in (0, 1):
            db.execute(sql.SQL("INSERT INTO {} (id, region, chunk_seq, chunk, embedding) VALUES (%s, %s, %s, 'c', %s)")
                       .format(store_name(db, vid)), (*key, seq, VECTOR))
    return vid


def test_detached_partition_queues_its_keys(db: psycopg.Connection, events: int) -> None:
    db.execute("ALTER TABLE ev DETACH PARTITION ev_eu")
    assert queue_rows(db, events) == [(1, "eu"), (2, "eu")]


def test_detach_concurrently_queues_its_keys(db: psycopg.Connection, events: int) -> None:
    db.execute("ALTER TABLE ev DETACH PARTITION ev_us CONCURRENTLY")
    assert queue_rows(db, events) == [(1, "us")]


def test_detached_sub_partition_queues_its_keys(db: psycopg.Connection, events: int) -> None:
    db.execute("ALTER TABLE ev_as DETACH PARTITION ev_as_2")
    assert queue_rows(db, events) == [(2, "as")]


@pytest.mark.parametrize("drop", ["DROP TABLE ev_eu", "DROP TABLE ev_as CASCADE"])
def test_dropped_partition_queues_its_keys(db: psycopg.Connection, events: int, drop: str) -> None:
    db.execute(drop)
    want = [(1, "as"), (2, "as")] if "ev_as" in drop else [(1, "eu"), (2, "eu")]
    assert queue_rows(db, events) == want


def test_other_alters_queue_nothing(db: psycopg.Connection, events: int) -> None:
    """Attaching a partition or changing the table takes nothing out of the source."""
    db.execute("CREATE TABLE ev_af (id int, region text, body text, PRIMARY KEY (id, region));"
               "ALTER TABLE ev ATTACH PARTITION ev_af FOR VALUES IN ('af');"
               "CREATE TABLE ev_sa PARTITION OF ev FOR VALUES IN ('sa');"
               "ALTER TABLE ev ADD COLUMN extra int; ALTER TABLE ev_eu SET (fillfactor = 90)")
    db.execute("DROP TABLE ev_sa")  # empty, and nothing of it in the store
    assert queue_rows(db, events) == []


def test_only_the_keys_of_rows_gone_are_queued(db: psycopg.Connection, events: int) -> None:
    """The store may lag: a key already gone is queued again, a key still in the source is not."""
    db.execute("DELETE FROM ev WHERE id = 2 AND region = 'as'")
    clear_queue(db, events)
    db.execute("ALTER TABLE ev DETACH PARTITION ev_us")
    assert queue_rows(db, events) == [(1, "us"), (2, "as")]


def test_partition_of_a_column_destination_needs_nothing(db: psycopg.Connection) -> None:
    db.execute(EVENTS)
    vid = create_vectorizer(db, "ev", destination="ai.destination_column('emb')", chunking="ai.chunking_none()")
    db.execute("ALTER TABLE ev DETACH PARTITION ev_eu; DROP TABLE ev_us")
    assert queue_rows(db, vid) == []


# --- DROP EXTENSION ai ---------------------------------------------------------------------------

REFUSED = "drop the vectorizers first: SELECT ai.drop_vectorizer\\(id\\) FROM ai.vectorizer"


@pytest.mark.parametrize("statement", [
    "DROP EXTENSION ai",
    "DROP EXTENSION ai CASCADE",
    "drop extension if exists plpgsql_nope, \"ai\" cascade",
    "DROP SCHEMA ai CASCADE",
    "DROP EXTENSION vector CASCADE",  # ai requires it, so it would go too
    "DO $$ BEGIN EXECUTE 'DROP EXTENSION ai CASCADE'; END $$",
])
def test_drop_extension_is_refused_while_vectorizers_exist(db: psycopg.Connection, statement: str) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc")
    with pytest.raises(errors.DependentObjectsStillExist, match=REFUSED):
        db.execute(statement)
    assert scalar(db, "SELECT count(*) FROM pg_extension WHERE extname = 'ai'") == 1
    db.execute("INSERT INTO doc VALUES (1, 'one')")
    assert queue_rows(db, vid) == [1]


def test_drop_extension_works_without_vectorizers(db: psycopg.Connection) -> None:
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    vid = create_vectorizer(db, "doc")
    db.execute("SELECT ai.drop_vectorizer(id, drop_all => true) FROM ai.vectorizer")
    assert scalar(db, "SELECT to_regclass('ai._vectorizer_q_' || %s::text)", (vid,)) is None
    db.execute("DROP EXTENSION ai")
    assert scalar(db, "SELECT count(*) FROM pg_extension WHERE extname = 'ai'") == 0
    db.execute("CREATE EXTENSION ai")
    vid = create_vectorizer(db, "doc")
    db.execute("INSERT INTO doc VALUES (1, 'one')")
    assert queue_rows(db, vid) == [1]


def test_other_extensions_still_drop(db: psycopg.Connection) -> None:
    if not scalar(db, "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_trgm'"):
        pytest.skip("pg_trgm is not installed")
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    create_vectorizer(db, "doc")
    db.execute("CREATE EXTENSION pg_trgm")
    # "ai" in a comment, a string or another name does not count.
    db.execute("DROP EXTENSION pg_trgm CASCADE /* ai */ -- , ai")
    db.execute("CREATE SCHEMA ai_like; DROP SCHEMA ai_like CASCADE")
    assert scalar(db, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'") == 0
