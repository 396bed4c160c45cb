"""Fixtures shared by the whole suite; what the tests import lives in tests/helpers/.

The suite is split by what a test needs (README, Testing):

- unit/: no database and no processes of its own; fakes on loopback in this process. Runs with
  the cluster stopped (`make unit`).
- integration/: the running cluster (tests/helpers/db.py), the worker in this process.
- acceptance/: real processes: workers and the queue service as subprocesses, pg_cron, the
  set-up script, the demo.

Each test gets a marker of its directory's name (`pytest -m "not acceptance"`). The database
fixtures below are made only when a test asks for them: once per session a template database
with `CREATE EXTENSION ai CASCADE`, and per test a copy of it (CREATE DATABASE ... TEMPLATE
takes about 0.1 s) that is dropped after the test. A unit test that asks for one is refused at
collection.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pytest_postgresql import factories

from tests.helpers.db import DBNAME, DIMS, PGHOST, PGPORT, PGUSER, Connector
from tests.helpers.fake_openai import start_fake_server

KINDS = ("unit", "integration", "acceptance")
# What a unit test may not ask for: each needs the cluster.
DATABASE_FIXTURES = frozenset({"postgresql_ai_noproc", "postgresql_ai", "db", "connect", "make_role"})
TESTS = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unit: no database, no processes (tests/unit)")
    config.addinivalue_line("markers", "integration: the PostgreSQL cluster (tests/integration)")
    config.addinivalue_line("markers", "acceptance: real processes, pg_cron, set-up (tests/acceptance)")
    config.addinivalue_line("markers", "root: needs root on the database machine (skipped otherwise)")
    config.addinivalue_line("markers", "slow: runs the whole set-up script")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        try:
            kind = Path(item.fspath).resolve().relative_to(TESTS).parts[0]
        except ValueError:
            continue
        if kind not in KINDS:
            continue
        item.add_marker(kind)
        if kind == "unit" and (wanted := DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ()))):
            raise pytest.UsageError(f"{item.nodeid} is a unit test but asks for {sorted(wanted)}: "
                                    "tests that need the database belong in tests/integration")


# --- the database -------------------------------------------------------------------------------

def _load_ai(host: str, port: int, user: str, dbname: str, password: str | None, **_: Any) -> None:
    """Template loader: the extension and what it requires."""
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, password=password,
                         autocommit=True) as conn:
        conn.execute("CREATE EXTENSION ai CASCADE")


postgresql_ai_noproc = factories.postgresql_noproc(
    host=PGHOST, port=PGPORT, user=PGUSER, dbname=DBNAME, load=[_load_ai])
postgresql_ai = factories.postgresql("postgresql_ai_noproc")


@pytest.fixture
def db(postgresql_ai: psycopg.Connection) -> psycopg.Connection:
    """The test's own fresh database with the ai extension, as the superuser, autocommit."""
    postgresql_ai.autocommit = True
    return postgresql_ai


@pytest.fixture
def connect(db: psycopg.Connection) -> Iterator[Connector]:
    connector = Connector(db.info.dbname)
    yield connector
    connector.close_all()


@pytest.fixture
def make_role(db: psycopg.Connection, connect: Connector) -> Iterator[Callable[..., tuple[str, str]]]:
    """Creates login roles with unique names; returns (name, password).

    Roles are cluster-wide, so teardown closes their sessions, drops what they own and were
    granted in the test database, and drops them.
    """
    made: list[str] = []

    def make(label: str) -> tuple[str, str]:
        name = f"pgvt_{os.getpid()}_{secrets.token_hex(3)}_{label}"
        password = secrets.token_hex(12)
        db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))
        made.append(name)
        return name, password

    yield make
    connect.close_all()
    if made:
        idents = sql.SQL(", ").join(sql.Identifier(r) for r in made)
        db.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(idents))
        db.execute(sql.SQL("DROP ROLE {}").format(idents))


# --- fakes --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_url() -> Iterator[str]:
    """A fake OpenAI-compatible server on loopback (tests/helpers/fake_openai.py), per test module."""
    url, stop = start_fake_server(dimensions=DIMS)
    yield url
    stop()
