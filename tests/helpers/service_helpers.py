"""Helpers shared by the queue service's HTTP tests: an app on SQLite and the worker's calls."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient
from pgvectorizer.service.app import create_app
from pgvectorizer.service.protocol import encode_vectors
from pgvectorizer.service.settings import ServiceSettings

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

ANY_ID = "6f1c1a4e-0000-4000-8000-000000000000"


def settings(tmp_path: Path, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "auth_token": TOKEN, "worker_token": WORKER_TOKEN, "default_model": MODEL,
        "models": (MODEL, OTHER), "db_path": str(tmp_path / "queue.db"),
        "max_request_bytes": MAX_BYTES, "max_inputs": MAX_INPUTS, "max_wait_seconds": 10.0,
        # A request that names no wait answers at once, so a test that forgets is not slow;
        # one without the task protocol (no wait_seconds, no Prefer) gets its 503 at once.
        "default_wait_seconds": 0.0, "sync_wait_seconds": 0.0,
        # Longer than any wait here: only the in-process wake-ups can end a long poll early.
        "recheck_seconds": 30.0,
        # Both models may be cut to fewer dimensions; test_service_errors.py covers the rest.
        "dimensions_models": (MODEL, OTHER)}
    return ServiceSettings(**{**values, **overrides})


@contextmanager
def serve(tmp_path: Path, **overrides: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings(tmp_path, **overrides))) as client:
        yield client


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
