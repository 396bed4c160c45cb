"""The external worker: drains every vectorizer's queue, then waits for work or the next poll.

Each vectorizer gets `concurrency` runners, each with its own connection (a runner's session
holds the advisory locks of its batch). The model runs in threads, so the event loop keeps
claiming and writing for the other runners meanwhile. An error in one vectorizer is recorded
in ai.vectorizer_errors and never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta

from .config import DEFAULT_LEASE, DEFAULT_RETRY_BASE, Vectorizer
from .core.queue import Embed, Existing, run_batch
from .core.steps import FAILED_RETRY
from .db import catalog as db
from .db import index as db_index
from .db.connection import (
    Connection,
    ConnectionFailed,
    DatabaseError,
    NotAllowed,
    connect,
    lost_connection,
)
from .db.driver import close_queue, open_queue
from .defaults import DEFAULT_POLL_INTERVAL
from .dotenv import load_env
from .embedders import make_embedder
from .errors import ConfigError, QueueMissing, VectorizerError
from .pipeline import BatchResult, Pipeline, RowError, SourceRow
from .progress import Progress
from .settings import tuning_seconds

logger = logging.getLogger(__name__)

# --once shows a progress bar (or progress log lines) from this many pending rows up.
PROGRESS_MIN_ROWS = 1000
BATCHES_IN_FLIGHT = 2  # per unit of concurrency (-c)
# While idle, a worker looks this often for new work and new vectorizers: one cheap query per
# vectorizer. (A NOTIFY from the source's triggers would wake it sooner, but it takes a global
# lock at every writer's commit and halved write throughput in bench/write_path.sh.)
WAKE_INTERVAL = 2.0  # seconds
# How often a long-running worker asks whether a vectorizer's vector index is due (a bounded
# count of the store), whatever its queue holds.
INDEX_CHECK_INTERVAL = 30.0  # seconds
# While the database is unreachable (a restart, a network fault), each vectorizer tries again
# after this long, doubling up to the cap.
RECONNECT_FIRST = 1.0  # seconds
RECONNECT_CAP = 30.0  # seconds




class Worker:
    """Processes vectorizers' queues until told to stop (or once, with once=True).

    Use `await worker.run()`; it returns None, or the exception that stopped it.
    """

    def __init__(self, db_url: str, vectorizer_ids: Sequence[int] | None = None,
                 poll_interval: timedelta | float = DEFAULT_POLL_INTERVAL,
                 concurrency: int | None = None, once: bool = False, *,
                 env: Mapping[str, str] | None = None) -> None:
        self.db_url = db_url
        self.vectorizer_ids = list(vectorizer_ids) if vectorizer_ids else None
        if not isinstance(poll_interval, timedelta):
            poll_interval = timedelta(seconds=float(poll_interval))
        self.poll_interval = poll_interval
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency must be 1 or more, got {concurrency}")
        self.concurrency = concurrency
        self.once = once
        # API keys and knobs: the process environment over ./.env.
        self.env: Mapping[str, str] = load_env() if env is None else env
        self.lease = tuning_seconds(self.env, "PGVECTORIZER_LEASE_SECONDS", DEFAULT_LEASE)
        self.retry_base = tuning_seconds(self.env, "PGVECTORIZER_RETRY_SECONDS", DEFAULT_RETRY_BASE)
        self.failed_retry = tuning_seconds(self.env, "PGVECTORIZER_FAILED_RETRY_SECONDS", FAILED_RETRY)
        self._stopping: asyncio.Event | None = None
        self._wake: dict[int, asyncio.Event] = {}
        self._known: dict[int, Vectorizer] = {}
        self._catalog_changed: asyncio.Event | None = None
        self._progress: Progress | None = None
        # Vectorizer-level errors (not a row's provider error, which is retried): counted, and
        # with once=True kept, so that run() reports them and a cron job exits non-zero.
        self._error_count = 0
        self._errors: list[str] = []
        self._no_index: set[int] = set()  # vectorizers whose index this role may not build
        # Batches whose session died with the database connection, by vectorizer: given back
        # (released) on the next session, so their rows need not wait for the lease to end.
        self._orphaned: dict[int, list[str]] = {}
        self._outage: dict[int, bool] = {}  # vectorizers whose last drain lost the database
        self._outage_since: float | None = None  # for one log line per outage

    # --- public API -------------------------------------------------------------------------

    async def run(self) -> Exception | None:
        """Run until done (once) or until request_graceful_shutdown(); never raises."""
        self._stopping = asyncio.Event()
        self._catalog_changed = asyncio.Event()
        try:
            if self.once:
                await self._run_once()
            else:
                await self._run_forever()
        except VectorizerError as e:  # already logged where it happened
            return e
        except Exception as e:  # reported to the caller, as the API says
            logger.exception("worker stopped by an error")
            return e
        return None

    async def request_graceful_shutdown(self) -> None:
        """Finish the batches in hand, then stop."""
        logger.info("shutting down: finishing the batches in hand")
        if self._stopping is not None:
            self._stopping.set()
        for event in self._wake.values():
            event.set()
        if self._catalog_changed is not None:
            self._catalog_changed.set()

    @property
    def stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    # --- the two modes ----------------------------------------------------------------------

    async def _run_once(self) -> None:
        async with await connect(self.db_url, purpose="catalog") as conn:
            vectorizers = await self._vectorizers(conn)
            total = sum([await db.pending(conn, v.id) for v in vectorizers])
        if total >= PROGRESS_MIN_ROWS:
            self._progress = Progress("vectorizing", total, stream=sys.stderr)
        try:
            await asyncio.gather(*(self._drain(v) for v in vectorizers))
        finally:
            if self._progress is not None:
                self._progress.close()
                self._progress = None
        await asyncio.gather(*(self._keep_index(v) for v in vectorizers))
        if self._errors:
            raise VectorizerError("; ".join(self._errors))

    async def _run_forever(self) -> None:
        assert self._stopping is not None and self._catalog_changed is not None
        watcher = asyncio.create_task(self._watch())
        tasks: dict[int, asyncio.Task[None]] = {}
        try:
            while not self.stopping:
                self._catalog_changed.clear()
                try:
                    async with await connect(self.db_url, purpose="catalog") as conn:
                        vectorizers = {v.id: v for v in await self._vectorizers(conn)}
                    self._database_back()
                except ConnectionFailed as e:
                    # Keep serving what is known: an outage drops no vectorizer.
                    self._database_lost(e)
                    vectorizers = dict(self._known)
                for vid, v in vectorizers.items():
                    if vid not in tasks or tasks[vid].done():
                        self._wake.setdefault(vid, asyncio.Event())
                        tasks[vid] = asyncio.create_task(self._serve(v), name=f"vectorizer {vid}")
                for vid in [vid for vid in tasks if vid not in vectorizers]:
                    tasks.pop(vid).cancel()  # dropped or disabled
                    self._wake.pop(vid, None)
                self._known = vectorizers
                await self._sleep(self._catalog_changed, self.poll_interval.total_seconds())
        finally:
            watcher.cancel()
            # Each vectorizer finishes its batch in hand: runners check `stopping`.
            await asyncio.gather(*tasks.values(), watcher, return_exceptions=True)

    async def _serve(self, v: Vectorizer) -> None:
        """Drain one vectorizer, then wait for work (the watcher) or the poll interval; repeat.

        After a vectorizer-level error (a missing API key, say) only the poll interval ends
        the wait: the watcher would otherwise retry, and record the error, every few seconds.
        """
        wake = self._wake[v.id]
        indexer = asyncio.create_task(self._index_loop(v))
        backoff = RECONNECT_FIRST
        try:
            while not self.stopping:
                wake.clear()
                healthy = await self._drain(v)
                if self._outage.pop(v.id, False):
                    await self._sleep(None, backoff)
                    backoff = min(backoff * 2, RECONNECT_CAP)
                    continue
                if healthy:
                    self._database_back()
                backoff = RECONNECT_FIRST
                await self._sleep(wake if healthy else None, self.poll_interval.total_seconds())
        finally:
            indexer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await indexer

    async def _index_loop(self, v: Vectorizer) -> None:
        """Beside the batches, never after an empty queue: the index comes at min_rows."""
        while not self.stopping and v.id not in self._no_index:
            await self._keep_index(v)
            await self._sleep(None, INDEX_CHECK_INTERVAL)

    async def _keep_index(self, v: Vectorizer) -> None:
        if v.id in self._no_index or self.stopping:
            return
        try:
            for statement in await db_index.keep(self.db_url, v.id):
                logger.info("vectorizer %s: %s", v.name, statement)
        except NotAllowed as e:
            self._no_index.add(v.id)
            logger.warning("vectorizer %s: this role may not build its vector index (%s); run a "
                           "worker as the store's owner, or schedule it with pg_cron",
                           v.name, str(e).strip())
        except DatabaseError as e:
            await self._record(v, f"building the vector index: {e}")

    async def _sleep(self, event: asyncio.Event | None, seconds: float) -> None:
        """Wait `seconds`, or less if `event` is set or the worker is stopping."""
        assert self._stopping is not None
        waits = [asyncio.create_task(self._stopping.wait())]
        if event is not None:
            waits.append(asyncio.create_task(event.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _watch(self) -> None:
        """Every WAKE_INTERVAL: wake idle vectorizers with claimable rows; notice new ones."""
        assert self._catalog_changed is not None
        conn: Connection | None = None
        try:
            while not self.stopping:
                await self._sleep(None, WAKE_INTERVAL)
                try:
                    if conn is None or conn.closed:
                        conn = await connect(self.db_url, purpose="watch")
                    ids = set(await db.vectorizer_ids(conn))
                    if self.vectorizer_ids:
                        ids &= set(self.vectorizer_ids)
                    if ids != set(self._known):
                        self._catalog_changed.set()
                    for vid, v in list(self._known.items()):
                        event = self._wake.get(vid)
                        if event is None or event.is_set():
                            continue
                        if await db.has_work(conn, vid):
                            event.set()
                except DatabaseError as e:
                    if lost_connection(e):
                        self._database_lost(e)
                    else:
                        logger.warning("looking for work failed (%s); trying again", e)
                    if conn is not None:
                        await conn.close()
                    conn = None
        finally:
            if conn is not None:
                await conn.close()

    async def _vectorizers(self, conn: Connection) -> list[Vectorizer]:
        rows = await db.load_vectorizers(conn, self.vectorizer_ids)
        if self.vectorizer_ids:
            missing = sorted(set(self.vectorizer_ids) - {r["id"] for r in rows})
            if missing:
                logger.error("no vectorizer with id %s", ", ".join(map(str, missing)))
                self._error(f"no vectorizer with id {', '.join(map(str, missing))}")
        out = []
        for row in rows:
            if row["disabled"]:
                logger.debug("vectorizer %s is disabled; skipping it", row["name"])
                continue
            try:
                out.append(Vectorizer.from_row(row))
            except ConfigError as e:
                logger.error("%s", e)
        return out

    # --- one vectorizer ---------------------------------------------------------------------

    async def _drain(self, v: Vectorizer) -> bool:
        """Process v's queue until nothing is left to claim; errors are recorded, not raised.

        Returns False when a vectorizer-level error (configuration, database) stopped it.
        """
        errors = self._error_count
        try:
            await self._drain_with(v)
        except ConfigError as e:
            await self._record(v, f"configuration: {e}")
        except Exception as e:  # one vectorizer's failure never stops the others
            logger.exception("vectorizer %s failed", v.name)
            await self._record(v, f"unexpected error: {e!r}")
        return self._error_count == errors

    async def _drain_with(self, v: Vectorizer) -> None:
        embedder = await asyncio.to_thread(make_embedder, v.embedding, self.env)
        try:
            embed = self._embedder(v, Pipeline(v, embedder, env=self.env))
            stop = asyncio.Event()  # set by a runner that meets a configuration error
            # Each unit of concurrency keeps two batches going, so that one is read or written
            # while the other waits on the model: the database and the provider work at once.
            n = (self.concurrency or v.concurrency) * BATCHES_IN_FLIGHT
            await asyncio.gather(*(self._runner(v, embed, stop) for _ in range(n)))
        finally:
            embedder.close()

    async def _runner(self, v: Vectorizer, embed: Embed, stop: asyncio.Event) -> None:
        try:
            queue = await open_queue(self.db_url, v, lease=self.lease, retry_base=self.retry_base,
                                     failed_retry=self.failed_retry)
        except (DatabaseError, QueueMissing) as e:
            if lost_connection(e):
                self._outage[v.id] = True
                self._database_lost(e)
                return
            await self._record(v, f"cannot open the queue: {e}")
            return
        try:
            for orphan in self._orphaned.pop(v.id, []):
                await queue.release(orphan)
            while not self.stopping and not stop.is_set():
                try:
                    written = await run_batch(queue, embed, v.batch_size)
                except ConfigError as e:
                    stop.set()
                    await self._record(v, f"configuration: {e}")
                    return
                if written is None:
                    return
                if self._progress is not None:
                    self._progress.update(len(written.batch.rows))
        except DatabaseError as e:
            if lost_connection(e):
                # The session and the batch's locks are gone. Its rows are given back on the
                # next session (if its write did commit, there is nothing left to give back),
                # so they need not wait for their lease.
                self._outage[v.id] = True
                self._database_lost(e)
                if queue.batch is not None:
                    self._orphaned.setdefault(v.id, []).append(queue.batch.token)
                return
            # A statement failed: the rows come back when their lease ends, and a row that
            # keeps failing ends in the failed items after its attempts.
            logger.error("vectorizer %s: database error: %s", v.name, e)
            await self._record(v, f"database: {e}")
        finally:
            await close_queue(queue)

    def _embedder(self, v: Vectorizer, pipeline: Pipeline) -> Embed:
        """The pipeline in a thread (the event loop claims and writes meanwhile); a bug in it
        must neither lose rows nor spin, so its rows are tried again later."""
        async def embed(rows: list[SourceRow], existing: Existing) -> BatchResult:
            try:
                return await asyncio.to_thread(pipeline.run, rows, existing)
            except ConfigError:
                raise
            except Exception as e:
                logger.exception("vectorizer %s: the pipeline failed", v.name)
                return BatchResult(errors=[RowError(r.key, "pipeline", repr(e), transient=True)
                                           for r in rows])
        return embed

    async def _record(self, v: Vectorizer, message: str) -> None:
        logger.error("vectorizer %s: %s", v.name, message)
        self._error(f"vectorizer {v.name}: {message}")
        with contextlib.suppress(DatabaseError):
            async with await connect(self.db_url, purpose="errors") as conn:
                await db.record_error(conn, v.id, message)

    def _database_lost(self, e: BaseException) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.error("lost the database (%s); reconnecting with backoff",
                         str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)

    def _database_back(self) -> None:
        if self._outage_since is not None:
            logger.warning("the database is back after %.1f s", time.monotonic() - self._outage_since)
            self._outage_since = None

    def _error(self, message: str) -> None:
        self._error_count += 1
        if self.once:
            self._errors.append(message)
