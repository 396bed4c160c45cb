"""What a task store keeps and offers: SQLite (one service) or PostgreSQL (replicas).

A task is one embeddings request: its texts, its model, and in the end its vectors or its
error. States: pending -> processing (leased to a worker) -> completed | failed. A lease that
runs out puts the task back in the queue, so a dead worker's tasks go to another; a task
claimed max_attempts times without an answer ends failed, so a text that kills every worker
cannot kill them forever.

The two stores share their SQL (store_sql) and their logic (store_flow); store_pg and
store_sqlite differ only in how they run statements, bind values and hold transactions.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

PENDING = "pending"
PROCESSING = "processing"
COMPLETED = "completed"
FAILED = "failed"
STATES = (PENDING, PROCESSING, COMPLETED, FAILED)
FINAL = (COMPLETED, FAILED)
CANCELLED = "cancelled by the client"  # the error of a task its client cancelled

# Why a task failed (Task.error_kind): the client's answer depends on whose fault it was.
INPUT = "input"  # a worker found the input cannot be embedded: a bad request (400)
WORKER = "worker"  # workers failed on it max_attempts times (500)
LOST = "lost"  # its leases ran out max_attempts times (500)
EXPIRED = "expired"  # no worker took it within the pending timeout (503)
CANCELLED_KIND = "cancelled"  # its client cancelled it (409)


@dataclass(frozen=True)
class NewTask:
    id: str
    model: str
    inputs: list[str]
    dimensions: int | None
    encoding_format: str  # what the client asked for: how GET /tasks/{id} answers


@dataclass(frozen=True)
class Task:
    id: str
    model: str
    inputs: list[str]
    dimensions: int | None
    encoding_format: str
    status: str
    attempts: int
    created_at: float  # epoch seconds
    finished_at: float | None
    error: str | None
    result: bytes | None  # little-endian float32, len(inputs) rows of result_dimensions
    result_dimensions: int | None
    tokens: int
    error_kind: str | None = None  # INPUT, WORKER, LOST, EXPIRED or CANCELLED_KIND


@dataclass(frozen=True)
class Result:
    id: str
    vectors: bytes  # little-endian float32 rows
    dimensions: int
    tokens: int


@dataclass(frozen=True)
class Failure:
    id: str
    error: str
    retryable: bool


@dataclass(frozen=True)
class Finished:
    """What a worker's report did: ids taken, ids ignored with the reason, tasks now final."""

    accepted: list[str]
    ignored: dict[str, str]
    # Tasks completed or failed by this report (id -> seconds since it was submitted, by the
    # store's clock): their clients can answer.
    final: dict[str, float]
    requeued: bool  # some task went back to pending: waiting workers can claim it


@dataclass(frozen=True)
class OpenTask:
    """What finish() needs of a task that is not final yet."""

    n_texts: int
    dimensions: int | None
    attempts: int
    worker_id: str | None
    age: float  # seconds since it was submitted


def result_problem(result: Result, task: OpenTask) -> str | None:
    """Why a worker's result cannot be the task's answer, or None."""
    if task.dimensions is not None and result.dimensions != task.dimensions:
        return (f"the result has {result.dimensions} dimensions; the request asked for "
                f"{task.dimensions}")
    rows, extra = divmod(len(result.vectors), 4 * result.dimensions)
    if extra or rows != task.n_texts:
        return f"the result holds {len(result.vectors)} bytes, not {task.n_texts} vectors"
    return None


def failure_outcome(failure: Failure, task: OpenTask, worker_id: str,
                    max_attempts: int) -> tuple[str, str | None]:
    """What a worker's failure does to a task: ("ignore", reason), ("requeue", None) or
    ("fail", error kind)."""
    if not failure.retryable:
        return "fail", INPUT
    if task.worker_id != worker_id:
        return "ignore", "the task is leased to another worker now"
    if task.attempts < max_attempts:
        return "requeue", None
    return "fail", WORKER


def expired_error(seconds: float) -> str:
    return (f"no worker took this task within {seconds:g} s (PENDING_TIMEOUT): is a GPU worker "
            f"running for its model?")


def parse_task_id(text: str) -> str | None:
    """A task id in its canonical form (ids are UUIDs), or None if the text is not one."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


def lost_error(attempts: int) -> str:
    return (f"no worker finished this task in {attempts} attempts: each lease ran out (the "
            f"worker died, stalled or lost its connection); it is not handed out again")


class TaskStore(Protocol):
    """Async operations on tasks; every method is one transaction."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def submit(self, task: NewTask) -> None:
        """Stores the task pending; returns once it is durably committed (concurrent submits
        may share the commit)."""
        ...

    async def get(self, task_id: str) -> Task | None: ...

    async def status(self, task_id: str) -> str | None:
        """The task's state alone (cheap, for long polls), or None if there is no such task."""
        ...

    async def claim(self, worker_id: str, models: list[str], max_tasks: int, max_texts: int,
                    lease_seconds: float, max_attempts: int,
                    lost: list[str] | None = None) -> list[Task]:
        """Leases the oldest claimable tasks of these models to the worker: pending ones, and
        processing ones whose lease ran out. Tasks out of attempts end failed instead (their
        ids appended to `lost`)."""
        ...

    async def heartbeat(self, worker_id: str, task_ids: list[str],
                        lease_seconds: float) -> list[str]:
        """Extends the leases the worker still holds; returns their ids."""
        ...

    async def finish(self, worker_id: str, results: list[Result], failures: list[Failure],
                     released: list[str], max_attempts: int) -> Finished:
        """Stores results and failures of tasks that are not final yet (from any worker: a
        late answer is still right) and puts released tasks back, uncharged."""
        ...

    async def cancel(self, task_id: str) -> bool:
        """Fails a task that is not final yet, as cancelled by its client."""
        ...

    async def expire(self, max_attempts: int, retention: float,
                     pending_timeout: float) -> tuple[list[str], int]:
        """Fails leased-out tasks out of attempts and tasks pending for longer than
        pending_timeout seconds (their ids), and deletes tasks final for longer than retention
        seconds (their number)."""
        ...

    async def counts(self) -> dict[str, int]:
        """Tasks by state."""
        ...

    async def note_worker(self, worker_id: str, dimensions: dict[str, int]) -> None:
        """Records that the worker asked for work, and its models' sizes."""
        ...

    async def workers(self, seen_within: float) -> int:
        """Workers that asked for work in the last seen_within seconds."""
        ...

    async def model_dimensions(self) -> dict[str, int]:
        """Each model's native size, as its workers last reported it."""
        ...
