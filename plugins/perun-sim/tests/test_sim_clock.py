"""SimClock and SimTimeout: manual and realtime ledger time, deadlines on both sides (D4)."""

from __future__ import annotations

import asyncio

import pytest
from perun_sim import SimClock, SimTimeout


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_manual_clock_moves_only_when_told() -> None:
    c = SimClock.manual(100)
    assert c.now() == 100
    assert c.advance(5) == 105
    c.set(200)
    assert c.now() == 200
    with pytest.raises(ValueError):
        c.set(199)
    with pytest.raises(ValueError):
        c.advance(-1)
    with pytest.raises(ValueError):
        SimClock.manual(-1)


async def test_timeout_is_elapsed_iff_now_reaches_deadline() -> None:
    c = SimClock.manual(0)
    t = SimTimeout(c, 10)
    c.set(9)
    assert not await t.is_elapsed()  # one second before: not elapsed (go-perun said yes)
    c.set(10)
    assert await t.is_elapsed()  # exactly at the deadline: elapsed
    c.set(11)
    assert await t.is_elapsed()
    assert t.deadline == 10


async def test_sleeper_wakes_exactly_when_clock_reaches_deadline() -> None:
    c = SimClock.manual(0)
    t = c.timeout(30)
    waiter = asyncio.create_task(t.wait())
    await _settle()
    assert c.sleepers == 1
    c.advance(29)
    await _settle()
    assert not waiter.done()
    c.advance(1)
    await asyncio.wait_for(waiter, 1)
    assert c.sleepers == 0


async def test_wait_on_elapsed_timeout_returns_at_once() -> None:
    c = SimClock.manual(50)
    await asyncio.wait_for(c.timeout(50).wait(), 1)
    await asyncio.wait_for(c.timeout(0).wait(), 1)


async def test_cancelled_sleeper_leaves_no_waiter() -> None:
    c = SimClock.manual(0)
    task = asyncio.create_task(c.sleep_until(100))
    await _settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert c.sleepers == 0


async def test_realtime_clock_follows_wall_time_and_can_skip() -> None:
    c = SimClock.realtime()
    start = c.now()
    assert not c.is_manual
    # skipping a challenge duration wakes a sleeper without waiting for it
    waiter = asyncio.create_task(c.sleep_until(start + 3600))
    await _settle()
    assert not waiter.done()
    c.advance(3600)
    await asyncio.wait_for(waiter, 1)
    assert c.now() >= start + 3600


async def test_realtime_sleeper_wakes_when_real_time_passes() -> None:
    c = SimClock(realtime=True, start=999.9)
    assert c.now() == 999
    await asyncio.wait_for(c.sleep_until(1000), 1.5)  # ~0.1 s of real time
    assert c.now() >= 1000
