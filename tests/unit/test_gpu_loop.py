"""The GPU worker's loop (pgvectorizer.gpu_worker.loop) against the in-memory service below."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from pgvectorizer.errors import MissingModel, ServiceAuthError
from pgvectorizer.gpu_worker.loop import GpuWorker
from pgvectorizer.gpu_worker.packing import truncate
from pgvectorizer.service.protocol import (
    ClaimedTask,
    ClaimRequest,
    ClaimResponse,
    HeartbeatRequest,
    ResultsRequest,
    TaskError,
    TaskResult,
)

from tests.helpers.gpu_fakes import (
    DIMS,
    MODEL,
    TOKEN,
    URL,
    FakeBackend,
    error,
    ok,
    result_of,
    run_async,
    task,
    vectors_of,
)


class FakeService:
    """The worker endpoints in memory, as an httpx.MockTransport handler."""

    def __init__(self, lease_seconds: float = 30.0) -> None:
        self.lease_seconds = lease_seconds
        self.pending: list[ClaimedTask] = []
        self.leased: dict[str, ClaimedTask] = {}
        self.results: dict[str, TaskResult] = {}
        self.errors: dict[str, TaskError] = {}
        self.released: list[str] = []
        self.claims: list[ClaimRequest] = []
        self.heartbeats: list[list[str]] = []
        self.beat_timeouts: list[float] = []  # seconds each heartbeat may wait for its answer
        self.revoked: set[str] = set()  # leases the service says ran out
        self.connect_errors = 0  # the next requests fail to connect
        self.results_503 = 0  # the next results posts answer 503
        self.transport = httpx.MockTransport(self.handle)

    def add(self, task_id: str, texts: list[str], dimensions: int | None = None) -> None:
        self.pending.append(task(task_id, texts, dimensions))

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.connect_errors:
            self.connect_errors -= 1
            raise httpx.ConnectError("connection refused", request=request)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return error(401, "Incorrect bearer token")
        body = json.loads(request.content)
        if request.url.path == "/worker/claim":
            return await self.claim(ClaimRequest.model_validate(body))
        if request.url.path == "/worker/heartbeat":
            beat = HeartbeatRequest.model_validate(body)
            self.heartbeats.append(beat.task_ids)
            self.beat_timeouts.append(request.extensions["timeout"]["read"])
            held = [i for i in beat.task_ids if i in self.leased and i not in self.revoked]
            return ok({"lease_seconds": self.lease_seconds, "held": held})
        if request.url.path == "/worker/results":
            if self.results_503:
                self.results_503 -= 1
                return error(503, "restarting")
            posted = ResultsRequest.model_validate(body)
            for r in posted.results:
                self.results[r.id] = r
            for e in posted.errors:
                self.errors[e.id] = e
            self.released += posted.released
            ids = [r.id for r in posted.results] + [e.id for e in posted.errors]
            for i in ids + posted.released:
                self.leased.pop(i, None)
            return ok({"accepted": ids + posted.released, "ignored": {}})
        return error(404, "Not Found")

    async def claim(self, claim: ClaimRequest) -> httpx.Response:
        self.claims.append(claim)
        deadline = time.monotonic() + claim.wait_seconds
        while not self.pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        tasks = self.pending[:claim.max_tasks]
        del self.pending[:claim.max_tasks]
        self.leased.update((t.id, t) for t in tasks)
        return ok(ClaimResponse(lease_seconds=self.lease_seconds, tasks=tasks).model_dump())


def worker_for(service: FakeService, backend: FakeBackend, **options: Any) -> GpuWorker:
    options.setdefault("wait_seconds", 0.2)
    options.setdefault("poll_interval", 0.01)
    return GpuWorker(URL, TOKEN, backend, worker_id="w1", transport=service.transport, **options)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        await asyncio.sleep(0.01)


def test_worker_embeds_posts_and_stops() -> None:
    service = FakeService()
    service.add("a", ["one", "two words"])
    service.add("b", ["three"], dimensions=4)
    backend = FakeBackend()
    worker = worker_for(service, backend)

    async def go() -> None:
        running = asyncio.create_task(worker.run())
        await until(lambda: len(service.results) == 2)
        worker.request_stop()
        await running

    run_async(go)
    np.testing.assert_allclose(result_of(service.results["a"]), vectors_of(["one", "two words"]),
                               atol=1e-6)
    b = result_of(service.results["b"])
    assert b.shape == (1, 4)
    np.testing.assert_allclose(b, truncate(vectors_of(["three"]), 4), atol=1e-6)
    assert service.results["a"].tokens + service.results["b"].tokens == 4
    assert len(backend.calls) == 1  # both tasks came in one claim, and went in one call
    assert service.claims[0].dimensions == {MODEL: DIMS}
    assert service.claims[0].worker_id == "w1" and service.claims[0].models == [MODEL]
    assert worker.batches == 1 and worker.texts == 3


def test_next_claim_while_encoding_and_stop_releases_it() -> None:
    service = FakeService()
    for name in ("a", "b", "c"):
        service.add(name, [f"text {name}"])
    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    worker = worker_for(service, backend, max_tasks=1)

    async def go() -> None:
        running = asyncio.create_task(worker.run())
        # a is encoding (held at the gate) while b is claimed already; c waits for a slot.
        await until(lambda: len(backend.calls) == 1 and "b" in service.leased)
        await asyncio.sleep(0.1)
        assert [t.id for t in service.pending] == ["c"]
        worker.request_stop()
        # b goes back at once, before a's batch is finished.
        await until(lambda: service.released == ["b"])
        assert not service.results and not running.done()
        gate.set()
        await running

    try:
        run_async(go)
    finally:
        gate.set()
    assert list(service.results) == ["a"]
    assert [call[1] for call in backend.calls] == [["text a"]]
    assert [t.id for t in service.pending] == ["c"]


def test_heartbeats_and_leases_taken_back() -> None:
    service = FakeService(lease_seconds=0.3)  # a heartbeat every 0.1 s
    service.add("a", ["text a"])
    service.add("b", ["text b"])
    gate = threading.Event()
    backend = FakeBackend(gate=gate)
    worker = worker_for(service, backend, max_tasks=1)

    async def go() -> None:
        running = asyncio.create_task(worker.run())
        await until(lambda: any(set(ids) == {"a", "b"} for ids in service.heartbeats))
        service.revoked = {"a", "b"}
        beats = len(service.heartbeats)
        await until(lambda: len(service.heartbeats) > beats)
        await asyncio.sleep(0.35)  # three more heartbeat periods
        # Neither is heartbeaten once the service has said so (one beat may have been on its
        # way when it did).
        assert all(not {"a", "b"} & set(ids) for ids in service.heartbeats[beats + 1:])
        gate.set()
        await until(lambda: "a" in service.results)
        worker.request_stop()
        await running

    try:
        run_async(go)
    finally:
        gate.set()
    # A beat that hangs is given up when the next one is due.
    assert service.beat_timeouts and all(t == pytest.approx(0.1) for t in service.beat_timeouts)
    # a was being encoded: its result is still posted. b had not started: dropped, not
    # encoded, not released (it is someone else's now).
    assert list(service.results) == ["a"]
    assert [call[1] for call in backend.calls] == [["text a"]]
    assert service.released == []


def test_results_survive_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    service = FakeService()
    service.add("a", ["text a"])
    service.results_503 = 3
    worker = worker_for(service, FakeBackend())

    async def go() -> None:
        running = asyncio.create_task(worker.run())
        await until(lambda: service.results_503 == 1)
        service.connect_errors = 2  # and the connection goes too for a while
        await until(lambda: "a" in service.results)
        worker.request_stop()
        await running

    with caplog.at_level(logging.INFO):
        run_async(go)
    assert service.results_503 == 0 and service.connect_errors == 0
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 1
    assert any(m.startswith("reconnected") for m in messages)


def test_wrong_token_stops_the_worker() -> None:
    service = FakeService()
    worker = GpuWorker(URL, "not-the-token", FakeBackend(), transport=service.transport,
                       poll_interval=0.01)

    async def go() -> None:
        with pytest.raises(ServiceAuthError, match="401"):
            await worker.run()

    run_async(go)
    assert len(service.claims) == 0


def test_wait_zero_pauses_between_empty_claims() -> None:
    service = FakeService()
    worker = worker_for(service, FakeBackend(), wait_seconds=0, poll_interval=0.1)

    async def go() -> None:
        running = asyncio.create_task(worker.run())
        await asyncio.sleep(0.45)
        worker.request_stop()
        await running

    run_async(go)
    assert 2 <= len(service.claims) <= 6  # without the pause: hundreds


def test_backend_that_cannot_work_gives_back_and_stops() -> None:
    service = FakeService()
    service.add("a", ["text a"])
    worker = worker_for(service, FakeBackend(error=MissingModel("model gone from Ollama")))

    async def go() -> None:
        with pytest.raises(MissingModel, match="gone"):
            await worker.run()

    run_async(go)
    assert service.released == ["a"] and not service.results and not service.errors
