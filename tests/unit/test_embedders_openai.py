"""The OpenAI embedder against the fake server (tests/helpers/fake_openai.py); no database."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import httpx
import numpy as np
import pytest
from pgvectorizer.embedders import http, make_embedder
from pgvectorizer.embedders import openai as openai_mod
from pgvectorizer.embedders.openai import OpenAIEmbedder
from pgvectorizer.errors import (
    ApiKeyMissing,
    ConfigError,
    EmbeddingError,
    ProviderError,
)

from tests.helpers.fake_openai import fake_stats, fake_vector, start_fake_server

DIMS = 8  # the fake server's default vector size in these tests

Fake = Callable[..., str]  # starts a fake server, returns its base URL
Make = Callable[..., OpenAIEmbedder]  # makes an embedder for a base URL


def expected(texts: list[str], dims: int = DIMS) -> np.ndarray:
    return np.stack([fake_vector(t, dims) for t in texts])


@pytest.fixture
def fake() -> Iterator[Fake]:
    """Starts fake servers (options as start_fake_server's); returns their base URLs."""
    stops: list[Callable[[], None]] = []

    def start(**options: Any) -> str:
        options.setdefault("dimensions", DIMS)
        url, stop = start_fake_server(**options)
        stops.append(stop)
        return url

    yield start
    for stop in stops:
        stop()


@pytest.fixture
def make() -> Iterator[Make]:
    """Makes embedders for a base URL (config keys as keyword arguments); closes them after."""
    made: list[OpenAIEmbedder] = []

    def build(url: str, env: dict[str, str] | None = None, **config: Any) -> OpenAIEmbedder:
        full = {"implementation": "openai", "model": "fake-model", "dimensions": DIMS,
                "base_url": url, **config}
        embedder = OpenAIEmbedder(full, env or {})
        made.append(embedder)
        return embedder

    yield build
    for embedder in made:
        embedder.close()


def test_base64_vectors_in_order(fake: Fake, make: Make) -> None:
    texts = [f"text number {i}" for i in range(10)] + ["ünïcödé ✓"]
    vectors = make(fake()).embed(texts)
    assert vectors.dtype == np.float32
    assert vectors.shape == (11, DIMS)
    np.testing.assert_array_equal(vectors, expected(texts))


def test_float_lists_accepted(fake: Fake, make: Make) -> None:
    texts = ["a", "b", "c"]
    vectors = make(fake(float_only=True)).embed(texts)
    # The fake's float answers carry ten decimals.
    np.testing.assert_allclose(vectors, expected(texts), rtol=0, atol=1e-9)


def test_make_embedder_picks_openai(fake: Fake) -> None:
    config = {"implementation": "openai", "model": "m", "dimensions": DIMS, "base_url": fake()}
    embedder = make_embedder(config, {})
    try:
        assert isinstance(embedder, OpenAIEmbedder)
        np.testing.assert_array_equal(embedder.embed(["x"]), expected(["x"]))
    finally:
        embedder.close()


def test_unknown_implementation() -> None:
    with pytest.raises(ConfigError, match="unknown embedding implementation 'cohere'"):
        make_embedder({"implementation": "cohere", "model": "m", "dimensions": 4}, {})


def test_empty_input_sends_nothing(fake: Fake,
                                   make: Make) -> None:
    url = fake()
    vectors = make(url).embed([])
    assert vectors.shape == (0, DIMS)
    assert fake_stats(url) == {"requests": 0, "texts": 0}


def test_splits_by_count(fake: Fake, make: Make) -> None:
    url = fake(dimensions=4)
    texts = [f"t{i}" for i in range(openai_mod.MAX_INPUTS + 1)]
    vectors = make(url, dimensions=4).embed(texts)
    assert fake_stats(url) == {"requests": 2, "texts": len(texts)}
    np.testing.assert_array_equal(vectors, expected(texts, 4))


def test_splits_by_bytes(fake: Fake, make: Make,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openai_mod, "MAX_REQUEST_TOKENS", 100)
    url = fake()
    # 30 bytes each: three fit in 100 bytes. "é" is two bytes in UTF-8, so 15 of them are 30.
    texts = [f"{i:02d}" + "x" * 28 for i in range(8)] + ["é" * 15, "é" * 15]
    vectors = make(url).embed(texts)
    assert fake_stats(url) == {"requests": 4, "texts": 10}
    np.testing.assert_array_equal(vectors, expected(texts))


def test_batch_ranges() -> None:
    assert list(http.batch_ranges([], 3, 100)) == []
    assert list(http.batch_ranges(["a"] * 7, 3, 100)) == [(0, 3), (3, 6), (6, 7)]
    assert list(http.batch_ranges(["aaaa", "bb", "ccc", "d"], 10, 6)) == [(0, 2), (2, 4)]
    # A text over the budget still goes alone rather than being dropped.
    assert list(http.batch_ranges(["a", "x" * 50, "b"], 10, 10)) == [(0, 1), (1, 2), (2, 3)]


def test_concurrent_threads_share_one_embedder(fake: Fake,
                                               make: Make) -> None:
    embedder = make(fake(latency_ms=20))
    results: dict[int, np.ndarray] = {}

    def work(k: int) -> None:
        results[k] = embedder.embed([f"thread {k} text {i}" for i in range(20)])

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(6):
        want = expected([f"thread {k} text {i}" for i in range(20)])
        np.testing.assert_array_equal(results[k], want)


def captured_payloads(embedder: OpenAIEmbedder, dims: int) -> list[dict[str, Any]]:
    """Swaps the embedder's transport for one that records requests and answers base64."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        payload["authorization"] = request.headers.get("authorization")
        seen.append(payload)
        data = [{"index": i, "embedding": [0.0] * dims} for i in range(len(payload["input"]))]
        return httpx.Response(200, json={"data": data})

    embedder._client = httpx.Client(transport=httpx.MockTransport(handler),
                                    headers=embedder._client.headers)
    return seen


def test_request_fields(make: Make) -> None:
    # The key may go there because PGVECTORIZER_KEY_ENDPOINTS lists it (tests/test_endpoints.py).
    env = {"OPENAI_API_KEY": "sk-test",
           "PGVECTORIZER_KEY_ENDPOINTS": "OPENAI_API_KEY=http://unused.invalid/v1"}
    v3 = make("http://unused.invalid/v1", env=env,
              model="text-embedding-3-small", dimensions=256, user="alice")
    seen = captured_payloads(v3, 256)
    v3.embed(["hello"])
    assert seen == [{"model": "text-embedding-3-small", "input": ["hello"],
                     "encoding_format": "base64", "dimensions": 256, "user": "alice",
                     "authorization": "Bearer sk-test"}]
    # Older models refuse "dimensions"; a local server without a key gets no Authorization.
    ada = make("http://unused.invalid/v1", model="text-embedding-ada-002", dimensions=4)
    seen = captured_payloads(ada, 4)
    ada.embed(["hello"])
    assert seen == [{"model": "text-embedding-ada-002", "input": ["hello"],
                     "encoding_format": "base64", "authorization": None}]


def test_rate_limit_then_success(fake: Fake,
                                 make: Make) -> None:
    url = fake(rate_limit=1, retry_after="1")
    start = time.monotonic()
    vectors = make(url).embed(["a", "b"])
    assert time.monotonic() - start >= 0.95  # slept as Retry-After said
    np.testing.assert_array_equal(vectors, expected(["a", "b"]))
    assert fake_stats(url) == {"requests": 2, "texts": 2}


def test_rate_limit_exhausted(fake: Fake, make: Make) -> None:
    url = fake(rate_limit=100, retry_after="0.2")
    with pytest.raises(EmbeddingError) as info:
        make(url).embed(["a"])
    assert info.value.transient and info.value.status == 429
    assert info.value.cause == "rate_limited"
    assert info.value.retry_after == pytest.approx(0.2)
    assert fake_stats(url)["requests"] == http.RATE_LIMIT_TRIES


def test_rate_limit_wait_over_cap_gives_up_at_once(fake: Fake,
                                                   make: Make) -> None:
    url = fake(rate_limit=100, retry_after="120")
    start = time.monotonic()
    with pytest.raises(EmbeddingError) as info:
        make(url).embed(["a"])
    assert time.monotonic() - start < 5
    assert info.value.transient and info.value.retry_after == 120
    assert fake_stats(url)["requests"] == 1


def test_parse_retry_after() -> None:
    assert http.parse_retry_after("3") == 3.0
    assert http.parse_retry_after(None) is None
    assert http.parse_retry_after("soon") is None
    now = time.time()
    later = formatdate(now + 30, usegmt=True)
    assert http.parse_retry_after(later, now=now) == pytest.approx(30, abs=1)
    assert http.parse_retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_400_is_not_transient(fake: Fake, make: Make) -> None:
    with pytest.raises(EmbeddingError, match="Input 1 contains FAIL400") as info:
        make(fake()).embed(["fine", "FAIL400 here"])
    assert not info.value.transient and info.value.status == 400
    assert info.value.cause == "refused"


def test_500_is_transient(fake: Fake, make: Make) -> None:
    with pytest.raises(EmbeddingError, match="server error 500") as info:
        make(fake()).embed(["FAIL500"])
    assert info.value.transient and info.value.status == 500
    assert info.value.cause == "server_error"


def test_hang_times_out(fake: Fake, make: Make) -> None:
    embedder = make(fake(), env={"PGVECTORIZER_HTTP_TIMEOUT": "0.5"})
    start = time.monotonic()
    with pytest.raises(EmbeddingError, match="within the timeout") as info:
        embedder.embed(["SLOWHANG"])
    assert time.monotonic() - start < 3
    assert info.value.transient and info.value.cause == "unreachable"


def test_bad_timeout_setting() -> None:
    with pytest.raises(ConfigError, match="PGVECTORIZER_HTTP_TIMEOUT"):
        http.timeout_from_env({"PGVECTORIZER_HTTP_TIMEOUT": "soon"})


def test_connection_refused_is_transient(make: Make) -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EmbeddingError, match="failed") as info:
        make(f"http://127.0.0.1:{port}/v1").embed(["a"])
    assert info.value.transient and info.value.cause == "unreachable"


def test_missing_key_for_openai() -> None:
    config = {"implementation": "openai", "model": "text-embedding-3-small", "dimensions": 1536}
    with pytest.raises(ApiKeyMissing, match="OPENAI_API_KEY is not set"):
        make_embedder(config, {})
    with pytest.raises(ApiKeyMissing, match="MY_OPENAI_API_KEY is not set"):
        make_embedder({**config, "api_key_name": "MY_OPENAI_API_KEY"}, {"OPENAI_API_KEY": "sk-x"})


def test_wrong_key_names_the_variable(fake: Fake,
                                      make: Make) -> None:
    url = fake(token="right")
    listed = {"PGVECTORIZER_KEY_ENDPOINTS": f"TEAM_API_KEY={url}"}
    wrong = make(url, env={"TEAM_API_KEY": "wrong", **listed}, api_key_name="TEAM_API_KEY")
    with pytest.raises(ConfigError, match=r"API key from TEAM_API_KEY \(401\)") as info:
        wrong.embed(["a"])
    assert "wrong" not in str(info.value)  # the key itself never shows
    right = make(url, env={"TEAM_API_KEY": "right", **listed}, api_key_name="TEAM_API_KEY")
    np.testing.assert_array_equal(right.embed(["a"]), expected(["a"]))


def test_wrong_dimensions(fake: Fake, make: Make) -> None:
    # No text is to blame: the vectorizer stops, as on a refused key, its queue kept.
    url = fake(dimensions=768)
    with pytest.raises(ProviderError, match="768-dimensional vectors; the vectorizer expects 1536"):
        make(url, model="nomic-embed-text", dimensions=1536).embed(["a"])
    # text-embedding-3 models are asked for the configured size, and the fake obliges.
    v3 = make(url, model="text-embedding-3-small", dimensions=1536)
    assert v3.embed(["a"]).shape == (1, 1536)


def answering(embedder: OpenAIEmbedder, status: int, body: bytes) -> OpenAIEmbedder:
    """Swaps the embedder's transport for one that answers every request with status, body."""
    embedder._client = httpx.Client(
        transport=httpx.MockTransport(lambda request: httpx.Response(status, content=body)))
    return embedder


@pytest.mark.parametrize("status", [400, 500])
def test_a_long_error_body_is_quoted_short_on_one_line(make: Make, status: int) -> None:
    # An internal service's error page, with a stack trace and terminal escapes.
    page = ("<html>Internal error\r\n" + "at service.handler(secret_config.py:12)\n" * 200
            + "\x1b[31mred\x1b[0m\x00\u202e</html>")
    with pytest.raises(EmbeddingError) as info:
        answering(make("http://unused.invalid/v1"), status, page.encode()).embed(["a"])
    message = str(info.value)
    quoted = message[message.index("<html>"):]
    assert len(quoted) <= http.SNIPPET_CHARS and quoted.endswith("\u2026")
    assert "\n" not in message and "\r" not in message and "\x1b" not in message
    assert message.count("secret_config.py") < 10


def test_a_long_json_error_message_is_cut(make: Make) -> None:
    body = json.dumps({"error": {"message": "bad input " + "x" * 5000 + "\n\x07end"}})
    with pytest.raises(EmbeddingError) as info:
        answering(make("http://unused.invalid/v1"), 400, body.encode()).embed(["a"])
    assert "bad input xxx" in str(info.value) and len(str(info.value)) < 400


def test_snippet() -> None:
    assert http.snippet("  one\n\ttwo  \r\n three ") == "one two three"
    assert http.snippet("a\x00b\x1bc\u202ed") == "a\ufffdb\ufffdc\ufffdd"
    assert http.snippet("é" * 300) == "é" * 199 + "\u2026"
    assert http.snippet("x" * 10, limit=5) == "xxxx\u2026"
    assert http.snippet("ok") == "ok"
    assert http.snippet("a" + " " * 3000 + "z") == "a\u2026"  # cut before the end, so marked


@pytest.mark.parametrize(("data", "why"), [
    ([{"index": 0, "embedding": [0.0] * DIMS}], "1 embeddings for 2 texts"),
    ([{"index": 0, "embedding": [0.0] * DIMS}] * 2, "repeated index 0"),
    ([{"index": i, "embedding": "not base64!"} for i in range(2)], "cannot be decoded"),
    ([{"index": i, "embedding": [[0.0]]} for i in range(2)], "not a flat list"),
])
def test_an_answer_that_does_not_fit_the_request_is_a_provider_error(
        make: Make, data: list[dict[str, Any]], why: str) -> None:
    body = json.dumps({"data": data}).encode()
    with pytest.raises(ProviderError, match=why):
        answering(make("http://unused.invalid/v1"), 200, body).embed(["a", "b"])


def test_base64_vectors_decode_strictly_or_as_the_standard_library_would() -> None:
    vector = np.arange(DIMS, dtype="<f4")
    encoded = base64.b64encode(vector.tobytes()).decode()
    assert np.array_equal(http.base64_or_number_vector("m", encoded), vector)
    # Line breaks, as MIME writes base64: skipped, as base64.b64decode skips them.
    wrapped = "\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))
    assert np.array_equal(http.base64_or_number_vector("m", wrapped), vector)
    with pytest.raises(ProviderError, match="cannot be decoded"):
        http.base64_or_number_vector("m", encoded[:-1])  # padding cut off


def test_an_answer_with_nan_is_not_json(make: Make) -> None:
    # json.loads would take NaN; a provider that writes it is not speaking JSON.
    body = b'{"data": [{"index": 0, "embedding": [NaN, 0.0]}]}'
    with pytest.raises(EmbeddingError, match="not JSON"):
        answering(make("http://unused.invalid/v1"), 200, body).embed(["a"])
