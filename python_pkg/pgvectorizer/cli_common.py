"""What the commands share: exit statuses, value parsing for argparse and the environment,
and graceful shutdown on SIGTERM/SIGINT. Light imports only: `--help` answers at once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # what argparse uses for a bad command line; bad variables get it too
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: what a shell reports for a process killed by Ctrl-C


class Stoppable(Protocol):
    """A long-running loop that can be asked to finish its work in hand and return."""

    async def request_graceful_shutdown(self) -> None: ...


def parse_positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        number = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise ValueError(f"{text!r} is less than 1")
    return number


def argtype(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Wraps a parser for argparse, which shows an ArgumentTypeError's own message."""
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


def env_value(environ: Mapping[str, str], name: str) -> str | None:
    # An empty variable counts as unset, as when a compose file blanks it out.
    value = environ.get(name)
    return value if value is not None and value.strip() else None


def from_env(environ: Mapping[str, str], name: str, parse: Callable[[str], T]) -> T | None:
    raw = env_value(environ, name)
    if raw is None:
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={raw!r}: {exc}") from None


class ShutdownSignals:
    """SIGTERM or SIGINT asks the worker to finish its batch and stop; a second SIGINT exits now."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, worker: Stoppable, loop: asyncio.AbstractEventLoop) -> None:
        self._worker = worker
        self._loop = loop
        self._requested = False
        # The loop keeps only weak references to tasks; this keeps the request alive.
        self._tasks: set[asyncio.Task[None]] = set()
        self._previous: dict[signal.Signals, Any] = {}

    def install(self) -> None:
        for sig in self.SIGNALS:
            try:
                previous = signal.getsignal(sig)
                self._loop.add_signal_handler(sig, self._on_signal, sig)
                self._previous[sig] = previous
            except (NotImplementedError, RuntimeError, ValueError):
                # Windows has no loop signal handlers, and only the main thread may set them;
                # the worker then stops only when killed, as any process would.
                logger.debug("cannot handle %s here; it will stop the process", sig.name)

    def uninstall(self) -> None:
        # The loop would reset the signals to Python's defaults; a program (or test) that
        # calls run_worker gets its own handlers back instead.
        for sig, previous in self._previous.items():
            self._loop.remove_signal_handler(sig)
            if previous is not None:
                signal.signal(sig, previous)
        self._previous.clear()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._requested:
            if sig == signal.SIGINT:
                # No waiting for threads or cleanup: the server rolls back what was open, and
                # rows claimed but not finished are claimed again later.
                logger.warning("second SIGINT: exiting now")
                sys.stderr.flush()
                os._exit(EXIT_INTERRUPTED)
            logger.info("%s: already shutting down", sig.name)
            return
        self._requested = True
        logger.info("%s: finishing the current batch, then stopping (Ctrl-C again to exit at once)",
                    sig.name)
        task = self._loop.create_task(self._worker.request_graceful_shutdown())
        self._tasks.add(task)
        task.add_done_callback(self._request_done)

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("graceful shutdown request failed", exc_info=task.exception())
