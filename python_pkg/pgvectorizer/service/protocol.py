"""The JSON bodies of the service's HTTP API: OpenAI's embeddings shape for clients, and the
task protocol that GPU workers speak (claim, heartbeat, results).

Vectors travel between workers and the service as base64 of little-endian float32, row after
row: a memory copy each way, where JSON floats would cost more than the model on a GPU.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pgvectorizer.defaults import MAX_CLAIM_TASKS, MAX_CLAIM_TEXTS, MAX_CLAIM_WAIT

# Limits of one worker call; the service's own limits on clients live in settings.py.
MAX_DIMENSIONS = 65_536  # floats per vector: far above any model, and a bound for the stores
MAX_TOKENS = 2**31 - 1  # a task's token count, as the stores keep it (int)


class EmbeddingRequest(BaseModel):
    """POST /v1/embeddings. `input` is checked by core.texts_of, for messages that name the
    bad item."""

    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use

    input: Any
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1, le=MAX_DIMENSIONS)] | None = None
    user: str | None = None
    wait_seconds: Annotated[float, Field(ge=0)] | None = None


class ClaimRequest(BaseModel):
    """POST /worker/claim: up to max_tasks pending tasks of these models, holding about
    max_texts texts in all (always at least one task), waiting up to wait_seconds for one.

    dimensions: each model's native vector size, so the service can refuse requests for
    more dimensions than a model makes before they reach a worker.
    """

    worker_id: Annotated[str, Field(min_length=1, max_length=200)]
    models: Annotated[list[str], Field(min_length=1)]
    max_tasks: Annotated[int, Field(ge=1, le=MAX_CLAIM_TASKS)] = 64
    max_texts: Annotated[int, Field(ge=1, le=MAX_CLAIM_TEXTS)] = 4096
    wait_seconds: Annotated[float, Field(ge=0, le=MAX_CLAIM_WAIT)] = 20.0
    dimensions: dict[str, Annotated[int, Field(ge=1, le=MAX_DIMENSIONS)]] = {}


class ClaimedTask(BaseModel):
    id: str
    model: str
    input: list[str]
    dimensions: int | None  # None: the model's own size
    attempt: int  # 1 on the first claim; more after a lease ran out or a retryable error


class ClaimResponse(BaseModel):
    lease_seconds: float  # a worker heartbeats well within this, or its tasks go to others
    tasks: list[ClaimedTask]


class HeartbeatRequest(BaseModel):
    worker_id: Annotated[str, Field(min_length=1, max_length=200)]
    task_ids: list[str]


class HeartbeatResponse(BaseModel):
    lease_seconds: float
    held: list[str]  # the ids still leased to this worker; drop work on the others


class TaskResult(BaseModel):
    id: str
    embeddings: str  # base64 of little-endian float32, len(input) rows of `dimensions`
    dimensions: Annotated[int, Field(ge=1, le=MAX_DIMENSIONS)]
    # Input tokens, reported in the response's usage.
    tokens: Annotated[int, Field(ge=0, le=MAX_TOKENS)] = 0


class TaskError(BaseModel):
    id: str
    error: Annotated[str, Field(min_length=1)]
    # False when the input itself cannot be embedded: the task fails now instead of being
    # handed to another worker.
    retryable: bool = True


class ResultsRequest(BaseModel):
    """POST /worker/results: finished tasks, failed tasks, and tasks given back unstarted
    (a worker shutting down), in one call."""

    worker_id: Annotated[str, Field(min_length=1, max_length=200)]
    results: list[TaskResult] = []
    errors: list[TaskError] = []
    released: list[str] = []


class ResultsResponse(BaseModel):
    accepted: list[str]
    # Unknown ids, tasks already completed or failed, and results of the wrong shape
    # (with the reason): nothing for the worker to do again.
    ignored: dict[str, str]


def encode_vectors(vectors: np.ndarray) -> str:
    """base64 of a float32 matrix, little-endian whatever this machine's byte order."""
    return base64.b64encode(np.ascontiguousarray(vectors, dtype="<f4").tobytes()).decode("ascii")


def decode_vectors(text: str, dimensions: int) -> np.ndarray:
    """The float32 matrix of encode_vectors; ValueError when it is not whole rows."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) % (4 * dimensions):
        raise ValueError(f"{len(raw)} bytes is not a whole number of {dimensions}-float rows")
    return np.frombuffer(raw, dtype="<f4").reshape(-1, dimensions)
