"""Unit tests for pgvectorizer.formatting (no database)."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest
from pgvectorizer.errors import ChunkingError
from pgvectorizer.formatting import make_formatter

COLUMNS = ["id", "title", "body", "author", "published", "price"]
ROW: dict[str, object] = {
    "id": 7, "title": "Hello", "body": "the whole text", "author": None,
    "published": dt.date(2024, 3, 1), "price": decimal.Decimal("9.50"),
}


def template(text: str) -> dict[str, object]:
    return {"implementation": "python_template", "config_type": "formatting", "template": text}


def test_default_returns_the_chunk_itself() -> None:
    fmt = make_formatter(template("$chunk"), COLUMNS)
    chunk = "some chunk " * 50
    assert fmt(chunk, ROW) is chunk  # the fast path: no copy, no lookups
    assert make_formatter(template("${chunk}"), COLUMNS)(chunk, {}) is chunk


def test_columns_are_substituted() -> None:
    fmt = make_formatter(template("title: $title\n\n$chunk"), COLUMNS)
    assert fmt("a chunk", ROW) == "title: Hello\n\na chunk"


def test_braces_and_literal_dollar() -> None:
    fmt = make_formatter(template("${title}s cost $$${price} (#$id): $chunk"), COLUMNS)
    assert fmt("x", ROW) == "Hellos cost $9.50 (#7): x"


def test_null_is_empty_and_other_values_use_str() -> None:
    fmt = make_formatter(template("[$author] $published $id $price $chunk"), COLUMNS)
    assert fmt("c", ROW) == "[] 2024-03-01 7 9.50 c"
    when = dt.datetime(2024, 3, 1, 12, 30, tzinfo=dt.UTC)
    key = uuid.UUID(int=1)
    fmt = make_formatter(template("$published|$id|$chunk"), COLUMNS)
    assert fmt("c", {"published": when, "id": key}) == f"{when}|{key}|c"
    assert fmt("c", {"published": True, "id": 1.5}) == "True|1.5|c"


def test_chunk_wins_over_a_column_named_chunk() -> None:
    fmt = make_formatter(template("$title: $chunk"), [*COLUMNS, "chunk"])
    assert fmt("the chunk", {**ROW, "chunk": "the column"}) == "Hello: the chunk"


def test_template_without_chunk() -> None:
    fmt = make_formatter(template("only $title"), COLUMNS)
    assert fmt("ignored", ROW) == "only Hello"


def test_column_missing_from_the_row() -> None:
    fmt = make_formatter(template("$title by $author: $chunk"), COLUMNS)
    with pytest.raises(ChunkingError, match="'author'"):
        fmt("c", {"title": "Hello"})


def test_column_missing_from_the_table() -> None:
    with pytest.raises(ChunkingError, match="subtitle"):
        make_formatter(template("$title, $subtitle: $chunk"), COLUMNS)


@pytest.mark.parametrize(("config", "field"), [
    ({"implementation": "jinja", "template": "$chunk"}, "implementation"),
    ({"implementation": "python_template"}, "template"),
    ({"implementation": "python_template", "template": 5}, "template"),
    (template("costs $5: $chunk"), "placeholder"),
    (template("$chunk $"), "placeholder"),
])
def test_bad_config(config: dict[str, object], field: str) -> None:
    with pytest.raises(ChunkingError, match=field):
        make_formatter(config, COLUMNS)


def test_chunk_value_formatter() -> None:
    # pgai's other formatter, for configs written by pgai.
    fmt = make_formatter({"implementation": "chunk_value"}, COLUMNS)
    assert fmt("c", ROW) == "c"
