"""Embedding calls that PostgreSQL can interrupt, for code running inside a backend.

PostgreSQL acts on a query cancel (pg_cancel_backend), statement_timeout or a terminate only
at its CHECK_FOR_INTERRUPTS points, and a PL/Python call waiting on a provider's socket
reaches none: a hanging provider holds the backend for the whole HTTP timeout, past any
max_seconds. InterruptibleEmbedder runs the inner embed() in a thread of its own while the
calling (backend) thread keeps checking for interrupts.

How it waits: PL/Python holds the GIL while SPI runs a statement, so while the backend
thread sat in `pg_sleep(0.05)` the embedding thread could not run Python at all (decoding
an answer, say). So the calling thread waits for the result in Python, which releases the
GIL, for up to POLL seconds at a time, and between waits runs `SELECT pg_catalog.pg_sleep(0)`,
whose CHECK_FOR_INTERRUPTS raises a pending cancel or timeout as a plpy exception; that
exception propagates. A result is taken as soon as it is there, not at the next poll.

Only the calling thread touches plpy. The embedding thread is a daemon thread, one per
call, with asynchronous signals blocked so that PostgreSQL's handlers run in the backend
thread. A thread given up on (cancel or deadline) is not stopped; it ends when its inner
call returns, within the provider's HTTP timeout (PGVECTORIZER_HTTP_TIMEOUT) or a local
model's batch, and being a daemon it never delays the backend's exit. (It advances only
while the backend runs Python that releases the GIL, as the next call's wait does.)
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..embedders.base import Embedder
from ..errors import DeadlineReached

POLL = 0.05  # seconds between two interrupt checks while a provider has not answered
CHECK_INTERRUPTS = "SELECT pg_catalog.pg_sleep(0)"

# Signals the embedding thread leaves to the backend thread; faults stay deliverable, since
# a blocked SIGSEGV only kills the process less legibly.
_FAULTS = {getattr(signal, name) for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT")
           if hasattr(signal, name)}


class InterruptibleEmbedder:
    """An Embedder whose embed() gives way to PostgreSQL's interrupts and to a deadline.

    deadline: a time.monotonic() value; once it passes before the provider answers, embed()
    raises errors.DeadlineReached. None: no deadline (ai.embed).
    """

    def __init__(self, embedder: Embedder, plpy: Any, deadline: float | None = None) -> None:
        self.inner = embedder
        self.dimensions = embedder.dimensions
        self.deadline = deadline
        self._plpy = plpy

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The inner embed(texts); a cancel or statement timeout raises plpy's exception."""
        self._check_deadline(len(texts))
        call = _Call(self.inner, texts)
        while not call.done.wait(self._wait()):
            self._plpy.execute(CHECK_INTERRUPTS)
            self._check_deadline(len(texts))
        return call.result()

    def close(self) -> None:
        """Close the inner embedder."""
        self.inner.close()

    def _wait(self) -> float:
        if self.deadline is None:
            return POLL
        return max(0.0, min(POLL, self.deadline - time.monotonic()))

    def _check_deadline(self, n: int) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise DeadlineReached(f"the run's time was up before the provider had embedded "
                                  f"{n} text(s); the batch is given back for a later run")


class _Call:
    """One inner embed() in a daemon thread; result() returns or raises what it did."""

    def __init__(self, embedder: Embedder, texts: Sequence[str]) -> None:
        self.done = threading.Event()
        self._value: np.ndarray | None = None
        self._error: BaseException | None = None
        self._embedder = embedder
        self._texts = texts
        self.thread = threading.Thread(target=self._run, name="pgvectorizer-embed", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            _block_async_signals()
            self._value = self._embedder.embed(self._texts)
        except BaseException as e:  # noqa: BLE001 - the calling thread raises it
            self._error = e
        finally:
            self.done.set()

    def result(self) -> np.ndarray:
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def _block_async_signals() -> None:
    """Leave signals (cancel, timeout, terminate) to the backend thread that started this one."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, set(signal.valid_signals()) - _FAULTS)
