"""ai.embed's Python side without a database: a fake plpy, fake embedders, no server."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from pgvectorizer.errors import EmbeddingError, EndpointNotAllowed
from pgvectorizer.indb import embed as embed_mod

CONFIG = json.dumps({"implementation": "openai", "model": "m", "dimensions": 3,
                     "base_url": "http://10.0.0.5:8080/v1"})


class QueryCanceled(Exception):
    """What plpy raises when a cancel or statement_timeout is pending."""


class FakePlpy:
    """Counts execute() calls (the interrupt checks); runs nothing."""

    def __init__(self) -> None:
        self.executed: list[str] = []

    def execute(self, query: str) -> list[Any]:
        self.executed.append(query)
        return []


class Embedder:
    """Vectors [len, 1, 0]; NaN for texts containing NAN."""

    dimensions = 3

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.array([[len(t), 1, 0] for t in texts], dtype=np.float32)
        for i, t in enumerate(texts):
            if "NAN" in t:
                out[i, 0] = np.nan
        return out

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fresh_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embed_mod, "_embedders", {})
    monkeypatch.setattr(embed_mod, "_answers", OrderedDict())


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """make_embedder replaced by one that records its keyword arguments."""
    calls: list[dict[str, Any]] = []

    def make(config: Any, env: Any, **kwargs: Any) -> Embedder:
        calls.append(kwargs)
        return Embedder()

    monkeypatch.setattr(embed_mod, "make_embedder", make)
    return calls


def test_embeds_server_side(made: list[dict[str, Any]]) -> None:
    assert embed_mod.embed(FakePlpy(), "abcd", config=CONFIG) == "[4,1,0]"
    assert made == [{"server_side": True}]


def test_a_non_finite_vector_is_a_clear_error(made: list[dict[str, Any]]) -> None:
    with pytest.raises(EmbeddingError, match=r"non-finite values \(NaN or infinity\)"):
        embed_mod.embed(FakePlpy(), "NAN text", config=CONFIG)
    assert not embed_mod._answers  # nothing cached


def test_an_endpoint_the_server_does_not_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGVECTORIZER_ALLOWED_ENDPOINTS", raising=False)
    monkeypatch.delenv("PGVECTORIZER_KEY_ENDPOINTS", raising=False)
    with pytest.raises(EndpointNotAllowed, match="http://10.0.0.5:8080/v1"):
        embed_mod.embed(FakePlpy(), "text", config=CONFIG)


def test_a_cancel_reaches_ai_embed_while_the_provider_hangs(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    class Hanging(Embedder):
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            release.wait(10)
            return super().embed(texts)

    class Cancelling(FakePlpy):
        def execute(self, query: str) -> list[Any]:
            super().execute(query)
            if len(self.executed) == 2:
                raise QueryCanceled("canceling statement due to user request")
            return []

    monkeypatch.setattr(embed_mod, "make_embedder", lambda *a, **k: Hanging())
    plpy = Cancelling()
    start = time.monotonic()
    try:
        with pytest.raises(QueryCanceled):
            embed_mod.embed(plpy, "a query", config=CONFIG)
    finally:
        release.set()
    assert time.monotonic() - start < 1.0
    assert plpy.executed == ["SELECT pg_catalog.pg_sleep(0)"] * 2
