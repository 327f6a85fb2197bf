"""The default :class:`~perun_core.interfaces.ChannelEvents`: one subscription per channel."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from perun_core.interfaces.adjudicator import QueuedChannelEvents
from perun_core.logging import log_extra

if TYPE_CHECKING:
    from perun_core.channel.params import Params
    from perun_core.interfaces.adjudicator import Adjudicator

log = logging.getLogger("perun.watcher")


class PerChannelEvents(QueuedChannelEvents):
    """Merges one :meth:`Adjudicator.subscribe` stream per channel into one queue.

    Works with every adjudicator; costs a task and a subscription per channel. Backends that
    can do better override :meth:`Adjudicator.channel_events`.
    """

    def __init__(self, adjudicator: Adjudicator) -> None:
        super().__init__()
        self._adjudicator = adjudicator
        self._tasks: dict[bytes, asyncio.Task[None]] = {}

    def add(self, params: Params) -> None:
        """Subscribe to one more channel (in a task of its own)."""
        if self._closed or params.id in self._tasks:
            return
        self._tasks[params.id] = asyncio.ensure_future(self._forward(params))

    def remove(self, channel_id: bytes) -> None:
        """Unsubscribe one channel."""
        task = self._tasks.pop(channel_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Unsubscribe every channel."""
        if not self._end():
            return
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _forward(self, params: Params) -> None:
        cid = params.id
        try:
            sub = await self._adjudicator.subscribe(params)
            try:
                while (ev := await sub.next()) is not None:
                    self.push(cid, ev)
            finally:
                await sub.close()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "event subscription of channel 0x%s failed",
                cid.hex()[:12],
                extra=log_extra(channel_id=cid),
            )
