"""The embedding pipeline for one claimed batch, free of any database or event loop.

The worker (and, inside Postgres, PL/Python) claims rows, hands them here, and writes back
what comes out: per key, either its new chunks with vectors, or an error to retry or give up
on. Chunks whose formatted text is unchanged keep their stored vector (content hash).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .chunking import make_chunker
from .config import Vectorizer
from .documents import Document, DocumentError
from .documents.loading import Loader
from .embedders.base import Embedder
from .errors import (
    BAD_VECTOR,
    REFUSED,
    SERVER_ERROR,
    ChunkingConfigError,
    ChunkingError,
    DeadlineReached,
    EmbeddingError,
    ProviderError,
)
from .formatting import make_formatter

Key = tuple[Any, ...]

NON_FINITE = ("the embedding provider returned non-finite values (NaN or infinity) for this "
              "text; such a vector cannot be stored or searched")

# Backoff after a failed attempt: base * 2^(attempt-1), capped; a provider's Retry-After is
# a floor.
RETRY_CAP = 3600.0  # seconds


@dataclass
class SourceRow:
    """A claimed key and what the claim read of its source row."""

    key: Key
    lock: int  # the advisory-lock hash, to unlock after the write
    attempts: int  # how often this key has been claimed, this time included
    found: bool  # the source row exists
    match: bool  # and passes the row filter
    values: Mapping[str, Any]  # the loading column and template columns


@dataclass
class StoredChunk:
    key: Key
    seq: int
    chunk: str
    vector: np.ndarray
    digest: bytes


@dataclass
class RowError:
    key: Key
    step: str  # loading, parsing, chunking, embedding
    message: str
    transient: bool
    retry_after: float | None = None


@dataclass
class BatchResult:
    """What to write for a batch: chunks of the keys done, and errors of the others."""

    chunks: list[StoredChunk] = field(default_factory=list)
    # destination_column: the one vector per key done (None: clear it)
    column_values: list[tuple[Key, np.ndarray | None]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    done: int = 0  # keys written (embedded, or emptied because the row is gone)
    embedded: int = 0  # texts sent to the model
    reused: int = 0  # chunks whose stored vector was kept


def digest(text: str) -> bytes:
    """The content hash stored beside each chunk (of the text the model saw)."""
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass
class _Pending:
    key: Key
    chunks: list[str]
    texts: list[str]
    digests: list[bytes]


class Pipeline:
    """Chunk, format and embed batches for one vectorizer."""

    def __init__(self, vectorizer: Vectorizer, embedder: Embedder, *,
                 env: Mapping[str, str] | None = None, server_side: bool = False) -> None:
        """ChunkingConfigError (a ConfigError) when the chunking or formatting config cannot
        work. env: the settings that loading reads (os.environ when None); server_side: the
        pipeline runs inside PostgreSQL, where a URI must be one the operator allows."""
        self.v = vectorizer
        self.embedder = embedder
        self.loader = Loader(vectorizer.loading, env, server_side=server_side)
        self._parse: Callable[[Document], str] | None = None  # made at the first document
        self.chunk: Callable[[str], list[str]] = make_chunker(vectorizer.chunking)
        try:
            self.format = make_formatter(vectorizer.formatting, vectorizer.read_columns)
        except ChunkingConfigError:
            raise
        except ChunkingError as e:
            # Found before any row is read, so the config's fault: stop the vectorizer.
            raise ChunkingConfigError(str(e)) from e

    def run(self, rows: Sequence[SourceRow],
            existing: Mapping[Key, Mapping[bytes, np.ndarray]] | None = None) -> BatchResult:
        """Process claimed rows; `existing` maps a key to its stored vectors by content hash.

        Raises ConfigError (ProviderError among them) when the vectorizer cannot go on, and
        DeadlineReached when the embedder's deadline passed: give the batch back then."""
        existing = existing or {}
        result = BatchResult()
        pending: list[_Pending] = []
        column = self.v.loading_column
        values = [row.values.get(column) if row.found and row.match else None for row in rows]
        # URIs are fetched concurrently; a column's values (text, or a bytea's Documents) in turn.
        loaded = self.loader.load_many(values)
        for row, value in zip(rows, loaded, strict=True):
            try:
                if isinstance(value, DocumentError):
                    raise value
                text = self._text(value)
            except DocumentError as e:
                result.errors.append(RowError(row.key, e.step, str(e), e.transient))
                continue
            if text is None:
                # Deleted, filtered out, or no text: the key keeps no chunks.
                self._done(result, row.key, [], [], [], [])
                continue
            try:
                chunks = self.chunk(str(text))
                texts = [self.format(c, row.values) for c in chunks]
            except ChunkingError as e:
                result.errors.append(RowError(row.key, "chunking", str(e), transient=False))
                continue
            pending.append(_Pending(row.key, chunks, texts, [digest(t) for t in texts]))

        # One model call for every text not already stored under its hash.
        wanted: dict[bytes, str] = {}
        for p in pending:
            known = existing.get(p.key, {})
            for d, t in zip(p.digests, p.texts, strict=True):
                if d not in known:
                    wanted.setdefault(d, t)
        # A server error on a retried batch may be one text's fault (a server that crashes
        # on it): split then, but not on a first attempt, so that a provider's outage costs
        # one request per batch.
        retried = any(r.attempts > 1 for r in rows)
        vectors, failures = embed_isolating(self.embedder, list(wanted.values()),
                                            split_transient=retried)
        by_digest = {d: i for i, d in enumerate(wanted)}
        result.embedded = len(wanted)

        for p in pending:
            known = existing.get(p.key, {})
            vecs: list[np.ndarray] = []
            error: EmbeddingError | None = None
            for d in p.digests:
                if d in known:
                    vecs.append(known[d])
                    result.reused += 1
                    continue
                i = by_digest[d]
                if i in failures:
                    error = failures[i]
                    break
                vecs.append(vectors[i])
            if error is not None:
                result.errors.append(RowError(p.key, "embedding", str(error), error.transient,
                                              error.retry_after))
                continue
            self._done(result, p.key, p.chunks, p.texts, p.digests, vecs)
        return result

    def _text(self, value: Any) -> str | None:
        """A loaded value's text: a Document goes through the vectorizer's parser."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, Document):
            if self._parse is None:
                from .documents.parsing import make_parser
                self._parse = make_parser(self.v.parsing)  # ConfigError: stops the vectorizer
            return self._parse(value)
        return str(value)

    def _done(self, result: BatchResult, key: Key, chunks: list[str], texts: list[str],
              digests: list[bytes], vectors: list[np.ndarray]) -> None:
        result.done += 1
        if self.v.to_column:
            result.column_values.append((key, vectors[0] if vectors else None))
            return
        for seq, (chunk, d, vec) in enumerate(zip(chunks, digests, vectors, strict=True)):
            result.chunks.append(StoredChunk(key, seq, chunk, vec, d))


def embed_isolating(embedder: Embedder, texts: list[str], *, split_transient: bool = False
                    ) -> tuple[np.ndarray, dict[int, EmbeddingError]]:
    """Embed texts; when the provider refuses a request, find the texts to blame.

    A refused request (a 4xx) is split in halves until the bad texts stand alone, so one
    bad row never holds back the rest; with split_transient (a retried batch) so is one
    that met a server error (5xx). Any other failure (no answer within the timeout, no
    connection, 429) is the provider's, not a text's, and fails the whole request at once.
    A text whose vector holds NaN or infinity fails alone (not transient).
    Returns the vectors (rows of failed texts are zero) and the failures by index.
    ProviderError when the embedder returns the wrong number or size of vectors;
    DeadlineReached (from an InterruptibleEmbedder) passes through.
    """
    out = np.zeros((len(texts), embedder.dimensions), dtype=np.float32)
    failures: dict[int, EmbeddingError] = {}

    def go(lo: int, hi: int) -> None:
        if lo >= hi:
            return
        try:
            vectors = embedder.embed(texts[lo:hi])
        except DeadlineReached:
            raise  # the caller's bound, not the provider's or a text's failure
        except EmbeddingError as e:
            if hi - lo == 1 or not may_blame_texts(e, split_transient):
                for i in range(lo, hi):
                    failures[i] = e
                return
            mid = (lo + hi) // 2
            go(lo, mid)
            go(mid, hi)
            return
        # Every embedder checks its provider's answer; this catches one that does not.
        shape = getattr(vectors, "shape", None)
        if shape != (hi - lo, embedder.dimensions):
            raise ProviderError(f"the embedder returned vectors of shape {shape} for "
                                f"{hi - lo} texts; expected ({hi - lo}, {embedder.dimensions})")
        with np.errstate(over="ignore"):  # a float64 too large becomes inf, checked next
            block = np.asarray(vectors, dtype=np.float32)
        finite = np.asarray(np.isfinite(block).all(axis=1))
        if not finite.all():
            # pgvector refuses NaN and infinity, and would refuse the whole batch's write:
            # only these texts fail.
            for j in np.flatnonzero(~finite):
                failures[lo + int(j)] = EmbeddingError(NON_FINITE, transient=False,
                                                       cause=BAD_VECTOR)
            block = np.where(finite[:, None], block, np.float32(0))
        out[lo:hi] = block

    go(0, len(texts))
    return out, failures


def may_blame_texts(error: EmbeddingError, split_transient: bool = False) -> bool:
    """Whether splitting the request could find a text to blame for error."""
    if error.cause == REFUSED:
        return True
    # A server that crashes on one text answers 5xx to every batch holding it; only worth
    # the extra requests once the batch has failed before.
    return split_transient and error.cause == SERVER_ERROR


def retry_delay(attempts: int, base: float, hint: float | None = None) -> float:
    """Seconds to wait before the next attempt at a row that failed `attempts` times."""
    delay = min(base * 2 ** max(attempts - 1, 0), RETRY_CAP)
    return max(delay, hint or 0.0)
