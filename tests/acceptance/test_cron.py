"""Vectorizers run by a real pg_cron: jobs made, paused and removed with their vectorizer, and a
scheduled run carrying inserts, updates, deletes and filter changes into the store with no
worker process anywhere.

pg_cron lives in one database per cluster (cron.database_name), so these tests cannot use the
per-test databases: on the server pytest-postgresql's executor points at (the project
cluster, with pg_cron in shared_preload_libraries), they work in its `pgvectorizer` database,
which scripts/cluster.sh names as pg_cron's, each test in a schema of its own. The ai extension there
is made afresh once per module (the demo does the same), so it runs this checkout's SQL.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql
from pytest_postgresql.executors.noop import NoopExecutor

from tests.helpers.db import PGHOST, PGPORT, PGUSER, SERVER_KEY_VAR, rows, scalar
from tests.helpers.fake_openai import fake_vector

CRON_DB = "pgvectorizer"
DIMS = 4
# pg_cron 1.4 (Debian bookworm) schedules by the minute: a run waits for the next one.
TICK_WAIT = 150.0  # seconds


def _jobs(conn: psycopg.Connection, vid: int) -> dict[str, dict[str, Any]]:
    cur = conn.execute(
        "SELECT jobname, jobid, schedule, command, username, active FROM cron.job "
        "WHERE jobname LIKE %s AND database = current_database()", (f"ai_vectorizer_{vid}_%",))
    return {r[0]: dict(zip(("jobid", "schedule", "command", "username", "active"), r[1:],
                           strict=True)) for r in cur.fetchall()}


@pytest.fixture(scope="module")
def cron_conn(postgresql_ai_noproc: NoopExecutor) -> Iterator[psycopg.Connection]:
    """The pg_cron database of the server pytest-postgresql's executor points at."""
    server = postgresql_ai_noproc
    conn = psycopg.connect(host=server.host, port=server.port, user=server.user,
                           password=server.password, dbname=CRON_DB, autocommit=True)
    try:
        if scalar(conn, "SELECT current_setting('cron.database_name', true)") != CRON_DB:
            pytest.fail(f"pg_cron is not loaded for database {CRON_DB}: run scripts/cluster.sh start")
        # Vectorizers left by an earlier run (or the demo) go with their jobs.
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
        if scalar(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'ai'"):
            for (vid,) in rows(conn, "SELECT id FROM ai.vectorizer"):
                conn.execute("SELECT ai.drop_vectorizer(%s, drop_all => true)", (vid,))
        conn.execute("DROP EXTENSION IF EXISTS ai CASCADE")
        conn.execute("DROP SCHEMA IF EXISTS ai CASCADE")
        conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE 'ai_vectorizer_%'")
        conn.execute("CREATE EXTENSION ai CASCADE")
        yield conn
    finally:
        conn.close()


@pytest.fixture
def schema(cron_conn: psycopg.Connection) -> Iterator[str]:
    name = f"cron_{secrets.token_hex(4)}"
    cron_conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    for (vid,) in rows(cron_conn, "SELECT id FROM ai.vectorizer WHERE source_schema = %s", (name,)):
        cron_conn.execute("SELECT ai.drop_vectorizer(%s, drop_all => true)", (vid,))
    cron_conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _embedding(url: str) -> str:
    return (f"ai.embedding_openai('text-embedding-3-small', {DIMS}, "
            f"api_key_name => {sql.quote(SERVER_KEY_VAR)}, base_url => {sql.quote(url)})")


def _blog(conn: psycopg.Connection, schema: str, n: int) -> str:
    table = f"{schema}.blog"
    conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, body text, published bool NOT NULL DEFAULT true)")
    conn.execute(f"INSERT INTO {table} SELECT g, 'post ' || g, true FROM generate_series(1, %s) g", (n,))
    return table


# --- jobs in step with their vectorizer --------------------------------------------------------

def test_scheduling_default_makes_a_pg_cron_job(cron_conn: psycopg.Connection, schema: str,
                                                fake_url: str) -> None:
    table = _blog(cron_conn, schema, 3)
    vid = scalar(cron_conn, f"SELECT ai.create_vectorizer('{table}'::regclass, "
                            f"loading => ai.loading_column('body'), embedding => {_embedding(fake_url)})")
    config = scalar(cron_conn, "SELECT config->'scheduling' FROM ai.vectorizer WHERE id = %s", (vid,))
    jobs = _jobs(cron_conn, vid)
    assert set(jobs) == {f"ai_vectorizer_{vid}_run"}
    job = jobs[f"ai_vectorizer_{vid}_run"]
    assert config == {"implementation": "pg_cron", "config_type": "scheduling", "schedule": "*/5 * * * *",
                      "max_seconds": 240, "job_id": job["jobid"]}
    assert job == {"jobid": job["jobid"], "schedule": "*/5 * * * *",
                   "command": f"CALL ai._vectorizer_job({vid})", "username": PGUSER, "active": True}


def test_scheduling_timescaledb_becomes_the_nearest_pg_cron_job(cron_conn: psycopg.Connection, schema: str,
                                                                fake_url: str) -> None:
    table = _blog(cron_conn, schema, 1)
    notices: list[str] = []
    cron_conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    tz = scalar(cron_conn, "SELECT coalesce(current_setting('cron.timezone', true), 'GMT')")
    start = scalar(cron_conn, "SELECT ('2050-01-06 10:23'::timestamp AT TIME ZONE %s)::text", (tz,))
    vid = scalar(cron_conn, f"SELECT ai.create_vectorizer('{table}'::regclass, "
                            f"loading => ai.loading_column('body'), embedding => {_embedding(fake_url)}, "
                            "scheduling => ai.scheduling_timescaledb(interval '10 minutes', "
                            f"initial_start => {sql.quote(start)}, timezone => 'America/Chicago'))")
    job = _jobs(cron_conn, vid)[f"ai_vectorizer_{vid}_run"]
    assert job["schedule"] == "3-59/10 * * * *" and job["active"] is True
    assert scalar(cron_conn, "SELECT config->'scheduling' FROM ai.vectorizer WHERE id = %s", (vid,)) == {
        "implementation": "pg_cron", "config_type": "scheduling", "schedule": "3-59/10 * * * *",
        "max_seconds": 240, "job_id": job["jobid"]}
    assert any("pg_cron schedule '3-59/10 * * * *'" in n for n in notices)


def test_scheduling_none_makes_no_job(cron_conn: psycopg.Connection, schema: str, fake_url: str) -> None:
    table = _blog(cron_conn, schema, 1)
    vid = scalar(cron_conn, f"SELECT ai.create_vectorizer('{table}'::regclass, "
                            f"loading => ai.loading_column('body'), embedding => {_embedding(fake_url)}, "
                            "scheduling => ai.scheduling_none())")
    assert _jobs(cron_conn, vid) == {}


def test_disable_enable_and_drop_keep_the_job_in_step(cron_conn: psycopg.Connection, schema: str,
                                                      fake_url: str) -> None:
    table = _blog(cron_conn, schema, 1)
    vid = scalar(cron_conn, f"SELECT ai.create_vectorizer('{table}'::regclass, "
                            f"loading => ai.loading_column('body'), embedding => {_embedding(fake_url)}, "
                            "scheduling => ai.scheduling_pg_cron('@hourly'))")
    name = f"ai_vectorizer_{vid}_run"
    assert _jobs(cron_conn, vid)[name]["schedule"] == "@hourly"
    cron_conn.execute("SELECT ai.disable_vectorizer_schedule(%s)", (vid,))
    assert _jobs(cron_conn, vid)[name]["active"] is False
    cron_conn.execute("SELECT ai.enable_vectorizer_schedule(%s)", (vid,))
    assert _jobs(cron_conn, vid)[name]["active"] is True
    cron_conn.execute("SELECT ai.drop_vectorizer(%s)", (vid,))
    assert _jobs(cron_conn, vid) == {}


def test_dropping_the_source_table_removes_the_job(cron_conn: psycopg.Connection, schema: str,
                                                   fake_url: str) -> None:
    table = _blog(cron_conn, schema, 1)
    vid = scalar(cron_conn, f"SELECT ai.create_vectorizer('{table}'::regclass, "
                            f"loading => ai.loading_column('body'), embedding => {_embedding(fake_url)})")
    assert _jobs(cron_conn, vid)
    cron_conn.execute(f"DROP TABLE {table} CASCADE")
    assert _jobs(cron_conn, vid) == {}


def test_a_failed_create_leaves_no_job(cron_conn: psycopg.Connection, schema: str,
                                       fake_url: str) -> None:
    table = _blog(cron_conn, schema, 1)
    before = scalar(cron_conn, "SELECT count(*) FROM cron.job")
    with pytest.raises(psycopg.errors.DivisionByZero):
        # Queueing the existing rows fails after the job was made (the filter plans well and
        # fails on the first row): the whole call rolls back, job included.
        cron_conn.execute(f"SELECT ai.create_vectorizer('{table}'::regclass, "
                          f"loading => ai.loading_column('body'), embedding => {_embedding(fake_url)}, "
                          "row_filter => 'length(body) / (id - id) > 0')")
    assert scalar(cron_conn, "SELECT count(*) FROM cron.job") == before


def test_a_job_runs_as_the_vectorizer_owner(cron_conn: psycopg.Connection, schema: str,
                                            fake_url: str) -> None:
    role = f"pgvt_cron_{secrets.token_hex(3)}"
    table = _blog(cron_conn, schema, 1)
    cron_conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        cron_conn.execute(sql.SQL("SELECT ai.grant_vectorizer_usage({}, admin => true)").format(sql.Literal(role)))
        cron_conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(
            sql.Identifier(schema, "blog"), sql.Identifier(role)))
        cron_conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
            sql.Identifier(schema), sql.Identifier(role)))
        cron_conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        try:
            # No USAGE on schema cron is needed: the job is made for the caller, as the caller.
            vid = scalar(cron_conn, f"SELECT ai.create_vectorizer('{table}'::regclass, "
                                    f"loading => ai.loading_column('body'), embedding => {_embedding(fake_url)})")
        finally:
            cron_conn.execute("RESET ROLE")
        assert _jobs(cron_conn, vid)[f"ai_vectorizer_{vid}_run"]["username"] == role
        cron_conn.execute("SELECT ai.drop_vectorizer(%s, drop_all => true)", (vid,))
    finally:
        cron_conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        cron_conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# --- a scheduled run, end to end ---------------------------------------------------------------

WRITER_SECONDS = 3.0  # the least time the writer below writes (15 commits, one per 0.2 s)


def _wait_for_runs(conn: psycopg.Connection, jobids: list[int], since: float) -> dict[int, tuple[str, str]]:
    """Each job's first run that started after `since` (epoch seconds), once all have ended."""
    deadline = time.monotonic() + TICK_WAIT
    while True:
        done = {jobid: (status, message) for jobid, status, message in rows(conn, """
            SELECT DISTINCT ON (jobid) jobid, status, return_message FROM cron.job_run_details
             WHERE jobid = ANY (%s) AND start_time >= to_timestamp(%s)
               AND status IN ('succeeded', 'failed')
             ORDER BY jobid, start_time""", (jobids, since))}
        if len(done) == len(jobids):
            return done
        assert time.monotonic() < deadline, f"pg_cron did not run jobs {jobids} in {TICK_WAIT:.0f} s: {done}"
        time.sleep(1)


def test_pg_cron_carries_every_change_into_the_store(cron_conn: psycopg.Connection, schema: str,
                                                     fake_url: str) -> None:
    table = _blog(cron_conn, schema, 8)
    cron_conn.execute(f"UPDATE {table} SET published = false WHERE id = 8")
    vid = scalar(cron_conn, f"""SELECT ai.create_vectorizer('{table}'::regclass,
        loading => ai.loading_column('body'), embedding => {_embedding(fake_url)},
        chunking => ai.chunking_none(), indexing => ai.indexing_hnsw(min_rows => 5),
        scheduling => ai.scheduling_pg_cron('* * * * *'), row_filter => 'published')""")
    # A second vectorizer, for OpenAI itself, whose key is missing on the server: its run must
    # fail, saying so.
    cron_conn.execute(f"CREATE TABLE {schema}.notes (id int PRIMARY KEY, body text)")
    cron_conn.execute(f"INSERT INTO {schema}.notes VALUES (1, 'a note')")
    broken = scalar(cron_conn, f"""SELECT ai.create_vectorizer('{schema}.notes'::regclass,
        loading => ai.loading_column('body'),
        embedding => ai.embedding_openai('text-embedding-3-small', {DIMS}, api_key_name => 'PGVT_NOT_SET_ANYWHERE_API_KEY'),
        destination => ai.destination_table(target_table => 'notes_store', view_name => 'notes_view'),
        scheduling => ai.scheduling_pg_cron('* * * * *'))""")
    # The first pass in the database, without pg_cron or a worker; it also asks for the index.
    first = scalar(cron_conn, "SELECT ai.execute_vectorizer(%s)", (vid,))
    assert (first["rows"], first["stopped"]) == (7, "queue_empty")
    jobs = _jobs(cron_conn, vid)
    assert f"ai_vectorizer_{vid}_index" in jobs
    assert jobs[f"ai_vectorizer_{vid}_index"]["command"].startswith("CREATE INDEX CONCURRENTLY")

    cron_conn.execute(f"INSERT INTO {table} VALUES (9, 'post nine', true), (10, 'hidden ten', false)")
    cron_conn.execute(f"UPDATE {table} SET body = 'post two, rewritten' WHERE id = 2")
    cron_conn.execute(f"DELETE FROM {table} WHERE id = 3")
    cron_conn.execute(f"UPDATE {table} SET published = false WHERE id = 4")
    cron_conn.execute(f"UPDATE {table} SET published = true WHERE id = 8")
    since = time.time()

    # Writers keep going while the index is built and the job runs: none may wait.
    stop = threading.Event()
    commits: list[float] = []
    errors: list[psycopg.Error] = []

    def write() -> None:
        try:
            with psycopg.connect(host=PGHOST, port=PGPORT, user=PGUSER, dbname=CRON_DB,
                                 autocommit=True) as w:
                w.execute("SET lock_timeout = '5s'")
                n = 0
                while not stop.is_set():
                    n += 1
                    w.execute(f"UPDATE {table} SET body = 'post one, edit ' || %s WHERE id = 1", (n,))
                    commits.append(time.monotonic())
                    time.sleep(0.2)
        except psycopg.Error as exc:  # reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=write)
    started = time.monotonic()
    writer.start()
    try:
        runs = _wait_for_runs(cron_conn, [jobs[f"ai_vectorizer_{vid}_run"]["jobid"],
                                          jobs[f"ai_vectorizer_{vid}_index"]["jobid"],
                                          _jobs(cron_conn, broken)[f"ai_vectorizer_{broken}_run"]["jobid"]],
                              since)
        # When the minute strikes at once, the jobs can be over within a second: the writer
        # still writes a few seconds in all, so the count below tells a stalled writer.
        time.sleep(max(0.0, WRITER_SECONDS - (time.monotonic() - started)))
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    assert len(commits) > 10 and max(np.diff(commits)) < 5, "a writer waited on the job or the index"

    good, index, bad = (runs[j] for j in (jobs[f"ai_vectorizer_{vid}_run"]["jobid"],
                                          jobs[f"ai_vectorizer_{vid}_index"]["jobid"],
                                          _jobs(cron_conn, broken)[f"ai_vectorizer_{broken}_run"]["jobid"]))
    assert good[0] == "succeeded", good
    assert index[0] == "succeeded", index
    assert bad[0] == "failed" and "PGVT_NOT_SET_ANYWHERE_API_KEY" in bad[1], bad
    assert scalar(cron_conn, "SELECT count(*) FROM ai.vectorizer_errors WHERE id = %s AND message LIKE %s",
                  (broken, "%PGVT_NOT_SET_ANYWHERE_API_KEY%")) == 1

    # What the run stored (row 1 keeps changing, so it is left out here).
    stored = dict(rows(cron_conn, f"SELECT id, chunk FROM {schema}.blog_embedding_store WHERE id <> 1"))
    assert stored == {2: "post two, rewritten", 5: "post 5", 6: "post 6", 7: "post 7", 8: "post 8",
                      9: "post nine"}
    for (chunk, vec) in rows(cron_conn, f"SELECT chunk, embedding::real[] FROM {schema}.blog_embedding_store "
                                        "WHERE id <> 1"):
        assert np.array_equal(np.array(vec, dtype=np.float32), fake_vector(chunk, DIMS)), chunk
    assert scalar(cron_conn, """SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                 WHERE c.relname = 'blog_embedding_store_embedding_idx'
                                   AND c.relnamespace = %s::regnamespace""", (schema,)) is True
    # The index job goes once its run has been over for a while (the next run, here a call).
    ended = scalar(cron_conn, "SELECT max(extract(epoch FROM end_time)) FROM cron.job_run_details "
                              "WHERE jobid = %s", (jobs[f"ai_vectorizer_{vid}_index"]["jobid"],))
    time.sleep(max(0.0, float(ended) + 11 - time.time()))
    cron_conn.execute("SELECT ai.execute_vectorizer(%s)", (vid,))
    assert set(_jobs(cron_conn, vid)) == {f"ai_vectorizer_{vid}_run"}
