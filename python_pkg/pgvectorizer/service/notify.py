"""Wake-ups for long polls within one service process: a request waiting for its task, and a
worker's claim waiting for work. Other replicas' changes are seen by re-reading the store.

A waiter registers before it reads the store and waits after: a change that lands between
the read and the wait still wakes it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class Notifier:
    def __init__(self) -> None:
        self._tasks: dict[str, set[asyncio.Event]] = {}
        self._work: set[asyncio.Event] = set()

    @contextmanager
    def watching_task(self, task_id: str) -> Iterator[asyncio.Event]:
        """An event set by task_done(task_id) while the block runs."""
        event = asyncio.Event()
        self._tasks.setdefault(task_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._tasks.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._tasks[task_id]

    def task_done(self, task_id: str) -> None:
        for event in self._tasks.pop(task_id, ()):
            event.set()

    @contextmanager
    def watching_work(self) -> Iterator[asyncio.Event]:
        """An event set by work_arrived() while the block runs."""
        event = asyncio.Event()
        self._work.add(event)
        try:
            yield event
        finally:
            self._work.discard(event)

    def work_arrived(self) -> None:
        for event in self._work:
            event.set()
        self._work.clear()


async def wait(event: asyncio.Event, timeout: float) -> None:
    """Returns when the event is set or after timeout seconds."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass
