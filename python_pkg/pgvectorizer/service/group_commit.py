"""Group commit: the requests that arrive together are stored in one durable transaction.

A durable commit costs a disk flush and, with SQLite, a turn on the store's one thread; a
request of one short text costs little else. So submits are not committed one by one: the
first one starts a commit at once, and those that arrive while it runs wait for it and go
together in the next. A lone request waits for no timer, and under load a group grows to
what arrived during one commit. Each caller returns only once its own item is committed, so
a request is answered with its task only when the task would survive a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_GROUP = 256  # items in one transaction: bounds its time and the size of its statements


class GroupCommit(Generic[T]):
    """Commits items in groups with `commit(items)`, which must store all or none of them."""

    def __init__(self, commit: Callable[[list[T]], Awaitable[None]],
                 max_group: int = MAX_GROUP) -> None:
        self._commit = commit
        self._max_group = max_group
        self._queued: list[tuple[T, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None
        self.groups = 0  # transactions committed (for tests and logs)

    async def add(self, item: T) -> None:
        """Returns once the item is committed; raises what committing it raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queued.append((item, future))
        if self._committer is None:
            self._committer = asyncio.create_task(self._run(), name="group-commit")
        # shield: a caller that goes away (its client hung up) must not cancel the commit
        # of the others in its group; its own item is stored all the same.
        await asyncio.shield(future)

    async def _run(self) -> None:
        try:
            while self._queued:
                group, self._queued = (self._queued[:self._max_group],
                                       self._queued[self._max_group:])
                await self._commit_group(group)
        except BaseException as exc:  # cancelled with the loop: no caller may wait forever
            for _, future in self._queued:
                _settle(future, exc)
            self._queued = []
            raise
        finally:
            self._committer = None

    async def _commit_group(self, group: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._commit([item for item, _ in group])
        except Exception as exc:  # noqa: BLE001 - handed to the callers, each alone
            if len(group) == 1:
                _settle(group[0][1], exc)
                return
            # One bad item must not fail the requests that came with it: each alone again.
            logger.warning("a group commit of %d items failed (%s); committing them one by one",
                           len(group), exc)
            for one in group:
                await self._commit_group([one])
            return
        except BaseException as exc:
            for _, future in group:
                _settle(future, exc)
            raise
        self.groups += 1
        for _, future in group:
            _settle(future, None)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    elif isinstance(error, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(error)
