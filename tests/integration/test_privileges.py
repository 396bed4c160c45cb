"""Vectorizers owned by roles that are not superusers, with real logins for each role."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest
from pgvectorizer.worker import Worker
from psycopg import errors, sql

from tests.helpers.db import (
    EMBEDDING,
    PGPORT,
    TCP_HOST,
    VECTOR,
    Connector,
    catalog_snapshot,
    queue_rows,
    rows,
    scalar,
    vectorizer,
)
from tests.helpers.worker import WORKER_KEY, embedding, env

Role = tuple[str, str]


def ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def create_as(conn: psycopg.Connection, source: str, grant_to: list[str] | None = None) -> int:
    grants = sql.SQL(", grant_to => ai.grant_to({})").format(
        sql.SQL(", ").join(sql.Literal(g) for g in grant_to)) if grant_to else sql.SQL("")
    return scalar(conn, sql.SQL("SELECT ai.create_vectorizer({}::regclass, loading => ai.loading_column('body'), "
                                "embedding => " + EMBEDDING + ", enqueue_existing => true{})")
                  .format(sql.Literal(source), grants))


class Team:
    """An admin who owns schema `content` with table `content.docs`, a writer and a reader."""

    def __init__(self, db: psycopg.Connection, connect: Connector, make_role: Callable[[str], Role]) -> None:
        self.admin = make_role("admin")
        self.writer = make_role("writer")
        self.reader = make_role("reader")
        self.outsider = make_role("outsider")
        admin, writer = ident(self.admin[0]), ident(self.writer[0])
        db.execute("SELECT ai.grant_vectorizer_usage(%s, admin => true)", (self.admin[0],))
        db.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(ident(db.info.dbname), admin))

        self.admin_conn = connect(user=self.admin[0], password=self.admin[1])
        self.admin_conn.execute("""
            CREATE SCHEMA content;
            CREATE TABLE content.docs (id int PRIMARY KEY, body text NOT NULL);
            INSERT INTO content.docs VALUES (1, 'one'), (2, 'two');
        """)
        self.admin_conn.execute(sql.SQL("GRANT USAGE ON SCHEMA content TO {}").format(writer))
        self.admin_conn.execute(sql.SQL("GRANT INSERT, UPDATE, DELETE ON content.docs TO {}").format(writer))
        self.vid = create_as(self.admin_conn, "content.docs", grant_to=[self.reader[0]])

    def connect(self, connect: Connector, role: Role) -> psycopg.Connection:
        return connect(user=role[0], password=role[1])


@pytest.fixture
def team(db: psycopg.Connection, connect: Connector, make_role: Callable[[str], Role]) -> Team:
    return Team(db, connect, make_role)


def test_admin_owns_what_it_created(db: psycopg.Connection, team: Team) -> None:
    v = vectorizer(db, team.vid)
    assert v["owner"] == team.admin[0]
    owners = rows(db, "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
                      "WHERE c.oid IN (%s::regclass, %s::regclass, 'content.docs_embedding_store'::regclass, "
                      "'content.docs_embedding'::regclass) ORDER BY 1",
                  (f'ai."{v["queue_table"]}"', f'ai."{v["queue_failed_table"]}"'))
    assert {owner for _, owner in owners} == {team.admin[0]}
    assert len(owners) == 4
    assert queue_rows(db, team.vid) == [1, 2]


def test_writer_without_queue_rights_gets_rows_queued(db: psycopg.Connection, connect: Connector,
                                                      team: Team) -> None:
    writer = team.connect(connect, team.writer)
    db.execute(sql.SQL("DELETE FROM ai.{}").format(ident(vectorizer(db, team.vid)["queue_table"])))
    # No WHERE clauses: those would need SELECT, which the writer does not have.
    writer.execute("INSERT INTO content.docs VALUES (3, 'three')")
    assert queue_rows(db, team.vid) == [3]
    writer.execute("UPDATE content.docs SET body = 'changed'")
    assert queue_rows(db, team.vid) == [1, 2, 3, 3]
    writer.execute("DELETE FROM content.docs")
    assert queue_rows(db, team.vid) == [1, 1, 2, 2, 3, 3, 3]
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(sql.SQL("SELECT * FROM ai.{}").format(ident(vectorizer(db, team.vid)["queue_table"])))


def test_grant_to_role_reads_queue_store_and_view(db: psycopg.Connection, connect: Connector,
                                                 team: Team) -> None:
    v = vectorizer(db, team.vid)
    team.admin_conn.execute("INSERT INTO content.docs_embedding_store (id, chunk_seq, chunk, embedding) "
                            "VALUES (1, 0, 'one', %s)", (VECTOR,))
    reader = team.connect(connect, team.reader)
    assert rows(reader, sql.SQL("SELECT id FROM ai.{} ORDER BY id").format(ident(v["queue_table"]))) \
        == [(1,), (2,)]
    assert rows(reader, "SELECT id, chunk FROM content.docs_embedding_store") == [(1, "one")]
    assert rows(reader, "SELECT id, body, chunk, embedding::text FROM content.docs_embedding") \
        == [(1, "one", "one", VECTOR)]
    # Read access, not ownership of the source.
    with pytest.raises(errors.InsufficientPrivilege):
        reader.execute("INSERT INTO content.docs VALUES (9, 'nine')")


def test_role_without_grants_cannot_read_the_queue(db: psycopg.Connection, connect: Connector,
                                                  team: Team) -> None:
    v = vectorizer(db, team.vid)
    outsider = team.connect(connect, team.outsider)
    for relation in (sql.Identifier("ai", v["queue_table"]), sql.Identifier("ai", v["queue_failed_table"]),
                     sql.Identifier("content", "docs_embedding_store"), sql.Identifier("content", "docs_embedding")):
        with pytest.raises(errors.InsufficientPrivilege):
            outsider.execute(sql.SQL("SELECT * FROM {}").format(relation))


def test_admin_drops_its_source_and_the_vectorizer_goes(db: psycopg.Connection, team: Team) -> None:
    v = vectorizer(db, team.vid)
    team.admin_conn.execute("DROP TABLE content.docs CASCADE")
    assert rows(db, "SELECT id FROM ai.vectorizer") == []
    assert scalar(db, "SELECT to_regclass(%s)", (f'ai."{v["queue_table"]}"',)) is None


@pytest.mark.parametrize("usage", ["none", "user"])
def test_plain_role_cannot_run_python(db: psycopg.Connection, connect: Connector,
                                      make_role: Callable[[str], Role], usage: str) -> None:
    role = make_role("plain")
    if usage == "user":
        db.execute("SELECT ai.grant_vectorizer_usage(%s)", (role[0],))
    conn = connect(user=role[0], password=role[1])
    with pytest.raises(errors.InsufficientPrivilege, match="python_info" if usage == "user" else "schema ai"):
        conn.execute("SELECT ai.python_info()")
    assert scalar(db, "SELECT has_function_privilege(%s, 'ai.python_info()', 'EXECUTE')", (role[0],)) is False


def test_create_vectorizer_needs_usage(db: psycopg.Connection, connect: Connector,
                                       make_role: Callable[[str], Role]) -> None:
    role = make_role("owner")
    db.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(ident(db.info.dbname), ident(role[0])))
    conn = connect(user=role[0], password=role[1])
    conn.execute("CREATE SCHEMA mine; CREATE TABLE mine.docs (id int PRIMARY KEY, body text); "
                 "INSERT INTO mine.docs VALUES (1, 'x')")
    before = catalog_snapshot(db)
    with pytest.raises(errors.InsufficientPrivilege, match="schema ai"):
        create_as(conn, "mine.docs")
    assert catalog_snapshot(db) == before
    assert rows(db, "SELECT tgname FROM pg_trigger WHERE tgrelid = 'mine.docs'::regclass") == []
    # The role's own table still takes writes: no half-made trigger points at a missing queue.
    conn.execute("INSERT INTO mine.docs VALUES (2, 'y')")
    assert scalar(db, "SELECT count(*) FROM mine.docs") == 2


# --- a user (usage without admin) and its own tables, as in pgai ---------------------------------

@pytest.fixture
def user(db: psycopg.Connection, connect: Connector, make_role: Callable[[str], Role]) -> tuple[Role, psycopg.Connection]:
    """A role with plain usage that owns schema mine and table mine.docs (two rows)."""
    role = make_role("user")
    db.execute("SELECT ai.grant_vectorizer_usage(%s)", (role[0],))
    db.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(ident(db.info.dbname), ident(role[0])))
    conn = connect(user=role[0], password=role[1])
    conn.execute("CREATE SCHEMA mine; CREATE TABLE mine.docs (id int PRIMARY KEY, body text); "
                 "INSERT INTO mine.docs VALUES (1, 'one'), (2, 'two')")
    return role, conn


def test_user_creates_runs_and_drops_a_vectorizer_on_its_own_table(
        db: psycopg.Connection, user: tuple[Role, psycopg.Connection], fake_url: str) -> None:
    role, conn = user
    vid = scalar(conn, "SELECT ai.create_vectorizer('mine.docs', loading => ai.loading_column('body'), "
                       "embedding => " + embedding(fake_url) + ", chunking => ai.chunking_none())")
    v = vectorizer(db, vid)
    assert v["owner"] == role[0]
    # Its default schedule is the worker: running vectorizers in the server is for admins.
    assert v["config"]["scheduling"]["implementation"] == "none"
    assert scalar(db, "SELECT tableowner FROM pg_tables WHERE tablename = 'docs_embedding_store'") == role[0]
    dsn = f"host={TCP_HOST} port={PGPORT} dbname={db.info.dbname} user={role[0]} password={role[1]}"
    assert asyncio.run(Worker(dsn, vectorizer_ids=[vid], once=True, env=env(**WORKER_KEY)).run()) is None
    assert scalar(conn, "SELECT count(*) FROM mine.docs_embedding") == 2
    conn.execute("SELECT ai.disable_vectorizer_schedule(%s)", (vid,))
    conn.execute("SELECT ai.drop_vectorizer(%s, drop_all => true)", (vid,))
    assert rows(db, "SELECT id FROM ai.vectorizer") == []
    assert scalar(db, "SELECT to_regclass('mine.docs_embedding_store')") is None


def test_user_may_not_use_others_tables_or_the_servers_python(
        db: psycopg.Connection, connect: Connector, user: tuple[Role, psycopg.Connection], team: Team) -> None:
    role, conn = user
    team.admin_conn.execute(sql.SQL("GRANT USAGE ON SCHEMA content TO {0}; GRANT SELECT, TRIGGER ON content.docs TO {0}")
                            .format(ident(role[0])))
    before = catalog_snapshot(db)
    with pytest.raises(errors.InsufficientPrivilege, match="only on tables it owns") as info:
        create_as(conn, "content.docs")
    assert "admin => true" in (info.value.diag.message_hint or "")
    with pytest.raises(errors.InsufficientPrivilege, match="may not schedule vectorizers in the server"):
        conn.execute("SELECT ai.create_vectorizer('mine.docs', loading => ai.loading_column('body'), "
                     "embedding => " + EMBEDDING + ", scheduling => ai.scheduling_pg_cron())")
    assert catalog_snapshot(db) == before
    with pytest.raises(errors.InsufficientPrivilege, match="may not act as role"):
        conn.execute("SELECT ai.drop_vectorizer(%s)", (team.vid,))
    with pytest.raises(errors.InsufficientPrivilege, match="may not act as role"):
        conn.execute("SELECT ai.disable_vectorizer_schedule(%s)", (team.vid,))
    own = create_as(conn, "mine.docs")
    with pytest.raises(errors.InsufficientPrivilege, match="execute_vectorizer"):
        conn.execute("SELECT ai.execute_vectorizer(%s)", (own,))
    assert rows(db, "SELECT id FROM ai.vectorizer ORDER BY id") == [(team.vid,), (own,)]


# --- using a vectorizer: embed, progress and errors ---------------------------------------------

@pytest.fixture
def usage(db: psycopg.Connection, connect: Connector, make_role: Callable[[str], Role],
          team: Team) -> psycopg.Connection:
    """A role with plain usage, in no vectorizer's grant_to."""
    role = make_role("usage")
    db.execute("SELECT ai.grant_vectorizer_usage(%s)", (role[0],))
    return connect(user=role[0], password=role[1])


def test_usage_alone_does_not_embed_with_anothers_vectorizer(db: psycopg.Connection, team: Team,
                                                            usage: psycopg.Connection) -> None:
    for call in ("SELECT ai.embed(%s::int4, 'x')", "SELECT ai.embed(%s::text, 'x')"):
        arg = team.vid if "int4" in call else vectorizer(db, team.vid)["name"]
        with pytest.raises(errors.InsufficientPrivilege, match="may not use vectorizer"):
            usage.execute(call, (arg,))
    # A vectorizer that does not exist is still reported as such.
    with pytest.raises(psycopg.Error, match="vectorizer 9999 does not exist"):
        usage.execute("SELECT ai.embed(9999, 'x')")


def test_usage_alone_does_not_report_for_anothers_vectorizer(db: psycopg.Connection, team: Team,
                                                            usage: psycopg.Connection) -> None:
    before = rows(db, "SELECT * FROM ai._vectorizer_progress ORDER BY 1")
    for call in ("SELECT ai._vectorizer_record_error(%s, 'forged')",
                 "SELECT ai._vectorizer_record_success(%s, 1000)",
                 "SELECT ai._vectorizer_report(%s, 1000, 'forged')"):
        with pytest.raises(errors.InsufficientPrivilege, match="may not use vectorizer"):
            usage.execute(call, (team.vid,))
    for write in ("INSERT INTO ai._vectorizer_errors (id, message) VALUES (%s, 'forged')",
                  "UPDATE ai._vectorizer_worker_progress SET success_count = 1000 WHERE vectorizer_id = %s",
                  "INSERT INTO ai._vectorizer_progress_log (vectorizer_id, success_count) VALUES (%s, 1000)",
                  "DELETE FROM ai._vectorizer_progress_log WHERE vectorizer_id = %s"):
        with pytest.raises(errors.InsufficientPrivilege):
            usage.execute(write, (team.vid,))
    assert rows(db, "SELECT * FROM ai._vectorizer_progress ORDER BY 1") == before
    assert scalar(db, "SELECT count(*) FROM ai._vectorizer_errors") == 0
    # It still reads the status.
    assert rows(usage, "SELECT id, last_error FROM ai.vectorizer_status") == [(team.vid, None)]


def test_grant_to_role_reports(db: psycopg.Connection, connect: Connector, team: Team) -> None:
    db.execute("SELECT ai.grant_vectorizer_usage(%s)", (team.reader[0],))
    reader = team.connect(connect, team.reader)
    reader.execute("SELECT ai._vectorizer_record_success(%s, 2)", (team.vid,))
    reader.execute("SELECT ai._vectorizer_record_error(%s, 'provider down', '{\"step\": \"embed\"}')", (team.vid,))
    assert rows(reader, "SELECT success_count, error_count, last_error_message FROM ai._vectorizer_progress "
                        "WHERE vectorizer_id = %s", (team.vid,)) == [(2, 1, "provider down")]
    assert rows(reader, "SELECT message FROM ai.vectorizer_errors") == [("provider down",)]


def test_another_admin_cannot_insert_errors(db: psycopg.Connection, connect: Connector,
                                           make_role: Callable[[str], Role], team: Team) -> None:
    other = make_role("admin2")
    db.execute("SELECT ai.grant_vectorizer_usage(%s, admin => true)", (other[0],))
    conn = connect(user=other[0], password=other[1])
    with pytest.raises(errors.InsufficientPrivilege, match="may not record errors"):
        conn.execute("INSERT INTO ai._vectorizer_errors (id, message) VALUES (%s, 'forged')", (team.vid,))
    team.admin_conn.execute("INSERT INTO ai._vectorizer_errors (id, message) VALUES (%s, 'own')", (team.vid,))


def test_admin_with_regex_separators_and_a_failing_filter(db: psycopg.Connection, connect: Connector,
                                                         team: Team) -> None:
    """Python checks the separators for an admin too; the owner's trigger records filter errors."""
    team.admin_conn.execute("CREATE TABLE content.ratio (id int PRIMARY KEY, n int, body text)")
    with pytest.raises(errors.InvalidRegularExpression, match="separator"):
        team.admin_conn.execute(
            "SELECT ai.create_vectorizer('content.ratio', loading => ai.loading_column('body'), embedding => "
            + EMBEDDING + ", chunking => ai.chunking_character_text_splitter(separator => '[', "
            "is_separator_regex => true))")
    vid = scalar(team.admin_conn,
                 "SELECT ai.create_vectorizer('content.ratio', loading => ai.loading_column('body'), embedding => "
                 + EMBEDDING + ", chunking => ai.chunking_character_text_splitter(separator => '\\s+', "
                 "is_separator_regex => true), row_filter => '100 / n > 1')")
    team.admin_conn.execute(sql.SQL("GRANT INSERT ON content.ratio TO {}").format(ident(team.writer[0])))
    writer = team.connect(connect, team.writer)
    writer.execute("INSERT INTO content.ratio VALUES (1, 0, 'zero'), (2, 10, 'ten')")
    assert queue_rows(db, vid) == [2]
    assert rows(db, "SELECT id, details->>'step' FROM ai._vectorizer_errors") == [(vid, "row_filter")]


def test_detached_partition_of_an_admins_source(db: psycopg.Connection, team: Team) -> None:
    """The keys are queued with the owner's rights, whoever detaches."""
    team.admin_conn.execute("""
        CREATE TABLE content.ev (id int, region text, body text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
        CREATE TABLE content.ev_eu PARTITION OF content.ev FOR VALUES IN ('eu');
        INSERT INTO content.ev VALUES (1, 'eu', 'a');
    """)
    vid = create_as(team.admin_conn, "content.ev")
    team.admin_conn.execute("INSERT INTO content.ev_embedding_store (id, region, chunk_seq, chunk, embedding) "
                            "VALUES (1, 'eu', 0, 'a', %s)", (VECTOR,))
    team.admin_conn.execute(sql.SQL("DELETE FROM ai.{}").format(ident(vectorizer(db, vid)["queue_table"])))
    db.execute("ALTER TABLE content.ev DETACH PARTITION content.ev_eu")  # by the superuser
    assert queue_rows(db, vid) == [(1, "eu")]
    assert scalar(db, "SELECT count(*) FROM pg_proc WHERE proname LIKE '\\_ai\\_queue\\_missing%'") == 0


def test_worker_as_a_grant_to_role(db: psycopg.Connection, connect: Connector,
                                   make_role: Callable[[str], Role], fake_url: str) -> None:
    """A worker logged in as a grant_to role processes the queue and reports its progress."""
    admin, worker = make_role("admin"), make_role("worker")
    db.execute("SELECT ai.grant_vectorizer_usage(%s, admin => true)", (admin[0],))
    db.execute("SELECT ai.grant_vectorizer_usage(%s)", (worker[0],))
    db.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(ident(db.info.dbname), ident(admin[0])))
    admin_conn = connect(user=admin[0], password=admin[1])
    admin_conn.execute("CREATE SCHEMA content; CREATE TABLE content.docs (id int PRIMARY KEY, body text);"
                       "INSERT INTO content.docs VALUES (1, 'one'), (2, 'two')")
    vid = scalar(admin_conn, sql.SQL(
        "SELECT ai.create_vectorizer('content.docs', loading => ai.loading_column('body'), embedding => "
        + embedding(fake_url) + ", chunking => ai.chunking_none(), grant_to => ai.grant_to({}))")
        .format(sql.Literal(worker[0])))
    dsn = f"host={TCP_HOST} port={PGPORT} dbname={db.info.dbname} user={worker[0]} password={worker[1]}"
    error = asyncio.run(Worker(dsn, vectorizer_ids=[vid], once=True, env=env(**WORKER_KEY)).run())
    assert error is None
    assert scalar(db, "SELECT count(*) FROM content.docs_embedding_store") == 2
    assert rows(db, "SELECT success_count, error_count FROM ai._vectorizer_progress WHERE vectorizer_id = %s",
                (vid,)) == [(2, 0)]
