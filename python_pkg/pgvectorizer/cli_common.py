"""What the commands share: their shape (Command), exit statuses, the database option of the
worker, status and search, and running a worker until SIGTERM/SIGINT (run_until_signal).
Settings are read with pgvectorizer.settings. Light imports only: `--help` answers at once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pgvectorizer.defaults import DEFAULT_DB_URL
from pgvectorizer.settings import Env, Var

logger = logging.getLogger(__name__)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # what argparse uses for a bad command line; bad variables get it too
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: what a shell reports for a process killed by Ctrl-C


# The worker's database, for `worker`, `status` and `search` (the first name is ours, the
# others pgai's worker's: the current one, then the one of its first releases).
DB_URL = Var("PGVECTORIZER_DB_URL", "PGAI_VECTORIZER_WORKER_DB_URL", "VECTORIZER_DB_URL")


@dataclass(frozen=True)
class Command:
    """One `pgvectorizer` command: its arguments, and its run, which reads its settings (flags
    over variables over defaults) and returns the exit status."""

    name: str
    help: str  # its line in `pgvectorizer --help`
    description: str  # the top of `pgvectorizer NAME --help`
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_db_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--db-url", metavar="URL",
                        help=f"PostgreSQL connection string (env {DB_URL}; default {DEFAULT_DB_URL})")


def resolve_db_url(flag: str | None, environ: Mapping[str, str]) -> str:
    """The flag, else the first of DB_URL's variables that is set, else the default."""
    if flag is not None:
        return flag
    return Env(environ).text(DB_URL, DEFAULT_DB_URL)


class Stoppable(Protocol):
    """A long-running loop that can be asked to finish its work in hand and return."""

    async def request_graceful_shutdown(self) -> None: ...


class Runnable(Stoppable, Protocol[T_co]):
    """A Stoppable whose run() works until it is stopped (or done), then returns."""

    async def run(self) -> T_co: ...


def run_until_signal(worker: Runnable[T]) -> T:
    """asyncio.run(worker.run()), with SIGTERM and SIGINT asking it to stop gracefully (see
    ShutdownSignals); returns what run() returns and raises what it raises."""

    async def serve() -> T:
        signals = ShutdownSignals(worker, asyncio.get_running_loop())
        signals.install()
        try:
            return await worker.run()
        finally:
            signals.uninstall()

    return asyncio.run(serve())


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
        # calls run_until_signal gets its own handlers back instead.
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
