"""The local watchtower: follows the ledger and refutes stale registrations (PROTOCOL.md §5.6).

The client hands the watcher every newly enabled, fully signed transaction. The watcher
subscribes to the adjudicator's events of each watched channel; when a state older than the
latest one is registered, it registers the latest one before the refutation window closes.
Every event is forwarded to the client in ledger order, without duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from perun_core.channel.params import Params
from perun_core.channel.state import Transaction
from perun_core.errors import ChainError
from perun_core.interfaces.adjudicator import (
    Adjudicator,
    AdjudicatorEvent,
    AdjudicatorReq,
    ConcludedEvent,
    EventSubscription,
    RegisteredEvent,
)
from perun_core.logging import log_extra

log = logging.getLogger("perun.watcher")

EventSink = Callable[[bytes, AdjudicatorEvent], None]
"""Receives ``(channel_id, event)`` for every new ledger event of a watched channel."""

REFUTE_RETRIES = 5


@dataclass(slots=True, eq=False)
class _Watch:
    params: Params
    idx: int
    latest: Transaction
    task: asyncio.Task[None] | None = None
    sub: EventSubscription | None = None
    seen: set[tuple[str, int, int]] = field(default_factory=set)
    refuted: int = -1  # highest version we registered ourselves
    registered: int = -1  # highest version known to be registered


class LocalWatcher:
    """Watches channels on one adjudicator on behalf of one participant.

    Args:
        adjudicator: the adjudicator to subscribe to and to refute with.
        sink: called synchronously with every new event (the client applies it).
    """

    def __init__(self, adjudicator: Adjudicator, sink: EventSink) -> None:
        self._adjudicator = adjudicator
        self._sink = sink
        self._watches: dict[bytes, _Watch] = {}
        self.refutations = 0  # how many refutations this watcher sent (for reports and tests)

    def is_watching(self, channel_id: bytes) -> bool:
        """Whether ``channel_id`` is watched."""
        return channel_id in self._watches

    def start_watching(self, params: Params, idx: int, tx: Transaction) -> None:
        """Watch a ledger channel, starting from its fully signed transaction ``tx``."""
        if params.id in self._watches:
            self.publish(params.id, tx)
            return
        w = _Watch(params, idx, tx)
        self._watches[params.id] = w
        w.task = asyncio.ensure_future(self._run(w))

    def publish(self, channel_id: bytes, tx: Transaction) -> None:
        """Hand the watcher a newer fully signed transaction (newest wins)."""
        w = self._watches.get(channel_id)
        if w is not None and tx.state.version >= w.latest.state.version:
            w.latest = tx

    async def stop_watching(self, channel_id: bytes) -> None:
        """Stop watching one channel."""
        w = self._watches.pop(channel_id, None)
        if w is None:
            return
        if w.sub is not None:
            await w.sub.close()
        if w.task is not None and w.task is not asyncio.current_task():
            w.task.cancel()
            await asyncio.gather(w.task, return_exceptions=True)

    async def close(self) -> None:
        """Stop watching everything."""
        for cid in list(self._watches):
            await self.stop_watching(cid)

    async def _run(self, w: _Watch) -> None:
        try:
            w.sub = await self._adjudicator.subscribe(w.params)
            async for ev in w.sub:
                key = (type(ev).__name__, ev.version, ev.timeout.deadline)
                if key in w.seen:
                    continue  # the replayed latest event of a re-subscription
                w.seen.add(key)
                if isinstance(ev, RegisteredEvent):
                    w.registered = max(w.registered, ev.version)
                # The client first (it discards pending updates), then refute if stale.
                self._sink(w.params.id, ev)
                if isinstance(ev, RegisteredEvent):
                    await self._maybe_refute(w, ev)
                elif isinstance(ev, ConcludedEvent):
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "watcher of channel 0x%s failed",
                w.params.id.hex()[:12],
                extra=log_extra(channel_id=w.params.id, version=w.latest.state.version),
            )

    async def _maybe_refute(self, w: _Watch, ev: RegisteredEvent) -> None:
        latest = w.latest
        if ev.version >= latest.state.version or w.registered >= latest.state.version:
            return
        log.warning(
            "channel 0x%s: stale state v%d registered; refuting with v%d",
            w.params.id.hex()[:12],
            ev.version,
            latest.state.version,
            extra=log_extra(channel_id=w.params.id, version=latest.state.version),
        )
        req = AdjudicatorReq(w.params, latest, w.idx)
        for attempt in range(REFUTE_RETRIES):
            if await ev.timeout.is_elapsed():
                log.error(
                    "channel 0x%s: refutation window closed",
                    w.params.id.hex()[:12],
                    extra=log_extra(channel_id=w.params.id, version=latest.state.version),
                )
                return
            try:
                if latest.state.is_final and not latest.state.allocation.locked:
                    # A final state concludes at once (and pays us out), whatever version
                    # the running dispute holds.
                    await self._adjudicator.withdraw(req)
                else:
                    await self._adjudicator.register(req)
                self.refutations += 1
                w.refuted = max(w.refuted, latest.state.version)
                return
            except ChainError as e:
                log.warning(
                    "refutation attempt %d failed: %s",
                    attempt + 1,
                    e,
                    extra=log_extra(channel_id=w.params.id, version=latest.state.version),
                )
                if "timeout passed" in e.reason or "invalid version" in e.reason:
                    return
                await asyncio.sleep(0.05 * 2**attempt)
