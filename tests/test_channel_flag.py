"""The channel's lazy event (``_Flag``) behaves as ``asyncio.Event`` does."""

from __future__ import annotations

import asyncio

from perun_core.client.runtime import Flag as _Flag


async def test_wait_returns_at_once_when_set_and_wakes_every_waiter_on_set() -> None:
    flag = _Flag(True)
    assert flag.is_set() and await flag.wait() is True
    flag.clear()
    assert not flag.is_set()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    flag.set()  # idempotent
    assert flag.is_set()


async def test_clear_after_set_makes_new_waiters_wait_again() -> None:
    flag = _Flag()
    first = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    flag.set()
    flag.clear()  # before the first waiter even ran: it still returns (as asyncio.Event)
    assert await first is True
    second = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    assert not second.done()
    flag.set()
    assert await second is True


async def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    flag = _Flag()
    a = asyncio.ensure_future(flag.wait())
    b = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    a.cancel()
    await asyncio.sleep(0)
    flag.set()
    assert await b is True and a.cancelled()


def test_an_idle_flag_holds_no_event() -> None:
    flag = _Flag(True)
    flag.clear()
    flag.set()
    assert flag._event is None  # no waiter ever: no asyncio.Event (nor its deque)
