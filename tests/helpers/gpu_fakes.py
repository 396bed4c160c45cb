"""Fakes shared by the GPU worker's tests: a backend, tasks and their vectors, HTTP answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np
from pgvectorizer.errors import EmbeddingError
from pgvectorizer.service.protocol import (
    ClaimedTask,
    TaskError,
    TaskResult,
    decode_vectors,
)

from tests.helpers.fake_openai import fake_vector

MODEL = "fake-model"
DIMS = 8
TOKEN = "worker-secret"
URL = "http://queue.test:8000"


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


def ok(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=body)


def error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "x"}})


def run_async(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 20))
