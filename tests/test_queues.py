"""ClosableQueue: the queue under every queue-fed subscription."""

from __future__ import annotations

import asyncio

from perun_core.queues import ClosableQueue


async def test_items_come_out_in_order_then_none_after_close() -> None:
    q: ClosableQueue[int] = ClosableQueue([1])
    q.put(2)
    assert await q.get() == 1
    assert await q.get() == 2
    q.put(3)
    assert q.close() == [3]  # what was still queued goes back to the owner
    assert q.closed
    assert await q.get() is None
    q.put(4)  # ignored once closed
    assert await q.get() is None
    assert q.close() == []


async def test_close_wakes_every_pending_reader() -> None:
    q: ClosableQueue[str] = ClosableQueue()
    readers = [asyncio.create_task(q.get()) for _ in range(3)]
    await asyncio.sleep(0)
    q.close()
    assert await asyncio.wait_for(asyncio.gather(*readers), 1) == [None, None, None]


async def test_end_lets_readers_run_out_without_closing() -> None:
    q: ClosableQueue[int] = ClosableQueue()
    q.put(1)
    q.end()
    assert not q.closed
    assert await q.get() == 1
    assert await q.get() is None
    assert await q.get() is None


async def test_take_all_empties_the_queue_but_keeps_the_end() -> None:
    q: ClosableQueue[int] = ClosableQueue([1, 2])
    assert q.take_all() == [1, 2]
    assert q.take_all() == []
    q.put(3)
    q.end()
    assert q.take_all() == [3]
    assert await asyncio.wait_for(q.get(), 1) is None
