"""One vectorizer's queue, and the batch cycle over it: claim, read, embed, write, unlock.

Written once for both ways of running it. An adapter (a `Driver`) only says how a statement is
sent and how a batch's chunks travel: db/driver.py over async psycopg for the worker, whose key
locks belong to its session; indb/spi.py over PL/Python's SPI, whose key locks belong to the
caller's transaction. The operations and why they are safe are in core/statements.py.

The driver's methods are coroutines so that the worker's event loop can wait on the network.
SPI never waits: its coroutines finish at their first step, and `run_sync` runs them without
an event loop (a backend has none, and needs none).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

from ..config import Vectorizer
from ..errors import ConfigError, DeadlineReached, QueueMissing
from ..pipeline import BatchResult, Key, SourceRow, StoredChunk
from . import statements as st
from . import steps
from .statements import Statement

logger = logging.getLogger(__name__)

T = TypeVar("T")
Existing = dict[Key, dict[bytes, np.ndarray]]
# How a batch's rows are embedded: the worker's runs in a thread, an in-database run in place.
Embed = Callable[[list[SourceRow], Existing], Awaitable[BatchResult]]


class Driver(Protocol):
    """What an adapter provides: sending statements, and staging a batch's chunks."""

    # True: key locks end with the transaction (nothing to unlock); False: with the session.
    xact_locks: bool

    async def rows(self, statement: Statement, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement; its rows as tuples (jsonb decoded)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """The write's transaction (inside the server: the caller's, already open)."""
        ...

    async def prepare_staging(self, v: Vectorizer) -> bool:
        """Get ready to stage chunks; False when chunks go in the write's arguments instead."""
        ...

    async def stage(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Stage chunks as (key texts, seq, chunk, vector, digest) rows, inside the write's
        transaction."""
        ...


@dataclass(frozen=True)
class Batch:
    token: str  # marks the batch's queue rows
    rows: list[SourceRow]


@dataclass(frozen=True)
class Written:
    """A batch done: what the pipeline made of it, and where its failed rows went."""

    batch: Batch
    result: BatchResult
    retried: int  # rows back in the queue, to try again later
    failed: int  # rows given up on (in the failed items)


class VectorizerQueue:
    """Works one vectorizer's queue through a driver (which holds the batch's locks)."""

    def __init__(self, driver: Driver, v: Vectorizer, *, lease: float, retry_base: float,
                 failed_retry: float = steps.FAILED_RETRY) -> None:
        self.driver = driver
        self.v = v
        self.lease = lease
        self.retry_base = retry_base
        self.failed_retry = failed_retry
        self.lock_space = 0
        self.staged = False
        # The batch in hand: claimed and not yet done. A worker that loses its connection
        # gives it back on its next one, so its rows need not wait for their lease.
        self.batch: Batch | None = None

    async def open(self) -> VectorizerQueue:
        """Look up the lock space and prepare staging; QueueMissing when the queue is gone."""
        found = await self.driver.rows(st.LOCK_SPACE, (self.v.queue_schema, self.v.queue_table))
        if not found:
            raise QueueMissing(f"vectorizer {self.v.name!r}: its queue "
                               f"{self.v.queue_schema}.{self.v.queue_table} is gone")
        self.lock_space = int(found[0][0])
        self.staged = not self.v.to_column and await self.driver.prepare_staging(self.v)
        return self

    async def _op(self, op: str, args: Mapping[str, Any] | None = None) -> list[Any]:
        return [r[0] for r in await self.driver.rows(st.OPS_CALL, (self.v.id, op, dict(args or {})))]

    async def has_work(self) -> bool:
        """Is there a row to claim now (or a failed item due again)? Cheap: no model needed."""
        return bool((await self._op("probe"))[0]["work"])

    async def claim(self, limit: int) -> Batch:
        """Lease up to `limit` queue rows and read their source rows."""
        token = str(uuid.uuid4())
        claimed = await self._op("claim", steps.claim_args(
            limit=limit, token=token, lease=self.lease, lock_space=self.lock_space,
            xact=self.driver.xact_locks))
        read = await self._op("read", {"token": token}) if claimed else []
        rows, orphans = steps.rows_from_claim(self.v, claimed, read)
        await self._unlock(orphans)  # keys whose every queue row went to someone else
        batch = Batch(token, rows)
        self.batch = batch if rows else None
        return batch

    async def existing(self, batch: Batch) -> Existing:
        """Stored vectors of the batch's keys, by content hash."""
        if self.v.to_column:
            return {}
        return steps.existing_from(await self._op("existing", {"token": batch.token}))

    async def write(self, batch: Batch, result: BatchResult) -> Written:
        """One transaction: errors back to the queue (or to the failed items), the rest stored."""
        staged = self.staged and bool(result.chunks)
        args = steps.write_args(self.v, batch.token, batch.rows, result, retry_base=self.retry_base,
                                failed_retry=self.failed_retry, staged=staged)
        async with self.driver.transaction():
            if staged:
                await self.driver.stage([_stage_row(c) for c in result.chunks])
            out = (await self._op("write", args))[0]
        return Written(batch, result, int(out["retry"]), int(out["give_up"]))

    async def release(self, token: str) -> None:
        """Give a batch's rows back untouched (shutdown, configuration error, deadline)."""
        await self._op("release", {"token": token})

    async def unlock(self, batch: Batch) -> None:
        await self._unlock([r.lock for r in batch.rows])

    async def _unlock(self, locks: list[int]) -> None:
        if locks and not self.driver.xact_locks:
            await self.driver.rows(st.UNLOCK, (self.lock_space, locks))


def _stage_row(c: StoredChunk) -> tuple[Any, ...]:
    return (list(c.key), c.seq, c.chunk, c.vector, c.digest)


async def run_batch(queue: VectorizerQueue, embed: Embed, limit: int) -> Written | None:
    """Claim up to `limit` rows, embed them, write the outcome; None when nothing was
    claimable. A configuration error or a reached deadline gives the rows back untouched and
    is raised; the keys are unlocked whatever happens."""
    batch = await queue.claim(limit)
    if not batch.rows:
        return None
    try:
        existing = await queue.existing(batch)
        try:
            result = await embed(batch.rows, existing)
        except (ConfigError, DeadlineReached):
            await queue.release(batch.token)
            raise
        written = await queue.write(batch, result)
    finally:
        await queue.unlock(batch)
    queue.batch = None
    name = queue.v.name
    logger.debug("vectorizer %s: %d rows done, %d errors, %d texts embedded, %d reused",
                 name, result.done, len(result.errors), result.embedded, result.reused)
    for err in result.errors[:1]:
        logger.warning("vectorizer %s: %s failed for %d row(s): %s", name, err.step,
                       len(result.errors), err.message)
    return written


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits (one over SPI) to its end, without an event loop."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a coroutine over SPI tried to wait")
