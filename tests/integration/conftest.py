"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from tests.helpers.db import DBNAME, PGHOST, PGPORT, PGUSER
from tests.helpers.worker import PATHS


def url(name: str) -> str:
    """A conninfo for database `name`, as the superuser over the socket."""
    return f"host={PGHOST} port={PGPORT} user={PGUSER} dbname={name}"


@pytest.fixture(params=PATHS)
def path(request: pytest.FixtureRequest) -> str:
    """How the test drains a queue: "worker" (a `--once` pass of the external worker, in this
    process) or "indb" (ai.execute_vectorizer); tests/helpers/worker.py drain()."""
    return str(request.param)


@pytest.fixture
def databases(db: psycopg.Connection) -> Iterator[Callable[[str], psycopg.Connection]]:
    """Makes empty databases by label (dropped afterwards); returns an autocommit session."""
    made: list[tuple[str, psycopg.Connection]] = []

    def make(label: str) -> psycopg.Connection:
        name = f"{DBNAME}_{label}"
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        db.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn = psycopg.connect(url(name), autocommit=True)
        made.append((name, conn))
        return conn

    yield make
    for name, conn in made:
        conn.close()
        db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
