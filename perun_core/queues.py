"""A queue whose readers learn when it ends: the core of every queue-fed subscription.

Bus subscriptions and ledger event subscriptions all work the same way: a producer (the bus,
the ledger, a connection's read loop) hands items over without waiting, and one or more tasks
take them with ``await next()``, which returns ``None`` once the subscription is closed. The
one subtle part is waking every pending reader on close; :class:`ClosableQueue` does it with
a ``None`` sentinel that each reader puts back for the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["ClosableQueue"]

T = TypeVar("T")


class ClosableQueue(Generic[T]):
    """An unbounded FIFO of items for :meth:`get`, which returns ``None`` once the queue ends.

    The queue ends on :meth:`close` (items still queued are dropped and returned, items put
    later are ignored) or on :meth:`end` (readers get ``None`` after the items already queued;
    for producers that lose their source, e.g. a connection, without the owner closing).

    Args:
        items: items to queue at once (e.g. what arrived before the subscription existed).
    """

    __slots__ = ("_closed", "_queue")

    def __init__(self, items: Iterable[T] = ()) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()
        for item in items:
            self._queue.put_nowait(item)
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def put(self, item: T) -> None:
        """Queue ``item`` for :meth:`get`; ignored once closed."""
        if not self._closed:
            self._queue.put_nowait(item)

    async def get(self) -> T | None:
        """The next item, or ``None`` once the queue is closed or ended.

        An item a reader took before the queue closed is still returned to it.
        """
        if self._closed:
            return None
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # wake the next pending reader too
        return item

    def take_all(self) -> list[T]:
        """Remove and return every queued item, without waiting (the end marker stays)."""
        items: list[T] = []
        ended = False
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is None:
                ended = True
            else:
                items.append(item)
        if ended:
            self._queue.put_nowait(None)
        return items

    def end(self) -> None:
        """Let readers run out: after the items queued so far, :meth:`get` returns ``None``."""
        if not self._closed:
            self._queue.put_nowait(None)

    def close(self) -> list[T]:
        """Close the queue and wake every pending :meth:`get` with ``None``.

        Returns:
            The items that were still queued (none if the queue was closed already), so an
            owner can hand them on instead of losing them.
        """
        if self._closed:
            return []
        self._closed = True
        left = self.take_all()
        self._queue.put_nowait(None)
        return left
