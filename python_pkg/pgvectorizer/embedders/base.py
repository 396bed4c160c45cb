"""What every embedder offers the pipeline."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Turns texts into vectors. Synchronous and thread-safe: the async worker calls it from
    worker threads, and PL/Python calls it directly."""

    #: the size of every vector it returns
    dimensions: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dimensions), row i for texts[i].

        Splits into provider-sized requests itself. Raises errors.EmbeddingError when the
        provider fails, errors.ConfigError when the configuration cannot work.
        """
        ...

    def close(self) -> None:
        """Release connections (models stay cached for the process)."""
        ...
