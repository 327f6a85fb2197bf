"""Ordered write-then-send: one channel's persistence writes and sends, in protocol order.

The dispatcher applies messages to the state machine synchronously; what the transitions
ask to be written, and the messages that follow from them, are then queued here, behind
every earlier I/O of the channel. A send queued after a write runs only once the write
succeeded, so nothing that commits us (a signature, an acceptance) leaves the process
before it is durable; a failed write fails the send behind it in the same work item.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from perun_core.channel.machine import (
    Enabled,
    PersistEvent,
    PhaseChanged,
    Removed,
    SigAdded,
    Staged,
)
from perun_core.interfaces.persister import Persister


async def write_events(
    persister: Persister, channel_id: bytes, events: Iterable[PersistEvent | None]
) -> None:
    """Write transition events in order (``None`` entries, "nothing changed", are skipped)."""
    for ev in events:
        if ev is None:
            continue
        if isinstance(ev, Enabled):
            await persister.enabled(channel_id, ev.current, ev.phase)
        elif isinstance(ev, PhaseChanged):
            await persister.phase_changed(channel_id, ev.phase, ev.version_floor, ev.needs_sync)
        elif isinstance(ev, Staged):
            await persister.staged(channel_id, ev.staging, ev.phase)
        elif isinstance(ev, SigAdded):
            await persister.sig_added(channel_id, ev.version, ev.idx, ev.sig)
        elif isinstance(ev, Removed):
            await persister.channel_removed(channel_id)


class OrderedIO:
    """The I/O chain of one channel.

    Args:
        channel_id: the channel whose records are written.
        persister: where they go.
        track: registers a background future with the client (so closing cancels it).
    """

    __slots__ = ("_persister", "_track", "channel_id", "retired", "tail")

    def __init__(
        self,
        channel_id: bytes,
        persister: Persister,
        track: Callable[[asyncio.Future[Any]], None],
    ) -> None:
        self.channel_id = channel_id
        self._persister = persister
        self._track = track
        self.tail: asyncio.Future[None] | None = None
        self.retired = False  # the record is deleted: later writes have nothing to update

    def run(self, work: Callable[[], Awaitable[None]]) -> asyncio.Future[None]:
        """Run ``work`` after every earlier I/O of this channel, in a task of its own."""
        prev = self.tail

        async def run() -> None:
            if prev is not None:
                # An earlier failure is reported by its own caller; order is what matters.
                with contextlib.suppress(Exception):
                    await prev
            await work()
            if self.tail is fut:
                # Done and nothing queued behind it: drop it, so an idle channel holds no
                # finished task (a failed one stays, for whoever awaits the tail).
                self.tail = None

        fut = asyncio.ensure_future(run())
        self.tail = fut
        self._track(fut)
        return fut

    async def run_now(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run ``work`` as this channel's next I/O in the calling task.

        Same order as :meth:`run`, for a caller that awaits the I/O anyway: when nothing is
        queued (the usual case) it runs here, behind a plain future that later I/O queues
        behind, instead of in a task of its own (a task per update and side was a good part
        of the hot path). A failure goes to the caller only.
        """
        if self.tail is not None:
            await self.run(work)
            return
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tail = slot
        try:
            await work()
        finally:
            if self.tail is slot:
                self.tail = None
            slot.set_result(None)

    def reserve(self) -> tuple[asyncio.Future[None] | None, asyncio.Future[None]]:
        """Take the next place in the chain now, to fill it later with :meth:`fill`."""
        prev = self.tail
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tail = slot
        return prev, slot

    async def fill(
        self,
        prev: asyncio.Future[None] | None,
        slot: asyncio.Future[None],
        work: Callable[[], Awaitable[None]],
    ) -> None:
        """Run ``work`` in the place :meth:`reserve` took (after ``prev``), in this task."""
        try:
            if prev is not None:
                try:
                    await prev
                except asyncio.CancelledError:
                    if not prev.cancelled():
                        raise  # we were cancelled, not the earlier I/O
                except Exception:  # noqa: BLE001 - the earlier I/O's failure belongs to its own caller; ours runs regardless
                    pass
            await work()
        finally:
            if self.tail is slot:
                self.tail = None
            if not slot.done():
                slot.set_result(None)

    def write(self, *events: PersistEvent | None) -> asyncio.Future[None]:
        """Queue the writes of transition events (after every earlier I/O)."""
        return self.run(lambda: self.write_now(events))

    async def write_now(self, events: Iterable[PersistEvent | None]) -> None:
        """Write transition events in the calling task (it holds the chain's place)."""
        if self.retired:
            # Deleted: a late event (after the withdrawal) has nothing left to update.
            events = [e for e in events if isinstance(e, Removed)]
        await write_events(self._persister, self.channel_id, events)

    def writer(self, *events: PersistEvent | None) -> Callable[[], Awaitable[None]]:
        """The work item writing ``events`` (for :meth:`run_now` / :meth:`fill`)."""
        return lambda: self.write_now(events)


__all__ = ["OrderedIO", "write_events"]
