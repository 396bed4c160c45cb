#!/usr/bin/env python3
"""The in-database side of bench/indb_vs_worker.sh: re-queue a vectorizer, time its
in-database runs, and profile where their time goes.

    indb_run.py reset DB ID [--empty]             empty the store, queue every source row (or none)
    indb_run.py check DB ID                       rows still queued, chunks stored, errors recorded
    indb_run.py call DB ID TAG [--job] [--warm]   time a run in a fresh backend
    indb_run.py call DB ID TAG --startup          time a fresh backend's ai.embed of a word
    indb_run.py profile DB ID [--fast-text]       a run with its steps timed

`call` opens a new connection (a fresh backend, which must import the package and load the
model) and times `SELECT ai.execute_vectorizer(ID, max_rows => NULL, max_seconds => 3600)`,
or with --job `CALL ai._vectorizer_job(ID)`, from the client. With --warm it then re-queues
and runs again in the same session. With --startup it times `SELECT ai.embed(ID, 'start-up')`
instead: a fresh backend's imports and model load (or one HTTP request), which a run on an
empty queue no longer includes (it loads no model when nothing is claimable).
It prints one tab-separated line per run:
tag, cold|warm, wall s, backend CPU s, rows, chunks, embedded, reused, batches, stopped,
then what `check` prints after it: queued, stored, errors.

`profile` runs ai.execute_vectorizer's Python (pgvectorizer.indb) in a fresh backend with
timers wrapped around its steps, by a temporary PL/Python function: the package is not
changed. It prints the steps' seconds as json. --fast-text swaps in a faster way to write a
vector as text (one "%.9g" format per vector instead of repr per float; 9 significant digits
give back every float32), to show what that step would cost then.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import psycopg
from psycopg import sql

PGHOST = os.environ.get("PGHOST", "/var/run/postgresql")
PGPORT = os.environ.get("PGPORT", "5488")
MAX_SECONDS = 3600.0  # the function's bound: large enough never to stop a benchmark run


def die(msg: str) -> NoReturn:
    print(f"indb_run: {msg}", file=sys.stderr)
    sys.exit(1)


def connect(db: str) -> psycopg.Connection[Any]:
    return psycopg.connect(f"postgresql:///{db}?host={PGHOST}&port={PGPORT}", autocommit=True,
                           options="-c client_min_messages=notice")


def reset(db: str, vid: int, empty: bool = False) -> None:
    """An empty store (nothing to reuse by chunk hash) and every source key queued once (or
    none), from the same starting state each time: vacuumed, analyzed, checkpointed."""
    with connect(db) as conn:
        row = conn.execute(
            "SELECT source_schema, source_table, source_pk, queue_schema, queue_table, "
            "queue_failed_table, config->'destination' FROM ai.vectorizer WHERE id = %s",
            (vid,)).fetchone()
        if row is None:
            die(f"no vectorizer {vid} in {db}")
        src_schema, src_table, pk, q_schema, q_table, failed, dest = row
        source = sql.Identifier(src_schema, src_table)
        queue = sql.Identifier(q_schema, q_table)
        store = sql.Identifier(dest["target_schema"], dest["target_table"])
        keys = sql.SQL(", ").join(sql.Identifier(c["attname"]) for c in pk)
        conn.execute(sql.SQL("TRUNCATE {}, {}, {}").format(
            store, queue, sql.Identifier(q_schema, failed)))
        conn.execute("DELETE FROM ai._vectorizer_errors WHERE id = %s", (vid,))
        if not empty:
            conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(queue, keys, keys, source))
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(queue))
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(store))
        conn.execute("CHECKPOINT")
        left = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(store)).fetchone()
        if left is None or left[0] != 0:
            die(f"the store of vectorizer {vid} is not empty after TRUNCATE")


def check(db: str, vid: int) -> tuple[int, int, int]:
    """Rows still queued, chunks in the store, errors recorded for the vectorizer."""
    with connect(db) as conn:
        dest = conn.execute("SELECT config->'destination' FROM ai.vectorizer WHERE id = %s",
                            (vid,)).fetchone()
        if dest is None:
            die(f"no vectorizer {vid} in {db}")
        store = sql.Identifier(dest[0]["target_schema"], dest[0]["target_table"])
        row = conn.execute(sql.SQL(
            "SELECT ai.vectorizer_queue_pending(%s, true), (SELECT count(*) FROM {}), "
            "(SELECT count(*) FROM ai._vectorizer_errors WHERE id = %s)").format(store),
            (vid, vid)).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) a server backend has used; nan if unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def call(db: str, vid: int, tag: str, job: bool, warm: bool, startup: bool) -> None:
    with connect(db) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        pid = conn.info.backend_pid
        for mode in ("cold", "warm") if warm else ("cold",):
            if mode == "warm":
                reset(db, vid)
            notices.clear()
            cpu0, t0 = backend_cpu(pid), time.perf_counter()
            if startup:
                conn.execute("SELECT ai.embed(%s, 'start-up')::text", (vid,))
                out = {"stopped": "embed"}
            elif job:
                conn.execute("CALL ai._vectorizer_job(%s)", (vid,))
                # The procedure says what it did in a NOTICE: "vectorizer 'name': {json}".
                said = [n for n in notices if n.startswith("vectorizer ")]
                out = json.loads(said[-1].split(": ", 1)[1]) if said else {}
            else:
                row = conn.execute("SELECT ai.execute_vectorizer(%s, max_rows => NULL, max_seconds => %s)",
                                   (vid, MAX_SECONDS)).fetchone()
                out = row[0] if row else {}
            wall, cpu = time.perf_counter() - t0, backend_cpu(pid) - cpu0
            print("\t".join(str(x) for x in (
                tag, mode, f"{wall:.3f}", f"{cpu:.2f}", out.get("rows", 0), out.get("chunks", 0),
                out.get("embedded", 0), out.get("reused", 0), out.get("batches", 0),
                out.get("stopped", "?"), *check(db, vid))), flush=True)


# ai.execute_vectorizer's body with timers around its steps; the wrappers live in this
# backend's interpreter only, and the connection is closed after the run.
PROFILE_FUNCTION = r'''
CREATE FUNCTION pg_temp.bench_profile(vectorizer_id int4, max_seconds float8, fast_text bool)
RETURNS text
LANGUAGE plpython3u AS $py$
import collections, json, os, sys, time
t_start = time.perf_counter()
plpy.execute("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)")
if "pgvectorizer.indb.api" not in sys.modules:
    plpy.execute("SELECT ai._python_setup()")
from pgvectorizer import pipeline
from pgvectorizer.core import queue, steps
from pgvectorizer.indb import executor, spi
t_imported = time.perf_counter()
spent = collections.defaultdict(float)
calls = collections.Counter()
claims = []

def spend(name, t):
    d = time.perf_counter() - t
    spent[name] += d
    calls[name] += 1
    if name == "claim":
        claims.append(d)

def timed(name, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spend(name, t)
    return wrapper

def timed_async(name, fn):
    async def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            spend(name, t)
    return wrapper

executor.make_embedder = timed("make embedder (model load)", executor.make_embedder)
VQ = queue.VectorizerQueue
VQ.open = timed_async("queue set-up", VQ.open)
VQ.claim = timed_async("claim", VQ.claim)
VQ.existing = timed_async("existing chunks", VQ.existing)
VQ.write = timed_async("write", VQ.write)
pipeline.Pipeline.run = timed("pipeline", pipeline.Pipeline.run)
pipeline.embed_isolating = timed("embed", pipeline.embed_isolating)
if fast_text:
    formats = {}
    def vector_text(vec):
        fmt = formats.get(len(vec))
        if fmt is None:
            fmt = formats[len(vec)] = "[" + ",".join(["%.9g"] * len(vec)) + "]"
        return fmt % tuple(vec.tolist())
    steps.vector_text = timed("vector to text", vector_text)
else:
    steps.vector_text = timed("vector to text", steps.vector_text)
# Each statement's SPI time, named by its operation (claim, read, existing, write, ...).
rows_of = spi.SpiDriver.rows
async def named_rows(self, statement, params=()):
    name = params[1] if statement is queue.st.OPS_CALL else statement.sql.split()[1][:40]
    return await timed_async("SPI " + str(name), rows_of)(self, statement, params)
spi.SpiDriver.rows = named_rows

v = executor.load(plpy, vectorizer_id)
out = executor.execute(plpy, v, max_rows=None, max_seconds=max_seconds, env=os.environ)
t_end = time.perf_counter()
return json.dumps({"outcome": json.loads(out.as_json()), "total": t_end - t_start,
                   "imports": t_imported - t_start, "spent": spent, "calls": calls,
                   "claim_first": claims[:3], "claim_last": claims[-3:]})
$py$;
'''


def profile(db: str, vid: int, fast_text: bool) -> None:
    with connect(db) as conn:
        conn.execute(PROFILE_FUNCTION)
        row = conn.execute("SELECT pg_temp.bench_profile(%s, %s, %s)",
                           (vid, MAX_SECONDS, fast_text)).fetchone()
        print(row[0] if row else "{}")


def main() -> None:
    args = sys.argv[1:]
    flags = {a for a in args if a.startswith("--")}
    args = [a for a in args if not a.startswith("--")]
    if len(args) == 3 and args[0] == "reset":
        reset(args[1], int(args[2]), "--empty" in flags)
    elif len(args) == 3 and args[0] == "check":
        print("\t".join(map(str, check(args[1], int(args[2])))))
    elif len(args) == 4 and args[0] == "call":
        call(args[1], int(args[2]), args[3], "--job" in flags, "--warm" in flags,
             "--startup" in flags)
    elif len(args) == 3 and args[0] == "profile":
        profile(args[1], int(args[2]), "--fast-text" in flags)
    else:
        die("usage: indb_run.py reset DB ID [--empty] | check DB ID | "
            "call DB ID TAG [--job | --warm | --startup] | profile DB ID [--fast-text]")


if __name__ == "__main__":
    main()
