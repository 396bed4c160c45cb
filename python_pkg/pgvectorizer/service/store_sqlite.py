"""The embedded task store: one SQLite file in WAL mode (spec 002), for a single service.

All SQL runs on one thread that owns the connection: SQLite serializes writers anyway, and
one thread needs no locking of its own. Each operation's whole flow runs there in one go, so
no other operation's statements can come between its statements. synchronous=FULL: a task is
on disk before its request is answered, so neither a crash nor a power cut loses an accepted
task. The SQL and the logic are shared with PostgreSQL (store_sql, store_flow); this module
only runs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pgvectorizer.service.store_flow import Course, Flow, Outcome, SqlTaskStore, Step
from pgvectorizer.service.store_sql import SQLITE, Statements

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000  # another process on the same file (a second service) waits this long

SQL = Statements(SQLITE)


class SqliteTaskStore(SqlTaskStore):
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(SQL)
        self.path = path
        self._clock = clock
        self._conn: sqlite3.Connection | None = None
        # One thread: the connection is used only from it.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-store")

    async def open(self) -> None:
        def connect() -> None:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.executescript(self.sql.schema)
            self._conn = conn
        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def close(self) -> None:
        def disconnect() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        await asyncio.get_running_loop().run_in_executor(self._thread, disconnect)
        self._thread.shutdown()

    async def _run(self, flow: Flow[T], *, atomic: bool = False) -> T:
        now = self._clock()  # one reading for the whole operation: its statements agree

        def call() -> T:
            conn = self._conn
            assert conn is not None, "the store is not open"
            if not atomic:
                return _drive(conn, flow, now)
            # IMMEDIATE: the write lock from the start, so a second process on the file
            # waits for it (busy_timeout) rather than failing when a read turns into a write.
            conn.execute("BEGIN IMMEDIATE")
            try:
                value = _drive(conn, flow, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return value
        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    def _key(self, task_id: str) -> str | None:
        return task_id  # ids are text here: one that is no uuid just matches no task

    def _dump_inputs(self, inputs: list[str]) -> Any:
        return json.dumps(inputs, ensure_ascii=False)

    def _load_inputs(self, value: Any) -> list[str]:
        return json.loads(value)  # type: ignore[no-any-return]  # text written by _dump_inputs


def _drive(conn: sqlite3.Connection, flow: Flow[T], now: float) -> T:
    course = Course(flow)
    while course.step is not None:
        cur = conn.execute(*_bind(course.step, now))
        found = cur.fetchall()
        course.answer(Outcome(found, cur.rowcount))
    return course.value()


def _bind(step: Step, now: float) -> tuple[str, dict[str, Any]]:
    """The statement with each list parameter spread into one placeholder per item (SQLite
    has no arrays), and the operation's clock reading as :now."""
    sql = step.sql
    params: dict[str, Any] = {"now": now}
    for name, value in step.params.items():
        if not isinstance(value, list):
            params[name] = value
            continue
        names = [f"{name}_{i}" for i in range(len(value))]
        sql = re.sub(rf":{name}\b", ", ".join(f":{n}" for n in names), sql)
        params.update(zip(names, value))
    return sql, params
