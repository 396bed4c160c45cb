"""Connections for the worker: settings every session gets, and pgvector's binary format."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import psycopg
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.pq import Format
from psycopg.types.json import set_json_loads

from ..vectors import parse_vector, vector_text

# What the layers above see of the driver: a connection, and errors to tell apart.
Connection = psycopg.AsyncConnection[Any]
DatabaseError = psycopg.Error
ConnectionFailed = psycopg.OperationalError  # no session, or the one there was is gone
NotAllowed = psycopg.errors.InsufficientPrivilege

APPLICATION_NAME = "pgvectorizer-worker"
# TCP keepalives: a worker whose machine vanished loses its session, and with it the
# advisory locks on the rows it held, within about a minute.
KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}
# Every name the package sends is schema-qualified; the pinned search_path makes a row filter
# resolve exactly as it does in the (pinned) trigger function. A claim or a write waits at most
# 10 s behind DDL on the source or the store.
SESSION_SETUP = ("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false), "
                 "pg_catalog.set_config('lock_timeout', '10s', false)")
# For a concurrent index build, which waits for every older transaction (an in-database run
# may last a minute): the 10 s lock_timeout would fail it half-way, leaving an invalid index.
NO_TIMEOUTS = ("SELECT pg_catalog.set_config('lock_timeout', '0', false), "
               "pg_catalog.set_config('statement_timeout', '0', false)")


class _VectorBinaryLoader(Loader):
    """pgvector's binary form: int16 dimensions, int16 unused, float32 big-endian values."""

    format = Format.BINARY

    def load(self, data: Buffer) -> np.ndarray:
        return np.frombuffer(bytes(data), dtype=">f4", offset=4).astype(np.float32)


class _VectorTextLoader(Loader):
    def load(self, data: Buffer) -> np.ndarray:
        return parse_vector(bytes(data).decode())


def _vector_dumpers(oid: int) -> tuple[type[Dumper], type[Dumper]]:
    class VectorBinaryDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Any) -> bytes:
            values = np.asarray(obj, dtype=">f4")
            return struct.pack(">HH", values.shape[0], 0) + values.tobytes()

    class VectorTextDumper(Dumper):
        def dump(self, obj: Any) -> bytes:
            return vector_text(obj).encode()

    VectorBinaryDumper.oid = oid
    VectorTextDumper.oid = oid
    return VectorBinaryDumper, VectorTextDumper


VECTOR_OID = ("SELECT t.oid FROM pg_catalog.pg_type t JOIN pg_catalog.pg_extension e "
              "ON e.extnamespace = t.typnamespace WHERE e.extname = 'vector' AND t.typname = 'vector'")


async def vector_oid(conn: psycopg.AsyncConnection[Any]) -> int:
    """The oid of pgvector's type in this database."""
    cur = await conn.execute(VECTOR_OID)
    row = await cur.fetchone()
    if row is None:
        raise psycopg.errors.UndefinedObject("the vector extension is not installed in this database")
    return int(row[0])


def register_vector(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any], oid: int) -> None:
    """numpy arrays go out as vectors; vectors come back as float32 arrays."""
    binary, text = _vector_dumpers(oid)
    conn.adapters.register_dumper(np.ndarray, binary)
    conn.adapters.register_dumper(np.ndarray, text)
    conn.adapters.register_loader(oid, _VectorBinaryLoader)
    conn.adapters.register_loader(oid, _VectorTextLoader)


async def connect(db_url: str, *, purpose: str = "") -> psycopg.AsyncConnection[Any]:
    """An autocommit session with a pinned search_path and the vector adapters."""
    name = f"{APPLICATION_NAME} {purpose}".strip()
    conn = await psycopg.AsyncConnection.connect(db_url, autocommit=True, application_name=name,
                                                 **KEEPALIVES)
    await conn.execute(SESSION_SETUP)
    # A claim's answer is jsonb holding every row's text: orjson reads it in half the time.
    set_json_loads(orjson.loads, conn)
    try:
        register_vector(conn, await vector_oid(conn))
    except psycopg.errors.UndefinedObject:
        pass  # no vectorizer can exist without it; the catalog query will say so
    return conn


def lost_connection(e: BaseException) -> bool:
    """Whether a database error means the session is gone (or cannot be had), rather than a
    statement that failed: then nothing is recorded (it could not be) and the worker waits
    for the database with a backoff."""
    return isinstance(e, ConnectionFailed) and not isinstance(e, psycopg.errors.QueryCanceled)
