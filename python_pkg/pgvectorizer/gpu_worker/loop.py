"""The GPU worker's loop: claim, embed, post, with heartbeats for everything it holds.

Four coroutines share the worker's leases:
- the claimer long-polls for a batch of tasks whenever none is waiting, so the next batch is
  already here while the backend encodes the current one and the GPU never waits on HTTP;
- the encoder embeds one batch at a time in a thread (asyncio.to_thread), which leaves the
  event loop free for the others;
- the poster sends finished batches, trying until the service takes them;
- the heartbeat extends the leases of every task held (waiting, encoding, or not yet posted)
  every lease_seconds / 3.

request_stop() ends claiming, gives back (releases) the batch that was claimed but not started,
lets the encoder finish the batch in hand, posts it, and makes run() return.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass

import httpx

from pgvectorizer.defaults import (
    CLAIM_TASKS,
    CLAIM_TEXTS,
    CLAIM_WAIT,
    GPU_POLL_INTERVAL,
    MAX_CLAIM_TASKS,
    MAX_CLAIM_TEXTS,
    MAX_CLAIM_WAIT,
)
from pgvectorizer.errors import ConfigError, ServiceAuthError, ServiceRefusal
from pgvectorizer.gpu_worker.backends import Backend
from pgvectorizer.gpu_worker.client import ServiceClient, ServiceUnavailable, base_url
from pgvectorizer.gpu_worker.packing import TaskOutcome, embed_tasks
from pgvectorizer.service.protocol import (
    ClaimedTask,
    ClaimRequest,
    HeartbeatRequest,
    ResultsRequest,
    TaskError,
    TaskResult,
)

logger = logging.getLogger(__name__)

HEARTBEATS_PER_LEASE = 3  # a lost heartbeat or two still leaves the lease alive
MIN_HEARTBEAT = 0.05  # seconds between heartbeats at least, whatever lease the service gives
MAX_WORKER_ID = 200  # characters, as the protocol allows
# The next claim goes out when the batch being encoded is this close to its expected end
# (a fraction of its expected time, plus seconds for the claim's round trip), not when it
# starts: tasks that arrive meanwhile join the next batch instead of trailing in small ones.
CLAIM_LEAD_FRACTION = 0.2
CLAIM_LEAD_SECONDS = 0.05

QUEUED, ENCODING, COMPUTED = "queued", "encoding", "computed"


def default_worker_id() -> str:
    """hostname-pid-random: unique across restarts and processes, readable in the metrics."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"[:MAX_WORKER_ID]


@dataclass
class _Lease:
    task: ClaimedTask
    state: str = QUEUED
    # The service says the task is no longer ours (its lease ran out): no more heartbeats,
    # but a result computed anyway is still posted, as the service takes late results.
    taken_back: bool = False


class GpuWorker:
    """Pulls tasks from the service at server_url and embeds them with backend until stopped.

    transport: an httpx transport to talk through instead of the network (tests).
    """

    def __init__(self, server_url: str, token: str, backend: Backend,
                 worker_id: str | None = None, max_tasks: int = CLAIM_TASKS,
                 max_texts: int = CLAIM_TEXTS, wait_seconds: float = CLAIM_WAIT,
                 poll_interval: float = GPU_POLL_INTERVAL, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        try:
            self.server_url = base_url(server_url)
        except ValueError as exc:
            raise ConfigError(f"server URL: {exc}") from None
        if not token:
            raise ConfigError("a GPU worker needs the service's worker token")
        _check_range("max_tasks", max_tasks, 1, MAX_CLAIM_TASKS)
        _check_range("max_texts", max_texts, 1, MAX_CLAIM_TEXTS)
        _check_range("wait_seconds", wait_seconds, 0, MAX_CLAIM_WAIT)
        if not poll_interval > 0:
            raise ConfigError(f"poll_interval must be more than 0 seconds, got {poll_interval}")
        self.worker_id = (worker_id or default_worker_id())[:MAX_WORKER_ID]
        self.backend = backend
        self.max_tasks = max_tasks
        self.max_texts = max_texts
        self.wait_seconds = wait_seconds
        self.poll_interval = poll_interval
        self._token = token
        self._transport = transport
        self._leases: dict[str, _Lease] = {}
        self._lease_seconds: float | None = None
        self._leased = asyncio.Event()  # set by the first claim that brought tasks
        self._stopping = asyncio.Event()
        # One claimed batch may wait while another is encoded; the claimer takes the slot
        # before claiming and the encoder gives it back when it starts a batch.
        self._slot = asyncio.Semaphore(1)
        self._batches: asyncio.Queue[list[str] | None] = asyncio.Queue()
        self._outbox: asyncio.Queue[list[TaskOutcome] | None] = asyncio.Queue()
        self._fatal: BaseException | None = None
        self._client: ServiceClient | None = None
        self.batches = 0  # batches encoded
        self.texts = 0  # texts encoded
        self._rate: float | None = None  # texts per second of the last batch
        self._encoding_until: float | None = None  # expected end of the batch in hand
        self._encoded = asyncio.Event()  # set when a batch's encoding ends

    def request_stop(self) -> None:
        """Finish the batch in hand, post it, give back the rest, and return from run().
        Call it from the event loop's thread (a loop signal handler is)."""
        if not self._stopping.is_set():
            logger.info("stopping: finishing the batch in hand, giving back the rest")
            self._stopping.set()

    async def request_graceful_shutdown(self) -> None:
        """request_stop() for cli._ShutdownSignals."""
        self.request_stop()

    async def run(self) -> None:
        """Works until request_stop(); raises ServiceAuthError, other ServiceRefusal or the
        backend's ConfigError when it cannot go on."""
        logger.info("worker %s: %s with %s, from %s", self.worker_id, self.backend.name,
                    ", ".join(self.backend.models), self.server_url)
        async with ServiceClient(self.server_url, self._token, wait_seconds=self.wait_seconds,
                                 poll_interval=self.poll_interval,
                                 transport=self._transport) as client:
            self._client = client
            claimer = asyncio.create_task(self._claim_loop(), name="claim")
            beater = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
            poster = asyncio.create_task(self._post_loop(), name="post")
            for task in (claimer, beater, poster):
                task.add_done_callback(self._on_done)
            stopper = asyncio.create_task(self._stop_when_asked(claimer), name="stop")
            try:
                await self._encode_loop()
                await asyncio.wait([stopper])  # it ended the encoder; let it finish giving back
                if not isinstance(self._fatal, ServiceRefusal):
                    # Computed results are posted before returning, however long it takes.
                    self._outbox.put_nowait(None)
                    await asyncio.wait([poster])
            finally:
                for task in (claimer, beater, poster, stopper):
                    task.cancel()
                await asyncio.gather(claimer, beater, poster, stopper, return_exceptions=True)
                self._client = None
        if self._fatal is not None:
            raise self._fatal
        logger.info("worker %s stopped after %d batch(es), %d texts", self.worker_id,
                    self.batches, self.texts)

    # --- the coroutines ---------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        assert self._client is not None
        request = ClaimRequest(
            worker_id=self.worker_id, models=self.backend.models, max_tasks=self.max_tasks,
            max_texts=self.max_texts, wait_seconds=self.wait_seconds,
            dimensions={m: self.backend.dimensions(m) for m in self.backend.models})
        while True:
            await self._slot.acquire()
            await self._until_nearly_idle()
            answer = await self._client.claim(request)
            self._lease_seconds = answer.lease_seconds
            if not answer.tasks:
                self._slot.release()
                if self.wait_seconds == 0:
                    await asyncio.sleep(self.poll_interval)
                continue
            for task in answer.tasks:
                self._leases[task.id] = _Lease(task)
            self._leased.set()
            self._batches.put_nowait([task.id for task in answer.tasks])

    async def _until_nearly_idle(self) -> None:
        """Waits until the batch in hand is close to done (by the last batch's rate)."""
        end = self._encoding_until
        if end is None:
            return
        lead = CLAIM_LEAD_FRACTION * max(0.0, end - time.monotonic()) + CLAIM_LEAD_SECONDS
        delay = end - lead - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(self._encoded.wait(), delay)
            except TimeoutError:
                pass

    async def _encode_loop(self) -> None:
        while True:
            batch = await self._batches.get()
            if batch is None:
                return
            self._slot.release()
            await self._encode([self._leases[i] for i in batch if i in self._leases])

    async def _encode(self, leases: list[_Lease]) -> None:
        if not leases:  # all taken back by the service while waiting
            return
        for lease in leases:
            lease.state = ENCODING
        tasks = [lease.task for lease in leases]
        texts = sum(len(task.input) for task in tasks)
        started = time.monotonic()
        if self._rate:
            self._encoding_until = started + texts / self._rate
        self._encoded.clear()
        try:
            outcomes = await asyncio.to_thread(embed_tasks, self.backend, tasks)
        except ConfigError as exc:
            self._encoding_until = None
            self._encoded.set()
            # The backend cannot embed at all (a model gone from Ollama): hand the tasks back
            # uncharged for other workers, and stop rather than fail every task claimed.
            logger.error("%s cannot embed: %s", self.backend.name, exc)
            self._fatal = self._fatal or exc
            await self._give_back([task.id for task in tasks])
            self.request_stop()
            return
        except Exception as exc:
            logger.exception("embedding a batch of %d tasks failed", len(tasks))
            outcomes = [TaskError(id=task.id, error=f"GPU worker {self.worker_id} failed: "
                                  f"{type(exc).__name__}: {exc}", retryable=True)
                        for task in tasks]
        seconds = time.monotonic() - started
        self._encoding_until = None
        self._encoded.set()
        if seconds > 0:
            self._rate = texts / seconds
        for lease in leases:
            lease.state = COMPUTED
        self._outbox.put_nowait(outcomes)
        self.batches += 1
        self.texts += texts
        failed = sum(isinstance(o, TaskError) for o in outcomes)
        logger.info("batch: %d task(s), %d texts in %.2f s (%.0f texts/s)%s", len(tasks), texts,
                    seconds, texts / seconds if seconds > 0 else 0.0,
                    f"; {failed} failed" if failed else "")

    async def _post_loop(self) -> None:
        assert self._client is not None
        while True:
            outcomes = await self._outbox.get()
            if outcomes is None:
                return
            answer = await self._client.results(ResultsRequest(
                worker_id=self.worker_id,
                results=[o for o in outcomes if isinstance(o, TaskResult)],
                errors=[o for o in outcomes if isinstance(o, TaskError)]))
            for outcome in outcomes:
                self._leases.pop(outcome.id, None)
            if answer.ignored:
                # Usually a late result for a task that another worker finished first.
                logger.info("the service ignored %d of %d result(s): %s", len(answer.ignored),
                            len(outcomes), "; ".join(f"{k}: {v}" for k, v in
                                                     list(answer.ignored.items())[:5]))

    async def _heartbeat_loop(self) -> None:
        assert self._client is not None
        await self._leased.wait()
        while True:
            assert self._lease_seconds is not None
            interval = max(MIN_HEARTBEAT, self._lease_seconds / HEARTBEATS_PER_LEASE)
            await asyncio.sleep(interval)
            ids = [i for i, lease in self._leases.items() if not lease.taken_back]
            if not ids:
                continue
            try:
                # A beat that hangs (a dead connection) is given up when the next is due, so
                # that one still goes out in time: a lease is only a few beats long.
                answer = await self._client.heartbeat(
                    HeartbeatRequest(worker_id=self.worker_id, task_ids=ids), timeout=interval)
            except ServiceUnavailable:
                continue  # the client logs the outage; the next beat tries again
            self._lease_seconds = answer.lease_seconds
            self._forget(set(ids) - set(answer.held))

    def _forget(self, lost: set[str]) -> None:
        """Drops tasks the service took back that are not started; marks the others."""
        dropped = 0
        for task_id in lost:
            lease = self._leases.get(task_id)
            if lease is None:  # posted while the heartbeat was under way
                continue
            if lease.state == QUEUED:
                del self._leases[task_id]
                dropped += 1
            else:
                lease.taken_back = True
        if lost:
            logger.warning("the service took back %d task(s) (leases ran out); %d not started "
                           "are dropped", len(lost), dropped)

    async def _stop_when_asked(self, claimer: asyncio.Task[None]) -> None:
        await self._stopping.wait()
        # A claim cut short claims nothing: the service checks that its caller is still there
        # before it leases tasks. (One answered in the same instant is lost to this worker, and
        # its tasks go to another when the lease runs out.)
        claimer.cancel()
        await asyncio.wait([claimer])  # its own error, if any, went to _on_done
        waiting: list[str] = []
        while not self._batches.empty():
            batch = self._batches.get_nowait()
            waiting += [i for i in batch or () if i in self._leases]
        self._batches.put_nowait(None)
        await self._give_back(waiting)

    async def _give_back(self, task_ids: list[str]) -> None:
        """Releases tasks unstarted, with one try: if the service is away, their leases run
        out and they go to other workers all the same."""
        for task_id in task_ids:
            self._leases.pop(task_id, None)
        if not task_ids or isinstance(self._fatal, ServiceAuthError) or self._client is None:
            return
        try:
            await self._client.post_once(ResultsRequest(worker_id=self.worker_id,
                                                        released=task_ids))
            logger.info("gave back %d task(s) not started", len(task_ids))
        except (ServiceUnavailable, ServiceRefusal) as exc:
            logger.warning("could not give back %d task(s) (%s); they go to other workers "
                           "when their leases run out", len(task_ids), exc)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        if self._fatal is None:
            self._fatal = task.exception()
        self.request_stop()


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value:g}")
