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
from ..core import statements as st
from ..core.queue import Existing, VectorizerQueue, Written, run_batch, run_sync
from ..embedders import make_embedder
from ..errors import DeadlineReached
from ..pipeline import BatchResult, Pipeline, SourceRow
from .interrupt import InterruptibleEmbedder
from .spi import Plan, SpiDriver


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

    def add(self, written: Written) -> None:
        result = written.result
        self.batches += 1
        self.rows += result.done
        self.chunks += len(result.chunks) + len(result.column_values)
        self.embedded += result.embedded
        self.reused += result.reused
        self.retried += written.retried
        self.failed += written.failed

    def as_json(self) -> str:
        return json.dumps(asdict(self))


def load(plpy: Any, vectorizer_id: int) -> Vectorizer:
    """The vectorizer's catalog row; LookupError when there is none."""
    rows = Plan(plpy, st.VECTORIZER).execute([vectorizer_id])
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
    queue = run_sync(VectorizerQueue(SpiDriver(plpy), v, lease=DEFAULT_LEASE,
                                     retry_base=DEFAULT_RETRY_BASE).open())
    if not run_sync(queue.has_work()):
        # A scheduled run is a new backend: with nothing to do, it loads no model.
        out.stopped = "queue_empty"
        out.seconds = round(time.monotonic() - start, 3)
        return out
    # The model loads here, once per backend. Requests go only to endpoints the operator allows
    # (this is the database server), and a wait on the provider gives way to a cancel, a
    # statement_timeout and max_seconds.
    deadline = None if max_seconds is None else start + max_seconds
    pipeline = Pipeline(v, InterruptibleEmbedder(make_embedder(v.embedding, env, server_side=True),
                                                 plpy, deadline), env=env,
                        server_side=True)

    async def embed(rows: list[SourceRow], existing: Existing) -> BatchResult:
        return pipeline.run(rows, existing)  # in this (the backend's) thread: it touches plpy

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
            try:
                written = run_sync(run_batch(queue, embed, limit))
            except DeadlineReached:
                # max_seconds ran out while the provider worked: the rows went back untouched.
                out.stopped = "max_seconds"
                break
            if written is None:
                out.stopped = "queue_empty"
                break
            claimed += len(written.batch.rows)
            out.add(written)
            if commit is not None:
                commit()
            last = time.monotonic() - began
    finally:
        close = getattr(pipeline.embedder, "close", None)
        if close is not None:
            close()
    out.seconds = round(time.monotonic() - start, 3)
    return out
