"""The JSON bodies of the service's HTTP API: OpenAI's embeddings shape for clients, and the
task protocol that GPU workers speak (claim, heartbeat, results); and the `Prefer` header by
which a client asks for a task rather than its vectors.

Vectors travel between workers and the service as base64 of little-endian float32, row after
row: a memory copy each way, where JSON floats would cost more than the model on a GPU.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Preference:
    """What a request's `Prefer` headers (RFC 7240) ask of POST /v1/embeddings."""

    respond_async: bool = False  # a 202 with the task is welcome when the vectors are late
    wait: float | None = None  # seconds to wait for them before that 202


def parse_prefer(values: Iterable[str]) -> Preference:
    """The preferences this service honours among `Prefer` header values; others are ignored,
    and of one given twice the first counts (RFC 7240, section 2)."""
    seen: dict[str, str] = {}
    for value in values:
        for item in _split_outside_quotes(value, ","):
            token, _, rest = _split_outside_quotes(item, ";")[0].partition("=")
            name = token.strip().lower()
            if name:
                seen.setdefault(name, _unquote(rest.strip()))
    wait = None
    try:
        seconds = float(seen.get("wait", ""))
        if math.isfinite(seconds) and seconds >= 0:
            wait = seconds
    except ValueError:
        pass  # no wait, or not a number of seconds: as if none was asked for
    return Preference("respond-async" in seen, wait)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    """text split at `separator` where it is not inside a quoted-string."""
    parts: list[str] = []
    start, quoted, escaped = 0, False, False
    for i, char in enumerate(text):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _unquote(word: str) -> str:
    """A quoted-string's content, its backslash escapes resolved; a token as it is."""
    if len(word) >= 2 and word[0] == word[-1] == '"':
        return re.sub(r"\\(.)", r"\1", word[1:-1])
    return word


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
