"""Event loops for latency-sensitive deployments: poll briefly before going to sleep.

An asyncio loop with nothing to do blocks in ``epoll_wait`` and the kernel puts the CPU to
sleep. The next message then waits for the CPU to wake up, which on virtual machines costs a
trip through the hypervisor: on the 2-vCPU machine of ``docs/performance.md`` a loopback
round trip between two asyncio processes takes 90-120 µs this way and about 26 µs when both
poll. A channel update is such a round trip, so with sequential updates on one channel the
wake-ups are a large part of the latency.

:class:`BusyPollSelector` polls the sockets without blocking for up to ``spin_us``
microseconds before it blocks as usual. It trades CPU for latency: after every burst of work
the loop keeps its core busy for up to ``spin_us`` (a loop that stays idle longer sleeps as
before, and timers fire on time). Use it where latency matters more than an idle core, and
set ``spin_us`` to about the time you expect to wait for an answer (100-300 µs on loopback or
a LAN). Only where each polling process has a core to itself: on a CPU shared with other busy
processes the polling takes time from them and makes things slower. It is off (``spin_us=0``)
unless you ask for it::

    from perun_core import eventloop

    eventloop.run(main(), busy_poll_us=200)         # instead of asyncio.run(main())

    with asyncio.Runner(loop_factory=lambda: eventloop.new_event_loop(200)) as runner:
        runner.run(main())
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = [
    "BusyPollEventLoop",
    "BusyPollSelector",
    "busy_poll_us",
    "new_event_loop",
    "run",
    "set_busy_poll",
]

T = TypeVar("T")


class BusyPollSelector(selectors.DefaultSelector):
    """The platform's default selector, polling for up to ``spin_us`` µs before it blocks."""

    def __init__(self, spin_us: float = 0) -> None:
        super().__init__()
        self._spin = 0.0
        self.spin_us = spin_us

    @property
    def spin_us(self) -> float:
        """Microseconds of polling before a blocking wait (0: never poll)."""
        return self._spin * 1e6

    @spin_us.setter
    def spin_us(self, value: float) -> None:
        if not value >= 0:  # also refuses NaN
            raise ValueError(f"spin_us must be >= 0, got {value!r}")
        self._spin = value / 1e6

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        """Ready keys: polled for up to ``spin_us`` first, then waited for (``timeout``)."""
        spin = self._spin
        if spin and (timeout is None or timeout > 0):
            if timeout is not None and timeout < spin:
                spin = timeout
            poll = super().select
            deadline = time.perf_counter() + spin
            while True:
                ready = poll(0)
                if ready:
                    return ready
                if time.perf_counter() >= deadline:
                    break
            if timeout is not None:
                timeout = max(timeout - spin, 0)
        return super().select(timeout)


class BusyPollEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector event loop over a :class:`BusyPollSelector`.

    Args:
        busy_poll_us: microseconds of polling before the loop sleeps (0: never poll).
    """

    def __init__(self, busy_poll_us: float = 0) -> None:
        self._poller = BusyPollSelector(busy_poll_us)
        super().__init__(self._poller)

    @property
    def busy_poll_us(self) -> float:
        """Microseconds of polling before the loop sleeps; may be changed at any time."""
        return self._poller.spin_us

    @busy_poll_us.setter
    def busy_poll_us(self, value: float) -> None:
        self._poller.spin_us = value


def new_event_loop(busy_poll_us: float = 0) -> BusyPollEventLoop:
    """A new :class:`BusyPollEventLoop` (with ``busy_poll_us=0``: like asyncio's default)."""
    return BusyPollEventLoop(busy_poll_us)


def set_busy_poll(loop: asyncio.AbstractEventLoop, spin_us: float) -> bool:
    """Set the polling time of ``loop`` if it is a :class:`BusyPollEventLoop`.

    Returns:
        ``False`` (and changes nothing) for any other loop.

    Raises:
        ValueError: ``spin_us`` is negative or NaN.
    """
    if not isinstance(loop, BusyPollEventLoop):
        return False
    loop.busy_poll_us = spin_us
    return True


def busy_poll_us(loop: asyncio.AbstractEventLoop) -> float | None:
    """The polling time of a :class:`BusyPollEventLoop`, else ``None``."""
    return loop.busy_poll_us if isinstance(loop, BusyPollEventLoop) else None


def run(main: Coroutine[Any, Any, T], *, busy_poll_us: float = 0, debug: bool | None = None) -> T:
    """Like :func:`asyncio.run`, on a loop from :func:`new_event_loop`."""
    with asyncio.Runner(debug=debug, loop_factory=lambda: new_event_loop(busy_poll_us)) as r:
        return r.run(main)
