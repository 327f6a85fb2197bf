"""Bounded polling for tests: wait until a condition holds.

Tests and conformance suites often wait for a side effect that has no event of its own (a
counter in a fake, a phase reached by another task, a socket buffer filling). This is the
one helper for that: it checks a predicate on every few event-loop ticks and gives up after
a deadline, so a test that waits in vain fails instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["POLL_INTERVAL", "until"]

POLL_INTERVAL = 0.005
"""Seconds between two checks of the predicate by default."""


async def until(
    cond: Callable[[], object],
    timeout: float = 5.0,  # noqa: ASYNC109 - every wait has a deadline; this one takes it as an argument
    *,
    what: str | None = None,
    interval: float = POLL_INTERVAL,
) -> None:
    """Wait until ``cond()`` is true, checking it every ``interval`` seconds.

    Args:
        cond: the predicate; called on the event loop, so it must not block.
        timeout: seconds to wait at most.
        what: names the awaited condition; given, a timeout fails with an
            :class:`AssertionError` saying what did not happen.
        interval: seconds between checks (0: every event-loop tick).

    Raises:
        TimeoutError: ``cond()`` stayed false for ``timeout`` seconds (no ``what`` given).
        AssertionError: the same, with ``what`` given.
    """
    try:
        async with asyncio.timeout(timeout):
            # A plain predicate has no event to await: polling is the only way to wait on it.
            while not cond():  # noqa: ASYNC110 - see above
                await asyncio.sleep(interval)
    except TimeoutError:
        if what is None:
            raise
        raise AssertionError(f"timed out waiting for {what}") from None
