"""Threads in the tests: run functions and keep their exceptions; poll until something holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

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
