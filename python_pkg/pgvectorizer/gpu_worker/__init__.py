"""The GPU worker: claims tasks from the embedding queue service over HTTP, embeds them with a
local model, and posts the vectors back.

backends (the models) <- packing (many tasks, one call) <- loop (claim, heartbeat, post)
-> client (the HTTP protocol of service/protocol.py). Only `pgvectorizer gpu-worker`
(cli_gpu.py) imports this package, so the vectorizer worker never loads torch or the service's
pydantic models.
"""

from __future__ import annotations

from pgvectorizer.gpu_worker.backends import (
    Backend,
    OllamaBackend,
    SentenceTransformersBackend,
    make_backend,
)
from pgvectorizer.gpu_worker.loop import GpuWorker

__all__ = ["Backend", "GpuWorker", "OllamaBackend", "SentenceTransformersBackend", "make_backend"]
