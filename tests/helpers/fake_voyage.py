"""A small fake Voyage AI /v1/embeddings on loopback, in this process.

It checks what the real API checks that matters to us: the bearer key, the model, at most
MAX_INPUTS texts and the model's token budget (counted here as UTF-8 bytes) per request, and
output_dimension; it refuses over-limit requests with 400 as Voyage does. Special texts make
it fail: "FAIL500" (500), "RATE429" (429 with Retry-After the first `rate_limits` times).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from tests.helpers.fake_openai import fake_vector
from tests.helpers.threads import serving

MODELS = {"voyage-3.5": 1024, "voyage-3.5-lite": 1024, "voyage-3-lite": 512, "voyage-code-3": 1024}
KEY = "pa-test-voyage-key"
MAX_INPUTS = 1000  # texts per request
MAX_TOKENS = {"voyage-3.5-lite": 1_000_000, "voyage-3-lite": 1_000_000, "voyage-3.5": 320_000}
DEFAULT_TOKENS = 120_000


def voyage_vector(text: str, dims: int, dtype: str = "float") -> list[float] | list[int]:
    """What the fake returns for text: fake_vector, quantized for int8/uint8."""
    v = fake_vector(text, dims)
    if dtype == "int8":
        return [int(x) for x in np.clip(np.round(v * 127), -128, 127)]
    if dtype == "uint8":
        return [int(x) for x in np.clip(np.round(v * 127 + 128), 0, 255)]
    return [float(x) for x in v]


class FakeVoyage(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.payloads: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.rate_limits = 1  # 429s answered to RATE429 before it succeeds
        self.keys = {KEY}  # bearer keys it accepts
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def running() -> Iterator[FakeVoyage]:
    with serving(FakeVoyage()) as srv:
        yield srv


class Handler(BaseHTTPRequestHandler):
    server: FakeVoyage

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_POST(self) -> None:
        if self.path != "/v1/embeddings":
            return self._send(404, {"detail": "Not Found"})
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.payloads.append(payload)
            self.server.auth.append(self.headers.get("Authorization"))
        if self.headers.get("Authorization") not in {f"Bearer {k}" for k in self.server.keys}:
            return self._send(401, {"detail": "Provided API key is invalid."})
        model = payload.get("model")
        texts = payload.get("input")
        if model not in MODELS:
            return self._send(400, {"detail": f"Model {model} is not supported."})
        if not isinstance(texts, list) or not texts:
            return self._send(400, {"detail": "input must be a non-empty list"})
        if len(texts) > MAX_INPUTS:
            return self._send(400, {"detail": f"The batch size limit is {MAX_INPUTS}. "
                                              f"Your batch size is {len(texts)}."})
        tokens = sum(len(t.encode("utf-8")) for t in texts)
        if tokens > MAX_TOKENS.get(model, DEFAULT_TOKENS):
            return self._send(400, {"detail": f"Request to model '{model}' failed. The max "
                                              f"allowed tokens per submitted batch is "
                                              f"{MAX_TOKENS.get(model, DEFAULT_TOKENS)}."})
        if payload.get("input_type") not in (None, "query", "document"):
            return self._send(400, {"detail": "bad input_type"})
        dims = payload.get("output_dimension") or MODELS[model]
        dtype = payload.get("output_dtype") or "float"
        if "FAIL500" in texts:
            return self._send(500, {"detail": "internal error"})
        if "RATE429" in texts:
            with self.server.lock:
                limited = self.server.rate_limits > 0
                self.server.rate_limits -= 1
            if limited:
                return self._send(429, {"detail": "rate limited"}, {"Retry-After": "0.05"})
        data = [{"object": "embedding", "index": i, "embedding": voyage_vector(t, dims, dtype)}
                for i, t in enumerate(texts)]
        data.reverse()  # the index, not the order, says which text a vector is for
        return self._send(200, {"object": "list", "data": data, "model": model,
                                "usage": {"total_tokens": tokens}})

    def _send(self, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
