"""Documents: what loading_uri and a bytea loading_column hand the parsers.

A loader (documents/loading.py) turns a row's loading value into either text (a text column,
embedded as it is) or a Document (bytes fetched from a URI or read from a bytea column); a
parser (documents/parsing.py) turns a Document into text. Both raise DocumentError, which the
pipeline records as the row's failure (step "loading" or "parsing") while the rest of the
batch goes on.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    """A document's bytes and what is known of its type."""

    data: bytes
    uri: str | None = None  # where it was loaded from (None: a bytea column)
    name: str | None = None  # a file name or path whose extension hints at the type
    content_type: str | None = None  # a MIME type from the server (HTTP, S3), if any

    @property
    def label(self) -> str:
        """How messages name the document."""
        return self.uri or (f"bytea document {self.name}" if self.name else "bytea document")


class DocumentError(Exception):
    """A document could not be loaded or parsed; the message names it and the cause.

    transient: worth trying again later (a timeout, a 5xx, throttling), as opposed to a
    missing object, a refusal or a corrupt file.
    """

    def __init__(self, step: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.step = step  # "loading" or "parsing"
        self.transient = transient
