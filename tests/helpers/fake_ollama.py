"""A small fake Ollama /api/embed on loopback, in this process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers.fake_openai import fake_vector
from tests.helpers.threads import serving

MODEL = "nomic-embed-text"  # the only model the fake has "pulled"
DIMS = 8  # the size of its vectors


class FakeOllama(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.payloads: list[dict[str, Any]] = []


@contextmanager
def running() -> Iterator[FakeOllama]:
    """A FakeOllama served on a thread until the block ends."""
    with serving(FakeOllama()) as srv:
        yield srv


class Handler(BaseHTTPRequestHandler):
    server: FakeOllama

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_POST(self) -> None:
        if self.path != "/api/embed":
            return self._send(404, {"error": "404 page not found"})
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.payloads.append(payload)
        texts = payload["input"]
        if payload["model"] != MODEL:
            model = payload["model"]
            message = f'model "{model}" not found, try pulling it first'
            return self._send(404, {"error": message})
        if "SLOWHANG" in texts:
            time.sleep(2)
            return None
        if "FAIL500" in texts:
            return self._send(500, {"error": "llama runner process has terminated"})
        options = payload.get("options", {})
        dims = options.get("fake_dims", DIMS)
        embeddings = [fake_vector(t, dims).tolist() for t in texts]
        return self._send(200, {"model": MODEL,
                                "embeddings": embeddings[options.get("fake_drop", 0):]})

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
