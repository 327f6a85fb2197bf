"""Many waits with the same timeout, timed by one event-loop timer.

``asyncio.timeout`` costs a timer handle, a context manager and a heap entry per wait; the
update protocol waits once per update, thousands of times a second. Every wait of one
:class:`Deadlines` has the same duration, so the deadlines arrive in the order the waits
started: an insertion-ordered dict is a correct queue, a finished wait is an O(1) delete,
and one timer armed for the oldest deadline serves them all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class Deadlines:
    """Calls ``on_expire(key, arg)`` for every wait still registered ``timeout`` seconds on.

    Args:
        timeout: seconds from :meth:`add` until the wait expires (the same for every wait,
            which is what keeps the deadlines in insertion order).
        on_expire: called synchronously, from the event loop, with an expired wait's key and
            the argument given to :meth:`add`.
    """

    __slots__ = ("_loop", "_on_expire", "_timeout", "_timer", "_waits")

    def __init__(self, timeout: float, on_expire: Callable[[Any, Any], None]) -> None:
        self._timeout = timeout
        self._on_expire = on_expire
        self._waits: dict[Any, tuple[float, Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._waits)

    def add(self, key: Any, arg: Any) -> None:
        """Start a wait identified by ``key`` (hashable, not registered yet)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        when = loop.time() + self._timeout
        self._waits[key] = (when, arg)
        if self._timer is None:
            self._timer = loop.call_at(when, self._fire)

    def discard(self, key: Any) -> None:
        """End the wait ``key`` (no-op if it ended or expired already)."""
        self._waits.pop(key, None)

    def close(self) -> None:
        """Forget every wait and stop the timer."""
        self._waits.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        waits = self._waits
        expired: list[tuple[Any, Any]] = []
        for key, (when, arg) in waits.items():
            if when > now:
                self._timer = loop.call_at(when, self._fire)
                break
            expired.append((key, arg))
        for key, _ in expired:
            del waits[key]
        for key, arg in expired:
            self._on_expire(key, arg)
