"""`pgvectorizer install`: pgvectorizer's schema ai as plain objects, in one transaction, in a
database where only pgvector can be installed; and the installed version, for every client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgvectorizer.errors import VectorizerError
from pgvectorizer.install import scripts

# Which pgvectorizer a database has: the extension's version, or a plain install's ai.version()
# (0.1.0, the last version without that function, existed only as the extension).
PROBE = ("SELECT (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'ai'), "
         "pg_catalog.to_regprocedure('ai.version()') IS NOT NULL, "
         "pg_catalog.to_regclass('ai.vectorizer') IS NOT NULL")
VERSION = "SELECT ai.version()"
VECTOR_SCHEMA = ("SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n "
                 "ON n.oid = e.extnamespace WHERE e.extname = 'vector'")
# Two installs at once would both find nothing installed; the second waits, then finds the first.
LOCK = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('pgvectorizer install'))"


class InstallError(VectorizerError):
    """pgvectorizer install could not run, and changed nothing."""


@dataclass(frozen=True)
class Installed:
    before: str | None  # the version found (None: nothing was installed)
    after: str
    scripts: tuple[str, ...]  # the files run, in order


def _from_probe(row: tuple[Any, ...] | None) -> str | None:
    """The version, from PROBE's row, or "?" when ai.version() must be asked."""
    assert row is not None
    extension, has_function, has_catalog = row
    if extension:
        return str(extension)
    if has_function:
        return "?"
    return "0.1.0" if has_catalog else None


def installed_version(conn: psycopg.Connection[Any], probe: tuple[Any, ...] | None = None) -> str | None:
    """The installed version; `probe` is PROBE's row when the caller has it already."""
    version = _from_probe(probe if probe is not None else conn.execute(PROBE).fetchone())
    if version == "?":
        row = conn.execute(VERSION).fetchone()
        version = str(row[0]) if row else None
    return version


async def installed_version_async(conn: psycopg.AsyncConnection[Any]) -> str | None:
    version = _from_probe(await (await conn.execute(PROBE)).fetchone())
    if version == "?":
        row = await (await conn.execute(VERSION)).fetchone()
        version = str(row[0]) if row else None
    return version


def install(db_url: str, version: str = scripts.CURRENT, *, dry_run: bool = False) -> tuple[Installed, str]:
    """Installs or upgrades to `version`; returns what it did and the SQL it ran (or would)."""
    try:
        with psycopg.connect(db_url) as conn:   # one transaction, committed on leaving
            conn.execute(LOCK)
            probe = conn.execute(PROBE).fetchone()
            if probe and probe[0]:
                raise InstallError(
                    f"the ai extension ({probe[0]}) is installed in this database, and a plain "
                    "install cannot go beside it: upgrade the extension with ALTER EXTENSION ai UPDATE")
            row = conn.execute(VECTOR_SCHEMA).fetchone()
            if row is None:
                raise InstallError("pgvector is not installed in this database: CREATE EXTENSION vector "
                                   "first (a managed service lists it among its extensions)")
            before = installed_version(conn, probe)
            steps = scripts.plan(before, version)
            # As CREATE EXTENSION sets it: the new objects go to ai, `vector` resolves.
            conn.execute(sql.SQL("SET LOCAL search_path = ai, {}, pg_temp").format(sql.Identifier(row[0])))
            for _name, text in steps:
                if not dry_run:
                    conn.execute(text.encode())
            if dry_run:
                conn.rollback()
    except psycopg.Error as exc:
        raise InstallError(f"pgvectorizer install failed, and changed nothing: {exc}".strip()) from exc
    done = Installed(before, version, tuple(name for name, _ in steps))
    return done, "".join(text for _, text in steps)
