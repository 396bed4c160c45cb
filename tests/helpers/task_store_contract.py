"""The TaskStore contract (service/store.py): one set of tests that every store must pass.

The tests are collected where a module imports them with `from ... import *` and gives them a
`harness` fixture: tests/unit/test_task_store_sqlite.py (SQLite) and tests/integration/
test_task_store_postgres.py (PostgreSQL). SQLite runs on a fake clock that the tests move;
PostgreSQL uses the database's clock, so its tests take a short real lease and sleep past it.
Every test gets a fresh SQLite file or a fresh database (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pgvectorizer.service.store import (
    CANCELLED_KIND,
    COMPLETED,
    EXPIRED,
    FAILED,
    INPUT,
    LOST,
    PENDING,
    PROCESSING,
    WORKER,
    Failure,
    Finished,
    NewTask,
    Result,
    TaskStore,
    expired_error,
    lost_error,
)
from pgvectorizer.service.store_flow import SqlTaskStore
from pgvectorizer.service.store_pg import PostgresTaskStore
from pgvectorizer.service.store_sqlite import SqliteTaskStore
from psycopg.conninfo import make_conninfo

pytestmark = pytest.mark.anyio

MODEL = "model-a"
OTHER = "model-b"
DIMS = 4
SHORT = 0.3  # seconds: a lease the tests let run out
PAST_SHORT = 0.5  # seconds: moving (or sleeping) this long ends a SHORT lease
LONG = 60.0  # seconds: a lease that does not run out during a test
ATTEMPTS = 3
NEVER = 1e9  # seconds: a pending timeout no test reaches


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """Epoch seconds that move only when told, plus a millisecond per reading, so tasks
    submitted one after the other are ordered by created_at as they would be for real."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now

    async def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    kind: str
    store: TaskStore
    advance: Callable[[float], Awaitable[None]]  # lets this many seconds pass for the store
    now: Callable[[], float]  # the store's clock, approximately
    url: str | None = None  # PostgreSQL only: for more replicas on the same database
    # Another store on the same file or database: what a restarted service would open.
    twin: Callable[[], TaskStore] | None = None


def pg_url(db: psycopg.Connection) -> str:
    info = db.info
    return make_conninfo(host=info.host, port=info.port, user=info.user, dbname=info.dbname,
                         password=info.password or None)


def make_harness(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    """The store of a kind, "sqlite" or "postgres" (which asks for the `db` fixture)."""
    if kind == "sqlite":
        clock = FakeClock()
        path = str(tmp_path / "tasks.db")
        return Harness("sqlite", SqliteTaskStore(path, clock=clock), clock.advance,
                       lambda: clock.now, twin=lambda: SqliteTaskStore(path, clock=clock))
    url = pg_url(request.getfixturevalue("db"))
    return Harness("postgres", PostgresTaskStore(url, pool_size=4), asyncio.sleep, time.time,
                   url, twin=lambda: PostgresTaskStore(url, pool_size=1))


@pytest.fixture
async def h(harness: Harness, anyio_backend: str) -> AsyncIterator[Harness]:
    await harness.store.open()
    try:
        yield harness
    finally:
        await harness.store.close()


def new_id() -> str:
    return str(uuid.uuid4())


async def submit(h: Harness, inputs: list[str] | None = None, *, model: str = MODEL,
                 dimensions: int | None = None, encoding_format: str = "float") -> str:
    task_id = new_id()
    await h.store.submit(NewTask(task_id, model, inputs or ["some text"], dimensions,
                                 encoding_format))
    return task_id


async def claim(h: Harness, worker: str, *, models: tuple[str, ...] = (MODEL,),
                max_tasks: int = 64, max_texts: int = 4096, lease: float = LONG,
                max_attempts: int = ATTEMPTS) -> list[str]:
    """Claims and returns the ids, in the order the store gave them."""
    tasks = await h.store.claim(worker, list(models), max_tasks, max_texts, lease, max_attempts)
    return [t.id for t in tasks]


def vectors(n: int, dims: int = DIMS, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dims)).astype("<f4")


def result(task_id: str, n: int = 1, dims: int = DIMS, tokens: int = 7) -> Result:
    return Result(task_id, vectors(n, dims).tobytes(), dims, tokens)


async def finish(h: Harness, worker: str, *, results: list[Result] | None = None,
                 failures: list[Failure] | None = None, released: list[str] | None = None,
                 max_attempts: int = ATTEMPTS) -> Finished:
    return await h.store.finish(worker, results or [], failures or [], released or [],
                                max_attempts)


async def status(h: Harness, task_id: str) -> tuple[str, int]:
    task = await h.store.get(task_id)
    assert task is not None, f"task {task_id} is gone"
    return task.status, task.attempts


# --- submit and get ---------------------------------------------------------------------------

TEXTS = ["first", "héllo wörld", "日本語のテキスト", "emoji 🎉🚀 and ZWJ 👩‍💻",
         'quotes " \' and \\ backslash', "new\nline\ttab", "{\"json\": [1, 2]}", "x" * 20_000,
         "last"]


async def test_submit_and_get_round_trip(h: Harness) -> None:
    before = h.now()
    task_id = await submit(h, TEXTS, model=OTHER, dimensions=3, encoding_format="base64")
    task = await h.store.get(task_id)
    assert task is not None
    assert (task.id, task.model, task.inputs, task.dimensions, task.encoding_format) == \
        (task_id, OTHER, TEXTS, 3, "base64")
    assert (task.status, task.attempts, task.finished_at, task.error, task.result,
            task.result_dimensions, task.tokens) == (PENDING, 0, None, None, None, None, 0)
    assert before - 5 <= task.created_at <= h.now() + 5
    other = await submit(h, ["one"])
    got = await h.store.get(other)
    assert got is not None and got.inputs == ["one"] and got.dimensions is None
    assert await h.store.get(new_id()) is None


async def test_texts_with_a_nul_character_round_trip(h: Harness,
                                                     request: pytest.FixtureRequest) -> None:
    texts = ["a\x00b", "\x00"]
    task_id = await submit(h, texts)
    task = await h.store.get(task_id)
    assert task is not None and task.inputs == texts


# --- claim ------------------------------------------------------------------------------------

# --- group commit: submits that arrive together ----------------------------------------------

TOGETHER = 20  # submits at once


def _commits(store: TaskStore) -> int:
    assert isinstance(store, SqlTaskStore)  # both stores: their submits share GroupCommit
    return store.submits.groups


async def test_submits_that_arrive_together_share_one_commit_and_all_last(h: Harness) -> None:
    before = _commits(h.store)
    tasks = [NewTask(new_id(), MODEL, [f"text {i}"], None, "float") for i in range(TOGETHER)]
    await asyncio.gather(*(h.store.submit(t) for t in tasks))
    assert _commits(h.store) == before + 1, "the submits were not committed together"
    # Committed, not just written: another store on the same data reads every one.
    assert h.twin is not None
    twin = h.twin()
    await twin.open()
    try:
        for t in tasks:
            found = await twin.get(t.id)
            assert found is not None and (found.status, found.inputs) == (PENDING, t.inputs)
    finally:
        await twin.close()
    assert await claim(h, "w1") == [t.id for t in tasks]  # in the order they were submitted


async def test_a_submit_that_fails_in_a_group_fails_alone(h: Harness) -> None:
    first = NewTask(new_id(), MODEL, ["first"], None, "float")
    again = NewTask(first.id, MODEL, ["the same id again"], None, "float")
    others = [NewTask(new_id(), MODEL, [f"text {i}"], None, "float") for i in range(5)]
    outcomes = await asyncio.gather(*(h.store.submit(t) for t in [first, again, *others]),
                                    return_exceptions=True)
    assert outcomes[0] is None and all(o is None for o in outcomes[2:]), outcomes
    assert isinstance(outcomes[1], Exception), "a duplicate id was stored"
    for t in [first, *others]:
        found = await h.store.get(t.id)
        assert found is not None and found.inputs == t.inputs


async def test_claim_takes_the_oldest_first_up_to_max_tasks(h: Harness) -> None:
    ids = [await submit(h, [f"text {i}"]) for i in range(5)]
    first = await h.store.claim("w1", [MODEL], 2, 4096, LONG, ATTEMPTS)
    assert [t.id for t in first] == ids[:2]
    assert [(t.status, t.attempts, t.inputs) for t in first] == \
        [(PROCESSING, 1, ["text 0"]), (PROCESSING, 1, ["text 1"])]
    assert await claim(h, "w2", max_tasks=2) == ids[2:4]
    assert await claim(h, "w1", max_tasks=2) == ids[4:]
    assert await claim(h, "w1") == []


async def test_claim_stops_before_max_texts_but_takes_at_least_one_task(h: Harness) -> None:
    ids = [await submit(h, ["t"] * n) for n in (3, 3, 3, 1)]
    # 3 texts do not fit in 2, but a worker always gets one task
    assert await claim(h, "w1", max_texts=2) == ids[:1]
    # 3 + 3 does not fit in 5; the 1-text task behind would, but is not taken out of order
    assert await claim(h, "w1", max_texts=5) == ids[1:2]
    # 3 + 1 fits in 4 exactly
    assert await claim(h, "w1", max_texts=4) == ids[2:]
    assert await claim(h, "w1", max_texts=4096) == []


async def test_claim_only_takes_the_workers_models(h: Harness) -> None:
    a = await submit(h, model=MODEL)
    b = await submit(h, model=OTHER)
    c = await submit(h, model="model-c")
    assert await claim(h, "w1", models=(OTHER,)) == [b]
    assert await claim(h, "w2", models=("model-c", MODEL, "unknown")) == [a, c]
    assert await claim(h, "w3", models=(MODEL, OTHER, "model-c")) == []


async def test_a_leased_task_is_not_claimed_again(h: Harness) -> None:
    a = await submit(h)
    assert await claim(h, "w1") == [a]
    assert await claim(h, "w2") == []
    assert await claim(h, "w1") == []
    assert await status(h, a) == (PROCESSING, 1)


async def test_an_expired_lease_goes_to_another_worker(h: Harness) -> None:
    a = await submit(h)
    b = await submit(h)
    assert await claim(h, "w1", max_tasks=1, lease=SHORT) == [a]
    await h.advance(PAST_SHORT)
    tasks = await h.store.claim("w2", [MODEL], 64, 4096, LONG, ATTEMPTS)
    assert [(t.id, t.attempts, t.status) for t in tasks] == [(a, 2, PROCESSING), (b, 1, PROCESSING)]
    # The first worker no longer holds it
    assert await h.store.heartbeat("w1", [a], LONG) == []
    assert await h.store.heartbeat("w2", [a, b], LONG) == [a, b]


async def test_a_task_out_of_attempts_fails_when_a_claim_runs(h: Harness) -> None:
    a = await submit(h)
    assert await claim(h, "w1", lease=SHORT, max_attempts=2) == [a]
    await h.advance(PAST_SHORT)
    assert await claim(h, "w2", lease=SHORT, max_attempts=2) == [a]
    assert await status(h, a) == (PROCESSING, 2)
    await h.advance(PAST_SHORT)
    assert await claim(h, "w3", max_attempts=2) == []
    task = await h.store.get(a)
    assert task is not None
    assert (task.status, task.attempts, task.error) == (FAILED, 2, lost_error(2))
    assert task.finished_at is not None
    assert await h.store.heartbeat("w2", [a], LONG) == []


async def test_a_task_out_of_attempts_fails_when_expire_runs(h: Harness) -> None:
    b = await submit(h)
    assert await claim(h, "w1", lease=LONG, max_attempts=1) == [b]
    assert await h.store.expire(1, 3600, NEVER) == ([], 0)  # b's lease has not run out
    a = await submit(h)
    assert await claim(h, "w1", lease=SHORT, max_attempts=1) == [a]
    await h.advance(PAST_SHORT)
    assert await h.store.expire(1, 3600, NEVER) == ([a], 0)
    task = await h.store.get(a)
    assert task is not None and (task.status, task.error) == (FAILED, lost_error(1))
    assert await status(h, b) == (PROCESSING, 1)
    # A lease that ran out with attempts left is not failed by expire
    c = await submit(h)
    assert await claim(h, "w1", lease=SHORT) == [c]
    await h.advance(PAST_SHORT)
    assert await h.store.expire(ATTEMPTS, 3600, NEVER) == ([], 0)
    assert await status(h, c) == (PROCESSING, 1)


async def test_a_pending_task_with_attempts_used_up_is_not_stuck(
        h: Harness, request: pytest.FixtureRequest) -> None:
    """MAX_ATTEMPTS lowered on a restart (or replicas that differ during a rolling update):
    a requeued task that has had that many claims must still end, claimed or failed."""
    a = await submit(h)
    assert await claim(h, "w1", max_attempts=3) == [a]
    await finish(h, "w1", failures=[Failure(a, "try again", True)], max_attempts=3)
    assert await status(h, a) == (PENDING, 1)
    claimed = await claim(h, "w2", max_attempts=1)
    await h.store.expire(1, 3600, NEVER)
    assert claimed == [a] or (await status(h, a))[0] == FAILED
    assert (await status(h, a))[0] != PENDING


# --- heartbeat --------------------------------------------------------------------------------

async def test_heartbeat_extends_only_the_workers_own_leases(h: Harness) -> None:
    a = await submit(h)
    b = await submit(h)
    c = await submit(h)
    assert await claim(h, "w1", lease=SHORT) == [a, b, c]
    assert await h.store.heartbeat("w2", [a, b], LONG) == []
    assert await h.store.heartbeat("w1", [], LONG) == []
    assert sorted(await h.store.heartbeat("w1", [a, c, new_id()], LONG)) == sorted([a, c])
    await h.advance(PAST_SHORT)
    # b's lease ran out; a's and c's were extended
    assert await claim(h, "w2") == [b]


async def test_heartbeat_after_the_lease_ran_out_extends_it_until_another_claims(
        h: Harness) -> None:
    a = await submit(h)
    assert await claim(h, "w1", lease=SHORT) == [a]
    await h.advance(PAST_SHORT)
    assert await h.store.heartbeat("w1", [a], LONG) == [a]
    assert await claim(h, "w2") == []
    assert await status(h, a) == (PROCESSING, 1)


async def test_heartbeat_of_a_finished_task_holds_nothing(h: Harness) -> None:
    a = await submit(h)
    assert await claim(h, "w1") == [a]
    assert (await finish(h, "w1", results=[result(a)])).accepted == [a]
    assert await h.store.heartbeat("w1", [a], LONG) == []


async def test_heartbeat_with_an_id_that_is_no_uuid_holds_the_others(
        h: Harness, request: pytest.FixtureRequest) -> None:
    a = await submit(h)
    assert await claim(h, "w1") == [a]
    assert await h.store.heartbeat("w1", ["not-a-uuid", a], LONG) == [a]


# --- finish: results --------------------------------------------------------------------------

async def test_a_result_from_the_holder_completes_the_task(h: Harness) -> None:
    a = await submit(h, ["one", "two"])
    task = (await h.store.claim("w1", [MODEL], 64, 4096, LONG, ATTEMPTS))[0]
    answer = Result(a, vectors(2).tobytes(), DIMS, 11)
    done = await finish(h, "w1", results=[answer])
    assert (done.accepted, done.ignored, done.requeued) == ([a], {}, False)
    # final holds each task's age by the store's clock: the latency the metrics observe.
    assert done.final == {a: pytest.approx(h.now() - task.created_at, abs=0.5)}
    got = await h.store.get(a)
    assert got is not None
    assert (got.status, got.result, got.result_dimensions, got.tokens, got.error) == \
        (COMPLETED, vectors(2).tobytes(), DIMS, 11, None)
    assert got.finished_at is not None and got.finished_at >= got.created_at
    # Once completed, more answers are ignored, with the reason
    again = await finish(h, "w1", results=[result(a, 2)],
                         failures=[Failure(a, "boom", False)])
    assert (again.accepted, again.final, again.requeued) == ([], {}, False)
    assert again.ignored == {a: "the task is completed already"}
    got_again = await h.store.get(a)
    assert got_again is not None and got_again.tokens == 11 and got_again.error is None


async def test_a_late_result_is_accepted_while_the_task_is_not_final(h: Harness) -> None:
    a = await submit(h)
    assert await claim(h, "w1", lease=SHORT) == [a]
    await h.advance(PAST_SHORT)
    assert await claim(h, "w2") == [a]
    done = await finish(h, "w1", results=[result(a, tokens=5)])
    assert done.accepted == [a] and list(done.final) == [a]
    got = await h.store.get(a)
    assert got is not None and (got.status, got.tokens, got.attempts) == (COMPLETED, 5, 2)
    # The worker that holds the lease now learns that the task is done
    assert await h.store.heartbeat("w2", [a], LONG) == []
    assert (await finish(h, "w2", results=[result(a)])).ignored == \
        {a: "the task is completed already"}


async def test_a_result_for_a_pending_task_is_accepted(h: Harness) -> None:
    a = await submit(h)
    assert (await finish(h, "w9", results=[result(a)])).accepted == [a]
    assert await status(h, a) == (COMPLETED, 0)
    assert await claim(h, "w1") == []


async def test_results_of_the_wrong_shape_are_ignored_with_the_reason(h: Harness) -> None:
    two = await submit(h, ["a", "b"])
    sized = await submit(h, ["a"], dimensions=DIMS)
    assert await claim(h, "w1") == [two, sized]
    unknown = new_id()
    done = await finish(h, "w1", results=[
        result(two, n=3),
        Result(sized, vectors(1, 8).tobytes(), 8, 1),
        result(unknown),
        Result("not-a-uuid", b"", DIMS, 0),
    ])
    assert (done.accepted, done.final) == ([], {})
    assert done.ignored == {
        two: "the result holds 48 bytes, not 2 vectors",
        sized: f"the result has 8 dimensions; the request asked for {DIMS}",
        unknown: "no such task (it may have expired)",
        "not-a-uuid": "no such task (it may have expired)",
    }
    # A byte count that is not whole rows
    partial = await finish(h, "w1", results=[Result(two, vectors(2).tobytes()[:-4], DIMS, 1)])
    assert partial.ignored == {two: "the result holds 28 bytes, not 2 vectors"}
    assert await status(h, two) == (PROCESSING, 1)
    assert await status(h, sized) == (PROCESSING, 1)
    # The right shape is still taken afterwards; fewer dimensions than the model's are fine
    # when the request named no size
    done = await finish(h, "w1", results=[result(two, n=2, dims=2), result(sized)])
    assert done.accepted == [two, sized]
    got = await h.store.get(two)
    assert got is not None and got.result_dimensions == 2


# --- finish: failures and releases ------------------------------------------------------------

async def test_a_retryable_failure_requeues_until_max_attempts(h: Harness) -> None:
    a = await submit(h)
    assert await claim(h, "w1", max_attempts=2) == [a]
    done = await finish(h, "w1", failures=[Failure(a, "CUDA out of memory", True)],
                        max_attempts=2)
    assert (done.accepted, done.ignored, done.final, done.requeued) == ([a], {}, {}, True)
    task = await h.store.get(a)
    assert task is not None
    assert (task.status, task.attempts, task.error, task.finished_at) == \
        (PENDING, 1, "CUDA out of memory", None)
    assert await h.store.heartbeat("w1", [a], LONG) == []
    claimed = await h.store.claim("w2", [MODEL], 64, 4096, LONG, 2)
    assert [(t.id, t.attempts) for t in claimed] == [(a, 2)]
    done = await finish(h, "w2", failures=[Failure(a, "out of memory again", True)],
                        max_attempts=2)
    assert (done.accepted, list(done.final), done.requeued) == ([a], [a], False)
    task = await h.store.get(a)
    assert task is not None
    assert (task.status, task.attempts, task.error) == (FAILED, 2, "out of memory again")
    assert task.finished_at is not None
    assert await claim(h, "w3", max_attempts=2) == []


async def test_a_failure_that_is_not_retryable_fails_the_task_at_once(h: Harness) -> None:
    a = await submit(h)
    b = await submit(h)
    assert await claim(h, "w1") == [a, b]
    done = await finish(h, "w1", results=[result(b)],
                        failures=[Failure(a, "the text is too long", False)])
    assert (sorted(done.accepted), sorted(done.final), done.requeued) == \
        (sorted([a, b]), sorted([a, b]), False)
    task = await h.store.get(a)
    assert task is not None and (task.status, task.attempts, task.error) == \
        (FAILED, 1, "the text is too long")
    assert await status(h, b) == (COMPLETED, 1)


async def test_a_retryable_failure_from_a_worker_without_the_lease_is_ignored(
        h: Harness) -> None:
    a = await submit(h)
    pending = await submit(h, model=OTHER)
    assert await claim(h, "w1") == [a]
    done = await finish(h, "w2", failures=[Failure(a, "w2 is confused", True),
                                           Failure(pending, "never claimed", True)])
    assert (done.accepted, done.requeued) == ([], False)
    assert done.ignored == {a: "the task is leased to another worker now",
                            pending: "the task is leased to another worker now"}
    task = await h.store.get(a)
    assert task is not None and (task.status, task.attempts, task.error) == (PROCESSING, 1, None)
    assert await status(h, pending) == (PENDING, 0)


async def test_a_released_task_goes_back_uncharged(h: Harness) -> None:
    a = await submit(h)
    b = await submit(h)
    assert await claim(h, "w1") == [a, b]
    done = await finish(h, "w2", released=[a])
    assert (done.accepted, done.ignored, done.requeued) == \
        ([], {a: "not leased to this worker"}, False)
    unknown = new_id()
    done = await finish(h, "w1", released=[a, unknown, "not-a-uuid"])
    assert (done.accepted, done.final, done.requeued) == ([a], {}, True)
    assert done.ignored == {unknown: "not leased to this worker",
                            "not-a-uuid": "not leased to this worker"}
    assert await status(h, a) == (PENDING, 0)
    claimed = await h.store.claim("w2", [MODEL], 64, 4096, LONG, ATTEMPTS)
    assert [(t.id, t.attempts) for t in claimed] == [(a, 1)]
    assert await status(h, b) == (PROCESSING, 1)


# --- cancel, expire, counts, workers ----------------------------------------------------------

async def test_cancel_fails_a_task_that_is_not_final(h: Harness) -> None:
    pending = await submit(h)
    assert await h.store.cancel(pending)
    task = await h.store.get(pending)
    assert task is not None
    assert (task.status, task.error) == (FAILED, "cancelled by the client")
    assert task.finished_at is not None
    assert not await h.store.cancel(pending)
    assert not await h.store.cancel(new_id())
    assert await claim(h, "w1") == []

    leased = await submit(h)
    assert await claim(h, "w1") == [leased]
    assert await h.store.cancel(leased)
    assert await h.store.heartbeat("w1", [leased], LONG) == []
    assert (await finish(h, "w1", results=[result(leased)])).ignored == \
        {leased: "the task is failed already"}

    done = await submit(h)
    await finish(h, "w1", results=[result(done)])
    assert not await h.store.cancel(done)
    assert await status(h, done) == (COMPLETED, 0)


async def test_expire_deletes_finished_tasks_older_than_retention(h: Harness) -> None:
    old_done = await submit(h)
    old_failed = await submit(h)
    await finish(h, "w1", results=[result(old_done)],
                 failures=[Failure(old_failed, "bad input", False)])
    old_pending = await submit(h)
    await h.advance(PAST_SHORT)
    new_done = await submit(h)
    await finish(h, "w1", results=[result(new_done)])
    assert await h.store.expire(ATTEMPTS, SHORT, NEVER) == ([], 2)
    assert await h.store.get(old_done) is None
    assert await h.store.get(old_failed) is None
    assert await status(h, old_pending) == (PENDING, 0)
    assert await status(h, new_done) == (COMPLETED, 0)
    assert await h.store.expire(ATTEMPTS, SHORT, NEVER) == ([], 0)


async def test_counts_by_state(h: Harness) -> None:
    assert await h.store.counts() == {}
    ids = [await submit(h) for _ in range(6)]
    assert await claim(h, "w1", max_tasks=4) == ids[:4]
    await finish(h, "w1", results=[result(ids[0])], failures=[Failure(ids[1], "no", False)])
    await h.store.cancel(ids[4])
    assert await h.store.counts() == {PENDING: 1, PROCESSING: 2, COMPLETED: 1, FAILED: 2}


async def test_workers_and_model_dimensions(h: Harness) -> None:
    assert await h.store.workers(60) == 0
    assert await h.store.model_dimensions() == {}
    await h.store.note_worker("w1", {MODEL: 384, OTHER: 768})
    await h.store.note_worker("w2", {})
    await h.store.note_worker("w1", {MODEL: 384})
    assert await h.store.workers(60) == 2
    assert await h.store.model_dimensions() == {MODEL: 384, OTHER: 768}
    await h.advance(PAST_SHORT)
    await h.store.note_worker("w3", {OTHER: 1024})
    assert await h.store.workers(SHORT) == 1  # w1 and w2 were seen before
    assert await h.store.workers(60) == 3
    assert await h.store.model_dimensions() == {MODEL: 384, OTHER: 1024}


async def test_a_task_pending_past_the_timeout_fails_as_expired(h: Harness) -> None:
    old = await submit(h)
    await h.advance(PAST_SHORT)
    new = await submit(h)
    claimed = await submit(h)
    assert await claim(h, "w1", max_tasks=1) == [old]  # a leased task does not expire
    assert await h.store.expire(ATTEMPTS, NEVER, SHORT) == ([], 0)
    await h.advance(PAST_SHORT)
    lost, deleted = await h.store.expire(ATTEMPTS, NEVER, SHORT)
    assert (sorted(lost), deleted) == (sorted([new, claimed]), 0)
    task = await h.store.get(new)
    assert task is not None
    assert (task.status, task.error_kind, task.error) == ("failed", EXPIRED, expired_error(SHORT))
    assert await h.store.status(old) == "processing"
    assert await h.store.status(str(uuid.uuid4())) is None


async def test_each_failure_says_whose_fault_it_was(h: Harness) -> None:
    bad_input, out_of_tries, vanished, cancelled = [await submit(h) for _ in range(4)]
    assert await claim(h, "w1", lease=SHORT, max_attempts=1) == [
        bad_input, out_of_tries, vanished, cancelled]
    await finish(h, "w1", failures=[Failure(bad_input, "not text", False),
                                    Failure(out_of_tries, "driver crashed", True)],
                 max_attempts=1)
    assert await h.store.cancel(cancelled)
    await h.advance(PAST_SHORT)
    assert await h.store.expire(1, NEVER, NEVER) == ([vanished], 0)
    kinds = {}
    for task_id in (bad_input, out_of_tries, vanished, cancelled):
        task = await h.store.get(task_id)
        assert task is not None and task.status == FAILED
        kinds[task_id] = task.error_kind
    assert kinds == {bad_input: INPUT, out_of_tries: WORKER, vanished: LOST,
                     cancelled: CANCELLED_KIND}


# --- a crash right after the answers ------------------------------------------------------------

# A process that submits tasks at once, prints each id as soon as its submit returns (when a
# service would answer "accepted"), and dies by SIGKILL at the first answer of its last group
# of submits, while the rest of that group may still be under way: no close, no clean
# shutdown, and no time for a commit that an answer had run ahead of.
_CRASHING_SUBMITTER = """
import asyncio, os, signal, sys, uuid
from pgvectorizer.service.store import NewTask
kind, target, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "sqlite":
    from pgvectorizer.service.store_sqlite import SqliteTaskStore as Store
else:
    from pgvectorizer.service.store_pg import PostgresTaskStore as Store

async def main():
    store = Store(target)
    await store.open()
    async def one(i, last):
        task_id = str(uuid.uuid4())
        await store.submit(NewTask(task_id, "model-a", [f"text {i} " * 100], None, "float"))
        sys.stdout.write(task_id + "\\n")
        if last:  # killed at the first answer of the last wave: nothing more is written
            sys.stdout.write(f"groups {store.submits.groups}\\n")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    # Two waves at once, then a third, ten times larger, whose commit takes a while; its
    # submits beyond the first answered are not counted.
    await asyncio.gather(*(one(i, False) for i in range(2 * count)))
    await asyncio.gather(*(one(2 * count + i, True) for i in range(10 * count)))

asyncio.run(main())
"""
CRASH_TIMEOUT = 120  # seconds: the submitter takes about one


def crash_after_submits(kind: str, target: str, per_wave: int) -> tuple[list[str], int]:
    """Runs the crashing submitter; the ids it was answered for, and its number of commits."""
    done = subprocess.run([sys.executable, "-c", _CRASHING_SUBMITTER, kind, target,
                           str(per_wave)], capture_output=True, text=True,
                          timeout=CRASH_TIMEOUT, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    lines = done.stdout.split()
    assert lines[-2] == "groups", done.stdout
    return lines[:-2], int(lines[-1])


async def assert_all_pending(store: TaskStore, ids: list[str]) -> None:
    await store.open()
    try:
        for task_id in ids:
            found = await store.get(task_id)
            assert found is not None, f"task {task_id} was accepted, then lost in the crash"
            assert found.status == PENDING
        # Submits not yet answered may be stored too (their commit ran): pending as well.
        counts = await store.counts()
        assert set(counts) == {PENDING} and counts[PENDING] >= len(ids), counts
    finally:
        await store.close()
