"""OpenAI's embeddings API, and any server that speaks it (vLLM, TEI, LiteLLM, Ollama's /v1).

Vectors are asked for as base64 and decoded with numpy: parsing thousands of JSON floats per
vector is the slow part of a float response, while base64 is a straight memory copy.

A server that queues requests (our own `pgvectorizer serve`) may answer 202 with a task id
when the vectors are not ready in time; the embedder then waits on {base_url}/tasks/{id}/result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np

from pgvectorizer.embedders import config_dimensions, config_str
from pgvectorizer.embedders.http import (
    DEFAULT_TIMEOUT,
    base64_or_number_vector,
    batch_ranges,
    decode_data,
    key_refusal,
    make_client,
    post_json,
    request_json,
)
from pgvectorizer.endpoints import read_api_key, url_matches
from pgvectorizer.errors import (
    ApiKeyMissing,
    ConfigError,
    EmbeddingError,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_API_KEY_NAME = "OPENAI_API_KEY"
MAX_INPUTS = 2048  # texts per request, OpenAI's limit
# Tokens per request, OpenAI's limit summed over all inputs. Counted as UTF-8 bytes: a
# byte-level BPE token covers at least one byte, so bytes never undercount tokens.
MAX_REQUEST_TOKENS = 300_000
# Requests of one embed() call in flight at once (a batch larger than one request).
PARALLEL_REQUESTS = 4
# A queued request's task: seconds to wait for it in all, and per long poll (less than the
# HTTP read timeout). Past the total, the task is cancelled and the batch counts as failed
# for now (transient), to be tried again later.
TASK_WAIT = 600.0
TASK_POLL = 30.0
TASK_MIN_POLL = 1.0  # seconds between two polls at least


def openai_base_url(config: Mapping[str, Any]) -> str:
    """config base_url without a trailing /, else OpenAI's own."""
    return config_str(config, "base_url", DEFAULT_BASE_URL).rstrip("/")


def accepts_dimensions(model: str) -> bool:
    """Whether the model takes a "dimensions" parameter (text-embedding-3-* and later)."""
    return model.rsplit("/", 1)[-1].startswith("text-embedding-3")


class OpenAIEmbedder:
    """Embeds through POST {base_url}/embeddings; thread-safe, one connection pool."""

    def __init__(self, config: Mapping[str, Any], env: Mapping[str, str]) -> None:
        self.model = config_str(config, "model")
        self.dimensions = config_dimensions(config)
        self.api_key_name = config_str(config, "api_key_name", DEFAULT_API_KEY_NAME)
        self.base_url = openai_base_url(config)
        user = config.get("user")
        self.user = user if isinstance(user, str) and user else None
        headers: dict[str, str] = {}
        # Which variables may be read, and where their keys may go: endpoints.py.
        key = read_api_key(env, self.api_key_name, base_url=self.base_url,
                           default_name=DEFAULT_API_KEY_NAME, default_url=DEFAULT_BASE_URL)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        elif url_matches(self.base_url, DEFAULT_BASE_URL):
            raise ApiKeyMissing(
                f"{self.api_key_name} is not set: the vectorizer's embedding config reads the API "
                f"key from this environment variable (set it in the worker's environment or a "
                f".env file)")
        # Without a key and with a custom base_url, send no Authorization: local servers
        # usually need none, and a made-up one can be refused.
        # RFC 7240: a queue (our `pgvectorizer serve`) may answer 202 with a task, which
        # _await_task follows; servers that know no such preference ignore it.
        self._client = make_client(env, {**headers, "Prefer": "respond-async"})
        self._url = f"{self.base_url}/embeddings"
        self._what = f"model {self.model} at {self.base_url}"
        self._refusal = key_refusal(self._what, self.api_key_name)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dimensions); several requests when texts exceed the limits."""
        out = np.empty((len(texts), self.dimensions), dtype=np.float32)
        ranges = list(batch_ranges(texts, MAX_INPUTS, MAX_REQUEST_TOKENS))
        if len(ranges) == 1:
            out[:] = self._request(texts)
            return out
        # Several requests go out at once: the provider's latency is paid once, not per request.
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PARALLEL_REQUESTS, thread_name_prefix="openai")
        results = self._pool.map(lambda r: self._request(texts[r[0]:r[1]]), ranges)
        for (start, end), vectors in zip(ranges, results, strict=True):
            out[start:end] = vectors
        return out

    def close(self) -> None:
        """Close the pooled connections."""
        if self._pool is not None:
            self._pool.shutdown()
        self._client.close()

    def _request(self, texts: Sequence[str]) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.model, "input": list(texts),
                                   "encoding_format": "base64"}
        if accepts_dimensions(self.model):
            payload["dimensions"] = self.dimensions
        if self.user is not None:
            payload["user"] = self.user
        body = post_json(self._client, self._url, payload, what=self._what, refusal=self._refusal)
        if _is_task(body):
            body = self._await_task(str(body["id"]))
        return self._decode(body, len(texts))

    def _await_task(self, task_id: str) -> Any:
        """The embeddings of a queued task, long-polling its result; cancels it on giving up."""
        url = f"{self.base_url}/tasks/{task_id}/result"
        read_timeout = self._client.timeout.read or DEFAULT_TIMEOUT
        poll = max(0.0, min(TASK_POLL, read_timeout - 5.0))
        deadline = time.monotonic() + TASK_WAIT
        try:
            while time.monotonic() < deadline:
                asked = time.monotonic()
                status, body = request_json(self._client, "GET", f"{url}?wait_seconds={poll:g}",
                                            what=self._what, refusal=self._refusal)
                if status != 202 or not _is_task(body):
                    return body
                # A server (or a proxy) that answers at once must not be asked in a tight loop.
                time.sleep(max(0.0, TASK_MIN_POLL - (time.monotonic() - asked)))
        except (EmbeddingError, ConfigError):
            self._cancel(task_id)
            raise
        self._cancel(task_id)
        raise EmbeddingError(f"{self._what}: task {task_id} got no worker's answer within "
                             f"{TASK_WAIT:g} s; it was cancelled", transient=True)

    def _cancel(self, task_id: str) -> None:
        # Nobody will read the task's result: a worker need not compute it.
        try:
            self._client.delete(f"{self.base_url}/tasks/{task_id}")
        except httpx.HTTPError:
            pass  # the service fails unanswered tasks after its pending timeout anyway

    def _decode(self, body: Any, n: int) -> np.ndarray:
        return decode_data(body, n, self.dimensions, self._what,
                           lambda embedding: base64_or_number_vector(self._what, embedding))


def _is_task(body: Any) -> bool:
    """Whether an answer is a queued task's id rather than embeddings."""
    return isinstance(body, dict) and "data" not in body and isinstance(body.get("id"), str) \
        and body.get("object") == "embedding.task"
