"""A vectorizer as the pipeline sees it: one row of ai.vectorizer, read into plain values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

# Rows claimed at once when the processing config does not say. Remote providers answer a
# large batch about as fast as a small one; a local model on a CPU wants smaller claims so a
# lease never waits on minutes of work.
DEFAULT_BATCH_SIZE_REMOTE = 200  # rows
DEFAULT_BATCH_SIZE_LOCAL = 64  # rows
# loading_column's retries when the config has none: a row is tried 1 + retries times.
DEFAULT_RETRIES = 6
# A batch's lease: after this long a crashed worker's rows may be claimed again. A live
# worker keeps its keys past it anyway (its session holds their advisory locks).
DEFAULT_LEASE = 300.0  # seconds
# First backoff after a failed attempt; it doubles with each attempt.
DEFAULT_RETRY_BASE = 10.0  # seconds


class _Section:
    """`vectorizer.embedding` and the like: that section of the config (check() makes sure
    it is a mapping)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, vectorizer: Any, owner: type | None = None) -> Mapping[str, Any]:
        section: Mapping[str, Any] = vectorizer.config[self.name]
        return section


@dataclass(frozen=True)
class Vectorizer:
    """What the worker needs to know about one vectorizer."""

    id: int
    name: str
    source_schema: str
    source_table: str
    pk: tuple[str, ...]  # primary-key column names, in key order
    queue_schema: str
    queue_table: str
    failed_table: str
    config: Mapping[str, Any]
    disabled: bool = False
    pk_types: tuple[str, ...] = ()  # the key columns' types, as format_type writes them

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Vectorizer:
        """Build from a row of ai.vectorizer (column name to value)."""
        source_pk = sorted(row["source_pk"], key=lambda p: p["pknum"])
        pk = tuple(p["attname"] for p in source_pk)
        v = cls(id=row["id"], name=row["name"], source_schema=row["source_schema"],
                source_table=row["source_table"], pk=pk, queue_schema=row["queue_schema"],
                queue_table=row["queue_table"], failed_table=row["queue_failed_table"],
                config=row["config"], disabled=bool(row.get("disabled", False)),
                pk_types=tuple(str(p["typname"]) for p in source_pk))
        v.check()
        return v

    def check(self) -> None:
        """Fail early, with the vectorizer's name, on a config this version cannot run."""
        for part in ("loading", "embedding", "chunking", "formatting", "destination"):
            if not isinstance(self.config.get(part), Mapping):
                raise ConfigError(f"vectorizer {self.name!r}: its config has no {part} section")
        if self.destination.get("implementation") not in ("table", "column"):
            raise ConfigError(f"vectorizer {self.name!r}: unknown destination "
                              f"{self.destination.get('implementation')!r}")
        # create_vectorizer enforces this; checked again since the pipeline relies on it.
        if self.to_column and self.chunking.get("implementation") != "none":
            raise ConfigError(f"vectorizer {self.name!r}: destination_column keeps one embedding "
                              "per row, so its chunking must be none")

    # --- sections -------------------------------------------------------------------------

    loading = _Section()
    embedding = _Section()
    chunking = _Section()
    formatting = _Section()
    destination = _Section()

    @property
    def parsing(self) -> Mapping[str, Any]:
        """How loaded documents become text (ai.parsing_auto when the config has none)."""
        return self.config.get("parsing") or {"implementation": "auto"}

    @property
    def processing(self) -> Mapping[str, Any]:
        return self.config.get("processing") or {}

    # --- derived values -------------------------------------------------------------------

    @property
    def loading_column(self) -> str:
        return str(self.config["loading"]["column_name"])

    @property
    def template_columns(self) -> tuple[str, ...]:
        return tuple(self.config.get("template_columns") or ())

    @property
    def row_filter(self) -> str | None:
        return self.config.get("row_filter")

    @property
    def dimensions(self) -> int:
        return int(self.embedding["dimensions"])

    @property
    def max_attempts(self) -> int:
        """How often a row is tried before it goes to the failed-items table."""
        retries = self.config["loading"].get("retries")
        return 1 + (DEFAULT_RETRIES if retries is None else int(retries))

    @property
    def batch_size(self) -> int:
        size = self.processing.get("batch_size")
        if size:
            return int(size)
        local = self.embedding.get("implementation") == "sentence_transformers"
        return DEFAULT_BATCH_SIZE_LOCAL if local else DEFAULT_BATCH_SIZE_REMOTE

    @property
    def concurrency(self) -> int:
        return int(self.processing.get("concurrency") or 1)

    @property
    def to_column(self) -> bool:
        """True when embeddings go to a column of the source rather than a store table."""
        return self.destination.get("implementation") == "column"

    @property
    def read_columns(self) -> tuple[str, ...]:
        """Source columns the pipeline reads besides the key: the text, then template columns."""
        cols = [self.loading_column]
        cols += [c for c in self.template_columns if c not in cols]
        return tuple(cols)
