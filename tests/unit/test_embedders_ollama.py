"""The Ollama embedder against a small fake /api/embed started here; no database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pgvectorizer.embedders import make_embedder
from pgvectorizer.embedders import ollama as ollama_mod
from pgvectorizer.embedders.ollama import OllamaEmbedder, ollama_base_url
from pgvectorizer.errors import EmbeddingError, ProviderError

from tests.helpers import fake_ollama
from tests.helpers.fake_ollama import DIMS, MODEL, FakeOllama
from tests.helpers.fake_openai import fake_vector


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with fake_ollama.running() as srv:
        yield srv


def host(srv: FakeOllama) -> str:
    return f"127.0.0.1:{srv.server_address[1]}"


def embedder(srv: FakeOllama, env: dict[str, str] | None = None, **config: Any) -> OllamaEmbedder:
    full = {"implementation": "ollama", "model": MODEL, "dimensions": DIMS, **config}
    made = make_embedder(full, {"OLLAMA_HOST": host(srv), **(env or {})})
    assert isinstance(made, OllamaEmbedder)
    return made


def test_embeds_in_order_via_ollama_host(server: FakeOllama) -> None:
    texts = ["one", "two", "three"]
    e = embedder(server)
    vectors = e.embed(texts)
    e.close()
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, np.stack([fake_vector(t, DIMS) for t in texts]))
    assert server.payloads == [{"model": MODEL, "input": texts}]


def test_options_and_keep_alive_sent(server: FakeOllama) -> None:
    e = embedder(server, options={"num_ctx": 512}, keep_alive="10m")
    e.embed(["a"])
    e.close()
    assert server.payloads == [{"model": MODEL, "input": ["a"], "options": {"num_ctx": 512},
                                "keep_alive": "10m"}]


def test_splits_requests(server: FakeOllama, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ollama_mod.OllamaEmbedder, "max_inputs", 2)
    texts = [f"t{i}" for i in range(5)]
    vectors = embedder(server).embed(texts)
    assert [p["input"] for p in server.payloads] == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    np.testing.assert_allclose(vectors, np.stack([fake_vector(t, DIMS) for t in texts]))


def test_missing_model_says_pull(server: FakeOllama) -> None:
    with pytest.raises(EmbeddingError, match="ollama pull all-minilm") as info:
        embedder(server, model="all-minilm").embed(["a"])
    assert not info.value.transient and info.value.status == 404


def test_server_error_is_transient(server: FakeOllama) -> None:
    with pytest.raises(EmbeddingError, match="llama runner") as info:
        embedder(server).embed(["FAIL500"])
    assert info.value.transient


def test_timeout(server: FakeOllama) -> None:
    e = embedder(server, env={"PGVECTORIZER_HTTP_TIMEOUT": "0.3"})
    start = time.monotonic()
    with pytest.raises(EmbeddingError, match="within the timeout") as info:
        e.embed(["SLOWHANG"])
    assert time.monotonic() - start < 1.5
    assert info.value.transient


def test_wrong_dimensions(server: FakeOllama) -> None:
    with pytest.raises(ProviderError, match="returned 16-dimensional vectors; the vectorizer "
                                            "expects 8"):
        embedder(server, options={"fake_dims": 16}).embed(["a"])


def test_one_vector_too_few(server: FakeOllama) -> None:
    with pytest.raises(ProviderError, match="2 embeddings for 3 texts"):
        embedder(server, options={"fake_drop": 1}).embed(["a", "b", "c"])


def test_base_url() -> None:
    assert ollama_base_url({}, {}) == "http://localhost:11434"
    assert ollama_base_url({}, {"OLLAMA_HOST": "0.0.0.0:11434"}) == "http://0.0.0.0:11434"
    assert ollama_base_url({}, {"OLLAMA_HOST": "gpu-box"}) == "http://gpu-box:11434"
    remote = "https://ollama.example.com"
    assert ollama_base_url({}, {"OLLAMA_HOST": remote + "/"}) == remote
    assert ollama_base_url({"base_url": "http://h:1/"}, {"OLLAMA_HOST": "x"}) == "http://h:1"
