"""Semantic search over a vectorizer's view, with the query embedded by the same model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .config import Vectorizer
from .db.search import Hit, nearest
from .embedders import make_embedder


def search(db_url: str, vectorizer: str, query: str, *, limit: int = 5,
           env: Mapping[str, str] | None = None) -> list[Hit]:
    """The `limit` chunks nearest to `query` in a vectorizer (by name or id) with a store."""

    def embed(v: Vectorizer) -> np.ndarray:
        embedder = make_embedder(v.embedding, env)
        try:
            return embedder.embed([query])[0]
        finally:
            embedder.close()

    return nearest(db_url, vectorizer, embed, limit=limit)


__all__ = ["Hit", "search"]
