"""Ledger time of the simulated ledger, in integer seconds.

Two modes share one implementation:

* :meth:`SimClock.manual` — time moves only when a test calls :meth:`SimClock.advance` or
  :meth:`SimClock.set`. Dispute windows of hours are skipped instantly; nothing sleeps.
* :meth:`SimClock.realtime` — time follows the wall clock (through the monotonic clock, so
  NTP adjustments cannot make ledger time jump backwards). ``advance`` still works by adding
  an offset, so a demo can skip a challenge duration.

Sleepers (:meth:`SimClock.sleep_until`) wake when real time reaches their deadline or when
the clock is moved, whichever comes first; nothing polls.
"""

from __future__ import annotations

import asyncio
import time

from perun_core.interfaces import Timeout


class SimClock:
    """A ledger clock in integer seconds. Build it with :meth:`manual` or :meth:`realtime`."""

    __slots__ = ("_base", "_mono0", "_offset", "_realtime", "_waiters")

    def __init__(self, *, realtime: bool, start: float | None = None) -> None:
        """Prefer :meth:`manual` / :meth:`realtime`; ``start`` is the initial ledger time."""
        self._realtime = realtime
        # Manual mode: ``_base`` is the time itself. Realtime mode: wall time at creation.
        self._base: float = float(start) if start is not None else time.time()
        self._mono0 = time.monotonic()
        self._offset = 0
        self._waiters: set[asyncio.Future[None]] = set()

    @classmethod
    def manual(cls, start: int = 0) -> SimClock:
        """A clock that stands still until :meth:`advance` or :meth:`set` moves it."""
        if start < 0:
            raise ValueError("ledger time cannot be negative")
        return cls(realtime=False, start=int(start))

    @classmethod
    def realtime(cls) -> SimClock:
        """A clock that follows wall time (whole seconds); :meth:`advance` adds an offset."""
        return cls(realtime=True)

    @property
    def is_manual(self) -> bool:
        """Whether time moves only when told to."""
        return not self._realtime

    @property
    def sleepers(self) -> int:
        """How many tasks are currently waiting in :meth:`sleep_until` (for tests)."""
        return len(self._waiters)

    def _now_exact(self) -> float:
        if self._realtime:
            return self._base + (time.monotonic() - self._mono0) + self._offset
        return self._base + self._offset

    def now(self) -> int:
        """The current ledger time in whole seconds."""
        return int(self._now_exact())

    def advance(self, seconds: int) -> int:
        """Move ledger time forward by ``seconds`` (both modes); returns the new time."""
        if seconds < 0:
            raise ValueError("ledger time cannot move backwards")
        self._offset += int(seconds)
        self._wake()
        return self.now()

    def set(self, t: int) -> None:
        """Move ledger time forward to ``t`` (``ValueError`` if ``t`` lies in the past)."""
        now = self.now()
        if t < now:
            raise ValueError(f"ledger time cannot move backwards (now {now}, asked {t})")
        self.advance(t - now)

    def _wake(self) -> None:
        # Every sleeper re-checks its own deadline; a few spurious wake-ups are cheaper than
        # keeping a heap ordered by deadline.
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def sleep_until(self, t: int) -> None:
        """Return once ledger time is ``>= t``."""
        loop = asyncio.get_running_loop()
        while (now := self._now_exact()) < t:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.add(fut)
            try:
                # Realtime: also wake when wall time gets there. Manual: only a move wakes us.
                timeout = (t - now) if self._realtime else None
                await asyncio.wait((fut,), timeout=timeout)
            finally:
                self._waiters.discard(fut)
                if not fut.done():
                    fut.cancel()

    def timeout(self, deadline: int) -> SimTimeout:
        """A :class:`SimTimeout` at ``deadline`` on this clock."""
        return SimTimeout(self, deadline)

    def __repr__(self) -> str:
        mode = "realtime" if self._realtime else "manual"
        return f"SimClock({mode}, now={self.now()})"


class SimTimeout(Timeout):
    """A deadline in sim ledger time.

    ``is_elapsed()`` is true iff ``clock.now() >= deadline`` (go-perun had it inverted, D4).
    """

    __slots__ = ("_clock", "_deadline")

    def __init__(self, clock: SimClock, deadline: int) -> None:
        self._clock = clock
        self._deadline = int(deadline)

    @property
    def deadline(self) -> int:
        """The deadline in ledger seconds."""
        return self._deadline

    @property
    def clock(self) -> SimClock:
        """The clock this deadline is measured on."""
        return self._clock

    def elapsed_now(self) -> bool:
        """Synchronous form of :meth:`is_elapsed`."""
        return self._clock.now() >= self._deadline

    async def is_elapsed(self) -> bool:
        """Whether ledger time has reached the deadline."""
        return self.elapsed_now()

    async def wait(self) -> None:
        """Return once ledger time has reached the deadline."""
        await self._clock.sleep_until(self._deadline)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SimTimeout):
            return NotImplemented
        return self._deadline == other._deadline and self._clock is other._clock

    def __hash__(self) -> int:
        return hash(self._deadline)

    def __repr__(self) -> str:
        return f"SimTimeout(deadline={self._deadline})"
