"""The pipeline alone: chunks, reuse, deleted and filtered rows, and isolating bad texts."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from pgvectorizer.config import Vectorizer
from pgvectorizer.embedders.openai import OpenAIEmbedder
from pgvectorizer.errors import UNREACHABLE, ConfigError, ProviderError
from pgvectorizer.pipeline import (
    Pipeline,
    SourceRow,
    digest,
    embed_isolating,
    retry_delay,
)

from tests.helpers.fake_embedders import FakeEmbedder


def vectorizer(**config: Any) -> Vectorizer:
    base: dict[str, Any] = {
        "loading": {"implementation": "column", "column_name": "body", "retries": 2},
        "embedding": {"implementation": "openai", "model": "m", "dimensions": 3},
        "chunking": {"implementation": "character_text_splitter", "chunk_size": 10,
                     "chunk_overlap": 0, "separator": " ", "is_separator_regex": False},
        "formatting": {"implementation": "python_template", "template": "$title: $chunk"},
        "destination": {"implementation": "table", "target_schema": "public",
                        "target_table": "t_store"},
        "template_columns": ["title"],
    }
    base.update(config)
    return Vectorizer(id=1, name="v", source_schema="public", source_table="t", pk=("id",),
                      queue_schema="ai", queue_table="q", failed_table="f", config=base)


def row(key: int, body: str | None, *, title: str = "T", found: bool = True,
        match: bool = True, attempts: int = 1) -> SourceRow:
    return SourceRow((key,), lock=key, attempts=attempts, found=found, match=match,
                     values={"body": body, "title": title})


def test_chunks_are_formatted_and_embedded() -> None:
    emb = FakeEmbedder()
    result = Pipeline(vectorizer(), emb).run([row(1, "aaaa bbbb cccc")])
    assert [(c.key, c.seq, c.chunk) for c in result.chunks] == [((1,), 0, "aaaa bbbb"), ((1,), 1, "cccc")]
    assert emb.calls == [["T: aaaa bbbb", "T: cccc"]]
    assert result.chunks[0].digest == digest("T: aaaa bbbb")
    assert result.chunks[0].vector[0] == len("T: aaaa bbbb")
    assert result.done == 1 and result.embedded == 2 and result.reused == 0


@pytest.mark.parametrize("kwargs", [{"found": False}, {"match": False}, {"body": None}])
def test_gone_filtered_or_empty_rows_keep_no_chunks(kwargs: dict[str, Any]) -> None:
    emb = FakeEmbedder()
    body = kwargs.pop("body", "some text")
    result = Pipeline(vectorizer(), emb).run([row(1, body, **kwargs)])
    assert result.chunks == [] and result.done == 1 and result.errors == []
    assert emb.calls in ([], [[]])


def test_unchanged_chunk_keeps_its_vector() -> None:
    emb = FakeEmbedder()
    kept = np.array([9, 9, 9], dtype=np.float32)
    existing = {(1,): {digest("T: aaaa bbbb"): kept}}
    result = Pipeline(vectorizer(), emb).run([row(1, "aaaa bbbb dddd")], existing)
    assert emb.calls == [["T: dddd"]]
    assert np.array_equal(result.chunks[0].vector, kept)
    assert result.reused == 1 and result.embedded == 1


def test_a_changed_template_column_embeds_again() -> None:
    emb = FakeEmbedder()
    existing = {(1,): {digest("T: aaaa"): np.zeros(3, dtype=np.float32)}}
    Pipeline(vectorizer(), emb).run([row(1, "aaaa", title="New")], existing)
    assert emb.calls == [["New: aaaa"]]


def test_one_refused_text_does_not_hold_back_the_others() -> None:
    emb = FakeEmbedder()
    result = Pipeline(vectorizer(), emb).run([row(1, "good"), row(2, "BAD"), row(3, "fine")])
    assert sorted(c.key for c in result.chunks) == [(1,), (3,)]
    [err] = result.errors
    assert err.key == (2,) and err.step == "embedding" and "input rejected" in err.message
    assert not err.transient


def test_server_error_fails_the_batch_first_then_splits_on_retry() -> None:
    emb = FakeEmbedder()
    first = Pipeline(vectorizer(), emb).run([row(1, "good"), row(2, "CRASH")])
    assert {e.key for e in first.errors} == {(1,), (2,)} and len(emb.calls) == 1
    retry = Pipeline(vectorizer(), emb).run([row(1, "good", attempts=2), row(2, "CRASH", attempts=2)])
    assert [e.key for e in retry.errors] == [(2,)] and [c.key for c in retry.chunks] == [(1,)]


@pytest.mark.parametrize("attempts", [1, 2])
def test_a_timeout_never_splits_the_batch(attempts: int) -> None:
    # No answer is the provider's fault: sending each row alone would wait the timeout each.
    emb = FakeEmbedder()
    rows = [row(k, f"SLOW {k}", attempts=attempts) for k in range(4)]
    result = Pipeline(vectorizer(), emb).run(rows)
    assert len(emb.calls) == 1
    assert len(result.errors) == 4 and all(e.transient for e in result.errors)


def test_a_hanging_provider_gets_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real OpenAI embedder against a server that never answers: 4 texts on a retried
    # batch used to make 7 requests (the batch, halves, then each text), each waiting the
    # full timeout.
    with hanging_server() as (url, requests):
        embedder = OpenAIEmbedder({"implementation": "openai", "model": "m", "dimensions": 3,
                                   "base_url": url}, {"PGVECTORIZER_HTTP_TIMEOUT": "0.2"})
        _, failures = embed_isolating(embedder, ["a", "b", "c", "d"], split_transient=True)
        embedder.close()
    assert sorted(failures) == [0, 1, 2, 3]
    assert {f.cause for f in failures.values()} == {UNREACHABLE}
    assert requests() == 1


@contextlib.contextmanager
def hanging_server() -> Iterator[tuple[str, Callable[[], int]]]:
    """A loopback HTTP server that reads requests and never answers; yields (base URL, a
    function counting the requests it got)."""
    seen: list[int] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while True:
                data = self.request.recv(65536)
                if not data:
                    return
                seen.append(data.count(b"POST "))

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", lambda: sum(seen)
    finally:
        server.shutdown()
        server.server_close()


def test_destination_column_wants_one_chunk() -> None:
    v = vectorizer(chunking={"implementation": "none"},
                   destination={"implementation": "column", "embedding_column": "emb"})
    result = Pipeline(v, FakeEmbedder()).run([row(1, "one text"), row(2, None, found=False)])
    assert sorted((k, None if vec is None else float(vec[0])) for k, vec in result.column_values) == [
        ((1,), float(len("T: one text"))), ((2,), None)]


def test_embed_isolating_finds_every_bad_text() -> None:
    texts = ["a", "BAD1", "b", "c", "BAD2", "d"]
    vectors, failures = embed_isolating(FakeEmbedder(), texts)
    assert sorted(failures) == [1, 4]
    assert [vectors[i][0] for i in (0, 2, 3, 5)] == [1, 1, 1, 1]


def test_retry_delay_doubles_and_respects_hints() -> None:
    assert [retry_delay(n, 10) for n in (1, 2, 3)] == [10, 20, 40]
    assert retry_delay(30, 10) == 3600
    assert retry_delay(1, 10, hint=25) == 25


class ShortEmbedder(FakeEmbedder):
    """Answers one vector too few, as a broken provider may."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return super().embed(texts)[1:]


def test_wrong_shape_stops_the_vectorizer_instead_of_failing_rows() -> None:
    emb = ShortEmbedder()
    with pytest.raises(ProviderError, match=r"shape \(1, 3\) for 2 texts"):
        Pipeline(vectorizer(), emb).run([row(1, "good"), row(2, "fine")])
    assert len(emb.calls) == 1  # no bisecting down to failed items


class NaNEmbedder(FakeEmbedder):
    """NaN for texts containing NAN, infinity for INF (a float64 too large for float32)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = super().embed(texts).astype(np.float64)
        for i, t in enumerate(texts):
            if "NAN" in t:
                out[i, 1] = np.nan
            if "INF" in t:
                out[i, 2] = 1e300
        return out


def test_a_non_finite_vector_fails_only_its_text() -> None:
    emb = NaNEmbedder()
    texts = [f"text {i}" for i in range(10)]
    texts[3] = "NAN here"
    texts[7] = "INF here"
    vectors, failures = embed_isolating(emb, texts)
    assert sorted(failures) == [3, 7] and len(emb.calls) == 1
    assert all(not f.transient and "non-finite" in str(f) for f in failures.values())
    assert np.isfinite(vectors).all()
    assert [vectors[i][0] for i in (0, 9)] == [len("text 0"), len("text 9")]


def test_a_non_finite_vector_fails_its_row_and_the_others_are_written() -> None:
    result = Pipeline(vectorizer(), NaNEmbedder()).run([row(1, "good"), row(2, "NAN"), row(3, "ok")])
    assert sorted(c.key for c in result.chunks) == [(1,), (3,)]
    [err] = result.errors
    assert err.key == (2,) and not err.transient and "NaN or infinity" in err.message


@pytest.mark.parametrize("config", [
    {"chunking": {"implementation": "character_text_splitter", "chunk_size": 10,
                  "chunk_overlap": 0, "separator": "(", "is_separator_regex": True}},
    {"formatting": {"implementation": "python_template", "template": "$nope: $chunk"}},
])
def test_a_config_that_cannot_work_stops_the_vectorizer(config: dict[str, Any]) -> None:
    # A ConfigError: the worker records it and keeps the queue, instead of ending its run.
    with pytest.raises(ConfigError):
        Pipeline(vectorizer(**config), FakeEmbedder())
