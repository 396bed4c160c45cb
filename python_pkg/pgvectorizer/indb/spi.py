"""The in-database adapter of the queue core: statements as PL/Python plans, inside the
caller's transaction.

Key locks are transaction locks here, so a failed call can leave none behind, and a batch's
chunks travel in the write's jsonb arguments (SPI has no COPY).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from ..config import Vectorizer
from ..core.statements import Statement
from ..vectors import vector_text

JSONB_OID = 3802  # a built-in type's oid is fixed; PL/Python hands jsonb over as text


def _value(value: Any) -> Any:
    """What PL/Python can pass on: vectors as text, uuids as text, mappings as json text,
    lists element-wise."""
    if isinstance(value, np.ndarray):
        return vector_text(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        # A write's arguments hold every chunk's vector as text: orjson, as for the answers.
        return orjson.dumps(dict(value)).decode()
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


class Plan:
    """A statement prepared once per backend."""

    def __init__(self, plpy: Any, statement: Statement) -> None:
        self.plan = plpy.prepare(statement.sql, list(statement.types))

    def execute(self, params: Sequence[Any] = ()) -> Any:
        return self.plan.execute([_value(a) for a in params])


class SpiDriver:
    """Implements core.queue.Driver over SPI."""

    xact_locks = True  # transaction locks: they end with the caller's transaction

    def __init__(self, plpy: Any) -> None:
        self.plpy = plpy
        self._plans: dict[Statement, Plan] = {}

    async def rows(self, statement: Statement, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        plan = self._plans.get(statement)
        if plan is None:
            plan = self._plans[statement] = Plan(self.plpy, statement)
        result = plan.execute(params)
        if not result.nrows():
            return []
        names = result.colnames()
        jsonb = [t == JSONB_OID for t in result.coltypes()]
        return [tuple(orjson.loads(r[n]) if j and r[n] is not None else r[n]
                      for n, j in zip(names, jsonb, strict=True)) for r in result]

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield  # the caller's transaction is open already; a failure aborts it whole

    async def prepare_staging(self, v: Vectorizer) -> bool:
        return False

    async def stage(self, rows: Sequence[tuple[Any, ...]]) -> None:
        raise NotImplementedError("SPI has no staging: chunks go in the write's arguments")
