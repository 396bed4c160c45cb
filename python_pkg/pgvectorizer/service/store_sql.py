"""The task store's SQL, written once for PostgreSQL and SQLite.

Every statement is written here once, with named placeholders (:name); a Dialect fills in
what the two databases spell differently (types, the clock, time spans, lists, row locks) and
renders the placeholders its driver's way. The adapters (store_pg, store_sqlite) build their
Statements once, when the module loads, and only run them.

States are written into the statements as literals rather than passed as parameters, so the
planners can match the partial indexes on status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgvectorizer.service.store import COMPLETED, FAILED, LOST, PENDING, PROCESSING

# What the two databases spell differently: name -> (PostgreSQL, SQLite). "{}" in a template
# is filled by the caller; ":name" is a placeholder, rendered by Dialect.render.
_SPELLINGS: dict[str, tuple[str, str]] = {
    # Tables live in schema embedding_queue in a database that is shared with other uses; a
    # SQLite file holds nothing else.
    "namespace": ("embedding_queue.", ""),
    "create_namespace": ("CREATE SCHEMA IF NOT EXISTS embedding_queue;", ""),
    "uuid_type": ("uuid", "text"),
    # json, not text[]: PostgreSQL's text cannot hold NUL; json escapes it.
    "json_type": ("json", "text"),
    "time_type": ("timestamptz", "real"),
    "bytes_type": ("bytea", "blob"),
    "created_default": (" DEFAULT pg_catalog.clock_timestamp()", ""),
    # PostgreSQL replicas on machines with skewed clocks agree on leases only by the
    # database's clock; the single SQLite service binds its own clock's reading as :now.
    "now": ("pg_catalog.clock_timestamp()", ":now"),
    "seconds": ("pg_catalog.make_interval(secs => :{})", ":{}"),
    "epoch": ("extract(epoch FROM {})::float8", "{}"),
    "id_text": ("id::text", "id"),
    # A list parameter: a PostgreSQL array, or one SQLite placeholder per item (the SQLite
    # adapter expands it when it runs the statement).
    "ids_in": ("id = ANY(:{}::uuid[])", "id IN (:{})"),
    "models_in": ("model = ANY(:{})", "model IN (:{})"),
    "tiebreak": ("id", "rowid"),
    # Replicas take tasks past each other's locked picks instead of waiting on them; SQLite
    # has one writer at a time (BEGIN IMMEDIATE) and no row locks.
    "lock_row": (" FOR UPDATE", ""),
    "lock_skipping": (" FOR UPDATE SKIP LOCKED", ""),
    "greatest": ("greatest", "max"),
    "placeholder": (r"%(\1)s", r":\1"),
}

_PLACEHOLDER = re.compile(r"(?<![:\w]):(\w+)")  # not the casts (::text) of PostgreSQL


@dataclass(frozen=True)
class Dialect:
    """One column of _SPELLINGS: how one database says each thing."""

    spelling: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.spelling[name]

    def table(self, name: str) -> str:
        return self["namespace"] + name

    def later(self, param: str) -> str:
        """The time `param` seconds from now."""
        return f"{self['now']} + {self['seconds'].format(param)}"

    def earlier(self, param: str) -> str:
        """The time `param` seconds ago."""
        return f"{self['now']} - {self['seconds'].format(param)}"

    def epoch(self, expression: str) -> str:
        """A time (or the span between two) as seconds."""
        return self["epoch"].format(expression)

    def render(self, sql: str) -> str:
        return _PLACEHOLDER.sub(self["placeholder"], sql)


POSTGRES = Dialect({name: pair[0] for name, pair in _SPELLINGS.items()})
SQLITE = Dialect({name: pair[1] for name, pair in _SPELLINGS.items()})


def schema(d: Dialect) -> str:
    """The tables and indexes, made if missing (names as earlier versions made them)."""
    tasks = d.table("tasks")
    return f"""{d["create_namespace"]}
CREATE TABLE IF NOT EXISTS {tasks} (
    id {d["uuid_type"]} PRIMARY KEY,
    model text NOT NULL,
    inputs {d["json_type"]} NOT NULL,
    n_texts int NOT NULL,
    dimensions int,
    encoding_format text NOT NULL,
    status text NOT NULL,
    attempts int NOT NULL DEFAULT 0,
    worker_id text,
    lease_expires {d["time_type"]},
    created_at {d["time_type"]} NOT NULL{d["created_default"]},
    finished_at {d["time_type"]},
    error text,
    result {d["bytes_type"]},
    result_dimensions int,
    tokens int NOT NULL DEFAULT 0,
    error_kind text
);
CREATE INDEX IF NOT EXISTS tasks_open ON {tasks} (created_at)
    WHERE status IN ('{PENDING}', '{PROCESSING}');
CREATE INDEX IF NOT EXISTS tasks_pending ON {tasks} (created_at) WHERE status = '{PENDING}';
CREATE INDEX IF NOT EXISTS tasks_finished ON {tasks} (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS {d.table("workers")} (
    worker_id text PRIMARY KEY, last_seen {d["time_type"]} NOT NULL);
CREATE TABLE IF NOT EXISTS {d.table("models")} (
    model text PRIMARY KEY, dimensions int NOT NULL);
"""


class Statements:
    """Every statement of the store in one dialect. Task rows come in Task's field order."""

    def __init__(self, d: Dialect) -> None:
        tasks, now, sql = d.table("tasks"), d["now"], d.render
        self.schema = schema(d)
        task_columns = (f"{d['id_text']}, model, inputs, dimensions, encoding_format, status, "
                        f"attempts, {d.epoch('created_at')}, {d.epoch('finished_at')}, error, "
                        "result, result_dimensions, tokens, error_kind")
        self.submit = sql(
            f"INSERT INTO {tasks} (id, model, inputs, n_texts, dimensions, encoding_format, "
            f"status, created_at) VALUES (:id, :model, :inputs, :n_texts, :dimensions, "
            f":encoding_format, '{PENDING}', {now})")
        self.get = sql(f"SELECT {task_columns} FROM {tasks} WHERE id = :id")
        self.status = sql(f"SELECT status FROM {tasks} WHERE id = :id")
        # Leased-out tasks whose lease ran out with no attempt left end failed.
        self.fail_lost = sql(
            f"UPDATE {tasks} SET status = '{FAILED}', error = :error, error_kind = '{LOST}', "
            f"finished_at = {now}, lease_expires = NULL WHERE status = '{PROCESSING}' "
            f"AND lease_expires < {now} AND attempts >= :max_attempts RETURNING {d['id_text']}")
        self.candidates = sql(
            f"SELECT {d['id_text']}, n_texts FROM {tasks} WHERE (status = '{PENDING}' OR "
            f"(status = '{PROCESSING}' AND lease_expires < {now} AND attempts < :max_attempts))"
            f" AND {d['models_in'].format('models')} ORDER BY created_at, {d['tiebreak']} "
            f"LIMIT :max_tasks{d['lock_skipping']}")
        self.lease = sql(
            f"UPDATE {tasks} SET status = '{PROCESSING}', worker_id = :worker, "
            f"attempts = attempts + 1, lease_expires = {d.later('lease')} "
            f"WHERE {d['ids_in'].format('ids')} RETURNING {task_columns}")
        self.heartbeat = sql(
            f"UPDATE {tasks} SET lease_expires = {d.later('lease')} WHERE status = "
            f"'{PROCESSING}' AND worker_id = :worker AND {d['ids_in'].format('ids')} "
            f"RETURNING {d['id_text']}")
        # The age is by the store's clock, as every other time.
        self.open_task = sql(
            f"SELECT status, n_texts, dimensions, attempts, worker_id, "
            f"{d.epoch(f'{now} - created_at')} FROM {tasks} WHERE id = :id{d['lock_row']}")
        self.complete = sql(
            f"UPDATE {tasks} SET status = '{COMPLETED}', result = :vectors, "
            f"result_dimensions = :dimensions, tokens = :tokens, finished_at = {now}, "
            f"error = NULL, error_kind = NULL, worker_id = :worker, lease_expires = NULL "
            f"WHERE id = :id")
        self.requeue = sql(
            f"UPDATE {tasks} SET status = '{PENDING}', worker_id = NULL, lease_expires = NULL, "
            f"error = :error WHERE id = :id")
        self.fail = sql(
            f"UPDATE {tasks} SET status = '{FAILED}', error = :error, error_kind = :kind, "
            f"finished_at = {now}, worker_id = :worker, lease_expires = NULL WHERE id = :id")
        # A released task goes back uncharged: the worker gave it up, it did not fail on it.
        self.release = sql(
            f"UPDATE {tasks} SET status = '{PENDING}', "
            f"attempts = {d['greatest']}(attempts - 1, 0), worker_id = NULL, "
            f"lease_expires = NULL WHERE id = :id AND status = '{PROCESSING}' "
            f"AND worker_id = :worker")
        self.cancel = sql(
            f"UPDATE {tasks} SET status = '{FAILED}', error = :error, error_kind = :kind, "
            f"finished_at = {now}, lease_expires = NULL "
            f"WHERE id = :id AND status IN ('{PENDING}', '{PROCESSING}')")
        self.expire_pending = sql(
            f"UPDATE {tasks} SET status = '{FAILED}', error = :error, error_kind = :kind, "
            f"finished_at = {now} WHERE status = '{PENDING}' "
            f"AND created_at < {d.earlier('timeout')} RETURNING {d['id_text']}")
        self.delete_final = sql(
            f"DELETE FROM {tasks} WHERE finished_at IS NOT NULL "
            f"AND finished_at < {d.earlier('retention')}")
        self.counts = sql(f"SELECT status, count(*) FROM {tasks} GROUP BY status")
        workers, models = d.table("workers"), d.table("models")
        self.forget_workers = sql(f"DELETE FROM {workers} WHERE last_seen < {d.earlier('age')}")
        self.note_worker = sql(
            f"INSERT INTO {workers} VALUES (:worker, {now}) ON CONFLICT (worker_id) "
            "DO UPDATE SET last_seen = excluded.last_seen")
        self.note_model = sql(
            f"INSERT INTO {models} VALUES (:model, :dimensions) ON CONFLICT (model) "
            "DO UPDATE SET dimensions = excluded.dimensions")
        self.workers = sql(
            f"SELECT count(*) FROM {workers} WHERE last_seen >= {d.earlier('seen_within')}")
        self.model_dimensions = sql(f"SELECT model, dimensions FROM {models}")
