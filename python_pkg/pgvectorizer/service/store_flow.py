"""The task store's logic, written once: each operation is a flow of statements.

A flow is a generator: it yields a Step (a statement of store_sql.Statements and its
parameters) and is sent back the Outcome, until it returns the operation's value. It does no
I/O of its own, so the same flow runs on PostgreSQL's async connection and on SQLite's
thread, each adapter driving it its way (SqlTaskStore._run) in one transaction where the
operation takes more than one statement.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pgvectorizer.service.group_commit import GroupCommit
from pgvectorizer.service.store import (
    CANCELLED,
    CANCELLED_KIND,
    COMPLETED,
    EXPIRED,
    FAILED,
    Failure,
    Finished,
    NewTask,
    OpenTask,
    Result,
    Task,
    expired_error,
    failure_outcome,
    lost_error,
    result_problem,
)
from pgvectorizer.service.store_sql import Statements

T = TypeVar("T")
Row = tuple[Any, ...]

WORKER_MEMORY = 86400.0  # seconds: a worker not seen for this long is forgotten


@dataclass(frozen=True)
class Step:
    sql: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    rows: list[Row]  # empty for a statement that returns none
    rowcount: int


Flow = Generator[Step, Outcome, T]


class Course(Generic[T]):
    """A flow under way, for an adapter's loop: `while course.step: course.answer(...)`."""

    def __init__(self, flow: Flow[T]) -> None:
        self._flow = flow
        self.step: Step | None = None
        self._value: T | None = None
        self._advance(lambda: next(flow))

    def answer(self, outcome: Outcome) -> None:
        self._advance(lambda: self._flow.send(outcome))

    def value(self) -> T:
        assert self.step is None, "the flow is not done"
        return self._value  # type: ignore[return-value]  # T itself may be None

    def _advance(self, resume: Callable[[], Step]) -> None:
        try:
            self.step = resume()
        except StopIteration as done:
            self.step = None
            self._value = done.value


def rows(sql: str, **params: Any) -> Flow[list[Row]]:
    return (yield Step(sql, params)).rows


def changed(sql: str, **params: Any) -> Flow[int]:
    """Runs a statement; the number of rows it changed."""
    return (yield Step(sql, params)).rowcount


def ids(sql: str, **params: Any) -> Flow[list[str]]:
    return [row[0] for row in (yield from rows(sql, **params))]


@dataclass
class _Report:
    """What finish() has done so far (fields as Finished's)."""

    accepted: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    requeued: bool = False

    def finished(self) -> Finished:
        return Finished(self.accepted, self.ignored, self.final, self.requeued)


class SqlTaskStore(ABC):
    """The TaskStore contract (service/store.py) over a SQL database; an adapter supplies how
    statements run and how values are bound."""

    def __init__(self, sql: Statements) -> None:
        self.sql = sql
        # Submits that arrive together share one durable commit (service/group_commit.py).
        self.submits: GroupCommit[NewTask] = GroupCommit(self._submit_group)

    # --- what an adapter supplies -----------------------------------------------------------

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _run(self, flow: Flow[T], *, atomic: bool = False) -> T:
        """Drives the flow to its end, in one transaction if atomic."""

    @abstractmethod
    def _key(self, task_id: str) -> str | None:
        """The task id as the database compares it (None matches no task)."""

    @abstractmethod
    def _dump_inputs(self, inputs: list[str]) -> Any: ...

    @abstractmethod
    def _load_inputs(self, value: Any) -> list[str]: ...

    # --- the contract -----------------------------------------------------------------------

    async def submit(self, task: NewTask) -> None:
        await self.submits.add(task)

    async def _submit_group(self, tasks: list[NewTask]) -> None:
        await self._run(self._insert(tasks), atomic=True)

    async def get(self, task_id: str) -> Task | None:
        return await self._run(self._get(task_id))

    async def status(self, task_id: str) -> str | None:
        return await self._run(self._status(task_id))

    async def claim(self, worker_id: str, models: list[str], max_tasks: int, max_texts: int,
                    lease_seconds: float, max_attempts: int,
                    lost: list[str] | None = None) -> list[Task]:
        failed, tasks = await self._run(self._claim(worker_id, models, max_tasks, max_texts,
                                                    lease_seconds, max_attempts), atomic=True)
        if lost is not None:  # only once the claim is committed
            lost.extend(failed)
        return tasks

    async def heartbeat(self, worker_id: str, task_ids: list[str],
                        lease_seconds: float) -> list[str]:
        keys = [key for key in map(self._key, task_ids) if key is not None]
        if not keys:
            return []
        return await self._run(ids(self.sql.heartbeat, lease=lease_seconds, worker=worker_id,
                                   ids=keys))

    async def finish(self, worker_id: str, results: list[Result], failures: list[Failure],
                     released: list[str], max_attempts: int) -> Finished:
        return await self._run(self._finish(worker_id, results, failures, released,
                                            max_attempts), atomic=True)

    async def cancel(self, task_id: str) -> bool:
        return await self._run(changed(self.sql.cancel, id=self._key(task_id), error=CANCELLED,
                                       kind=CANCELLED_KIND)) > 0

    async def expire(self, max_attempts: int, retention: float,
                     pending_timeout: float) -> tuple[list[str], int]:
        return await self._run(self._expire(max_attempts, retention, pending_timeout),
                               atomic=True)

    async def counts(self) -> dict[str, int]:
        found = await self._run(rows(self.sql.counts))
        return {status: int(n) for status, n in found}

    async def note_worker(self, worker_id: str, dimensions: dict[str, int]) -> None:
        await self._run(self._note_worker(worker_id, dimensions), atomic=True)

    async def workers(self, seen_within: float) -> int:
        found = await self._run(rows(self.sql.workers, seen_within=seen_within))
        return int(found[0][0]) if found else 0

    async def model_dimensions(self) -> dict[str, int]:
        found = await self._run(rows(self.sql.model_dimensions))
        return {model: int(size) for model, size in found}

    # --- the flows --------------------------------------------------------------------------

    def _task(self, row: Row) -> Task:
        return Task(row[0], row[1], self._load_inputs(row[2]), *row[3:])

    def _insert(self, tasks: list[NewTask]) -> Flow[None]:
        for task in tasks:
            yield from changed(self.sql.submit, **self._submit_params(task))

    def _submit_params(self, task: NewTask) -> dict[str, Any]:
        return {"id": task.id, "model": task.model, "inputs": self._dump_inputs(task.inputs),
                "n_texts": len(task.inputs), "dimensions": task.dimensions,
                "encoding_format": task.encoding_format}

    # Task rows are decoded inside the flow, so a large one is read on the adapter's thread.
    def _get(self, task_id: str) -> Flow[Task | None]:
        found = yield from rows(self.sql.get, id=self._key(task_id))
        return self._task(found[0]) if found else None

    def _status(self, task_id: str) -> Flow[str | None]:
        found = yield from rows(self.sql.status, id=self._key(task_id))
        return str(found[0][0]) if found else None

    def _fail_lost(self, max_attempts: int) -> Flow[list[str]]:
        return (yield from ids(self.sql.fail_lost, error=lost_error(max_attempts),
                               max_attempts=max_attempts))

    def _claim(self, worker_id: str, models: list[str], max_tasks: int, max_texts: int,
               lease_seconds: float,
               max_attempts: int) -> Flow[tuple[list[str], list[Task]]]:
        failed = yield from self._fail_lost(max_attempts)
        candidates = yield from rows(self.sql.candidates, max_attempts=max_attempts,
                                     models=models, max_tasks=max_tasks)
        picked = _up_to(candidates, max_texts)
        leased = (yield from rows(self.sql.lease, worker=worker_id, lease=lease_seconds,
                                  ids=picked)) if picked else []
        return failed, sorted((self._task(r) for r in leased), key=lambda t: t.created_at)

    def _finish(self, worker_id: str, results: list[Result], failures: list[Failure],
                released: list[str], max_attempts: int) -> Flow[Finished]:
        report = _Report()
        for result in results:
            yield from self._take_result(report, worker_id, result)
        for failure in failures:
            yield from self._take_failure(report, worker_id, failure, max_attempts)
        for task_id in released:
            if (yield from changed(self.sql.release, id=self._key(task_id), worker=worker_id)):
                report.accepted.append(task_id)
                report.requeued = True
            else:
                report.ignored[task_id] = "not leased to this worker"
        return report.finished()

    def _open_task(self, task_id: str, report: _Report) -> Flow[OpenTask | None]:
        """The task if it is not final yet, locked for this transaction; else None, with the
        reason in the report."""
        found = yield from rows(self.sql.open_task, id=self._key(task_id))
        if not found:
            report.ignored[task_id] = "no such task (it may have expired)"
            return None
        status, n_texts, dimensions, attempts, worker_id, age = found[0]
        if status in (COMPLETED, FAILED):
            report.ignored[task_id] = f"the task is {status} already"
            return None
        return OpenTask(n_texts=n_texts, dimensions=dimensions, attempts=attempts,
                        worker_id=worker_id, age=age)

    def _take_result(self, report: _Report, worker_id: str, result: Result) -> Flow[None]:
        task = yield from self._open_task(result.id, report)
        if task is None:
            return
        reason = result_problem(result, task)
        if reason:
            report.ignored[result.id] = reason
            return
        yield from changed(self.sql.complete, id=self._key(result.id), vectors=result.vectors,
                           dimensions=result.dimensions, tokens=result.tokens, worker=worker_id)
        report.accepted.append(result.id)
        report.final[result.id] = task.age

    def _take_failure(self, report: _Report, worker_id: str, failure: Failure,
                      max_attempts: int) -> Flow[None]:
        task = yield from self._open_task(failure.id, report)
        if task is None:
            return
        action, detail = failure_outcome(failure, task, worker_id, max_attempts)
        if action == "ignore":
            report.ignored[failure.id] = str(detail)
            return
        if action == "requeue":
            yield from changed(self.sql.requeue, id=self._key(failure.id), error=failure.error)
            report.requeued = True
        else:
            yield from changed(self.sql.fail, id=self._key(failure.id), error=failure.error,
                               kind=detail, worker=worker_id)
            report.final[failure.id] = task.age
        report.accepted.append(failure.id)

    def _expire(self, max_attempts: int, retention: float,
                pending_timeout: float) -> Flow[tuple[list[str], int]]:
        lost = yield from self._fail_lost(max_attempts)
        lost += yield from ids(self.sql.expire_pending, error=expired_error(pending_timeout),
                               kind=EXPIRED, timeout=pending_timeout)
        deleted = yield from changed(self.sql.delete_final, retention=retention)
        yield from changed(self.sql.forget_workers, age=WORKER_MEMORY)
        return lost, deleted

    def _note_worker(self, worker_id: str, dimensions: dict[str, int]) -> Flow[None]:
        yield from changed(self.sql.note_worker, worker=worker_id)
        # In a fixed order, so two replicas noting the same models cannot deadlock.
        for model, size in sorted(dimensions.items()):
            yield from changed(self.sql.note_model, model=model, dimensions=size)


def _up_to(candidates: list[Row], max_texts: int) -> list[str]:
    """The oldest candidates (id, n_texts) that hold at most max_texts texts together; at
    least one, so a request larger than max_texts is still handed out."""
    picked: list[str] = []
    texts = 0
    for task_id, n_texts in candidates:
        if picked and texts + n_texts > max_texts:
            break
        picked.append(task_id)
        texts += n_texts
    return picked
