"""pgvectorizer: keep vector embeddings of PostgreSQL rows in sync."""

from __future__ import annotations

__version__ = "0.1.0"
