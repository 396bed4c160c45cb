"""Wake-ups for long polls within one service process: a request waiting for its task, and a
worker's claim waiting for work. Other replicas' changes are seen by re-reading the store.

A waiter registers before it reads the store (or before it submits) and waits after: a
change that lands between the read and the wait still wakes it. A task completed in this
process hands its waiters the worker's result along with the wake-up, so a request of one
short text is answered without reading its vectors back from the store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from pgvectorizer.service.store import Result


class Watch:
    """One waiter on one task: `event` is set when the task ends; `result` is the worker's
    result when it ended completed in this process (None otherwise: read the store)."""

    __slots__ = ("event", "result")

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.result: Result | None = None


class Notifier:
    def __init__(self) -> None:
        self._tasks: dict[str, set[Watch]] = {}
        self._work: set[asyncio.Event] = set()

    @contextmanager
    def watching_task(self, task_id: str) -> Iterator[Watch]:
        """A watch set by task_done(task_id) while the block runs."""
        watch = Watch()
        self._tasks.setdefault(task_id, set()).add(watch)
        try:
            yield watch
        finally:
            waiters = self._tasks.get(task_id)
            if waiters is not None:
                waiters.discard(watch)
                if not waiters:
                    del self._tasks[task_id]

    def task_done(self, task_id: str, result: Result | None = None) -> None:
        """Wakes the task's waiters; `result` only for a task completed (and committed) with
        it."""
        for watch in self._tasks.pop(task_id, ()):
            watch.result = result
            watch.event.set()

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
    if event.is_set():
        return
    # asyncio.timeout rather than wait_for: no extra task per wait (one per request here).
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
