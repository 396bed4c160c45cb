#!/usr/bin/env python3
"""A fast fake of OpenAI's embeddings API, for tests and benchmarks (standard library + numpy).

    python3 tests/helpers/fake_openai.py --port 0 --port-file F --dimensions 768 [--latency-ms 50]
        [--token T] [--rate-limit N] [--retry-after S]

POST /v1/embeddings (or /embeddings) answers in OpenAI's shape, float or base64. A text's vector
is fake_vector(text, dims): a function of the text alone, so a test can tell which text a stored
vector came from. Texts drive failures: FAIL400 -> 400, FAIL500 -> 500, SLOWHANG -> no answer
until the client gives up, NANVEC -> that text's vector is NaN, WRONGDIMS -> every vector has one
dimension too many, SHORTANSWER -> the last vector is missing. --rate-limit N answers the first N requests with 429 + Retry-After;
--float-only ignores encoding_format, like servers that only know floats.
Float answers carry ten decimals, so they match fake_vector to about 1e-10.
GET /stats -> {"requests": n, "texts": n}. One asyncio thread: the per-text work is a hash and
a few vectorised numpy operations, so it keeps well ahead of a client on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import json
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.request import urlopen

import numpy as np

MAX_DIMENSIONS = 16_000  # the largest vector the ai extension stores
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 429: "Too Many Requests", 500: "Internal Server Error"}


_TABLE_ROWS = 1024  # rows per table; three tables give 2**30 combinations


@functools.lru_cache(maxsize=8)
def _tables(dims: int) -> np.ndarray:
    """Three tables of pseudo-random float32 rows in [-1, 1), the same in every process."""
    rng = np.random.Generator(np.random.PCG64(dims))
    t = rng.random((3, _TABLE_ROWS, dims), dtype=np.float32)
    t *= np.float32(2.0)
    t -= np.float32(1.0)
    return np.asarray(t, dtype=np.float32)


def fake_vectors(texts: Sequence[str], dims: int) -> np.ndarray:
    """float32 (len(texts), dims), unit rows; row i depends on texts[i] alone."""
    seeds = np.fromiter(
        (int.from_bytes(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                        "little") for t in texts),
        dtype=np.uint64, count=len(texts))
    # A text's vector is the sum of one row from each table, picked by 30 bits of its hash:
    # a few vectorised passes for all texts instead of a random generator per text.
    tables = _tables(dims)
    mask = np.uint64(_TABLE_ROWS - 1)
    v = tables[0][seeds & mask]
    v += tables[1][(seeds >> np.uint64(10)) & mask]
    v += tables[2][(seeds >> np.uint64(20)) & mask]
    v /= np.sqrt(np.einsum("ij,ij->i", v, v))[:, None]
    return np.asarray(v, dtype=np.float32)


def fake_vector(text: str, dims: int) -> np.ndarray:
    """The vector the fake server returns for text (float32, unit length)."""
    vectors: np.ndarray = fake_vectors([text], dims)
    return vectors.reshape(dims)


def _error(status: int, message: str, kind: str, code: str | None = None) -> tuple[int, bytes]:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return status, json.dumps(body).encode()


class FakeOpenAI:
    """The server's state and request handling; serve with start()."""

    def __init__(self, dimensions: int = 768, latency_ms: float = 0.0, token: str | None = None,
                 rate_limit: int = 0, retry_after: str = "1", float_only: bool = False) -> None:
        self.dimensions = dimensions
        # Answer floats whatever encoding_format asks, as some servers do.
        self.float_only = float_only
        self.latency = latency_ms / 1000.0  # seconds added before each answer
        self.token = token
        self.rate_limit_left = rate_limit
        self.retry_after = retry_after
        self.requests = 0
        self.texts = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the port (useful with port 0)."""
        self._server = await asyncio.start_server(self._connection, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:  # HTTP/1.1 keep-alive: one request after another on this connection
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, version = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for line in lines[1:]:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length") or 0)
                body = await reader.readexactly(length) if length else b""
                answer = await self._answer(method, target.split("?", 1)[0], headers, body, reader)
                if answer is None:
                    return
                status, payload, extra = answer
                keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
                head_out = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
                            "Content-Type: application/json",
                            f"Content-Length: {len(payload)}",
                            "Connection: " + ("keep-alive" if keep else "close")]
                head_out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(head_out) + "\r\n\r\n").encode("latin-1") + payload)
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes,
                      reader: asyncio.StreamReader) -> tuple[int, bytes, dict[str, str]] | None:
        if path in ("/stats", "/v1/stats") and method == "GET":
            return 200, json.dumps({"requests": self.requests, "texts": self.texts}).encode(), {}
        if path not in ("/embeddings", "/v1/embeddings"):
            return (*_error(404, f"Unknown path {path}", "invalid_request_error"), {})
        if method != "POST":
            return (*_error(405, f"{method} is not allowed on {path}", "invalid_request_error"), {})
        self.requests += 1
        if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
            return (*_error(401, "Incorrect API key provided.", "invalid_request_error",
                            "invalid_api_key"), {})
        if self.rate_limit_left > 0:
            self.rate_limit_left -= 1
            return (*_error(429, "Rate limit reached for requests (fake).", "requests",
                            "rate_limit_exceeded"), {"Retry-After": self.retry_after})
        try:
            request = json.loads(body)
            texts, dims, fmt, model = self._parse(request)
        except (ValueError, TypeError) as exc:
            return (*_error(400, f"Invalid request: {exc}", "invalid_request_error"), {})
        joined = "\x00".join(texts)
        if "SLOWHANG" in joined:
            # Hold the connection, answering nothing, until the client closes it.
            while await reader.read(65536):
                pass
            return None
        if "FAIL400" in joined:
            i = next(i for i, t in enumerate(texts) if "FAIL400" in t)
            return (*_error(400, f"Input {i} contains FAIL400, the fake server's marker for a "
                                 f"refused request.", "invalid_request_error"), {})
        if "FAIL500" in joined:
            return (*_error(500, "The server had an error while processing your request.",
                            "server_error"), {})
        if self.latency:
            await asyncio.sleep(self.latency)
        self.texts += len(texts)
        if "WRONGDIMS" in joined:
            dims += 1
        answer = _response(texts, dims, fmt, model, drop_last="SHORTANSWER" in joined)
        return 200, answer, {}

    def _parse(self, request: Any) -> tuple[list[str], int, str, str]:
        if not isinstance(request, dict):
            raise TypeError("the body must be a JSON object")
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError("you must provide a model parameter")
        raw = request.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("'input' must be a string or a non-empty list of strings")
        if len(texts) > 2048:
            raise ValueError(f"'input' has {len(texts)} items; the limit is 2048")
        dims = request.get("dimensions", self.dimensions)
        if not isinstance(dims, int) or not 1 <= dims <= MAX_DIMENSIONS:
            raise ValueError(f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}")
        fmt = request.get("encoding_format") or "float"
        if fmt not in ("float", "base64"):
            raise ValueError("'encoding_format' must be float or base64")
        if self.float_only:
            fmt = "float"
        return texts, dims, fmt, model


_SCALE = 10 ** 10  # float answers carry ten decimals, about what OpenAI sends
_HALF = 100_000  # five of those decimals


@functools.lru_cache(maxsize=1)
def _number_tables() -> tuple[np.ndarray, np.ndarray]:
    """8-byte pieces of a number's text: (sign, "0.", five digits) and (five digits, ",", "  ").

    Every number takes 16 bytes, two table lookups; JSON allows the padding spaces.
    """
    k = np.arange(_HALF)
    digits = np.empty((_HALF, 5), dtype=np.uint8)
    for i in range(4, -1, -1):
        digits[:, i] = ord("0") + k % 10
        k //= 10
    head = np.empty((2, _HALF, 8), dtype=np.uint8)
    head[0, :, 0] = ord(" ")
    head[1, :, 0] = ord("-")
    head[:, :, 1:3] = np.frombuffer(b"0.", dtype=np.uint8)
    head[:, :, 3:] = digits
    tail = np.empty((_HALF, 8), dtype=np.uint8)
    tail[:, :5] = digits
    tail[:, 5:] = np.frombuffer(b",  ", dtype=np.uint8)
    # Viewed as uint64, a lookup copies the 8 bytes whole, whatever the byte order.
    return head.reshape(2 * _HALF, 8).view(np.uint64)[:, 0], tail.view(np.uint64)[:, 0]


def _float_rows(vectors: np.ndarray) -> list[bytes]:
    """Each row as a JSON array of fixed-point numbers, formatted by numpy for all rows at once.

    json.dumps of 768 floats costs about a millisecond per text; this is far less, so a
    benchmark of a float-reading client measures the client, not this server.
    """
    head, tail = _number_tables()
    scaled = np.minimum(np.rint(np.abs(vectors.astype(np.float64)) * _SCALE), _SCALE - 1)
    high, low = np.divmod(scaled.astype(np.int64), _HALF)
    high += (vectors < 0) * _HALF  # the second half of head has the minus sign
    out = np.empty(vectors.shape + (2,), dtype=np.uint64)
    np.take(head, high, out=out[..., 0])
    np.take(tail, low, out=out[..., 1])
    text = out.view(np.uint8).reshape(vectors.shape[0], -1)
    text[:, -3] = ord("]")  # the last number's "," closes the array instead
    return [b"[" + row.tobytes() for row in text]


def _response(texts: list[str], dims: int, fmt: str, model: str, *, drop_last: bool = False) -> bytes:
    vectors = fake_vectors(texts, dims)
    vectors[[i for i, t in enumerate(texts) if "NANVEC" in t]] = np.nan
    if fmt == "base64":
        raw = vectors.astype("<f4", copy=False).tobytes()
        row = dims * 4
        items = [b'{"object":"embedding","index":%d,"embedding":"%s"}'
                 % (i, base64.b64encode(raw[i * row:(i + 1) * row])) for i in range(len(texts))]
    else:
        items = [b'{"object":"embedding","index":%d,"embedding":%s}' % (i, row)
                 for i, row in enumerate(_float_rows(vectors))]
    if drop_last:
        items = items[:-1]
    tokens = sum(len(t) for t in texts) // 4 + len(texts)  # a rough count, as a fake may give
    return (b'{"object":"list","data":[' + b",".join(items) + b'],"model":'
            + json.dumps(model).encode()
            + b',"usage":{"prompt_tokens":%d,"total_tokens":%d}}' % (tokens, tokens))


def start_fake_server(host: str = "127.0.0.1", port: int = 0,
                      **options: Any) -> tuple[str, Callable[[], None]]:
    """Serve in a background thread; returns (base URL ending in /v1, stop)."""
    fake = FakeOpenAI(**options)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    started: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            started["port"] = loop.run_until_complete(fake.start(host, port))
        except OSError as exc:
            started["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(fake.stop())
        loop.close()

    thread = threading.Thread(target=run, name="fake-openai", daemon=True)
    thread.start()
    ready.wait()
    if "error" in started:
        raise started["error"]

    def stop() -> None:
        if thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    return f"http://{host}:{started['port']}/v1", stop


def fake_stats(url: str) -> dict[str, int]:
    """GET /stats of the fake server at url (the base URL start_fake_server gave)."""
    with urlopen(url.rstrip("/") + "/stats", timeout=5) as response:
        return dict(json.load(response))


def _write_port_file(path: str, port: int) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)  # readers never see a half-written file


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(args.dimensions, args.latency_ms, args.token, args.rate_limit,
                      args.retry_after, args.float_only)
    port = await fake.start(args.host, args.port)
    if args.port_file:
        await asyncio.to_thread(_write_port_file, args.port_file, port)
    print(f"listening on {port}", flush=True)
    await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the port here once listening")
    parser.add_argument("--dimensions", type=int, default=768)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument("--token", help="require Authorization: Bearer TOKEN")
    parser.add_argument("--rate-limit", type=int, default=0,
                        help="answer the first N embedding requests with 429")
    parser.add_argument("--retry-after", default="1", help="Retry-After of those 429s")
    parser.add_argument("--float-only", action="store_true",
                        help="ignore encoding_format and always answer float lists")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
