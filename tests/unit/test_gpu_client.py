"""The GPU worker's HTTP client (pgvectorizer.gpu_worker.client): retries, back-off, refusals."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest
from pgvectorizer.errors import ServiceAuthError, ServiceRefusal
from pgvectorizer.gpu_worker import client as client_mod
from pgvectorizer.gpu_worker.client import ServiceClient, ServiceUnavailable, base_url
from pgvectorizer.service.protocol import (
    ClaimRequest,
    HeartbeatRequest,
    ResultsRequest,
    TaskResult,
    encode_vectors,
)

from tests.helpers.gpu_fakes import (
    DIMS,
    MODEL,
    TOKEN,
    URL,
    error,
    ok,
    run_async,
    vectors_of,
)


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


def test_a_heartbeat_with_no_answer_is_given_up_after_its_timeout() -> None:
    # A real socket that takes the request and never answers: only the timeout ends the wait,
    # where the client's own (a long poll's, 50 s here) would outlast a lease of a few beats.
    async def go() -> None:
        held: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)
            await reader.read(65536)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with ServiceClient(f"http://127.0.0.1:{port}", TOKEN, wait_seconds=20,
                                     poll_interval=1) as client:
                started = time.monotonic()
                with pytest.raises(ServiceUnavailable):
                    await client.heartbeat(HeartbeatRequest(worker_id="w1", task_ids=["t"]),
                                           timeout=0.3)
                assert 0.3 <= time.monotonic() - started < 5
        finally:
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()

    run_async(go)


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
