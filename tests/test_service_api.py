"""The embedding queue service's HTTP API, in process (FastAPI's TestClient), on SQLite.

The tests play the GPU worker themselves through /worker/claim and /worker/results, so every
vector a client gets back is one the test posted. A client's long poll runs in a thread while
the test works as the worker.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pgvectorizer import __version__
from pgvectorizer.errors import ConfigError
from pgvectorizer.service.app import create_app
from pgvectorizer.service.protocol import encode_vectors
from pgvectorizer.service.settings import (
    DEFAULT_DB_PATH,
    DEFAULT_MODEL,
    ServiceSettings,
    settings_from_env,
)
from pgvectorizer.service.store import lost_error

TOKEN = "client-token-123"
WORKER_TOKEN = "worker-token-456"
CLIENT = {"Authorization": f"Bearer {TOKEN}"}
WORKER = {"Authorization": f"Bearer {WORKER_TOKEN}"}
MODEL = "test-model"
OTHER = "other-model"
DIMS = 4
MAX_BYTES = 4096  # max_request_bytes in these tests
MAX_INPUTS = 5
LONG_POLL = 5.0  # seconds a test's client waits; results come within milliseconds
RESULT_TIMEOUT = 15.0  # seconds: only reached when a long poll is stuck

# What TestClient answers with: httpx2's Response with current Starlette, httpx's before.
Response = Any


def settings(tmp_path: Path, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "auth_token": TOKEN, "worker_token": WORKER_TOKEN, "default_model": MODEL,
        "models": (MODEL, OTHER), "db_path": str(tmp_path / "queue.db"),
        "max_request_bytes": MAX_BYTES, "max_inputs": MAX_INPUTS, "max_wait_seconds": 10.0,
        # A request that names no wait answers at once, so a test that forgets is not slow.
        "default_wait_seconds": 0.0,
        # Longer than any wait here: only the in-process wake-ups can end a long poll early.
        "recheck_seconds": 30.0,
        # Both models may be cut to fewer dimensions; test_dimensions_only_for_listed_models
        # covers the others.
        "dimensions_models": (MODEL, OTHER)}
    return ServiceSettings(**{**values, **overrides})


@contextmanager
def serve(tmp_path: Path, **overrides: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings(tmp_path, **overrides))) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with serve(tmp_path) as client:
        yield client


@pytest.fixture
def background() -> Iterator[Callable[..., Future[Response]]]:
    """Runs a client call in a thread: a long poll the test answers as the worker."""
    with ThreadPoolExecutor(4) as pool:
        yield pool.submit


# --- helpers ----------------------------------------------------------------------------------

def assert_error(response: Response, status: int, *, code: str | None = None,
                 param: str | None = None, type: str = "invalid_request_error",
                 message: str | None = None) -> str:
    """OpenAI's error shape with these values; returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"], error["param"]) == (type, code, param), error
    assert isinstance(error["message"], str) and error["message"]
    if message is not None:
        assert message in error["message"], error["message"]
    return error["message"]


def submit(client: TestClient, texts: Any = "hello", **fields: Any) -> str:
    """Posts a request that answers at once (202); returns the task id."""
    response = client.post("/v1/embeddings", headers=CLIENT,
                           json={"input": texts, "wait_seconds": 0, **fields})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def claim(client: TestClient, worker: str = "w1", models: tuple[str, ...] = (MODEL,),
          wait: float = 0, **fields: Any) -> list[dict[str, Any]]:
    response = client.post("/worker/claim", headers=WORKER, json={
        "worker_id": worker, "models": list(models), "wait_seconds": wait, **fields})
    assert response.status_code == 200, response.text
    return response.json()["tasks"]


def results(client: TestClient, worker: str = "w1", **fields: Any) -> dict[str, Any]:
    response = client.post("/worker/results", headers=WORKER,
                           json={"worker_id": worker, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def vector_result(task_id: str, vectors: np.ndarray, tokens: int = 0) -> dict[str, Any]:
    return {"id": task_id, "embeddings": encode_vectors(vectors),
            "dimensions": int(vectors.shape[1]), "tokens": tokens}


def vectors(n: int, dims: int = DIMS, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dims)).astype("<f4")


def complete(client: TestClient, task_id: str, n: int = 1, worker: str = "w1") -> np.ndarray:
    """Claims the task (it must be the next one) and posts vectors for it."""
    tasks = claim(client, worker, max_tasks=1)
    assert [t["id"] for t in tasks] == [task_id]
    vecs = vectors(n)
    assert results(client, worker, results=[vector_result(task_id, vecs)])["accepted"] == [task_id]
    return vecs


def task(client: TestClient, task_id: str, path: str = "/tasks/{}") -> dict[str, Any]:
    response = client.get(path.format(task_id), headers=CLIENT)
    assert response.status_code == 200, response.text
    return response.json()


def metric(text: str, name: str) -> float:
    """The value of one sample line, by its full name with labels."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {name} in:\n{text}")


# --- health and authentication ----------------------------------------------------------------

def test_health_needs_no_token(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": __version__}


ANY_ID = "6f1c1a4e-0000-4000-8000-000000000000"
PROTECTED = [
    ("POST", "/v1/embeddings"), ("POST", "/embeddings"),
    ("GET", f"/tasks/{ANY_ID}"), ("GET", f"/v1/tasks/{ANY_ID}"),
    ("GET", f"/tasks/{ANY_ID}/result"), ("GET", f"/v1/tasks/{ANY_ID}/result"),
    ("DELETE", f"/tasks/{ANY_ID}"), ("DELETE", f"/v1/tasks/{ANY_ID}"),
    ("GET", "/metrics"),
    ("POST", "/worker/claim"), ("POST", "/worker/heartbeat"), ("POST", "/worker/results"),
]
BAD_AUTH: list[tuple[dict[str, str], str]] = [
    ({}, "Missing bearer token"),
    ({"Authorization": ""}, "Missing bearer token"),
    ({"Authorization": f"Basic {TOKEN}"}, "Missing bearer token"),
    ({"Authorization": "Bearer"}, "Missing bearer token"),
    ({"Authorization": "Bearer    "}, "Missing bearer token"),
    ({"Authorization": TOKEN}, "Missing bearer token"),
    ({"Authorization": "Bearer wrong-token"}, "Incorrect bearer token"),
    ({"Authorization": f"Bearer {TOKEN}x"}, "Incorrect bearer token"),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "Incorrect bearer token"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_every_other_endpoint_needs_a_valid_token(client: TestClient, method: str,
                                                  path: str) -> None:
    body = {"input": "hello", "wait_seconds": 0, "worker_id": "w1", "models": [MODEL],
            "task_ids": []}
    for headers, message in BAD_AUTH:
        response = client.request(method, path, headers=headers,
                                  content=json.dumps(body) if method == "POST" else None)
        assert_error(response, 401, code="invalid_api_key", message=message)
        assert response.headers["www-authenticate"] == 'Bearer realm="pgvectorizer"'
    # Nothing was submitted or claimed on the way
    text = client.get("/metrics", headers=CLIENT).text
    assert metric(text, "pgvectorizer_queue_submitted_tasks_total") == 0
    assert metric(text, "pgvectorizer_queue_workers") == 0


@pytest.mark.parametrize(("method", "path", "headers", "holder"), [
    ("POST", "/worker/claim", CLIENT, "GPU workers (WORKER_TOKEN)"),
    ("POST", "/worker/heartbeat", CLIENT, "GPU workers (WORKER_TOKEN)"),
    ("POST", "/worker/results", CLIENT, "GPU workers (WORKER_TOKEN)"),
    ("POST", "/v1/embeddings", WORKER, "clients (AUTH_TOKEN)"),
    ("GET", "/metrics", WORKER, "clients (AUTH_TOKEN)"),
    ("GET", f"/tasks/{ANY_ID}", WORKER, "clients (AUTH_TOKEN)"),
    ("DELETE", f"/tasks/{ANY_ID}", WORKER, "clients (AUTH_TOKEN)"),
])
def test_the_other_roles_token_is_forbidden(client: TestClient, method: str, path: str,
                                            headers: dict[str, str], holder: str) -> None:
    body = {"input": "hello", "worker_id": "w1", "models": [MODEL], "task_ids": []}
    response = client.request(method, path, headers=headers,
                              content=json.dumps(body) if method == "POST" else None)
    assert_error(response, 403, code="forbidden", message=f"this endpoint is for {holder}")


def test_one_token_serves_both_roles_when_worker_token_is_unset(tmp_path: Path) -> None:
    with serve(tmp_path, worker_token=TOKEN) as client:
        task_id = submit(client)
        response = client.post("/worker/claim", headers=CLIENT, json={
            "worker_id": "w1", "models": [MODEL], "wait_seconds": 0})
        assert response.status_code == 200
        assert [t["id"] for t in response.json()["tasks"]] == [task_id]


# --- request limits ---------------------------------------------------------------------------

def body_of_size(size: int) -> bytes:
    """A valid request body of exactly `size` bytes."""
    head = b'{"wait_seconds": 0, "input": "'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_a_body_over_max_request_bytes_is_refused(client: TestClient) -> None:
    assert client.post("/v1/embeddings", headers=CLIENT,
                       content=body_of_size(MAX_BYTES)).status_code == 202
    response = client.post("/v1/embeddings", headers=CLIENT, content=body_of_size(MAX_BYTES + 1))
    assert_error(response, 413, code="request_too_large", message=f"({MAX_BYTES} bytes")


def test_a_chunked_body_over_max_request_bytes_is_refused(client: TestClient) -> None:
    def chunks(size: int) -> Iterator[bytes]:
        body = body_of_size(size)
        for start in range(0, len(body), 1000):
            yield body[start:start + 1000]

    small = client.build_request("POST", "/v1/embeddings", headers=CLIENT,
                                 content=chunks(MAX_BYTES))
    assert "content-length" not in small.headers
    assert small.headers["transfer-encoding"] == "chunked"
    assert client.send(small).status_code == 202
    large = client.build_request("POST", "/v1/embeddings", headers=CLIENT,
                                 content=chunks(MAX_BYTES + 1))
    assert "content-length" not in large.headers
    assert_error(client.send(large), 413, code="request_too_large")


def test_more_texts_than_max_inputs_are_refused(client: TestClient) -> None:
    submit(client, ["t"] * MAX_INPUTS)
    response = client.post("/v1/embeddings", headers=CLIENT,
                           json={"input": ["t"] * (MAX_INPUTS + 1), "wait_seconds": 0})
    assert_error(response, 413, code="too_many_inputs", param="input",
                 message=f"'input' has {MAX_INPUTS + 1} texts")


# --- bad requests -----------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "param", "message"), [
    (b"{not json", None, "The body is not valid JSON"),
    (b"", None, "The body is not valid JSON"),
    (b"\xff\xfe", None, "The body is not valid JSON"),
    (b'["hello"]', None, "The body must be a JSON object"),
    (b'"hello"', None, "The body must be a JSON object"),
    ({"model": MODEL}, "input", "'input': Field required"),
    ({"input": None}, "input", "'input' must be a string or a list of strings"),
    ({"input": {"text": "a"}}, "input", "'input' must be a string or a list of strings"),
    ({"input": []}, "input", "'input' is an empty list"),
    ({"input": ""}, "input", "'input[0]' is an empty string"),
    ({"input": ["a", "b", ""]}, "input", "'input[2]' is an empty string"),
    ({"input": ["a", 3]}, "input", "'input[1]' is int, not a string"),
    ({"input": ["a", None]}, "input", "'input[1]' is NoneType, not a string"),
    ({"input": [True]}, "input", "'input[0]' is bool, not a string"),
    ({"input": [1, 2, 3]}, "input", "'input' holds token ids"),
    ({"input": [[1, 2], [3]]}, "input", "'input' holds token ids"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format", "'float' or 'base64'"),
    ({"input": "a", "dimensions": 0}, "dimensions", "greater than or equal to 1"),
    ({"input": "a", "dimensions": -3}, "dimensions", "greater than or equal to 1"),
    ({"input": "a", "dimensions": "many"}, "dimensions", "'dimensions'"),
    ({"input": "a", "wait_seconds": -1}, "wait_seconds", "greater than or equal to 0"),
    ({"input": "a", "model": 7}, "model", "'model'"),
])
def test_bad_requests_are_400_with_the_reason(client: TestClient, body: Any, param: str | None,
                                              message: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/v1/embeddings", headers=CLIENT, content=content)
    assert_error(response, 400, param=param, message=message)


def test_an_unknown_model_is_404_listing_the_models(client: TestClient) -> None:
    response = client.post("/v1/embeddings", headers=CLIENT,
                           json={"input": "a", "model": "text-embedding-3-small"})
    message = assert_error(response, 404, code="model_not_found", param="model",
                           message="'text-embedding-3-small' does not exist")
    assert f"{MODEL}, {OTHER}" in message


def test_more_dimensions_than_the_model_makes_are_400(client: TestClient) -> None:
    # Before any worker reported sizes, any size is taken (the worker checks it)
    submit(client, dimensions=1000)
    assert claim(client, dimensions={MODEL: DIMS}, max_tasks=1)  # the worker reports its size
    response = client.post("/v1/embeddings", headers=CLIENT,
                           json={"input": "a", "dimensions": DIMS + 1, "wait_seconds": 0})
    assert_error(response, 400, param="dimensions",
                 message=f"'dimensions' is {DIMS + 1}, but {MODEL} makes {DIMS}-dimensional")
    submit(client, dimensions=DIMS)
    submit(client, dimensions=1)
    submit(client, dimensions=DIMS + 1, model=OTHER)  # no size known for this one


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


def test_bad_worker_bodies_are_400(client: TestClient) -> None:
    response = client.post("/worker/claim", headers=WORKER,
                           json={"worker_id": "w1", "models": [], "wait_seconds": 0})
    assert_error(response, 400, param="models")
    response = client.post("/worker/claim", headers=WORKER,
                           json={"worker_id": "w1", "models": [MODEL], "wait_seconds": 61})
    assert_error(response, 400, param="wait_seconds")
    response = client.post("/worker/results", headers=WORKER,
                           json={"worker_id": "w1", "errors": [{"id": ANY_ID, "error": ""}]})
    assert_error(response, 400, param="errors.0.error")


def test_heartbeats_keep_only_the_workers_own_leases(client: TestClient) -> None:
    a = submit(client)
    b = submit(client)
    assert [t["id"] for t in claim(client)] == [a, b]
    response = client.post("/worker/heartbeat", headers=WORKER,
                           json={"worker_id": "w1", "task_ids": [a, b, ANY_ID]})
    assert response.status_code == 200
    assert response.json() == {"lease_seconds": 60.0, "held": [a, b]}
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


# --- settings ---------------------------------------------------------------------------------

def test_settings_need_auth_token() -> None:
    for env in ({}, {"AUTH_TOKEN": ""}, {"AUTH_TOKEN": "   ", "WORKER_TOKEN": "w"}):
        with pytest.raises(ConfigError, match="AUTH_TOKEN is not set"):
            settings_from_env(env)


def test_settings_defaults_and_derived_values() -> None:
    s = settings_from_env({"AUTH_TOKEN": " secret "})
    assert (s.auth_token, s.worker_token) == ("secret", "secret")
    assert (s.default_model, s.models) == (DEFAULT_MODEL, (DEFAULT_MODEL,))
    assert (s.host, s.port, s.db_path, s.database_url) == ("127.0.0.1", 8000, DEFAULT_DB_PATH,
                                                           None)
    assert (s.lease_seconds, s.max_attempts, s.result_retention, s.max_request_bytes,
            s.max_inputs, s.max_wait_seconds) == (60.0, 3, 3600.0, 8 * 1024 * 1024, 2048, 30.0)
    assert (s.pending_timeout, s.dimensions_models, s.recheck) == (86400.0, (), 5.0)
    s = settings_from_env({"AUTH_TOKEN": "secret", "WORKER_TOKEN": "gpu",
                           "DIMENSIONS_MODELS": "e5, ,gte", "PENDING_TIMEOUT": "60",
                           "EMBEDDING_MODEL": "bge-m3", "MODELS": " e5, bge-m3,, gte ,e5",
                           "LEASE_SECONDS": "2.5", "MAX_ATTEMPTS": "5", "SERVER_PORT": "9000",
                           "DATABASE_URL": "postgresql://x/y", "MAX_INPUTS": "10"})
    assert (s.auth_token, s.worker_token) == ("secret", "gpu")
    assert (s.default_model, s.models) == ("bge-m3", ("bge-m3", "e5", "gte"))
    assert (s.lease_seconds, s.max_attempts, s.port, s.max_inputs) == (2.5, 5, 9000, 10)
    assert s.store_description == "PostgreSQL (DATABASE_URL)"
    assert (s.dimensions_models, s.pending_timeout, s.recheck) == (("e5", "gte"), 60.0, 0.5)


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("LEASE_SECONDS", "soon", "is not a number"),
    ("LEASE_SECONDS", "0.5", "is less than 1"),
    ("MAX_ATTEMPTS", "2.5", "is not a whole number"),
    ("MAX_ATTEMPTS", "0", "is less than 1"),
    ("SERVER_PORT", "http", "is not a number"),
    ("RESULT_RETENTION", "-1", "is less than 0"),
    ("MAX_REQUEST_BYTES", "100", "is less than 1024"),
    ("MAX_INPUTS", "many", "is not a number"),
    ("MAX_WAIT_SECONDS", "-5", "is less than 0"),
    ("PENDING_TIMEOUT", "0", "is less than 1"),
])
def test_settings_name_a_bad_number(name: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_env({"AUTH_TOKEN": "t", name: value})
    assert str(caught.value) == f"{name}={value!r} {problem}"


@pytest.mark.parametrize(("name", "value"), [("LEASE_SECONDS", "nan"), ("LEASE_SECONDS", "inf"),
                                             ("MAX_ATTEMPTS", "inf"), ("MAX_ATTEMPTS", "nan"),
                                             ("MAX_WAIT_SECONDS", "nan")])
def test_settings_refuse_numbers_that_are_not_finite(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        settings_from_env({"AUTH_TOKEN": "t", name: value})


def test_dimensions_only_for_listed_models(tmp_path: Path) -> None:
    with serve(tmp_path, dimensions_models=(OTHER,)) as client:
        # Before any worker reported the model's size: only models listed may be cut.
        response = client.post("/v1/embeddings", headers=CLIENT,
                               json={"input": "a", "dimensions": 2, "wait_seconds": 0})
        assert_error(response, 400, param="dimensions",
                     message=f"{MODEL} does not take 'dimensions'")
        submit(client, dimensions=2, model=OTHER)
        claim(client, dimensions={MODEL: DIMS}, max_tasks=1)  # the worker reports the size
        submit(client, dimensions=DIMS)  # its own size is always fine
        response = client.post("/v1/embeddings", headers=CLIENT,
                               json={"input": "a", "dimensions": DIMS - 1, "wait_seconds": 0})
        assert_error(response, 400, param="dimensions",
                     message=f"so it answers with its {DIMS} only")


def test_bad_input_that_would_break_the_store_is_a_400(client: TestClient) -> None:
    response = client.post("/v1/embeddings", headers={**CLIENT, "Content-Type": "application/json"},
                           content=b'{"input": "\\ud800", "wait_seconds": 0}')
    assert_error(response, 400, param="input", message="'input[0]' holds an unpaired UTF-16")
    deep = b'{"input": ' + b"[" * 1500 + b"]" * 1500 + b"}"  # under the 4 KiB limit
    assert_error(client.post("/v1/embeddings", headers=CLIENT, content=deep), 400,
                 message="not valid JSON")
    for value in (10**30, 2**63):
        response = client.post("/v1/embeddings", headers=CLIENT,
                               json={"input": "a", "dimensions": value, "wait_seconds": 0})
        assert_error(response, 400, param="dimensions", message="less than or equal to 65536")
    response = client.post("/worker/claim", headers=WORKER,
                           json={"worker_id": "w", "models": [MODEL], "dimensions": {MODEL: -1}})
    assert_error(response, 400, param=f"dimensions.{MODEL}")
