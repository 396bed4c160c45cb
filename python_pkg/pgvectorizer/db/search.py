"""The database side of semantic search: a vectorizer's row, then the nearest chunks in its view.

The query's vector comes from the caller (pgvectorizer/search.py embeds it with the
vectorizer's own model), so this layer needs no embedder."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ..config import Vectorizer
from ..errors import ConfigError
from .connection import SESSION_SETUP, register_vector

# pgvector's operator for each HNSW opclass; the store's index (when there is one) serves it.
_DISTANCE = {"vector_cosine_ops": "<=>", "vector_ip_ops": "<#>", "vector_l2_ops": "<->",
             "vector_l1_ops": "<+>"}


@dataclass
class Hit:
    key: tuple[Any, ...]
    chunk: str
    distance: float
    row: Mapping[str, Any]  # the source row's other columns, from the view


def nearest(db_url: str, vectorizer: str, query_vector: Callable[[Vectorizer], np.ndarray], *,
            limit: int = 5) -> list[Hit]:
    """The `limit` chunks nearest to query_vector(v) in a vectorizer v (by name or id) with a
    store."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SESSION_SETUP)
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute("SELECT * FROM ai.vectorizer WHERE name = %s OR id::text = %s",
                        (vectorizer, vectorizer))
            row = cur.fetchone()
        if row is None:
            raise ConfigError(f"no vectorizer named {vectorizer!r}")
        v = Vectorizer.from_row(row)
        if v.to_column:
            raise ConfigError(f"vectorizer {v.name!r} stores one vector per row in a column; "
                              "search its table directly")
        vector = query_vector(v)
        # pgvector's type and operators live in its extension's schema, which need not be public.
        found_type = conn.execute(
            "SELECT t.oid, n.nspname FROM pg_catalog.pg_type t "
            "JOIN pg_catalog.pg_extension e ON e.extnamespace = t.typnamespace "
            "JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
            "WHERE e.extname = 'vector' AND t.typname = 'vector'").fetchone()
        assert found_type is not None
        register_vector(conn, int(found_type[0]))
        op = _DISTANCE.get(v.config.get("indexing", {}).get("opclass", ""), "<=>")
        dest = v.destination
        query_sql = sql.SQL("SELECT *, embedding OPERATOR({schema}.{op}) %s AS _distance FROM {view} "
                            "ORDER BY _distance LIMIT %s").format(
            schema=sql.Identifier(found_type[1]), op=sql.SQL(op),
            view=sql.Identifier(dest["view_schema"], dest["view_name"]))
        with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(query_sql, (vector, limit))
            found = cur.fetchall()
    hidden = {"embedding", "embedding_uuid", "chunk", "chunk_seq", "_distance"}
    return [Hit(tuple(r[c] for c in v.pk), r["chunk"], float(r["_distance"]),
                {k: val for k, val in r.items() if k not in hidden}) for r in found]


__all__ = ["Hit", "nearest"]
