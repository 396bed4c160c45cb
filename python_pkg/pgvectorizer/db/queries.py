"""Every statement the worker sends, in one place.

A vectorizer's own tables (queue, failed items, store, source) are reached only through
ai._vectorizer_ops_call (sql/055_queue_ops.sql): the statements themselves live there and run
with the rights of the vectorizer's owner, so that nothing the owner put on those tables ever
runs with the worker's rights. How a batch stays correct without a transaction open while the
model works is told there too:

1. claim (one autocommit call): pick free queue rows with FOR UPDATE SKIP LOCKED, take a
   *session* advisory lock per distinct key (try-lock), mark the rows with the batch's token
   and a lease. A session lock outlives the statement and dies with the connection, so a
   killed worker frees its keys at once, while a live one keeps them however slow its
   provider is.
2. read the claimed keys' source rows in a call of its own (its snapshot sees every change
   committed before the locks), embed with no transaction open.
3. write (one short transaction): replace the chunks of the keys still marked with the token,
   delete those queue rows, then unlock the keys.

Keys travel in their text form: PostgreSQL converts them, so every key type works.
"""

from __future__ import annotations

from psycopg import sql

# Positional: vectorizer id, operation (claim, read, existing, write, release, probe), jsonb
# arguments. Returns one jsonb per row.
OPS_CALL = sql.SQL("SELECT r FROM ai._vectorizer_ops_call(%s, %s, %s::pg_catalog.jsonb) AS r")
# Positional: schema, table. The advisory-lock space of a vectorizer: its queue's oid, shifted
# into int4 (a catalog read: no table of the owner's is touched).
LOCK_SPACE = sql.SQL(
    "SELECT (c.oid::pg_catalog.int8 - 2147483648)::pg_catalog.int4 FROM pg_catalog.pg_class c "
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relname = %s")
# Positional: lock space int4, lock hashes int4[]. Advisory locks are the session's own.
UNLOCK = sql.SQL(
    "SELECT count(*) FILTER (WHERE pg_catalog.pg_advisory_unlock(%s, h)) "
    "FROM pg_catalog.unnest(%s::pg_catalog.int4[]) AS h")

# The worker's binary COPY of a batch's chunks goes into a temporary table of its own session,
# which no other role's code can touch; the write operation then reads it (and checks that it
# is exactly that: a plain temporary table of this session with these columns, no row-level
# security). ON COMMIT DELETE ROWS: the write's commit empties it.
STAGE = "_ai_staged_chunks"
STAGE_CREATE = sql.SQL(
    "CREATE TEMP TABLE IF NOT EXISTS " + STAGE + " (key pg_catalog.text[], chunk_seq pg_catalog.int4, "
    "chunk pg_catalog.text, embedding {vector}, chunk_hash pg_catalog.bytea) ON COMMIT DELETE ROWS")
STAGE_GRANT = sql.SQL("GRANT SELECT ON pg_temp." + STAGE + " TO {owner}")
STAGE_COPY = sql.SQL("COPY pg_temp." + STAGE + " FROM STDIN (FORMAT BINARY)")
STAGE_TYPES = sql.SQL(
    "SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = 'pg_temp." + STAGE
    + "'::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum")
OWNER_AND_VECTOR = sql.SQL(
    "SELECT v.owner, pg_catalog.format('%%I.vector', n.nspname) FROM ai.vectorizer v, pg_catalog.pg_extension e "
    "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector' AND v.id = %s")

# Catalog and status statements that do not depend on one vectorizer.
VECTORIZERS = sql.SQL("SELECT * FROM ai.vectorizer ORDER BY id")
ENABLED_IDS = sql.SQL("SELECT id FROM ai.vectorizer WHERE NOT disabled")
PENDING = sql.SQL("SELECT ai.vectorizer_queue_pending(%s, true)")
RECORD_SUCCESS = sql.SQL("SELECT ai._vectorizer_record_success(%s, %s)")
RECORD_ERROR = sql.SQL("SELECT ai._vectorizer_record_error(%s, %s, %s)")
# The vector index (db/index.py): the next statement to run, and one builder per vectorizer
# among all workers (a second would only queue behind the first).
INDEX_PLAN = sql.SQL("SELECT ai._vectorizer_index_plan(%s)")
INDEX_TRY_LOCK = sql.SQL(
    "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('pgvectorizer index', %s))")
INDEX_UNLOCK = sql.SQL(
    "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('pgvectorizer index', %s))")
