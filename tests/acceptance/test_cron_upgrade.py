"""ALTER EXTENSION ai UPDATE with pg_cron jobs: a vectorizer scheduled under the frozen 0.1.0
keeps its job, and the upgraded database, jobs included, holds what a fresh install holds after
the same statements. In pg_cron's own database, as tests/acceptance/test_cron.py explains."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pytest_postgresql.executors.noop import NoopExecutor

from tests.helpers.catalog import differences, snapshot
from tests.helpers.db import rows, scalar

CRON_DB = "pgvectorizer"


@pytest.fixture
def cron_conn(postgresql_ai_noproc: NoopExecutor) -> Iterator[psycopg.Connection]:
    server = postgresql_ai_noproc
    conn = psycopg.connect(host=server.host, port=server.port, user=server.user,
                           password=server.password, dbname=CRON_DB, autocommit=True)
    try:
        if scalar(conn, "SELECT current_setting('cron.database_name', true)") != CRON_DB:
            pytest.fail(f"pg_cron is not loaded for database {CRON_DB}: run scripts/cluster.sh start")
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        _clean(conn)
        yield conn
        _clean(conn)
        conn.execute("CREATE EXTENSION ai CASCADE")   # as the demo and test_cron leave it
    finally:
        conn.close()


def _clean(conn: psycopg.Connection) -> None:
    if scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'ai'"):
        for (vid,) in rows(conn, "SELECT id FROM ai.vectorizer"):
            conn.execute("SELECT ai.drop_vectorizer(%s, drop_all => true)", (vid,))
    conn.execute("DROP EXTENSION IF EXISTS ai CASCADE")
    conn.execute("DROP SCHEMA IF EXISTS ai, upgrade_test CASCADE")
    conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'ai_vectorizer_%'")


def _make(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA upgrade_test")
    conn.execute("CREATE TABLE upgrade_test.doc (id int PRIMARY KEY, body text)")
    conn.execute("INSERT INTO upgrade_test.doc VALUES (1, 'one'), (2, 'two')")
    # Named: 0.2.0's default name (pgai's) differs from 0.1.0's, and a vectorizer keeps its name.
    conn.execute("SELECT ai.create_vectorizer('upgrade_test.doc', name => 'upgrade_doc', loading => ai.loading_column('body'), "
                 "embedding => ai.embedding_openai('text-embedding-3-small', 4), "
                 "scheduling => ai.scheduling_pg_cron('*/10 * * * *'))")
    conn.execute("SELECT ai.disable_vectorizer_schedule(1)")   # a paused job stays paused


def _without_job_ids(snap: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """pg_cron numbers jobs from one sequence for the whole server: the ids differ by nature."""
    def strip(row: tuple[Any, ...]) -> tuple[Any, ...]:
        config = dict(row[9])
        config["scheduling"] = {k: v for k, v in config["scheduling"].items() if k != "job_id"}
        return (*row[:9], json.dumps(config, sort_keys=True), *row[10:])
    return {**snap, "vectorizers": [strip(r) for r in snap["vectorizers"]]}


def test_an_upgrade_keeps_pg_cron_jobs_as_a_fresh_install_makes_them(cron_conn: psycopg.Connection) -> None:
    conn = cron_conn
    conn.execute("CREATE EXTENSION ai VERSION '0.1.0' CASCADE")
    _make(conn)
    conn.execute("ALTER EXTENSION ai UPDATE")
    upgraded = _without_job_ids(snapshot(conn))
    assert [(j[0], j[2], j[5]) for j in upgraded["cron_jobs"]] == [
        ("ai_vectorizer_1_run", "CALL ai._vectorizer_job(1)", False)]

    _clean(conn)
    conn.execute("CREATE EXTENSION ai CASCADE")
    _make(conn)
    fresh = _without_job_ids(snapshot(conn))
    assert differences(upgraded, fresh) == []
