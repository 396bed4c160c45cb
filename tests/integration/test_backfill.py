"""A large source's existing rows, queued in steps: create_vectorizer queues the first step
(writers wait for that alone), the claims after it the rest, one step each. Run over both
paths (the worker, ai.execute_vectorizer); the step is made small (ai.enqueue_step) so a few
hundred rows take several steps.

The fake OpenAI server's vector for a text is fake_vector(text), so a stored vector shows which
text was embedded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest
from pgvectorizer.worker import Worker
from psycopg import sql

from tests.helpers.db import (
    PGPORT,
    TCP_HOST,
    Connector,
    create_vectorizer,
    queued,
    rows,
    scalar,
)
from tests.helpers.worker import (
    chunks_of,
    drain,
    embedding,
    is_vector_of,
    stored,
    worker_env,
)

STEP = 40
ROWS = 230


@pytest.fixture
def doc(db: psycopg.Connection, fake_url: str) -> int:
    """doc with ROWS rows; its vectorizer queues existing rows STEP at a time, in every session."""
    db.execute(sql.SQL("ALTER DATABASE {} SET ai.enqueue_step = {}").format(
        sql.Identifier(db.info.dbname), sql.Literal(str(STEP))))
    db.execute(f"SET ai.enqueue_step = {STEP}")
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text, published bool DEFAULT true)")
    db.execute("INSERT INTO doc SELECT g, 'row ' || g, g %% 10 <> 3 FROM generate_series(1, %s) g", (ROWS,))
    return create_vectorizer(db, "doc", embedding=embedding(fake_url), chunking="ai.chunking_none()",
                             enqueue_existing=True, row_filter="published")


def _after(db: psycopg.Connection, vid: int) -> list[str] | None:
    found = rows(db, "SELECT after FROM ai._vectorizer_backfill WHERE vectorizer_id = %s", (vid,))
    return found[0][0] if found else None


def _matching(db: psycopg.Connection) -> dict[int, str]:
    return dict(rows(db, "SELECT id, body FROM doc WHERE published ORDER BY id"))


def test_create_queues_one_step_and_the_claims_the_rest(db: psycopg.Connection, path: str, doc: int) -> None:
    first = sorted(queued(db, doc))
    matching = _matching(db)
    assert first == sorted(matching)[:STEP]
    assert _after(db, doc) == [str(first[-1])]
    # Pending counts what is still to be queued, exactly: the filter's rows, each once.
    assert scalar(db, "SELECT ai.vectorizer_queue_pending(%s, true)", (doc,)) == len(matching)
    assert scalar(db, "SELECT ai.vectorizer_queue_pending(%s)", (doc,)) == len(matching)
    assert scalar(db, "SELECT (ai._vectorizer_ops_call(%s, 'probe'))->>'work'", (doc,)) == "true"

    drain(path, db, doc)

    assert chunks_of(db) == {k: [v] for k, v in matching.items()}
    assert _after(db, doc) is None
    assert queued(db, doc) == set()
    assert scalar(db, "SELECT ai.vectorizer_queue_pending(%s, true)", (doc,)) == 0


def test_writes_during_the_backfill_are_not_lost(db: psycopg.Connection, path: str, doc: int) -> None:
    cursor = int(_after(db, doc)[0])
    # On both sides of the backfill's position: new rows, changed texts, deletions, a key
    # moved across it, a row entering and one leaving the filter.
    db.execute("INSERT INTO doc VALUES (%s, 'new low', true), (1000, 'new high', true)", (-5,))
    db.execute("UPDATE doc SET body = body || ' changed' WHERE id IN (%s, %s)", (cursor - 1, cursor + 7))
    db.execute("DELETE FROM doc WHERE id IN (%s, %s)", (cursor - 2, cursor + 8))
    db.execute("UPDATE doc SET id = 2000 WHERE id = %s", (cursor - 4,))
    db.execute("UPDATE doc SET id = 0 WHERE id = %s", (cursor + 11,))
    db.execute("UPDATE doc SET published = true WHERE id = %s", (cursor + 13 - (cursor + 13) % 10 + 3,))
    db.execute("UPDATE doc SET published = false WHERE id = %s", (cursor + 20,))

    drain(path, db, doc)

    matching = _matching(db)
    assert chunks_of(db) == {k: [v] for k, v in matching.items()}
    for key, [(chunk, vector)] in stored(db).items():
        assert is_vector_of(vector, chunk), key
    assert _after(db, doc) is None


def test_a_row_filter_that_fails_on_a_row_does_not_stall_the_backfill(db: psycopg.Connection, path: str,
                                                                      fake_url: str) -> None:
    db.execute(f"SET ai.enqueue_step = {STEP}")
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO doc SELECT g, 'row ' || g FROM generate_series(1, 100) g")
    # Fails on row 70 only, which the first step does not reach.
    vid = create_vectorizer(db, "doc", embedding=embedding(fake_url), chunking="ai.chunking_none()",
                            enqueue_existing=True, row_filter="100 / (id - 70) <> 0")
    assert sorted(queued(db, vid)) == list(range(1, STEP + 1))

    drain(path, db, vid)

    assert sorted(chunks_of(db)) == [k for k in range(1, 101) if k != 70]
    assert _after(db, vid) is None
    assert scalar(db, "SELECT count(*) FROM ai.vectorizer_errors WHERE id = %s "
                      "AND message LIKE 'row_filter failed for key%%'", (vid,)) >= 1


def test_a_small_source_is_queued_whole_at_creation(db: psycopg.Connection, fake_url: str) -> None:
    db.execute("SET ai.enqueue_step = 50")
    db.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    db.execute("INSERT INTO doc SELECT g, 'row ' || g FROM generate_series(1, 49) g")
    vid = create_vectorizer(db, "doc", embedding=embedding(fake_url), chunking="ai.chunking_none()",
                            enqueue_existing=True)
    assert len(queued(db, vid)) == 49
    assert _after(db, vid) is None


def test_dropping_the_vectorizer_ends_its_backfill(db: psycopg.Connection, doc: int) -> None:
    assert _after(db, doc) is not None
    db.execute("SELECT ai.drop_vectorizer(%s, drop_all => true)", (doc,))
    assert scalar(db, "SELECT count(*) FROM ai._vectorizer_backfill") == 0


def test_a_users_vectorizer_is_backfilled_by_a_worker_of_another_role(
        db: psycopg.Connection, connect: Connector, make_role: Callable[[str], tuple[str, str]],
        fake_url: str) -> None:
    """No superuser anywhere: the owner creates it (a usage role, its own table), another usage
    role in its grant_to runs the worker; the claims move the backfill with the owner's rights."""
    owner, owner_pw = make_role("owner")
    worker, worker_pw = make_role("worker")
    db.execute("SELECT ai.grant_vectorizer_usage(%s)", (owner,))
    db.execute("SELECT ai.grant_vectorizer_usage(%s)", (worker,))
    db.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(owner)))
    db.execute(sql.SQL("ALTER DATABASE {} SET ai.enqueue_step = {}").format(
        sql.Identifier(db.info.dbname), sql.Literal(str(STEP))))
    conn = connect(user=owner, password=owner_pw)
    conn.execute("CREATE TABLE doc (id int PRIMARY KEY, body text)")
    conn.execute("INSERT INTO doc SELECT g, 'row ' || g FROM generate_series(1, %s) g", (ROWS,))
    vid = create_vectorizer(conn, "doc", embedding=embedding(fake_url), chunking="ai.chunking_none()",
                            enqueue_existing=True, grant_to=f"ARRAY[{sql.quote(worker)}]::name[]",
                            scheduling="ai.scheduling_none()")
    assert len(queued(db, vid)) == STEP
    as_worker = connect(user=worker, password=worker_pw)
    assert scalar(as_worker, "SELECT ai.vectorizer_queue_pending(%s, true)", (vid,)) == ROWS

    url = f"host={TCP_HOST} port={PGPORT} dbname={db.info.dbname} user={worker} password={worker_pw}"
    assert asyncio.run(Worker(url, vectorizer_ids=[vid], once=True, env=worker_env()).run()) is None

    assert sorted(chunks_of(db)) == list(range(1, ROWS + 1))
    assert _after(db, vid) is None


def test_a_claim_short_of_its_limit_queues_the_next_step(db: psycopg.Connection, doc: int) -> None:
    """Writers' rows in the queue must not hold the backfill back: a claim that gets fewer rows
    than it asked for queues the next step (for the next claim), though it got some."""
    before = _after(db, doc)
    db.execute("INSERT INTO doc VALUES (5000, 'a writer''s row', true)")
    claimed = rows(db, "SELECT ai._vectorizer_ops_call(%s, 'claim', %s)",
                   (doc, psycopg.types.json.Jsonb({"limit": 200, "token": "00000000-0000-0000-0000-000000000001",
                                                   "lease": 60, "lock_space": 1, "xact": True})))
    assert 0 < len(claimed) < 200
    assert _after(db, doc) is not None and int(_after(db, doc)[0]) > int(before[0])
    # The claim took what was there before the step; the step's rows wait for the next one.
    assert len(queued(db, doc)) == STEP + 1 + STEP
