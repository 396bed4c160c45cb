"""An embedder that needs no server, for the pipeline and the queue sessions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pgvectorizer.errors import UNREACHABLE, EmbeddingError


class FakeEmbedder:
    """Vectors from text lengths; refuses texts containing BAD, answers 500 to CRASH, times
    out on SLOW."""

    dimensions = 3

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if any("SLOW" in t for t in texts):
            raise EmbeddingError("timed out", transient=True, cause=UNREACHABLE)
        if any("CRASH" in t for t in texts):
            raise EmbeddingError("server error 500", transient=True, status=500)
        if any("BAD" in t for t in texts):
            raise EmbeddingError("input rejected", transient=False, status=400)
        return np.array([[len(t), 1, 0] for t in texts], dtype=np.float32)

    def close(self) -> None:
        pass
