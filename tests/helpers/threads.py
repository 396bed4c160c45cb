"""Threads in the tests: run functions and keep their exceptions; poll until something holds."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

JOIN_TIMEOUT = 60.0   # seconds; only reached when something is stuck


class Workers:
    """Runs functions in threads, keeps their exceptions, and joins them."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def start(self, fn: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as exc:   # noqa: BLE001 - reported by join()
                with self._lock:
                    self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(JOIN_TIMEOUT)
        assert [t for t in self.threads if t.is_alive()] == [], "threads still running: a writer is stuck"
        assert self.errors == []


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Polls the server until condition holds: synchronisation, not a timing assertion."""
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


S = TypeVar("S", bound=socketserver.BaseServer)


@contextmanager
def serving(server: S) -> Iterator[S]:
    """A socketserver (a fake provider) served on a thread until the block ends; its
    serve_forever polls every 0.05 s so that shutdown is quick."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
