"""What the routes do, apart from HTTP: accept a request as a task, wait for its end, hand
tasks to workers and take their answers. One Service per process; replicas share the store."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from pgvectorizer.service import protocol
from pgvectorizer.service.errors import ApiError
from pgvectorizer.service.metrics import Metrics
from pgvectorizer.service.notify import Notifier, Watch, wait
from pgvectorizer.service.settings import ServiceSettings
from pgvectorizer.service.store import (
    COMPLETED,
    FINAL,
    STATES,
    Failure,
    NewTask,
    Result,
    Task,
    TaskStore,
)

logger = logging.getLogger(__name__)

WORKER_NOTE_SECONDS = 5.0  # a worker's last-seen time is written at most this often


def texts_of(value: Any, max_inputs: int) -> list[str]:
    """The request's input as a list of texts; ApiError names what is wrong with it."""
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list):
        if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value) or \
                value and all(isinstance(v, list) for v in value):
            raise ApiError(400, "'input' holds token ids: this service's models use their own "
                           "tokenizers, so send the texts as strings", param="input")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ApiError(400, f"'input[{i}]' is {type(item).__name__}, not a string",
                               param="input")
        texts = value
    else:
        raise ApiError(400, "'input' must be a string or a list of strings", param="input")
    if not texts:
        raise ApiError(400, "'input' is an empty list: there is nothing to embed", param="input")
    if len(texts) > max_inputs:
        raise ApiError(413, f"'input' has {len(texts)} texts; this service takes at most "
                       f"{max_inputs} per request (MAX_INPUTS)", param="input",
                       code="too_many_inputs")
    for i, text in enumerate(texts):
        if not text:
            raise ApiError(400, f"'input[{i}]' is an empty string: there is nothing to embed",
                           param="input")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # JSON may carry a lone UTF-16 surrogate (\ud800); no store or model can take it.
            raise ApiError(400, f"'input[{i}]' holds an unpaired UTF-16 surrogate, which is no "
                           "text", param="input") from None
    return texts


class Service:
    def __init__(self, settings: ServiceSettings, store: TaskStore,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.notifier = Notifier()
        self.metrics = Metrics()
        self._clock = clock
        self._dimensions: dict[str, int] = {}  # model -> native size, as workers report
        self._noted: dict[str, float] = {}  # worker id -> when its visit was last written
        self._housekeeper: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        self._dimensions = await self.store.model_dimensions()
        self._housekeeper = asyncio.create_task(self._housekeeping(), name="housekeeping")
        logger.info("task store: %s", self.settings.store_description)

    async def stop(self) -> None:
        if self._housekeeper is not None:
            self._housekeeper.cancel()
            try:
                await self._housekeeper
            except asyncio.CancelledError:
                pass
        await self.store.close()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.settings.housekeeping_seconds)
            try:
                await self.housekeep()
            except Exception:
                # A store that is down for a moment must not end the loop for good.
                logger.exception("housekeeping failed; trying again later")

    async def housekeep(self) -> None:
        """Fails tasks whose workers vanished too often and deletes old finished ones."""
        lost, deleted = await self.store.expire(self.settings.max_attempts,
                                                self.settings.result_retention,
                                                self.settings.pending_timeout)
        self._lost(lost)
        if lost or deleted:
            logger.info("housekeeping: %d task(s) failed (leases lost, or no worker took them), "
                        "%d deleted",
                        len(lost), deleted)
        self._dimensions = await self.store.model_dimensions()

    def _lost(self, task_ids: list[str]) -> None:
        """Tasks the store failed after lost leases: their clients can answer."""
        for task_id in task_ids:
            self.notifier.task_done(task_id)
        self.metrics.finished["failed"] += len(task_ids)

    # --- clients --------------------------------------------------------------------------

    async def submit(self, request: protocol.EmbeddingRequest) -> str:
        """Checks the request and stores it as a pending task; returns the task id."""
        task = self._new_task(request)
        await self._store_new(task)
        return task.id

    async def submit_and_wait(self, request: protocol.EmbeddingRequest, seconds: float, *,
                              cancel_late: bool = False) -> tuple[str, Task | None]:
        """Stores the request as a task and waits up to `seconds` for its end: the task id,
        and the task (final, or as it is then; None when seconds is 0). With cancel_late, a
        task not final in time is cancelled and None comes back, unless it ended in that very
        moment."""
        task = self._new_task(request)
        # Watched before it is stored: the wake-up cannot come before the watch, and the
        # task needs no read while it waits (this process has just stored it pending).
        with self.notifier.watching_task(task.id) as watch:
            await self._store_new(task)
            found = await self._wait(task.id, seconds, watch, task) if seconds > 0 else None
        if not cancel_late or (found is not None and found.status in FINAL):
            return task.id, found
        return task.id, await self._cancel_unless_final(task.id)

    def _new_task(self, request: protocol.EmbeddingRequest) -> NewTask:
        """The request as a task with a new id; ApiError names what is wrong with it."""
        texts = texts_of(request.input, self.settings.max_inputs)
        model = request.model or self.settings.default_model
        if model not in self.settings.models:
            raise ApiError(404, f"The model '{model}' does not exist here; this service embeds "
                           f"with {', '.join(self.settings.models)} (MODELS)", param="model",
                           code="model_not_found")
        self._check_dimensions(model, request.dimensions)
        return NewTask(str(uuid.uuid4()), model, texts, request.dimensions,
                       request.encoding_format)

    async def _store_new(self, task: NewTask) -> None:
        # Returns once the task is durably committed (with those submitted alongside it).
        await self.store.submit(task)
        self.metrics.submitted += 1
        self.metrics.texts += len(task.inputs)
        self.notifier.work_arrived()

    def _check_dimensions(self, model: str, asked: int | None) -> None:
        """`dimensions` below a model's size only for models trained for it, never above."""
        native = self._dimensions.get(model)  # None until a worker has reported the model
        if asked is None or asked == native:
            return
        if native is not None and asked > native:
            raise ApiError(400, f"'dimensions' is {asked}, but {model} makes {native}-dimensional "
                           f"vectors: ask for {native} or fewer", param="dimensions")
        if model not in self.settings.dimensions_models:
            size = f"its {native}" if native is not None else "its own size"
            raise ApiError(400, f"{model} does not take 'dimensions': its vectors lose meaning "
                           f"when cut, so it answers with {size} only (DIMENSIONS_MODELS lists "
                           "the models that may be cut)", param="dimensions")

    def wait_seconds(self, asked: float | None) -> float:
        """The client's wait, or the default, at most MAX_WAIT_SECONDS."""
        wait = self.settings.default_wait_seconds if asked is None else asked
        return min(wait, self.settings.max_wait_seconds)

    async def wait_for(self, task_id: str, seconds: float) -> Task | None:
        """The task once final, or as it is after `seconds`; None if there is no such task."""
        with self.notifier.watching_task(task_id) as watch:
            return await self._wait(task_id, seconds, watch, None)

    async def _wait(self, task_id: str, seconds: float, watch: Watch,
                    fresh: NewTask | None) -> Task | None:
        """wait_for on a watch already registered; `fresh`: the task as this process has just
        stored it, known pending, so that it is read only once it ended or the time is up."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        read = fresh is None
        while True:
            if watch.event.is_set():  # final: its waiters are woken only then
                if watch.result is not None and fresh is not None:
                    return _completed(fresh, watch.result, self._clock())
                return await self.store.get(task_id)
            if read:
                # The state alone while waiting; the task with its vectors once at the end.
                status = await self.store.status(task_id)
                if status is None:
                    return None
                if status in FINAL:
                    return await self.store.get(task_id)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return await self.store.get(task_id)
            # Woken by a result that reaches this process; other replicas' are read again.
            await wait(watch.event, min(remaining, self.settings.recheck))
            read = not watch.event.is_set()

    async def wait_or_cancel(self, task_id: str, seconds: float) -> Task | None:
        """The task once final within `seconds`; else it is cancelled (no worker need compute
        what nobody will read) and None comes back, unless it ended in that very moment."""
        task = await self.wait_for(task_id, seconds)
        if task is not None and task.status in FINAL:
            return task
        return await self._cancel_unless_final(task_id)

    async def _cancel_unless_final(self, task_id: str) -> Task | None:
        if await self.cancel(task_id):
            return None
        task = await self.store.get(task_id)
        return task if task is not None and task.status in FINAL else None

    async def cancel(self, task_id: str) -> bool:
        cancelled = await self.store.cancel(task_id)
        if cancelled:
            self.notifier.task_done(task_id)
        return cancelled

    # --- workers --------------------------------------------------------------------------

    async def claim(self, request: protocol.ClaimRequest,
                    gone: Callable[[], Any]) -> list[Task]:
        """Tasks for the worker, waiting up to its wait_seconds for some; `gone` is awaited
        before each try, and an answer no one would read claims nothing."""
        await self._note_worker(request.worker_id, request.dimensions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.wait_seconds
        while True:
            if await gone():
                return []
            with self.notifier.watching_work() as woken:
                lost: list[str] = []
                tasks = await self.store.claim(request.worker_id, request.models,
                                               request.max_tasks, request.max_texts,
                                               self.settings.lease_seconds,
                                               self.settings.max_attempts, lost)
                self._lost(lost)
                remaining = deadline - loop.time()
                if tasks or remaining <= 0:
                    return tasks
                await wait(woken, min(remaining, self.settings.recheck))

    async def _note_worker(self, worker_id: str, dimensions: dict[str, int]) -> None:
        now = self._clock()
        changed = any(self._dimensions.get(m) != d for m, d in dimensions.items())
        if changed or now - self._noted.get(worker_id, 0.0) >= WORKER_NOTE_SECONDS:
            await self.store.note_worker(worker_id, dimensions)
            self._noted[worker_id] = now
            self._dimensions.update(dimensions)

    async def heartbeat(self, request: protocol.HeartbeatRequest) -> list[str]:
        # A worker encoding a long batch claims nothing for a while: its heartbeats keep it
        # among the workers that /metrics counts.
        await self._note_worker(request.worker_id, {})
        return await self.store.heartbeat(request.worker_id, request.task_ids,
                                          self.settings.lease_seconds)

    async def finish(self, request: protocol.ResultsRequest) -> protocol.ResultsResponse:
        """Stores the worker's answers and wakes the clients waiting for them."""
        results, failures, bad = await asyncio.to_thread(_decode_results, request)
        finished = await self.store.finish(request.worker_id, results, failures,
                                           request.released, self.settings.max_attempts)
        completed = {r.id: r for r in results}
        for task_id, age in finished.final.items():
            # A completed task's waiters get its result with the wake-up: nothing to read back.
            # Not when the report also held something ignored for it (a result of the wrong
            # shape and then an error): whichever counted, the store knows.
            taken = completed.get(task_id) if task_id not in finished.ignored else None
            self.notifier.task_done(task_id, taken)
            if task_id in completed:
                self.metrics.finished["completed"] += 1
                self.metrics.observe_latency(age)
            else:
                self.metrics.finished["failed"] += 1
        if finished.requeued:
            self.notifier.work_arrived()
        return protocol.ResultsResponse(accepted=finished.accepted,
                                        ignored={**bad, **finished.ignored})

    async def metrics_text(self) -> str:
        workers = await self.store.workers(max(2 * self.settings.lease_seconds, 60.0))
        return self.metrics.render(await self.store.counts(), workers, STATES)


def _completed(task: NewTask, result: Result, now: float) -> Task:
    """The completed task as a waiting request answers it (embeddings_json), built from the
    request and the worker's result, which the store has committed. The attempts and the
    times are this process's view: the answer shows neither."""
    return Task(task.id, task.model, task.inputs, task.dimensions, task.encoding_format,
                COMPLETED, 1, now, now, None, result.vectors, result.dimensions, result.tokens)


def _decode_results(request: protocol.ResultsRequest
                    ) -> tuple[list[Result], list[Failure], dict[str, str]]:
    """The worker's vectors as stored bytes, its failures, and results that cannot be read
    (with the reason). Runs in a thread: a report can carry tens of megabytes."""
    results: list[Result] = []
    failures = [Failure(e.id, e.error, e.retryable) for e in request.errors]
    bad: dict[str, str] = {}
    for item in request.results:
        try:
            vectors = protocol.decode_vectors(item.embeddings, item.dimensions)
        except ValueError as exc:  # binascii.Error is a ValueError
            bad[item.id] = f"the embeddings cannot be decoded: {exc}"
            continue
        if not np.isfinite(vectors).all():
            # A model that overflowed (fp16) on this worker may not on another.
            failures.append(Failure(item.id, f"worker {request.worker_id} returned vectors "
                                    "with NaN or infinite values", True))
            continue
        results.append(Result(item.id, vectors.tobytes(), item.dimensions, item.tokens))
    return results, failures, bad
