"""Turn each chunk into the text that is embedded, with the vectorizer's formatting template.

The template is Python's string.Template, as in pgai: `$chunk` is the chunk and every other
`$name` or `${name}` is that column of the source row, `$$` a literal dollar. Unlike pgai,
a NULL column gives an empty string rather than the word "None".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from string import Template
from typing import Any

from pgvectorizer.errors import ChunkingError

Formatter = Callable[[str, Mapping[str, object]], str]

CHUNK = "chunk"


def make_formatter(config: Mapping[str, Any], columns: Sequence[str]) -> Formatter:
    """A function (chunk, row) -> text to embed for a vectorizer's formatting config.

    columns are the source table's columns; a template naming any other raises
    ChunkingError here, before any row is read.
    """
    implementation = config.get("implementation")
    if implementation == "chunk_value":  # pgai's other formatter: the chunk as it is
        return _chunk_only
    if implementation != "python_template":
        raise ChunkingError(f"formatting config: unknown implementation {implementation!r}")
    text = config.get("template")
    if not isinstance(text, str):
        raise ChunkingError(f"formatting config: template must be a string, got {text!r}")
    template = Template(text)
    if not template.is_valid():
        raise ChunkingError(
            f"formatting config: template {text!r} has a $ that starts no placeholder "
            "(write $$ for a literal dollar)")

    names = [n for n in template.get_identifiers() if n != CHUNK]
    known = set(columns)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ChunkingError(
            f"formatting config: template refers to column(s) {', '.join(unknown)} "
            "which the source table does not have")
    if text in ("$chunk", "${chunk}"):
        # The default, and the common case: the chunk is the text.
        return _chunk_only

    def format_chunk(chunk: str, row: Mapping[str, object]) -> str:
        values = {CHUNK: chunk}
        for name in names:
            try:
                value = row[name]
            except KeyError:
                raise ChunkingError(
                    f"formatting: the row has no column {name!r} for the template") from None
            values[name] = "" if value is None else value if isinstance(value, str) else str(value)
        return template.substitute(values)

    return format_chunk


def _chunk_only(chunk: str, row: Mapping[str, object]) -> str:
    return chunk
