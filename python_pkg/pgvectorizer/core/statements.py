"""Every statement the worker and in-database runs send, in one place.

Each is plain SQL with PostgreSQL's own $n placeholders and the SQL type of each parameter,
so that both adapters send the very same text: psycopg's raw cursor (the worker) and a
PL/Python plan (inside the server), with no rewriting in between.

A vectorizer's own tables (queue, failed items, store, source) are reached only through
ai._vectorizer_ops_call (sql/055_queue_ops.sql): the statements themselves live there and run
with the rights of the vectorizer's owner, so that nothing the owner put on those tables ever
runs with the worker's rights. How a batch stays correct without a transaction open while the
model works is told there too:

1. claim (one call): pick free queue rows with FOR UPDATE SKIP LOCKED, take an advisory lock
   per distinct key (try-lock), mark the rows with the batch's token and a lease. The worker's
   locks are *session* locks: they outlive the statement and die with the connection, so a
   killed worker frees its keys at once, while a live one keeps them however slow its
   provider is. Inside the server they are transaction locks, so a failed call leaves none.
2. read the claimed keys' source rows in a call of its own (its snapshot sees every change
   committed before the locks), embed with no transaction open.
3. write (one short transaction): replace the chunks of the keys still marked with the token,
   delete those queue rows, then unlock the keys.

Keys travel in their text form: PostgreSQL converts them, so every key type works.
"""

from __future__ import annotations

from typing import NamedTuple


class Statement(NamedTuple):
    sql: str
    types: tuple[str, ...] = ()  # the SQL type of each $n, for a prepared plan


# Vectorizer id, operation (claim, read, existing, write, release, probe), jsonb arguments.
# Returns one jsonb per row.
OPS_CALL = Statement("SELECT r FROM ai._vectorizer_ops_call($1, $2, $3::pg_catalog.jsonb) AS r",
                     ("int4", "text", "text"))
# A batch's session commits without waiting for the disk (why: db/driver.py, open_queue).
ASYNC_COMMIT = Statement("SELECT pg_catalog.set_config('synchronous_commit', 'off', false)")
# Schema, table. The advisory-lock space of a vectorizer: its queue's oid, shifted into int4
# (a catalog read: no table of the owner's is touched).
LOCK_SPACE = Statement(
    "SELECT (c.oid::pg_catalog.int8 - 2147483648)::pg_catalog.int4 FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = $1 AND c.relname = $2", ("text", "text"))
# Lock space, lock hashes. Advisory locks are the session's own.
UNLOCK = Statement(
    "SELECT count(*) FILTER (WHERE pg_catalog.pg_advisory_unlock($1, h)) "
    "FROM pg_catalog.unnest($2::pg_catalog.int4[]) AS h", ("int4", "int4[]"))

# The worker's binary COPY of a batch's chunks goes into a temporary table of its own session,
# which no other role's code can touch; the write operation then reads it (and checks that it
# is exactly that: a plain temporary table of this session with these columns, no row-level
# security). ON COMMIT DELETE ROWS: the write's commit empties it.
STAGE = "_ai_staged_chunks"
# Vectorizer id: the owner (to grant the table to) and pgvector's type, both quoted.
OWNER_AND_VECTOR = Statement(
    "SELECT pg_catalog.quote_ident(v.owner), pg_catalog.format('%I.vector', n.nspname) "
    "FROM ai.vectorizer v, pg_catalog.pg_extension e "
    "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector' AND v.id = $1",
    ("int4",))
STAGE_COPY = Statement("COPY pg_temp." + STAGE + " FROM STDIN (FORMAT BINARY)")


def stage_create(vector_type: str) -> Statement:
    """The staging table; vector_type comes quoted from OWNER_AND_VECTOR. Rows up to a page
    stay whole in the heap, as in the store: TOAST would move every vector of over 2 kB out of
    line and back (a tenth of the server's CPU in a drain, issue 16's profile)."""
    return Statement(
        "CREATE TEMP TABLE IF NOT EXISTS " + STAGE + " (key pg_catalog.text[], "
        "chunk_seq pg_catalog.int4, chunk pg_catalog.text, embedding " + vector_type + ", "
        "chunk_hash pg_catalog.bytea) WITH (toast_tuple_target = 8160) ON COMMIT DELETE ROWS")


def stage_grant(owner: str) -> Statement:
    """Lets the owner's write read the staging table; owner comes quoted from OWNER_AND_VECTOR."""
    return Statement("GRANT SELECT ON pg_temp." + STAGE + " TO " + owner)


# Catalog and status statements that do not depend on one vectorizer.
VECTORIZERS = Statement("SELECT * FROM ai.vectorizer ORDER BY id")
VECTORIZER = Statement("SELECT * FROM ai.vectorizer WHERE id = $1", ("int4",))
ENABLED_IDS = Statement("SELECT id FROM ai.vectorizer WHERE NOT disabled")
PENDING = Statement("SELECT ai.vectorizer_queue_pending($1, true)", ("int4",))
RECORD_ERROR = Statement("SELECT ai._vectorizer_record_error($1, $2, $3::pg_catalog.jsonb)",
                         ("int4", "text", "text"))
# The vector index (db/index.py): the next statement to run, and one builder per vectorizer
# among all workers (a second would only queue behind the first).
INDEX_PLAN = Statement("SELECT ai._vectorizer_index_plan($1)", ("int4",))
INDEX_TRY_LOCK = Statement(
    "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('pgvectorizer index', $1))",
    ("int8",))
INDEX_UNLOCK = Statement(
    "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('pgvectorizer index', $1))",
    ("int8",))
