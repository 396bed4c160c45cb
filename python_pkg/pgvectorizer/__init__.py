"""pgvectorizer: keep vector embeddings of PostgreSQL rows in sync."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["Worker", "__version__"]


def __getattr__(name: str) -> Any:
    # `from pgvectorizer import Worker`, as with pgai, without making every import (PL/Python's
    # among them) load the worker, psycopg and the event loop.
    if name == "Worker":
        from .worker import Worker
        return Worker
    raise AttributeError(f"module 'pgvectorizer' has no attribute {name!r}")
