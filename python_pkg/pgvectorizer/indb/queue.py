"""One vectorizer's queue worked through SPI, inside the caller's transaction.

The same claim and write as db/queue.py (the statements and their order come from
db/queries.py and db/steps.py), with two differences: key locks are transaction locks, so a
failed call can leave none behind; and chunks are written with an unnest INSERT, since
PL/Python has no COPY.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..config import Vectorizer
from ..db import queries, steps
from ..pipeline import BatchResult, Key, SourceRow
from .spi import Plan, parse_vector

_NAMED = {"limit": "int4", "lock_space": "int4", "token": "uuid", "lease": "float8"}


def _records(result: Any) -> list[list[Any]]:
    """A plpy result as lists in column order (a row is a dict; a column name may repeat)."""
    names = result.colnames()
    return [[r[c] for c in names] for r in result]


class SpiQueue:
    def __init__(self, plpy: Any, v: Vectorizer, *, lease: float, retry_base: float) -> None:
        self.plpy = plpy
        self.v = v
        self.q = queries.Queries(v, xact_locks=True)
        self.lease = lease
        self.retry_base = retry_base
        rows = plpy.execute(self.q.lock_space.as_string(None))
        if not rows:
            raise LookupError(f"vectorizer {v.name!r}: its queue {v.queue_schema}.{v.queue_table} is gone")
        self.lock_space = int(next(iter(rows[0].values())))
        dest = v.destination
        if v.to_column:
            table, column = [v.source_schema, v.source_table], str(dest["embedding_column"])
        else:
            table, column = [str(dest["target_schema"]), str(dest["target_table"])], "embedding"
        types = Plan(plpy, queries.STORE_TYPES, ["text", "text"]).execute(table)
        vec = next((r["format_type"] for r in types if r["attname"] == column), None)
        if vec is None:
            raise LookupError(f"vectorizer {v.name!r}: column {column} of {'.'.join(table)} is gone")
        pk = list(v.pk_types)
        self._types: dict[str, Mapping[str, str] | list[str]] = {
            "claim": _NAMED, "read": _NAMED, "existing": _NAMED, "delete_chunks": _NAMED, "clear_failed": _NAMED,
            "ack": _NAMED,
            "retry": ["float8", "uuid", *pk],
            "give_up": ["uuid", *pk, "text", "text"],
            "delete_key_chunks": pk,
            "set_column": [vec, *pk],
            "insert_chunks": [t + "[]" for t in (*pk, "int4", "text", vec, "bytea")],
            steps.RECORD_SUCCESS: ["int4", "int8"],
            steps.RECORD_ERROR: ["int4", "text", "jsonb"],
        }
        self._plans: dict[str, Plan] = {}

    def _plan(self, name: str) -> Plan:
        plan = self._plans.get(name)
        if plan is None:
            plan = self._plans[name] = Plan(self.plpy, steps.statement(self.q, name), self._types[name])
        return plan

    def has_work(self) -> bool:
        """Is there a row to claim now? Cheap, and asked before a model is loaded."""
        rows = self.plpy.execute(self.q.probe.as_string(None))
        return bool(rows and next(iter(rows[0].values())))

    def claim(self, limit: int) -> tuple[str, list[SourceRow]]:
        token = str(uuid.uuid4())
        result = self._plan("claim").execute({
            "limit": limit, "lock_space": self.lock_space, "token": token, "lease": self.lease})
        claimed = _records(result)
        read = _records(self._plan("read").execute({"token": token})) if claimed else []
        # Keys that got no queue row stay locked until the transaction ends; harmless.
        rows, _ = steps.rows_from_claim(self.v, claimed, read)
        return token, rows

    def existing(self, token: str) -> dict[Key, dict[bytes, np.ndarray]]:
        if self.v.to_column:
            return {}
        out: dict[Key, dict[bytes, np.ndarray]] = {}
        n = len(self.v.pk)
        for rec in _records(self._plan("existing").execute({"token": token})):
            out.setdefault(tuple(rec[:n]), {})[bytes(rec[n])] = parse_vector(rec[n + 1])
        return out

    def write(self, token: str, rows: list[SourceRow], result: BatchResult) -> dict[str, int]:
        """Runs the batch's write; returns how many rows went back to the queue or gave up."""
        counts = {"retry": 0, "give_up": 0}
        for name, params in steps.write_steps(self.v, token, rows, result,
                                              retry_base=self.retry_base):
            if name in counts:
                counts[name] += 1
            if name == steps.CHUNKS:
                self._plan("insert_chunks").execute(steps.chunk_arrays(len(self.v.pk), params))
                continue
            plan = self._plan(name)
            for p in params:
                plan.execute(p)
        return counts
