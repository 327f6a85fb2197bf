"""The local watchtower: follows the ledger and refutes stale registrations (see docs/protocols.md).

The client hands the watcher every newly enabled, fully signed transaction; only fully
signed ones ever become the state it refutes with (a force-executed state is signed by its
actor alone, and the ledger accepts no registration after one). The watcher
follows the adjudicator's events of every watched channel through one stream; when a state
older than the latest one is registered, it registers the latest one before the refutation
window closes.
Every event is forwarded to the client in ledger order, without duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from perun_core.channel.limits import MAX_SUBALLOCS, MAX_TREE_DEPTH
from perun_core.channel.params import Params
from perun_core.channel.state import SignedState, Transaction
from perun_core.errors import ChainError, RefutationClosedError, StaleStateError
from perun_core.interfaces.adjudicator import (
    Adjudicator,
    AdjudicatorEvent,
    AdjudicatorReq,
    ChannelEvents,
    ConcludedEvent,
    RegisteredEvent,
)
from perun_core.logging import log_extra
from perun_core.watcher.base import Watcher

log = logging.getLogger("perun.watcher")

EventSink = Callable[[bytes, AdjudicatorEvent], None]
"""Receives ``(channel_id, event)`` for every new ledger event of a watched channel."""

REFUTE_DRAIN = 2.0
"""Seconds :meth:`LocalWatcher.stop_watching` lets a running refutation finish."""

REFUTE_BACKOFF_CAP = 2.0
"""Longest pause (seconds) between two refutation attempts; they go on until the window
closes (a node that is down for a while must not cost the refutation)."""


class _Watch:
    """One watched channel: the latest state to refute with and what the ledger showed."""

    # Slots, and the ledger bookkeeping only once the channel has an event: a client may
    # watch 100,000 idle channels.
    __slots__ = ("idx", "latest", "ledger", "params", "parent")

    def __init__(self, params: Params, idx: int, latest: Transaction, parent: bytes | None) -> None:
        self.params = params
        self.idx = idx
        self.latest = latest
        self.parent = parent  # a sub-channel's parent ID (None: a ledger channel)
        self.ledger: _Seen | None = None

    @property
    def concluded(self) -> bool:
        return self.ledger is not None and self.ledger.concluded

    @property
    def registered(self) -> int:
        """The highest version known to be registered (-1: none)."""
        return self.ledger.registered if self.ledger is not None else -1


class _Seen:
    """What the ledger showed of one watched channel."""

    __slots__ = ("concluded", "events", "refute", "refuted", "registered")

    def __init__(self) -> None:
        self.events: set[tuple[str, int, int]] = set()  # forwarded already
        self.refuted = -1  # highest version we registered ourselves
        self.registered = -1  # highest version known to be registered
        self.concluded = False
        self.refute: asyncio.Task[None] | None = None  # the running refutation, if any


class LocalWatcher(Watcher):
    """Watches channels on one adjudicator on behalf of one participant.

    Every watched channel's events come through one :meth:`Adjudicator.channel_events`
    stream, read by one task (per client, not per channel).

    Args:
        adjudicator: the adjudicator to subscribe to and to refute with.
        sink: called synchronously with every new event (the client applies it).
        conclude_final: refute with a final state by concluding it at once and withdrawing
            (a participant's watcher); ``False`` registers it instead (a watchtower, which
            holds no participant key to withdraw with).
    """

    def __init__(
        self, adjudicator: Adjudicator, sink: EventSink, *, conclude_final: bool = True
    ) -> None:
        self._adjudicator = adjudicator
        self._sink = sink
        self._conclude_final = conclude_final
        self._watches: dict[bytes, _Watch] = {}
        self._events: ChannelEvents | None = None  # created with the reader, on first use
        self._reader: asyncio.Task[None] | None = None
        self.refutations = 0  # how many refutations this watcher sent (for reports and tests)

    def is_watching(self, channel_id: bytes) -> bool:
        """Whether ``channel_id`` is watched."""
        return channel_id in self._watches

    def latest(self, channel_id: bytes) -> Transaction | None:
        """The latest transaction held for a watched channel (``None``: not watched)."""
        w = self._watches.get(channel_id)
        return None if w is None else w.latest

    @property
    def watched(self) -> int:
        """How many channels are watched (not ``__len__``: an idle watcher is not false)."""
        return len(self._watches)

    def start_watching(
        self, params: Params, idx: int, tx: Transaction, *, parent: bytes | None = None
    ) -> None:
        """Watch a channel, starting from its fully signed transaction ``tx``.

        A sub-channel names its ``parent``: a stale registration anywhere in a tree is
        refuted by registering the root ledger channel with the newest state of every
        channel it locks.
        """
        w = self._watches.get(params.id)
        if w is not None:
            if tx.fully_signed and tx.state.version >= w.latest.state.version:
                w.latest = tx
            return
        self._watches[params.id] = _Watch(params, idx, tx, parent)
        events = self._events
        if events is None:
            events = self._events = self._adjudicator.channel_events()
            self._reader = asyncio.ensure_future(self._run(events))
        events.add(params)

    def publish(self, channel_id: bytes, tx: Transaction) -> None:
        """Hand the watcher a newer fully signed transaction (newest wins)."""
        w = self._watches.get(channel_id)
        if w is not None and tx.fully_signed and tx.state.version >= w.latest.state.version:
            w.latest = tx

    async def stop_watching(self, channel_id: bytes) -> None:
        """Stop watching one channel."""
        w = self._watches.pop(channel_id, None)
        if w is None:
            return
        if self._events is not None:
            self._events.remove(channel_id)
        task = w.ledger.refute if w.ledger is not None else None
        if task is not None and task is not asyncio.current_task():
            # A refutation whose transaction is out gets a moment to hear back (it is
            # counted, and its failure logged); one that is stuck is cancelled.
            await asyncio.wait({task}, timeout=REFUTE_DRAIN)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        """Stop watching everything."""
        for cid in list(self._watches):
            await self.stop_watching(cid)
        if self._events is not None:
            await self._events.close()
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _run(self, events: ChannelEvents) -> None:
        while (item := await events.next()) is not None:
            cid, ev = item
            w = self._watches.get(cid)
            if w is None or w.concluded:
                continue
            try:
                self._on_event(w, ev)
            except Exception:
                log.exception(
                    "watcher of channel 0x%s failed",
                    cid.hex()[:12],
                    extra=log_extra(channel_id=cid, version=w.latest.state.version),
                )

    def _on_event(self, w: _Watch, ev: AdjudicatorEvent) -> None:
        key = (type(ev).__name__, ev.version, ev.timeout.deadline)
        seen = w.ledger
        if seen is None:
            seen = w.ledger = _Seen()
        elif key in seen.events:
            return  # the replayed latest event of a re-subscription
        seen.events.add(key)
        if isinstance(ev, RegisteredEvent):
            seen.registered = max(seen.registered, ev.version)
        # The client first (it discards pending updates), then refute if stale.
        self._sink(w.params.id, ev)
        if isinstance(ev, RegisteredEvent):
            # In a task of its own (the reader serves every channel); after the channel's
            # previous refutation, so one channel's ledger calls never overlap.
            seen.refute = asyncio.ensure_future(self._refute_after(w, ev, seen.refute))
        elif isinstance(ev, ConcludedEvent):
            seen.concluded = True
            if self._events is not None:
                self._events.remove(w.params.id)

    async def _refute_after(
        self, w: _Watch, ev: RegisteredEvent, prev: asyncio.Task[None] | None
    ) -> None:
        try:
            if prev is not None:
                await asyncio.gather(prev, return_exceptions=True)
            await self._maybe_refute(w, ev)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "watcher of channel 0x%s failed",
                w.params.id.hex()[:12],
                extra=log_extra(channel_id=w.params.id, version=w.latest.state.version),
            )
        finally:
            seen = w.ledger
            if seen is not None and seen.refute is asyncio.current_task():
                seen.refute = None

    def _root(self, w: _Watch) -> _Watch | None:
        """The watched ledger channel at the root of ``w``'s tree (``None``: not watched)."""
        for _ in range(MAX_TREE_DEPTH + 1):
            if w.parent is None:
                return w
            parent = self._watches.get(w.parent)
            if parent is None:
                return None
            w = parent
        return None

    def tree_states(self, root: Transaction) -> dict[bytes, SignedState]:
        """The newest signed state of every channel ``root``'s state locks, recursively
        (what a registration of the tree needs); channels not watched are left out."""
        out: dict[bytes, SignedState] = {}
        todo = [sa.id for sa in root.state.allocation.locked]
        while todo and len(out) <= MAX_SUBALLOCS:
            sub = self._watches.get(todo.pop())
            if sub is None or sub.params.id in out:
                continue
            out[sub.params.id] = SignedState.from_tx(sub.params, sub.latest)
            todo.extend(sa.id for sa in sub.latest.state.allocation.locked)
        return out

    async def _maybe_refute(self, w: _Watch, ev: RegisteredEvent) -> None:
        latest = w.latest
        if ev.version >= latest.state.version or w.registered >= latest.state.version:
            return
        if not latest.fully_signed:
            return  # a force-executed state (restored): the ledger takes no registration
        log.warning(
            "channel 0x%s: stale state v%d registered; refuting with v%d",
            w.params.id.hex()[:12],
            ev.version,
            latest.state.version,
            extra=log_extra(channel_id=w.params.id, version=latest.state.version),
        )
        root = self._root(w)
        if root is None:
            log.error(
                "channel 0x%s: its root ledger channel is not watched; cannot refute",
                w.params.id.hex()[:12],
                extra=log_extra(channel_id=w.params.id, version=latest.state.version),
            )
            return
        req = AdjudicatorReq(root.params, root.latest, root.idx)
        subs = self.tree_states(root.latest)
        attempt = 0
        while True:
            if await ev.timeout.is_elapsed():
                log.error(
                    "channel 0x%s: refutation window closed",
                    w.params.id.hex()[:12],
                    extra=log_extra(channel_id=w.params.id, version=latest.state.version),
                )
                return
            try:
                top = root.latest.state
                if (
                    self._conclude_final
                    and root is w
                    and top.is_final
                    and not top.allocation.locked
                ):
                    # A final state concludes at once (and pays us out), whatever version
                    # the running dispute holds.
                    await self._adjudicator.withdraw(req)
                else:
                    await self._adjudicator.register(req, subs)
                self.refutations += 1
                if w.ledger is not None:
                    w.ledger.refuted = max(w.ledger.refuted, latest.state.version)
                return
            except ChainError as e:
                log.warning(
                    "refutation attempt %d failed: %s",
                    attempt + 1,
                    e,
                    extra=log_extra(channel_id=w.params.id, version=latest.state.version),
                )
                if isinstance(e, RefutationClosedError | StaleStateError):
                    return  # the window closed, or the ledger holds our version or newer
                await asyncio.sleep(min(0.05 * 2**attempt, REFUTE_BACKOFF_CAP))
                attempt += 1
