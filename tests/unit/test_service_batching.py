"""Group commit (service/group_commit.py), a crash right after a group's answers (SQLite; the
PostgreSQL one is in tests/integration/test_task_store_postgres.py), and requests answered
from the worker's result without reading it back."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from pgvectorizer.service.group_commit import GroupCommit
from pgvectorizer.service.store_sqlite import SqliteTaskStore

from tests.helpers.service_helpers import (
    CLIENT,
    LONG_POLL,
    claim,
    serve,
    vector_result,
    vectors,
)
from tests.helpers.service_helpers import (
    results as post_results,
)
from tests.helpers.task_store_contract import assert_all_pending, crash_after_submits

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    """A commit that records its groups and can be held until released."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.groups: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_on = fail_on

    async def __call__(self, items: list[str]) -> None:
        await self.gate.wait()
        if self.fail_on in items:
            raise ValueError(f"cannot store {self.fail_on}")
        self.groups.append(items)


async def test_a_lone_item_is_committed_alone_at_once(anyio_backend: str) -> None:
    commit = Recorder()
    group = GroupCommit(commit)
    await group.add("a")
    assert commit.groups == [["a"]]
    assert group.groups == 1


async def test_items_that_arrive_during_a_commit_go_together_in_the_next(
        anyio_backend: str) -> None:
    commit = Recorder()
    group = GroupCommit(commit)
    commit.gate.clear()
    first = asyncio.create_task(group.add("a"))
    await asyncio.sleep(0)  # the first commit starts and waits at the gate
    await asyncio.sleep(0)
    later = [asyncio.create_task(group.add(x)) for x in "bcde"]
    await asyncio.sleep(0)
    assert not first.done() and not any(t.done() for t in later), \
        "an add returned before its item was committed"
    commit.gate.set()
    await asyncio.gather(first, *later)
    assert commit.groups == [["a"], ["b", "c", "d", "e"]]
    assert group.groups == 2


async def test_a_group_is_at_most_max_group_items(anyio_backend: str) -> None:
    commit = Recorder()
    group = GroupCommit(commit, max_group=3)
    await asyncio.gather(*(group.add(str(i)) for i in range(7)))
    assert commit.groups == [["0", "1", "2"], ["3", "4", "5"], ["6"]]


async def test_a_failing_item_fails_only_its_own_caller(anyio_backend: str) -> None:
    commit = Recorder(fail_on="bad")
    group = GroupCommit(commit)
    outcomes = await asyncio.gather(*(group.add(x) for x in ["a", "bad", "c"]),
                                    return_exceptions=True)
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], ValueError)
    assert commit.groups == [["a"], ["c"]]  # the group failed, then each alone


async def test_a_caller_that_goes_away_does_not_stop_its_groups_commit(
        anyio_backend: str) -> None:
    commit = Recorder()
    group = GroupCommit(commit)
    commit.gate.clear()
    first = asyncio.create_task(group.add("a"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    leaving = asyncio.create_task(group.add("b"))
    staying = asyncio.create_task(group.add("c"))
    await asyncio.sleep(0)
    leaving.cancel()
    commit.gate.set()
    await asyncio.gather(first, staying)
    assert commit.groups == [["a"], ["b", "c"]]


async def test_an_sqlite_store_killed_right_after_answering_keeps_every_task(
        tmp_path: Path, anyio_backend: str) -> None:
    path = str(tmp_path / "queue.db")
    accepted, groups = await asyncio.to_thread(crash_after_submits, "sqlite", path, 30)
    assert len(accepted) == 61  # two waves of 30, and the first answer of the third
    assert groups < len(accepted), "no group held more than one submit"
    await assert_all_pending(SqliteTaskStore(path), accepted)


def test_a_waiting_request_is_answered_with_the_posted_vectors(tmp_path: Path) -> None:
    with serve(tmp_path) as client, ThreadPoolExecutor(1) as pool:
        answer = pool.submit(lambda: client.post(
            "/v1/embeddings", headers=CLIENT,
            json={"input": ["one", "two"], "wait_seconds": LONG_POLL,
                  "encoding_format": "float"}))
        tasks: list[dict[str, object]] = []
        for _ in range(200):  # bounded: the request's task is stored within milliseconds
            tasks = claim(client, wait=0.05)
            if tasks:
                break
        assert len(tasks) == 1
        task_id = str(tasks[0]["id"])
        vecs = vectors(2)
        assert post_results(client, results=[vector_result(task_id, vecs, tokens=5)]
                            )["accepted"] == [task_id]
        response = answer.result(timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        got = np.array([d["embedding"] for d in body["data"]], dtype="<f4")
        assert np.array_equal(got, vecs)
        assert body["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
        # The answer read from the store says the same.
        stored = client.get(f"/tasks/{task_id}/result", headers=CLIENT)
        assert stored.json()["data"] == body["data"]


def test_a_waiting_request_gets_the_failure_when_the_result_beside_it_was_ignored(
        tmp_path: Path) -> None:
    with serve(tmp_path) as client, ThreadPoolExecutor(1) as pool:
        answer = pool.submit(lambda: client.post(
            "/v1/embeddings", headers=CLIENT,
            json={"input": ["one", "two"], "wait_seconds": LONG_POLL}))
        tasks: list[dict[str, object]] = []
        for _ in range(200):  # bounded: the request's task is stored within milliseconds
            tasks = claim(client, wait=0.05)
            if tasks:
                break
        assert len(tasks) == 1
        task_id = str(tasks[0]["id"])
        report = post_results(client, results=[vector_result(task_id, vectors(3))],  # 3 for 2
                              errors=[{"id": task_id, "error": "cannot embed this",
                                       "retryable": False}])
        assert task_id in report["ignored"] and report["accepted"] == [task_id]
        response = answer.result(timeout=30)
        assert response.status_code == 400, response.text
        assert "cannot embed this" in response.json()["error"]["message"]
