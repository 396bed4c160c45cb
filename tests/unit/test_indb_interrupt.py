"""InterruptibleEmbedder with a fake plpy and embedders that take their time; no database."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
from pgvectorizer.errors import DeadlineReached, EmbeddingError
from pgvectorizer.indb.interrupt import CHECK_INTERRUPTS, InterruptibleEmbedder
from pgvectorizer.pipeline import embed_isolating


class QueryCanceled(Exception):
    """What plpy raises when pg_sleep meets a cancel or statement_timeout."""


class FakePlpy:
    """execute() records the query and its thread; raises QueryCanceled from call `cancel_at`."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.cancel_at = cancel_at
        self.queries: list[str] = []
        self.threads: set[int] = set()

    def execute(self, query: str) -> list[object]:
        self.queries.append(query)
        self.threads.add(threading.get_ident())
        if self.cancel_at is not None and len(self.queries) >= self.cancel_at:
            raise QueryCanceled("canceling statement due to user request")
        return []


class SlowEmbedder:
    """Answers after `seconds`, or when released; records its threads and signal masks."""

    dimensions = 2

    def __init__(self, seconds: float = 10.0, error: BaseException | None = None) -> None:
        self.seconds = seconds
        self.error = error
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []
        self.masks: list[set[int]] = []
        self.closed = False

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.threads.append(threading.current_thread())
        self.masks.append({int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])})
        self.release.wait(self.seconds)
        if self.error is not None:
            raise self.error
        return np.ones((len(texts), self.dimensions), dtype=np.float32)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def slow() -> Iterator[SlowEmbedder]:
    embedder = SlowEmbedder()
    yield embedder
    embedder.release.set()


def test_a_quick_answer_comes_back_at_once() -> None:
    plpy = FakePlpy()
    inner = SlowEmbedder(seconds=0.0)
    wrapped = InterruptibleEmbedder(inner, plpy, None)
    start = time.monotonic()
    vectors = wrapped.embed(["a", "b"])
    assert time.monotonic() - start < 0.04  # not held until the next poll
    assert vectors.shape == (2, 2) and wrapped.dimensions == 2
    wrapped.close()
    assert inner.closed


def test_a_cancel_interrupts_a_hanging_provider(slow: SlowEmbedder) -> None:
    plpy = FakePlpy(cancel_at=3)
    start = time.monotonic()
    with pytest.raises(QueryCanceled):
        InterruptibleEmbedder(slow, plpy, None).embed(["a"])
    assert time.monotonic() - start < 1.0  # not the provider's 10 s
    assert plpy.queries == [CHECK_INTERRUPTS] * 3
    # plpy is touched only by the calling thread, never the embedding one.
    assert plpy.threads == {threading.get_ident()}
    [thread] = slow.threads
    assert thread is not threading.current_thread() and thread.daemon
    # The thread given up on ends once its call returns.
    slow.release.set()
    thread.join(2)
    assert not thread.is_alive()


def test_the_deadline_gives_the_batch_back(slow: SlowEmbedder) -> None:
    plpy = FakePlpy()
    start = time.monotonic()
    with pytest.raises(DeadlineReached) as info:
        InterruptibleEmbedder(slow, plpy, time.monotonic() + 0.2).embed(["a"])
    assert 0.15 < time.monotonic() - start < 1.0
    assert isinstance(info.value, EmbeddingError) and info.value.transient
    assert info.value.cause == "deadline"
    assert plpy.queries  # it kept checking for interrupts meanwhile


def test_a_passed_deadline_sends_nothing(slow: SlowEmbedder) -> None:
    with pytest.raises(DeadlineReached):
        InterruptibleEmbedder(slow, FakePlpy(), time.monotonic() - 1).embed(["a"])
    assert slow.threads == []


def test_the_inner_error_comes_through() -> None:
    error = EmbeddingError("refused", transient=False, status=400)
    inner = SlowEmbedder(seconds=0.12, error=error)
    with pytest.raises(EmbeddingError) as info:
        InterruptibleEmbedder(inner, FakePlpy(), None).embed(["a"])
    assert info.value is error


def test_signals_are_left_to_the_backend_thread() -> None:
    inner = SlowEmbedder(seconds=0.0)
    InterruptibleEmbedder(inner, FakePlpy(), None).embed(["a"])
    [mask] = inner.masks
    assert {signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGUSR1} <= mask
    assert signal.SIGSEGV not in mask


def test_embed_isolating_passes_the_deadline_on(slow: SlowEmbedder) -> None:
    # Not a row failure to retry with backoff: the caller releases the batch.
    with pytest.raises(DeadlineReached):
        embed_isolating(InterruptibleEmbedder(slow, FakePlpy(), time.monotonic() + 0.1),
                        ["a", "b", "c"], split_transient=True)
    assert len(slow.threads) == 1
