"""Every statement the worker runs against a vectorizer's tables, built once per vectorizer.

How a batch stays safe without a transaction open while the model works:

1. claim (one autocommit statement): pick queue rows that are free (no lease, or the lease
   or backoff has run out) with FOR UPDATE SKIP LOCKED, take a *session* advisory lock per
   distinct key (try-lock: a key some other session holds is left alone), mark every queue
   row of the locked keys with this batch's token and a lease, and read the current source
   rows. A session lock outlives the statement's transaction and dies with the connection,
   so a worker that is killed frees its keys at once, while a live one keeps them however
   slow its provider is.
2. embed, with no transaction open.
3. write (one short transaction): replace the store rows of the keys still marked with the
   token, delete those queue rows, then unlock the keys.

Only the lock holder reads and writes a key, so an older text can never overwrite a newer
one. A change that commits after the claim adds a queue row the token does not mark; it is
processed after the lock is released, which also removes chunks of a row deleted meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from ..config import Vectorizer

STORE_COLUMNS = ("chunk_seq", "chunk", "embedding", "chunk_hash")
# Queue rows a claim looks at per key it may take (see Queries.claim).
PICK_FACTOR = 4


def _ids(names: tuple[str, ...], prefix: str | None = None) -> sql.Composable:
    if prefix is None:
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)
    return sql.SQL(", ").join(sql.Identifier(prefix, n) for n in names)


def _key_match(names: tuple[str, ...], left: str, right: str) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{} = {}").format(sql.Identifier(left, n), sql.Identifier(right, n)) for n in names)


def _key_params(names: tuple[str, ...]) -> sql.Composable:
    """`a = %s AND b = %s`: one positional parameter per key column."""
    return sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(n)) for n in names)


@dataclass(frozen=True)
class Queries:
    """The statements for one vectorizer; parameters are named in each docstring."""

    v: Vectorizer
    # Inside PostgreSQL (PL/Python) a call is one transaction: its key locks are the
    # transaction's, so an error can never leave one behind in the session.
    xact_locks: bool = False
    claim: sql.Composed = field(init=False)
    read: sql.Composed = field(init=False)
    existing: sql.Composed = field(init=False)
    retry: sql.Composed = field(init=False)
    give_up: sql.Composed = field(init=False)
    delete_chunks: sql.Composed = field(init=False)
    delete_key_chunks: sql.Composed = field(init=False)
    clear_failed: sql.Composed = field(init=False)
    copy_chunks: sql.Composed = field(init=False)
    insert_chunks: sql.Composed = field(init=False)
    set_column: sql.Composed = field(init=False)
    ack: sql.Composed = field(init=False)
    release: sql.Composed = field(init=False)
    unlock: sql.SQL = field(init=False)
    lock_space: sql.Composed = field(init=False)
    probe: sql.Composed = field(init=False)

    def __post_init__(self) -> None:
        v = self.v
        pk = v.pk
        queue = sql.Identifier(v.queue_schema, v.queue_table)
        failed = sql.Identifier(v.queue_schema, v.failed_table)
        source = sql.Identifier(v.source_schema, v.source_table)
        dest = v.destination
        store = sql.Identifier(dest.get("target_schema", ""), dest.get("target_table", ""))
        reads = sql.SQL(", ").join(sql.SQL("src.{}").format(sql.Identifier(c)) for c in v.read_columns)
        # %% keeps a LIKE pattern's % from being read as a parameter placeholder.
        match = sql.SQL(v.row_filter.replace("%", "%%")) if v.row_filter else sql.SQL("true")
        try_lock = sql.SQL("pg_try_advisory_xact_lock" if self.xact_locks else "pg_try_advisory_lock")
        set_ = object.__setattr__

        # %(limit)s keys, %(lock_space)s int4, %(token)s uuid, %(lease)s seconds.
        # Returns the key, its lock hash, and the attempt count: NULL where no queue row
        # could be marked. Keys another batch has in hand should not use up the limit: those
        # marked by a committed claim (lease running) are not picked, and the worker's pick
        # takes PICK_FACTOR times the limit, locking keys only until the limit is reached, so
        # newer queue rows of keys held by an open transaction are stepped over. Rows another
        # claim is picking right now are skipped (SKIP LOCKED). Inside PostgreSQL the pick's
        # row locks last until the caller's transaction ends, so it picks no more than it may
        # take: extra rows would be kept from workers for the whole call.
        set_(self, "claim", sql.SQL("""
WITH picked AS (
    SELECT {pk} FROM {queue}
     WHERE (retry_after IS NULL OR retry_after <= pg_catalog.clock_timestamp())
       AND ({pk}) NOT IN (SELECT {pk} FROM {queue} WHERE claimed_by IS NOT NULL
                             AND retry_after > pg_catalog.clock_timestamp())
     LIMIT %(limit)s OPERATOR(pg_catalog.*) {factor}
       FOR UPDATE SKIP LOCKED
), keys AS MATERIALIZED (
    SELECT {pk}, pg_catalog.hashtext(ROW({pk})::text) AS _ai_lock, min(_ai_n) AS _ai_n
      FROM (SELECT *, pg_catalog.row_number() OVER () AS _ai_n FROM picked) AS p GROUP BY {pk}
), locked AS MATERIALIZED (
    -- Oldest first. OFFSET 0 keeps the sort below the try-lock (the planner would otherwise
    -- merge it into the outer query and lock every key before sorting), so locking stops
    -- at the limit.
    SELECT * FROM (SELECT * FROM keys ORDER BY _ai_n OFFSET 0) AS k
     WHERE pg_catalog.{try_lock}(%(lock_space)s, _ai_lock) LIMIT %(limit)s
), marked AS (
    UPDATE {queue} AS q
       SET claimed_by = %(token)s,
           retry_after = pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => %(lease)s),
           attempts = q.attempts OPERATOR(pg_catalog.+) 1
     WHERE q.ctid = ANY (ARRAY(SELECT q2.ctid FROM {queue} AS q2 JOIN locked AS l ON {q2_l}
                                 FOR UPDATE OF q2 SKIP LOCKED))
    RETURNING {q_pk}, q.attempts
)
SELECT {l_pk}, l._ai_lock, a._ai_attempts
  FROM locked AS l
  LEFT JOIN (SELECT {pk}, max(attempts) AS _ai_attempts FROM marked GROUP BY {pk}) AS a ON {a_l}
""").format(pk=_ids(pk), queue=queue, q2_l=_key_match(pk, "q2", "l"), q_pk=_ids(pk, "q"),
            l_pk=_ids(pk, "l"), a_l=_key_match(pk, "a", "l"), try_lock=try_lock,
            factor=sql.Literal(1 if self.xact_locks else PICK_FACTOR)))

        # %(token)s. The source rows of the keys just claimed: found, match, then
        # read_columns. A statement of its own, after the claim: its snapshot is taken with
        # the keys' locks held, so it sees every change committed before them, including one
        # that another batch stored while this claim was still picking rows.
        set_(self, "read", sql.SQL("""
SELECT {k_pk}, s._ai_found, s._ai_match, {s_reads}
  FROM (SELECT DISTINCT {pk} FROM {queue} WHERE claimed_by = %(token)s) AS k
  LEFT JOIN LATERAL (SELECT true AS _ai_found, coalesce(({match}), false) AS _ai_match, {reads}
                       FROM {source} AS src WHERE {src_k}) AS s ON true
""").format(k_pk=_ids(pk, "k"), pk=_ids(pk), queue=queue, s_reads=_ids(v.read_columns, "s"),
            match=match, reads=reads, source=source, src_k=_key_match(pk, "src", "k")))

        # %(token)s. Chunks already stored for the claimed keys, to reuse unchanged vectors.
        set_(self, "existing", sql.SQL(
            "SELECT {t_pk}, t.chunk_hash, t.embedding FROM {store} AS t "
            "WHERE t.chunk_hash IS NOT NULL AND ({t_pk}) IN "
            "(SELECT {pk} FROM {queue} WHERE claimed_by = %(token)s)").format(
                t_pk=_ids(pk, "t"), store=store, pk=_ids(pk), queue=queue))

        # Positional: seconds, token, key values. Back to the queue after a backoff.
        set_(self, "retry", sql.SQL(
            "UPDATE {queue} SET claimed_by = NULL, retry_after = pg_catalog.clock_timestamp() "
            "OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => %s) "
            "WHERE claimed_by = %s AND {key}").format(queue=queue, key=_key_params(pk)))

        # Positional: token, key values, step, error. To the failed-items table, which keeps
        # one row per key: the latest failure.
        set_(self, "give_up", sql.SQL(
            "WITH gone AS (DELETE FROM {queue} WHERE claimed_by = %s AND {key} RETURNING {pk}, attempts), "
            "old AS (DELETE FROM {failed} AS f WHERE ({f_pk}) IN (SELECT {pk} FROM gone)) "
            "INSERT INTO {failed} ({pk}, attempts, failure_step, error) "
            "SELECT {pk}, max(attempts), %s, %s FROM gone GROUP BY {pk}").format(
                queue=queue, key=_key_params(pk), pk=_ids(pk), failed=failed, f_pk=_ids(pk, "f")))

        # %(token)s. A key done is no longer a failed item.
        set_(self, "clear_failed", sql.SQL(
            "DELETE FROM {failed} AS f WHERE ({f_pk}) IN "
            "(SELECT {pk} FROM {queue} WHERE claimed_by = %(token)s)").format(
                failed=failed, f_pk=_ids(pk, "f"), pk=_ids(pk), queue=queue))

        # %(token)s. The old chunks of every key this batch still holds.
        set_(self, "delete_chunks", sql.SQL(
            "DELETE FROM {store} AS t WHERE ({t_pk}) IN "
            "(SELECT {pk} FROM {queue} WHERE claimed_by = %(token)s)").format(
                store=store, t_pk=_ids(pk, "t"), pk=_ids(pk), queue=queue))

        # Positional: key values. The chunks of a row given up on.
        set_(self, "delete_key_chunks", sql.SQL("DELETE FROM {store} WHERE {key}").format(
            store=store, key=_key_params(pk)))

        set_(self, "copy_chunks", sql.SQL("COPY {store} ({cols}) FROM STDIN (FORMAT BINARY)").format(
            store=store, cols=_ids(pk + STORE_COLUMNS)))

        # Positional: one array per key column, then seq, chunk, embedding and hash arrays.
        # Where COPY cannot be used (PL/Python).
        set_(self, "insert_chunks", sql.SQL("INSERT INTO {store} ({cols}) SELECT * FROM unnest({arrays})").format(
            store=store, cols=_ids(pk + STORE_COLUMNS),
            arrays=sql.SQL(", ").join(sql.SQL("%s") for _ in pk + STORE_COLUMNS)))

        # Positional: vector (or NULL), key values. destination_column's write.
        column = sql.Identifier(str(dest.get("embedding_column", "")))
        set_(self, "set_column", sql.SQL("UPDATE {source} SET {col} = %s WHERE {key}").format(
            source=source, col=column, key=_key_params(pk)))

        # %(token)s. The batch's queue rows are done.
        set_(self, "ack", sql.SQL("DELETE FROM {queue} WHERE claimed_by = %(token)s").format(queue=queue))

        # %(token)s. Leave the rows for another claim without counting an attempt (shutdown,
        # a configuration error).
        set_(self, "release", sql.SQL(
            "UPDATE {queue} SET claimed_by = NULL, retry_after = NULL, "
            "attempts = greatest(attempts OPERATOR(pg_catalog.-) 1, 0) "
            "WHERE claimed_by = %(token)s").format(queue=queue))

        # %(lock_space)s, %(locks)s int4[].
        set_(self, "unlock", sql.SQL(
            "SELECT count(*) FILTER (WHERE pg_catalog.pg_advisory_unlock(%(lock_space)s, h)) "
            "FROM pg_catalog.unnest(%(locks)s::pg_catalog.int4[]) AS h"))

        # Is there a row to claim now? What an idle worker asks every few seconds.
        set_(self, "probe", sql.SQL(
            "SELECT EXISTS (SELECT FROM {queue} WHERE retry_after IS NULL "
            "OR retry_after <= pg_catalog.clock_timestamp())").format(queue=queue))

        # The advisory-lock space of this vectorizer: its queue's oid, shifted into int4.
        set_(self, "lock_space", sql.SQL(
            "SELECT (c.oid::pg_catalog.int8 - 2147483648)::pg_catalog.int4 FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = {} AND c.relname = {}").format(
                sql.Literal(v.queue_schema), sql.Literal(v.queue_table)))


# Catalog and status statements that do not depend on one vectorizer.
VECTORIZERS = sql.SQL("SELECT * FROM ai.vectorizer ORDER BY id")
ENABLED_IDS = sql.SQL("SELECT id FROM ai.vectorizer WHERE NOT disabled")
PENDING = sql.SQL("SELECT ai.vectorizer_queue_pending(%s, true)")
RECORD_SUCCESS = sql.SQL("SELECT ai._vectorizer_record_success(%s, %s)")
RECORD_ERROR = sql.SQL("SELECT ai._vectorizer_record_error(%s, %s, %s)")
# Positional: schema, table. Column types, by oid for the worker's binary COPY and by
# (schema-qualified, as search_path is pinned) name for PL/Python's parameters.
STORE_TYPES = sql.SQL(
    "SELECT a.attname, a.atttypid, pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a "
    "WHERE a.attrelid = pg_catalog.format('%%I.%%I', %s::pg_catalog.text, %s::pg_catalog.text)::pg_catalog.regclass "
    "AND a.attnum > 0 AND NOT a.attisdropped")
# The vector index (db/index.py): the next statement to run, and one builder per vectorizer
# among all workers (a second would only queue behind the first).
INDEX_PLAN = sql.SQL("SELECT ai._vectorizer_index_plan(%s)")
INDEX_TRY_LOCK = sql.SQL(
    "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended('pgvectorizer index', %s))")
INDEX_UNLOCK = sql.SQL(
    "SELECT pg_catalog.pg_advisory_unlock(pg_catalog.hashtextextended('pgvectorizer index', %s))")
