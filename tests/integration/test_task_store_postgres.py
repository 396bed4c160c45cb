"""The TaskStore contract (tests/helpers/task_store_contract.py) on PostgreSQL, and what only
PostgreSQL can do: replicas of the service sharing one database."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from pgvectorizer.service.store import PROCESSING, NewTask
from pgvectorizer.service.store_pg import PostgresTaskStore

from tests.helpers.task_store_contract import *
from tests.helpers.task_store_contract import (
    ATTEMPTS,
    LONG,
    MODEL,
    Harness,
    assert_all_pending,
    crash_after_submits,
    make_harness,
    new_id,
    pg_url,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["postgres"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    return make_harness(request.param, request, tmp_path)


# --- PostgreSQL: replicas at once -------------------------------------------------------------

REPLICAS = 5
CONCURRENT_TASKS = 200


async def test_postgres_replicas_claiming_at_once_share_the_tasks(
        db: psycopg.Connection, anyio_backend: str) -> None:
    url = pg_url(db)
    stores = [PostgresTaskStore(url, pool_size=2) for _ in range(REPLICAS)]
    for store in stores:
        await store.open()  # all at once would be fine too: the schema is made under a lock
    try:
        ids = [new_id() for _ in range(CONCURRENT_TASKS)]
        for i, task_id in enumerate(ids):
            await stores[i % REPLICAS].submit(NewTask(task_id, MODEL, [f"t{i}"], None, "float"))

        async def claimer(store: PostgresTaskStore, worker: str) -> list[str]:
            got: list[str] = []
            while tasks := await store.claim(worker, [MODEL], 3, 4096, LONG, ATTEMPTS):
                got.extend(t.id for t in tasks)
                await asyncio.sleep(0)
            return got

        claimed = await asyncio.gather(*(claimer(s, f"w{i}") for i, s in enumerate(stores)))
        every = [task_id for got in claimed for task_id in got]
        assert len(every) == len(set(every)), "a task was handed out twice"
        assert sorted(every) == sorted(ids)
        assert sum(1 for got in claimed if got) >= 2, "the claims did not overlap at all"
        assert await stores[0].counts() == {PROCESSING: CONCURRENT_TASKS}
    finally:
        for store in stores:
            await store.close()


# --- PostgreSQL: a crash right after a group's answers ----------------------------------------

async def test_a_postgres_store_killed_right_after_answering_keeps_every_task(
        db: psycopg.Connection, anyio_backend: str) -> None:
    url = pg_url(db)
    accepted, groups = await asyncio.to_thread(crash_after_submits, "postgres", url, 30)
    assert len(accepted) == 61  # two waves of 30, and the first answer of the third
    assert groups < len(accepted), "no group held more than one submit"
    await assert_all_pending(PostgresTaskStore(url, pool_size=1), accepted)
