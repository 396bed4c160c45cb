"""The queue service's HTTP API (service.app, service.core) in process, on SQLite."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pgvectorizer import __version__
from pgvectorizer.service.protocol import Preference, parse_prefer
from pgvectorizer.service.settings import DEFAULT_LEASE_SECONDS
from pgvectorizer.service.store import lost_error

from tests.helpers.service_helpers import (
    ANY_ID,
    CLIENT,
    DIMS,
    LONG_POLL,
    MODEL,
    OTHER,
    RESULT_TIMEOUT,
    TOKEN,
    WORKER,
    Response,
    assert_error,
    claim,
    complete,
    metric,
    results,
    serve,
    submit,
    task,
    vector_result,
    vectors,
)

# The tests play the GPU worker themselves through /worker/claim and /worker/results, so every
# vector a client gets back is one the test posted. A client's long poll runs in a thread while
# the test works as the worker.


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with serve(tmp_path) as client:
        yield client


@pytest.fixture
def background() -> Iterator[Callable[..., Future[Response]]]:
    """Runs a client call in a thread: a long poll the test answers as the worker."""
    with ThreadPoolExecutor(4) as pool:
        yield pool.submit


def metrics_text(client: TestClient) -> str:
    return str(client.get("/metrics", headers=CLIENT).text)


# --- health -----------------------------------------------------------------------------------

def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


# --- answers ----------------------------------------------------------------------------------

def test_wait_seconds_zero_answers_202_with_where_to_ask(client: TestClient) -> None:
    response = client.post("/v1/embeddings", headers=CLIENT,
                           json={"input": ["a", "b"], "wait_seconds": 0})
    assert response.status_code == 202
    body = response.json()
    task_id = body["id"]
    assert str(uuid.UUID(task_id)) == task_id
    assert body == {"id": task_id, "object": "embedding.task", "status": "pending",
                    "url": f"/tasks/{task_id}"}
    assert response.headers["location"] == f"/tasks/{task_id}"
    assert task(client, task_id)["status"] == "pending"


# The task protocol is for clients that ask for it: wait_seconds in the body, or RFC 7240's
# `Prefer: respond-async`. The OpenAI SDK asks for neither and reads a 202 as an empty success
# ("No embedding data received"), so it gets its vectors or a 503 that it retries.

def test_a_request_without_the_task_protocol_gets_a_retryable_503_not_a_202(
        tmp_path: Path) -> None:
    with serve(tmp_path, sync_wait_seconds=0.3) as client:
        started = time.monotonic()
        response = client.post("/v1/embeddings", headers=CLIENT, json={"input": ["a", "b"]})
        assert time.monotonic() - started >= 0.3
        message = assert_error(response, 503, code="not_ready", type="server_error",
                               message="SYNC_WAIT_SECONDS")
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-should-retry"] == "true"
        assert "location" not in response.headers
        # The SDK sends a request of its own again: no worker gets the abandoned task.
        task_id = message.split("task ")[1].split()[0]
        body = task(client, task_id)
        assert (body["status"], body["error"]) == ("failed", "cancelled by the client")
        assert claim(client) == []


def test_a_request_without_the_task_protocol_gets_vectors_in_the_wait(
        tmp_path: Path, background: Callable[..., Future[Response]]) -> None:
    with serve(tmp_path, sync_wait_seconds=LONG_POLL) as client:
        pending = background(client.post, "/v1/embeddings", headers=CLIENT,
                             json={"input": ["a", "b"]})
        [claimed] = claim(client, wait=LONG_POLL)
        vecs = vectors(2)
        results(client, results=[vector_result(claimed["id"], vecs)])
        response = pending.result(timeout=RESULT_TIMEOUT)
        assert response.status_code == 200, response.text
        got = np.array([d["embedding"] for d in response.json()["data"]], dtype=np.float32)
        assert np.array_equal(got, vecs)


def test_the_openai_package_retries_the_503_and_gets_the_vectors(
        tmp_path: Path, background: Callable[..., Future[Response]]) -> None:
    import openai

    # The first request's wait runs out (the test claims nothing yet); the SDK, at its
    # default retries, sends it again after Retry-After, and the test answers that one.
    with serve(tmp_path, sync_wait_seconds=1.0) as client:
        sdk = openai.OpenAI(api_key=TOKEN, base_url="http://testserver/v1", http_client=client)
        pending = background(sdk.embeddings.create, input=["a", "b"], model=MODEL,
                             encoding_format="float")
        deadline = time.monotonic() + RESULT_TIMEOUT
        while 'route="/v1/embeddings",code="503"} 1' not in metrics_text(client):
            assert time.monotonic() < deadline, "the first request was not answered 503"
            time.sleep(0.05)
        [claimed] = claim(client, wait=LONG_POLL)
        vecs = vectors(2)
        results(client, results=[vector_result(claimed["id"], vecs)])
        answer = pending.result(timeout=RESULT_TIMEOUT)
        assert np.array_equal(np.array([d.embedding for d in answer.data], dtype=np.float32),
                              vecs)
        assert 'route="/v1/embeddings",code="200"} 1' in metrics_text(client)
        assert 'code="202"' not in metrics_text(client)


def test_prefer_respond_async_asks_for_the_task_protocol(client: TestClient) -> None:
    response = client.post("/v1/embeddings", headers={**CLIENT, "Prefer": "respond-async"},
                           json={"input": "a"})
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]
    assert response.headers["location"] == f"/tasks/{task_id}"
    assert response.headers["preference-applied"] == "respond-async"
    assert response.json()["status"] == "pending"


def test_prefer_wait_sets_the_long_poll_at_most_max_wait(tmp_path: Path) -> None:
    with serve(tmp_path, max_wait_seconds=0.6) as client:
        for prefer, low, high in (("respond-async, wait=0.2", 0.2, 0.6),
                                  ("wait=30;x=1, Respond-Async", 0.6, 3.0)):
            started = time.monotonic()
            response = client.post("/v1/embeddings", headers={**CLIENT, "Prefer": prefer},
                                   json={"input": "a"})
            assert response.status_code == 202, (prefer, response.text)
            assert low <= time.monotonic() - started < high, prefer


def test_wait_seconds_in_the_body_still_asks_for_the_task_protocol(tmp_path: Path) -> None:
    # The field wins over a Prefer wait, and needs no Prefer at all.
    with serve(tmp_path, sync_wait_seconds=LONG_POLL) as client:
        started = time.monotonic()
        response = client.post("/v1/embeddings", headers={**CLIENT, "Prefer": "wait=5"},
                               json={"input": "a", "wait_seconds": 0.2})
        assert response.status_code == 202, response.text
        assert 0.2 <= time.monotonic() - started < LONG_POLL
        assert "preference-applied" not in response.headers


@pytest.mark.parametrize(("values", "respond_async", "wait"), [
    ([], False, None),
    (["respond-async"], True, None),
    (["respond-async, wait=10"], True, 10.0),
    (["RESPOND-ASYNC ; foo=bar", "wait = 2.5"], True, 2.5),
    (['handling=lenient, wait="7"'], False, 7.0),
    (['foo="a, respond-async", wait=1'], False, 1.0),  # inside a quoted-string: no preference
    (["wait=3, wait=9, respond-async"], True, 3.0),  # the first of a repeated one counts
    (["respond-async, wait=-1"], True, None),
    (["respond-async, wait=soon"], True, None),
    (["respond-async, wait=nan", "wait=4"], True, None),
    (["return=minimal"], False, None),
])
def test_parse_prefer(values: list[str], respond_async: bool, wait: float | None) -> None:
    assert parse_prefer(values) == Preference(respond_async, wait)


# Exact float32 values that a careless formatting would change: thirds, the smallest
# normal and subnormal, the largest, and a zero with its sign.
SPECIAL = np.array([1 / 3, 1.17549435e-38, 1.4e-45, 3.4028235e38, -0.0, 123456.789, -2 / 3,
                    1e-7], dtype="<f4")


@pytest.mark.parametrize(("encoding_format", "model"), [("float", None), ("base64", OTHER),
                                                         ("float", OTHER)])
def test_a_request_is_answered_with_the_workers_vectors(
        client: TestClient, background: Callable[..., Future[Response]],
        encoding_format: str, model: str | None) -> None:
    texts = ["first text", "zweiter Text: äöü", "三番目"]
    request: dict[str, Any] = {"input": texts, "encoding_format": encoding_format,
                               "wait_seconds": LONG_POLL}
    if model:
        request["model"] = model
    pending = background(client.post, "/v1/embeddings", headers=CLIENT, json=request)
    tasks = claim(client, models=(MODEL, OTHER), wait=LONG_POLL,
                  dimensions={MODEL: len(SPECIAL), OTHER: len(SPECIAL)})
    assert len(tasks) == 1
    claimed = tasks[0]
    assert claimed == {"id": claimed["id"], "model": model or MODEL, "input": texts,
                       "dimensions": None, "attempt": 1}
    vecs = np.stack([SPECIAL, SPECIAL[::-1], vectors(1, len(SPECIAL))[0]])
    report = results(client, results=[vector_result(claimed["id"], vecs, tokens=17)])
    assert report == {"accepted": [claimed["id"]], "ignored": {}}

    response = pending.result(timeout=RESULT_TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"object", "data", "model", "usage"}
    assert body["object"] == "list"
    assert body["model"] == (model or MODEL)
    assert body["usage"] == {"prompt_tokens": 17, "total_tokens": 17}
    assert [(d["object"], d["index"]) for d in body["data"]] == \
        [("embedding", 0), ("embedding", 1), ("embedding", 2)]
    for row, item in zip(vecs, body["data"], strict=True):
        if encoding_format == "float":
            # Nine significant digits: parsed and rounded to float32, each is the very float
            assert np.array_equal(np.array(item["embedding"], dtype=np.float32), row)
        else:
            got = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")
            assert got.tobytes() == row.tobytes()  # bit for bit, the zero's sign too


def test_the_task_routes_follow_a_task_to_its_end(client: TestClient) -> None:
    task_id = submit(client, ["a", "b"], encoding_format="base64")
    for path in ("/tasks/{}", "/v1/tasks/{}"):
        body = task(client, task_id, path)
        assert body["status"] == "pending"
        assert (body["id"], body["object"], body["model"], body["inputs"], body["attempts"],
                body["finished_at"], body["error"], body["result"]) == \
            (task_id, "embedding.task", MODEL, 2, 0, None, None, None)
        assert abs(body["created_at"] - time.time()) < 60
    for path in (f"/tasks/{task_id}/result", f"/v1/tasks/{task_id}/result"):
        response = client.get(path, headers=CLIENT)
        assert response.status_code == 202
        assert response.json()["status"] == "pending"
        assert response.headers["location"] == f"/tasks/{task_id}"

    [claimed] = claim(client)
    assert claimed["id"] == task_id
    body = task(client, task_id)
    assert (body["status"], body["attempts"], body["result"]) == ("processing", 1, None)
    response = client.get(f"/tasks/{task_id}/result", headers=CLIENT)
    assert (response.status_code, response.json()["status"]) == (202, "processing")

    vecs = vectors(2)
    results(client, results=[vector_result(task_id, vecs, tokens=4)])
    body = task(client, task_id, "/v1/tasks/{}")
    assert (body["status"], body["attempts"], body["error"]) == ("completed", 1, None)
    assert body["finished_at"] >= body["created_at"]
    embedded = body["result"]
    assert embedded["object"] == "list" and embedded["usage"]["prompt_tokens"] == 4
    assert [base64.b64decode(d["embedding"]) for d in embedded["data"]] == \
        [row.tobytes() for row in vecs]
    for path in (f"/tasks/{task_id}/result", f"/v1/tasks/{task_id}/result"):
        response = client.get(path, headers=CLIENT)
        assert response.status_code == 200
        assert response.json() == embedded


@pytest.mark.parametrize("path", ["/tasks/{}", "/v1/tasks/{}", "/tasks/{}/result",
                                  "/v1/tasks/{}/result"])
@pytest.mark.parametrize("task_id", [ANY_ID, "not-a-task", "12345"])
def test_unknown_tasks_are_404(client: TestClient, path: str, task_id: str) -> None:
    response = client.get(path.format(task_id), headers=CLIENT)
    assert_error(response, 404, code="task_not_found", message=f"No task {task_id!r}"
                 if task_id != ANY_ID else f"No task {task_id}")
    response = client.delete(f"/tasks/{task_id}", headers=CLIENT)
    assert_error(response, 404, code="task_not_found")


def test_the_task_routes_long_poll_with_wait_seconds(
        client: TestClient, background: Callable[..., Future[Response]]) -> None:
    task_id = submit(client)
    started = time.monotonic()
    response = client.get(f"/tasks/{task_id}?wait_seconds=0.3", headers=CLIENT)
    assert time.monotonic() - started >= 0.3
    assert response.json()["status"] == "pending"

    polls = [background(client.get, f"/tasks/{task_id}?wait_seconds={LONG_POLL}",
                        headers=CLIENT),
             background(client.get, f"/v1/tasks/{task_id}/result?wait_seconds={LONG_POLL}",
                        headers=CLIENT)]
    time.sleep(0.1)  # both are waiting now, or will see the result when they look
    vecs = complete(client, task_id)
    for poll in polls:
        response = poll.result(timeout=RESULT_TIMEOUT)
        assert response.status_code == 200, response.text
    assert polls[0].result().json()["status"] == "completed"
    embedding = polls[1].result().json()["data"][0]["embedding"]
    assert np.array_equal(np.array(embedding, dtype=np.float32), vecs[0])
    assert time.monotonic() - started < LONG_POLL, "the long polls were not woken"

    for bad in ("-1", "soon", "nan"):
        response = client.get(f"/tasks/{task_id}?wait_seconds={bad}", headers=CLIENT)
        assert_error(response, 400, param="wait_seconds", message=f"wait_seconds={bad!r}")


def test_delete_cancels_a_task_once(client: TestClient) -> None:
    task_id = submit(client)
    response = client.delete(f"/tasks/{task_id}", headers=CLIENT)
    assert response.status_code == 200
    assert response.json() == {"id": task_id, "status": "failed",
                               "error": "cancelled by the client"}
    body = task(client, task_id)
    assert (body["status"], body["error"]) == ("failed", "cancelled by the client")
    assert claim(client) == []
    assert_error(client.delete(f"/v1/tasks/{task_id}", headers=CLIENT), 409, code="task_final",
                 message=f"Task {task_id} is failed already")
    assert_error(client.get(f"/tasks/{task_id}/result", headers=CLIENT), 409,
                 code="task_cancelled", message=f"Task {task_id} was cancelled by its client")

    # A task a worker holds is cancelled too; its late result is ignored
    leased = submit(client)
    assert [t["id"] for t in claim(client)] == [leased]
    assert client.delete(f"/v1/tasks/{leased}", headers=CLIENT).status_code == 200
    report = results(client, results=[vector_result(leased, vectors(1))])
    assert report == {"accepted": [], "ignored": {leased: "the task is failed already"}}

    done = submit(client)
    complete(client, done)
    assert_error(client.delete(f"/tasks/{done}", headers=CLIENT), 409, code="task_final",
                 message="is completed already")


# --- worker reports ---------------------------------------------------------------------------

def test_a_retryable_error_requeues_and_a_final_one_fails_the_request(
        client: TestClient, background: Callable[..., Future[Response]]) -> None:
    pending = background(client.post, "/v1/embeddings", headers=CLIENT,
                         json={"input": "a", "wait_seconds": LONG_POLL})
    [first] = claim(client, wait=LONG_POLL)
    report = results(client, errors=[{"id": first["id"], "error": "CUDA out of memory"}])
    assert report == {"accepted": [first["id"]], "ignored": {}}
    body = task(client, first["id"])
    assert (body["status"], body["attempts"], body["error"]) == \
        ("pending", 1, "CUDA out of memory")

    [second] = claim(client, "w2")
    assert (second["id"], second["attempt"]) == (first["id"], 2)
    report = results(client, "w2", errors=[{"id": second["id"], "retryable": False,
                                            "error": "the text is not valid for this model"}])
    assert report["accepted"] == [second["id"]]

    # The input's fault: a 400, so that clients (the OpenAI package retries 5xx) do not
    # send it again.
    response = pending.result(timeout=RESULT_TIMEOUT)
    message = assert_error(response, 400, code="task_failed",
                           message="the text is not valid for this model")
    assert message.startswith(f"Embedding task {first['id']} failed")
    assert_error(client.get(f"/tasks/{first['id']}/result", headers=CLIENT), 400,
                 code="task_failed", message="the text is not valid for this model")
    assert claim(client) == []


def test_a_retryable_error_fails_the_task_after_max_attempts(tmp_path: Path) -> None:
    with serve(tmp_path, max_attempts=2) as client:
        task_id = submit(client)
        for worker in ("w1", "w2"):
            assert [t["id"] for t in claim(client, worker)] == [task_id]
            results(client, worker, errors=[{"id": task_id, "error": f"{worker} ran out"}])
        body = task(client, task_id)
        assert (body["status"], body["attempts"], body["error"]) == ("failed", 2, "w2 ran out")
        assert claim(client, "w3") == []


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_results_with_nan_or_infinity_requeue_the_task(client: TestClient,
                                                       bad_value: float) -> None:
    task_id = submit(client, ["a", "b"])
    assert [t["id"] for t in claim(client)] == [task_id]
    vecs = vectors(2)
    vecs[1, 2] = bad_value
    report = results(client, results=[vector_result(task_id, vecs)])
    assert report == {"accepted": [task_id], "ignored": {}}
    body = task(client, task_id)
    assert (body["status"], body["result"]) == ("pending", None)
    assert body["error"] == "worker w1 returned vectors with NaN or infinite values"
    [again] = claim(client, "w2")
    assert (again["id"], again["attempt"]) == (task_id, 2)


def test_results_that_do_not_fit_are_ignored_with_the_reason(client: TestClient) -> None:
    task_id = submit(client, ["a", "b"])
    sized = submit(client, "c", dimensions=2)
    assert [t["id"] for t in claim(client)] == [task_id, sized]
    unknown, stranger = str(uuid.uuid4()), str(uuid.uuid4())
    report = results(client, results=[
        {"id": task_id, "embeddings": "not base64!", "dimensions": DIMS},
        vector_result(sized, vectors(1, 3)),
        vector_result(unknown, vectors(1)),
    ], released=[stranger])
    assert report["accepted"] == []
    ignored = report["ignored"]
    assert ignored[task_id].startswith("the embeddings cannot be decoded")
    assert ignored == {task_id: ignored[task_id],
                       sized: "the result has 3 dimensions; the request asked for 2",
                       unknown: "no such task (it may have expired)",
                       stranger: "not leased to this worker"}
    # Not whole rows, then one vector for two texts
    partial = base64.b64encode(vectors(2).tobytes()[:-4]).decode()
    report = results(client, results=[{"id": task_id, "embeddings": partial, "dimensions": DIMS}])
    assert "28 bytes is not a whole number of 4-float rows" in report["ignored"][task_id]
    report = results(client, results=[vector_result(task_id, vectors(1))])
    assert report["ignored"] == {task_id: "the result holds 16 bytes, not 2 vectors"}
    assert task(client, task_id)["status"] == "processing"


def test_heartbeats_keep_only_the_workers_own_leases(client: TestClient) -> None:
    a = submit(client)
    b = submit(client)
    assert [t["id"] for t in claim(client)] == [a, b]
    response = client.post("/worker/heartbeat", headers=WORKER,
                           json={"worker_id": "w1", "task_ids": [a, b, ANY_ID]})
    assert response.status_code == 200
    assert response.json() == {"lease_seconds": DEFAULT_LEASE_SECONDS, "held": [a, b]}
    response = client.post("/worker/heartbeat", headers=WORKER,
                           json={"worker_id": "w2", "task_ids": [a]})
    assert response.json()["held"] == []


def test_a_released_task_is_claimed_again_uncharged(client: TestClient) -> None:
    task_id = submit(client)
    assert [t["id"] for t in claim(client)] == [task_id]
    assert results(client, released=[task_id]) == {"accepted": [task_id], "ignored": {}}
    [again] = claim(client, "w2")
    assert (again["id"], again["attempt"]) == (task_id, 1)


LEASE = 0.2  # seconds, in the tests where a worker vanishes


def test_a_task_whose_workers_vanish_fails_with_the_reason(tmp_path: Path) -> None:
    with serve(tmp_path, lease_seconds=LEASE, max_attempts=2,
               housekeeping_seconds=0.1) as client:
        task_id = submit(client)
        [first] = claim(client)
        assert (first["id"], first["attempt"]) == (task_id, 1)
        time.sleep(LEASE + 0.1)
        [second] = claim(client, "w2")
        assert (second["id"], second["attempt"]) == (task_id, 2)
        response = client.get(f"/tasks/{task_id}/result?wait_seconds=5", headers=CLIENT)
        assert_error(response, 500, type="server_error", code="task_failed",
                     message=lost_error(2))
        text = client.get("/metrics", headers=CLIENT).text
        assert metric(text, 'pgvectorizer_queue_finished_tasks_total{state="failed"}') == 1


def test_a_task_failed_by_a_claim_counts_as_failed(tmp_path: Path) -> None:
    with serve(tmp_path, lease_seconds=LEASE, max_attempts=1) as client:
        task_id = submit(client)
        assert [t["id"] for t in claim(client)] == [task_id]
        time.sleep(LEASE + 0.1)
        assert claim(client, "w2") == []
        assert task(client, task_id)["error"] == lost_error(1)
        text = client.get("/metrics", headers=CLIENT).text
        assert metric(text, 'pgvectorizer_queue_finished_tasks_total{state="failed"}') == 1


# --- metrics ----------------------------------------------------------------------------------

def test_metrics_count_tasks_workers_latency_and_requests(client: TestClient) -> None:
    done = [submit(client) for _ in range(2)]
    failed = submit(client)
    submit(client, ["a", "b", "c"])
    submit(client, model=OTHER)
    client.post("/v1/embeddings", headers=CLIENT, json={"input": []})
    client.get("/metrics")
    for task_id in done:
        complete(client, task_id)
    assert [t["id"] for t in claim(client, "w2", max_tasks=1)] == [failed]
    results(client, "w2", errors=[{"id": failed, "error": "no", "retryable": False}])
    assert len(claim(client, "w3", max_tasks=1)) == 1

    response = client.get("/metrics", headers=CLIENT)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    p = "pgvectorizer_queue"
    expected = {
        f"{p}_depth": 1,
        f'{p}_tasks{{state="pending"}}': 1, f'{p}_tasks{{state="processing"}}': 1,
        f'{p}_tasks{{state="completed"}}': 2, f'{p}_tasks{{state="failed"}}': 1,
        f"{p}_workers": 3,
        f"{p}_submitted_tasks_total": 5, f"{p}_submitted_texts_total": 7,
        f'{p}_finished_tasks_total{{state="completed"}}': 2,
        f'{p}_finished_tasks_total{{state="failed"}}': 1,
        # Completed tasks only: a failure's time says nothing of how fast vectors come.
        f"{p}_task_seconds_count": 2,
        f'{p}_task_seconds_bucket{{le="+Inf"}}': 2,
        f'{p}_task_seconds_bucket{{le="300"}}': 2,
        f'{p}_requests_total{{route="/v1/embeddings",code="202"}}': 5,
        f'{p}_requests_total{{route="/v1/embeddings",code="400"}}': 1,
        f'{p}_requests_total{{route="/metrics",code="401"}}': 1,
        f'{p}_requests_total{{route="/worker/claim",code="200"}}': 4,
        f'{p}_requests_total{{route="/worker/results",code="200"}}': 3,
    }
    assert {name: metric(text, name) for name in expected} == expected
    assert 0 <= metric(text, f"{p}_task_seconds_sum") < 60
    assert "# TYPE pgvectorizer_queue_task_seconds histogram" in text
