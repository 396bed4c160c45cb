"""Reads ai.vectorizer_status for `pgvectorizer status`."""

from __future__ import annotations

import os
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row

from pgvectorizer.errors import VectorizerError

# A status check should fail fast on an unreachable host rather than wait for the OS's TCP
# timeout (minutes); a timeout set in the URL or in PGCONNECT_TIMEOUT still wins.
CONNECT_TIMEOUT = 10  # seconds

STATUS_QUERY = "SELECT * FROM ai.vectorizer_status ORDER BY id"


def fetch_status(db_url: str) -> list[dict[str, Any]]:
    """Every row of ai.vectorizer_status, by id, as column name -> value.

    Raises VectorizerError when the database cannot be reached or the view cannot be read.
    """
    try:
        extra: dict[str, Any] = {}
        if "connect_timeout" not in conninfo_to_dict(db_url) and not os.environ.get("PGCONNECT_TIMEOUT"):
            extra["connect_timeout"] = CONNECT_TIMEOUT
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row, **extra) as conn:
            return conn.execute(STATUS_QUERY).fetchall()
    except psycopg.Error as exc:
        # The message is libpq's or the server's; it names the host but never the password.
        raise VectorizerError(f"cannot read ai.vectorizer_status: {exc}".strip()) from exc
