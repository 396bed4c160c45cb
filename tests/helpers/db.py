"""SQL helpers for the tests that use the database: connection settings, a Connector for more
sessions, and small queries on a vectorizer's catalog row, queue and store.

The tests talk to the running cluster (scripts/cluster.sh: PGHOST/PGPORT, default
/var/run/postgresql and 5488) through psycopg, never through a mock.
"""

from __future__ import annotations

import getpass
import os
import threading
from typing import Any

import psycopg
from psycopg import sql

PGHOST = os.environ.get("PGHOST") or "/var/run/postgresql"
PGPORT = int(os.environ.get("PGPORT") or 5488)
PGUSER = os.environ.get("PGUSER") or getpass.getuser()
# Test roles log in over TCP with a password (the socket only allows peer auth).
TCP_HOST = os.environ.get("PGVECTORIZER_TEST_TCP_HOST") or "127.0.0.1"
# The pid keeps two sessions (say, `make test` and an editor's run) apart on one cluster.
DBNAME = f"pgvectorizer_test_{os.getpid()}"

# A small model size keeps vector literals short in tests that fill a store by hand.
DIMS = 4
EMBEDDING = f"ai.embedding_openai('text-embedding-3-small', {DIMS})"
VECTOR = "[1,2,3,4]"
# An API key variable that the server's environment sets (scripts/cluster.sh), for in-database
# runs against the tests' fake OpenAI servers, which take any key.
SERVER_KEY_VAR = "PGVECTORIZER_TEST_API_KEY"
# Where workers in the tests may send those keys: the fake servers on loopback, any port.
KEY_ENDPOINTS = {"PGVECTORIZER_KEY_ENDPOINTS":
                 f"OPENAI_API_KEY=http://127.0.0.1:* {SERVER_KEY_VAR}=http://127.0.0.1:*"}


def dsn(db: psycopg.Connection) -> str:
    """A conninfo for another session on db's database, as the superuser over the socket."""
    return f"host={PGHOST} port={PGPORT} dbname={db.info.dbname} user={PGUSER}"


class Connector:
    """Opens more connections to the test database (one per thread or role); closes them all."""

    def __init__(self, dbname: str) -> None:
        self.dbname = dbname
        self._conns: list[psycopg.Connection] = []
        self._lock = threading.Lock()

    def __call__(self, *, user: str | None = None, password: str | None = None,
                 autocommit: bool = True, **settings: str) -> psycopg.Connection:
        """A new connection; `user` with `password` logs in as that role over TCP.

        settings become SET commands (lock_timeout='2s', say).
        """
        if user is None:
            conn = psycopg.connect(host=PGHOST, port=PGPORT, user=PGUSER, dbname=self.dbname,
                                   autocommit=True)
        else:
            conn = psycopg.connect(host=TCP_HOST, port=PGPORT, user=user, password=password,
                                   dbname=self.dbname, autocommit=True)
        for name, value in settings.items():
            conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(
                sql.Literal(name), sql.Literal(value)))
        conn.autocommit = autocommit
        with self._lock:
            self._conns.append(conn)
        return conn

    def close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()


# --- small query helpers ---------------------------------------------------------------------

Query = str | sql.SQL | sql.Composed


def rows(conn: psycopg.Connection, query: Query, params: Any = None) -> list[tuple]:
    return conn.execute(query, params).fetchall()


def scalar(conn: psycopg.Connection, query: Query, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None, f"no row from {query!r}"
    return row[0]


def create_vectorizer(conn: psycopg.Connection, source: str, column: str = "body", *,
                      row_filter: str | None = None, enqueue_existing: bool = False,
                      **sql_args: str) -> int:
    """ai.create_vectorizer on `source` (SQL text of a table name, quoted as needed).

    `column` is the loading column; other arguments are SQL expressions by parameter name
    (destination="ai.destination_column('emb')"). Existing rows are not queued unless asked,
    so a test's queue holds only what its own statements caused.
    """
    args: dict[str, str] = {"loading": f"ai.loading_column({sql.quote(column)})",
                            "embedding": EMBEDDING, **sql_args}
    parts = ["%(source)s::regclass"] + [f"{k} => {v}" for k, v in args.items()]
    parts.append("enqueue_existing => %(enqueue_existing)s")
    if row_filter is not None:
        parts.append("row_filter => %(row_filter)s")
    query = "SELECT ai.create_vectorizer(" + ", ".join(parts) + ")"
    return scalar(conn, query, {"source": source, "enqueue_existing": enqueue_existing,
                                "row_filter": row_filter})


def vectorizer(conn: psycopg.Connection, vid: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM ai.vectorizer WHERE id = %s", (vid,))
    row = cur.fetchone()
    assert row is not None and cur.description is not None, f"vectorizer {vid} does not exist"
    return dict(zip([c.name for c in cur.description], row, strict=True))


def _pk_names(v: dict[str, Any]) -> list[str]:
    return [p["attname"] for p in sorted(v["source_pk"], key=lambda p: p["pknum"])]


def _keys(conn: psycopg.Connection, v: dict[str, Any], table: str) -> list[Any]:
    names = _pk_names(v)
    query = sql.SQL("SELECT {cols} FROM {tbl} ORDER BY {cols}").format(
        cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
        tbl=sql.Identifier(v["queue_schema"], table))
    result = rows(conn, query)
    return [r[0] if len(names) == 1 else r for r in result]


def queue_rows(conn: psycopg.Connection, vid: int) -> list[Any]:
    """Every queued key, sorted, duplicates kept: a scalar for a one-column key, else a tuple."""
    v = vectorizer(conn, vid)
    return _keys(conn, v, v["queue_table"])


def queued(conn: psycopg.Connection, vid: int) -> set[Any]:
    """The distinct queued keys."""
    return set(queue_rows(conn, vid))


def failed_rows(conn: psycopg.Connection, vid: int) -> list[Any]:
    v = vectorizer(conn, vid)
    return _keys(conn, v, v["queue_failed_table"])


def clear_queue(conn: psycopg.Connection, vid: int) -> None:
    v = vectorizer(conn, vid)
    conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(v["queue_schema"], v["queue_table"])))


def store_name(conn: psycopg.Connection, vid: int) -> sql.Identifier:
    dest = vectorizer(conn, vid)["config"]["destination"]
    return sql.Identifier(dest["target_schema"], dest["target_table"])


def view_name(conn: psycopg.Connection, vid: int) -> sql.Identifier:
    dest = vectorizer(conn, vid)["config"]["destination"]
    return sql.Identifier(dest["view_schema"], dest["view_name"])


def regclass(conn: psycopg.Connection, name: str) -> str | None:
    """to_regclass as text: None when the relation does not exist."""
    return scalar(conn, "SELECT to_regclass(%s)::text", (name,))


def catalog_snapshot(db: psycopg.Connection) -> dict[str, object]:
    """Counts of catalog rows, table ACLs and vectorizers: equal before and after a failed call."""
    return {
        "pg_class": scalar(db, "SELECT count(*) FROM pg_class"),
        "pg_proc": scalar(db, "SELECT count(*) FROM pg_proc"),
        "pg_trigger": scalar(db, "SELECT count(*) FROM pg_trigger"),
        "pg_type": scalar(db, "SELECT count(*) FROM pg_type"),
        "pg_attribute": scalar(db, "SELECT count(*) FROM pg_attribute WHERE attnum > 0 AND NOT attisdropped"),
        "acl": rows(db, "SELECT relname, relacl::text FROM pg_class WHERE relacl IS NOT NULL "
                        "AND relnamespace <> 'pg_catalog'::regnamespace ORDER BY 1"),
        "vectorizers": rows(db, "SELECT id, name FROM ai.vectorizer ORDER BY id"),
    }
