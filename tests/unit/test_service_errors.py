"""The queue service's refusals: tokens, request limits and bad requests (401, 403, 413, 400)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers.service_helpers import (
    ANY_ID,
    CLIENT,
    DIMS,
    MAX_BYTES,
    MAX_INPUTS,
    MODEL,
    OTHER,
    TOKEN,
    WORKER,
    assert_error,
    claim,
    metric,
    serve,
    submit,
)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with serve(tmp_path) as client:
        yield client


# --- authentication ---------------------------------------------------------------------------

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
