"""One vectorizer's queue worked through SPI, inside the caller's transaction.

The same operations as db/queue.py (ai._vectorizer_ops_call, arguments from db/steps.py), with
one difference: key locks are transaction locks, so a failed call can leave none behind.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..config import Vectorizer
from ..db import queries, steps
from ..pipeline import BatchResult, Key, SourceRow
from .spi import Plan


def _json(result: Any) -> list[Any]:
    """The jsonb column of a plpy result, decoded."""
    return [json.loads(r["r"]) for r in result]


class SpiQueue:
    def __init__(self, plpy: Any, v: Vectorizer, *, lease: float, retry_base: float) -> None:
        self.plpy = plpy
        self.v = v
        self.lease = lease
        self.retry_base = retry_base
        rows = Plan(plpy, queries.LOCK_SPACE, ["text", "text"]).execute([v.queue_schema, v.queue_table])
        if not rows:
            raise LookupError(f"vectorizer {v.name!r}: its queue {v.queue_schema}.{v.queue_table} is gone")
        self.lock_space = int(next(iter(rows[0].values())))
        self._call = Plan(plpy, queries.OPS_CALL, ["int4", "text", "text"])

    def _op(self, op: str, args: Mapping[str, Any] | None = None) -> list[Any]:
        return _json(self._call.execute([self.v.id, op, json.dumps(dict(args or {}))]))

    def has_work(self) -> bool:
        """Is there a row to claim now? Cheap, and asked before a model is loaded."""
        return bool(self._op("probe")[0]["work"])

    def claim(self, limit: int) -> tuple[str, list[SourceRow]]:
        token = str(uuid.uuid4())
        claimed = self._op("claim", steps.claim_args(
            limit=limit, token=token, lease=self.lease, lock_space=self.lock_space, xact=True))
        read = self._op("read", {"token": token}) if claimed else []
        # Keys that got no queue row stay locked until the transaction ends; harmless.
        rows, _ = steps.rows_from_claim(self.v, claimed, read)
        return token, rows

    def existing(self, token: str) -> dict[Key, dict[bytes, np.ndarray]]:
        if self.v.to_column:
            return {}
        return steps.existing_from(self._op("existing", {"token": token}))

    def write(self, token: str, rows: list[SourceRow], result: BatchResult) -> dict[str, int]:
        """Runs the batch's write; returns how many rows went back to the queue or gave up."""
        out = self._op("write", steps.write_args(self.v, token, rows, result,
                                                 retry_base=self.retry_base))
        return {k: int(n) for k, n in out[0].items()}

    def release(self, token: str) -> None:
        """Give the batch's rows back without counting an attempt."""
        self._op("release", {"token": token})
