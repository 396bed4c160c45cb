"""ai.execute_vectorizer: drain one vectorizer's queue inside PostgreSQL, within a bound.

A call claims, embeds and writes batch after batch, like the worker, until the queue has
nothing claimable or a bound is reached. The bound is checked before each claim: a batch is
only started when the time the last one took still fits, so a call ends near max_seconds,
not a batch after it. Called from a procedure, it commits after each batch (`commit`), so
a long scheduled run keeps what it did and holds its locks only a batch at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..config import DEFAULT_LEASE, DEFAULT_RETRY_BASE, Vectorizer
from ..embedders import make_embedder
from ..errors import DeadlineReached
from ..pipeline import Pipeline
from .interrupt import InterruptibleEmbedder
from .queue import SpiQueue


@dataclass
class Outcome:
    """What a call did; returned to SQL as jsonb."""

    vectorizer_id: int
    rows: int = 0  # keys written: embedded, or emptied because the row is gone
    chunks: int = 0  # store rows written
    embedded: int = 0  # texts sent to the model
    reused: int = 0  # chunks whose stored vector was kept
    retried: int = 0  # rows sent back to the queue after a provider error
    failed: int = 0  # rows given up on (in the failed-items table)
    batches: int = 0
    stopped: str = ""  # queue_empty, max_rows, max_seconds
    seconds: float = 0.0

    def as_json(self) -> str:
        return json.dumps(asdict(self))


def load(plpy: Any, vectorizer_id: int) -> Vectorizer:
    """The vectorizer's catalog row; LookupError when there is none."""
    plan = plpy.prepare("SELECT * FROM ai.vectorizer WHERE id = $1", ["int4"])
    rows = plan.execute([vectorizer_id])
    if not rows:
        raise LookupError(f"vectorizer {vectorizer_id} does not exist")
    row = dict(rows[0])
    row["source_pk"] = json.loads(row["source_pk"])
    row["config"] = json.loads(row["config"])
    return Vectorizer.from_row(row)


def execute(plpy: Any, v: Vectorizer, *, max_rows: int | None, max_seconds: float | None,
            env: Mapping[str, str], commit: Callable[[], None] | None = None,
            started: float | None = None) -> Outcome:
    start = time.monotonic() if started is None else started
    out = Outcome(v.id)
    queue = SpiQueue(plpy, v, lease=DEFAULT_LEASE, retry_base=DEFAULT_RETRY_BASE)
    if not queue.has_work():
        # A scheduled run is a new backend: with nothing to do, it loads no model.
        out.stopped = "queue_empty"
        out.seconds = round(time.monotonic() - start, 3)
        return out
    # The model loads here, once per backend. Requests go only to endpoints the operator allows
    # (this is the database server), and a wait on the provider gives way to a cancel, a
    # statement_timeout and max_seconds.
    deadline = None if max_seconds is None else start + max_seconds
    pipeline = Pipeline(v, InterruptibleEmbedder(make_embedder(v.embedding, env, server_side=True),
                                                 plpy, deadline))
    last = 0.0  # seconds the last batch took
    claimed = 0
    try:
        while True:
            if max_rows is not None and claimed >= max_rows:
                out.stopped = "max_rows"
                break
            if max_seconds is not None and time.monotonic() - start + last > max_seconds:
                out.stopped = "max_seconds"
                break
            began = time.monotonic()
            limit = v.batch_size if max_rows is None else min(v.batch_size, max_rows - claimed)
            token, rows = queue.claim(limit)
            if not rows:
                out.stopped = "queue_empty"
                break
            claimed += len(rows)
            try:
                result = pipeline.run(rows, queue.existing(token))
            except DeadlineReached:
                # max_seconds ran out while the provider worked: the rows go back untouched.
                queue.release(token)
                out.stopped = "max_seconds"
                break
            counts = queue.write(token, rows, result)
            out.batches += 1
            out.rows += result.done
            out.chunks += len(result.chunks) + len(result.column_values)
            out.embedded += result.embedded
            out.reused += result.reused
            out.retried += counts["retry"]
            out.failed += counts["give_up"]
            if commit is not None:
                commit()
            last = time.monotonic() - began
    finally:
        close = getattr(pipeline.embedder, "close", None)
        if close is not None:
            close()
    out.seconds = round(time.monotonic() - start, 3)
    return out
