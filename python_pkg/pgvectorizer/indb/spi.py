"""The worker's named statements (psycopg.sql, %s placeholders) as PL/Python plans ($n)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from psycopg import sql

# Re-exported: callers (and bench/indb_run.py's profile) find them here.
from ..vectors import parse_vector, vector_text

_MARK = re.compile(r"%\((\w+)\)s|%s|%%")
__all__ = ["Plan", "parse_vector", "to_dollar", "vector_text"]


def to_dollar(query: sql.Composable | str) -> tuple[str, list[str | int]]:
    """The query with $n placeholders, and what each $n stands for: a parameter's name, or
    the index of a positional one. `%%` becomes `%`."""
    text = query if isinstance(query, str) else query.as_string(None)
    order: list[str | int] = []

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "%%":
            return "%"
        key: str | int = m.group(1) if m.group(1) is not None else sum(
            isinstance(k, int) for k in order)
        if isinstance(key, str) and key in order:
            return f"${order.index(key) + 1}"
        order.append(key)
        return f"${len(order)}"

    return _MARK.sub(sub, text), order


def _value(value: Any) -> Any:
    """What PL/Python can pass on: vectors as text, uuids as text, lists element-wise."""
    if isinstance(value, np.ndarray):
        return vector_text(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return [_value(v) for v in value]
    return value


class Plan:
    """A prepared statement; `types` gives each parameter's SQL type by name or position."""

    def __init__(self, plpy: Any, query: sql.Composable | str,
                 types: Mapping[str, str] | Sequence[str] = ()) -> None:
        text, self.order = to_dollar(query)
        by_key: dict[str | int, str] = {}
        by_key.update(enumerate(types) if isinstance(types, Sequence) else types.items())
        self.plan = plpy.prepare(text, [by_key[k] for k in self.order])

    def execute(self, params: Mapping[str, Any] | Sequence[Any] = ()) -> Any:
        if isinstance(params, Mapping):
            args = [params[k] for k in self.order]  # type: ignore[index]
        else:
            args = list(params)
        return self.plan.execute([_value(a) for a in args])
