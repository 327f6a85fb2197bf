"""What the protocols of one client share: channels, routing, tasks, callbacks.

The :class:`~perun_core.client.client.Client` is the user's facade; the protocol modules
(``proposal``, ``update``, ``sync``, ``settle``, ``dispute``, ``restore``) work through this
engine and never through another object's private members. Incoming messages reach the
protocols through a routing table each protocol fills when it is created.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from perun_core.channel import limits
from perun_core.channel.app import App
from perun_core.channel.machine import Removed
from perun_core.channel.params import Params
from perun_core.channel.state import State, Transaction
from perun_core.errors import InvalidSignatureError, PerunError, RejectCode, UnknownChannelError
from perun_core.interfaces.adjudicator import AdjudicatorEvent, ConcludedEvent
from perun_core.interfaces.persister import ChannelRecord
from perun_core.logging import log_extra
from perun_core.wire import messages as wire

if TYPE_CHECKING:
    from perun_core.channel.types import Address
    from perun_core.client.channel import Channel
    from perun_core.client.client import Client
    from perun_core.client.dispute import DisputeProtocol
    from perun_core.client.force import ForceProtocol
    from perun_core.client.proposal import ProposalProtocol
    from perun_core.client.settle import SettleProtocol
    from perun_core.client.subchannel import SubChannelProtocol
    from perun_core.client.sync import SyncProtocol
    from perun_core.client.update import UpdateProtocol

log = logging.getLogger("perun.client")

Route = Callable[[wire.Envelope, Any], None]
"""Applies one incoming message (synchronously, in arrival order)."""


class Engine:
    """The shared state and services of one client's protocols (internal to the client)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.channels: dict[bytes, Channel] = {}
        self.retiring: dict[bytes, Channel] = {}  # withdrawn, awaiting their last event
        self.tasks: set[asyncio.Future[Any]] = set()
        self.routes: dict[type[wire.Message], Route] = {}
        self.proposal_handler: Any = None
        self.update_handler: Any = None
        self.update_callbacks: list[Callable[..., Any]] = []
        self.channel_callbacks: list[Callable[..., Any]] = []
        self.error_callbacks: list[Callable[[BaseException], Any]] = []
        self.tx_listeners: list[Callable[[Channel, Transaction], None]] = []
        # The protocols, set by the client once the engine exists (they register routes).
        self.proposals: ProposalProtocol
        self.subs: SubChannelProtocol
        self.updates: UpdateProtocol
        self.settlement: SettleProtocol
        self.disputes: DisputeProtocol
        self.force: ForceProtocol
        self.sync: SyncProtocol
        self.route(wire.Ping, self._on_ping)
        self.route(wire.Pong, self._on_quiet)
        self.route(wire.Shutdown, self._on_quiet)

    # --- routing -------------------------------------------------------------------------------

    def route(self, kind: type[wire.Message], handler: Route) -> None:
        """Send incoming messages of ``kind`` to ``handler`` (one handler per kind)."""
        if kind in self.routes:
            raise ValueError(f"{kind.__name__} is routed already")
        self.routes[kind] = handler

    def dispatch(self, env: wire.Envelope) -> None:
        """Apply one incoming message (synchronously, in arrival order)."""
        if env.recipient != self.client.address:
            log.info(
                "dropped a message for %s (we are %s)",
                env.recipient,
                self.client.address,
                extra=log_extra(peer=env.sender),
            )
            return
        handler = self.routes.get(type(env.msg))
        if handler is None:
            log.info(
                "ignored unexpected %s from %s",
                type(env.msg).__name__,
                env.sender,
                extra=log_extra(peer=env.sender),
            )
            return
        handler(env, env.msg)

    def peer_channel(self, env: wire.Envelope, channel_id: bytes) -> Channel | None:
        """The channel ``channel_id`` if ``env`` comes from its peer, else ``None``."""
        ch = self.channels.get(channel_id)
        if ch is None:
            return None
        if env.sender != ch.peer:
            log.warning(
                "dropped a message for channel 0x%s from non-peer %s",
                channel_id.hex()[:12],
                env.sender,
                extra=log_extra(channel_id=channel_id, peer=env.sender),
            )
            return None
        return ch

    def _on_ping(self, env: wire.Envelope, msg: wire.Ping) -> None:
        self.spawn(self.send(env.sender, wire.Pong(msg.created_ns, time.time_ns())))

    def _on_quiet(self, env: wire.Envelope, msg: wire.Message) -> None:
        log.debug("%s from %s", type(msg).__name__, env.sender, extra=log_extra(peer=env.sender))

    def reply_unknown(self, env: wire.Envelope, channel_id: bytes, version: int) -> None:
        """Tell a sender that we do not know the channel of its update."""
        rej = wire.ChannelUpdateRej(
            channel_id, version, RejectCode.UNKNOWN_CHANNEL, "unknown channel"
        )
        self.spawn(self.send(env.sender, rej))

    # --- channels ------------------------------------------------------------------------------

    def add_channel(self, record: ChannelRecord) -> Channel:
        """Create the channel object of ``record`` and keep it."""
        # channel.py imports this module: a top-level import would be a cycle.
        from perun_core.client.channel import Channel  # noqa: PLC0415

        ch = Channel(self, record)
        self.channels[ch.id] = ch
        return ch

    def children(self, ch: Channel) -> list[Channel]:
        """The live sub-channels of ``ch`` (in the order its state locks them, then others)."""
        kids = [c for c in self.channels.values() if c.parent == ch.id]
        if len(kids) > 1 and ch.machine.current is not None:
            order = {sa.id: i for i, sa in enumerate(ch.machine.current.state.allocation.locked)}
            kids.sort(key=lambda c: order.get(c.id, len(order)))
        return kids

    def root_of(self, ch: Channel) -> Channel:
        """The ledger channel at the root of ``ch``'s tree (``ch`` itself for a ledger channel).

        Raises:
            UnknownChannelError: a parent is not known here.
        """
        seen = 0
        while ch.parent is not None:
            parent = self.channels.get(ch.parent)
            if parent is None or seen > limits.MAX_TREE_DEPTH:
                raise UnknownChannelError(f"parent 0x{ch.parent.hex()[:12]} is not known")
            ch, seen = parent, seen + 1
        return ch

    def app_of(self, params: Params) -> App | None:
        """The app of a channel (``None``: no app)."""
        return self.client.apps.get(params.app) if params.app is not None else None

    def verify_peer_sig(self, ch: Channel, state: State, sig: bytes) -> None:
        """Raise :class:`InvalidSignatureError` unless the peer signed ``state``."""
        peer = ch.params.participants[ch.peer_idx]
        if not self.client.backend.verify_state(peer, state, sig):
            raise InvalidSignatureError(
                "the proposer's signature does not verify",
                channel_id=ch.id,
                version=state.version,
            )

    def publish_to_watcher(self, ch: Channel, tx: Transaction) -> None:
        """Hand a newly enabled, fully signed transaction to the watcher and listeners."""
        ch.rt.forget_signed_upto(tx.state.version)
        watcher = self.client.watcher
        if watcher is not None:
            watcher.start_watching(ch.params, ch.idx, tx, parent=ch.parent)  # newest wins
        for extra in self.client.extra_watchers:
            extra.start_watching(ch.params, ch.idx, tx, parent=ch.parent)
        for listener in self.tx_listeners:
            listener(ch, tx)

    def on_ledger_event(self, channel_id: bytes, ev: AdjudicatorEvent) -> None:
        """The watcher's sink: one new ledger event of a watched channel."""
        ch = self.channels.get(channel_id)
        if ch is not None:
            self.disputes.on_event(ch, ev)
            return
        ch = self.retiring.get(channel_id)
        if ch is not None:
            # Withdrawn already: only tell the application (nothing is left to do).
            ch.rt.last_event = ev
            if isinstance(ev, ConcludedEvent):
                ch.rt.concluded = True
            ch.rt.pulse()
            self.emit_event(ch, ev)

    def emit_event(self, ch: Channel, ev: AdjudicatorEvent) -> None:
        """Deliver a ledger event to the channel's subscribers."""
        for q in ch.rt.event_queues:
            q.put_nowait(ev)
        for h in ch.rt.event_handlers:
            self.spawn(self.await_user(ch, h, ch, ev))

    async def drop_channel(self, ch: Channel) -> None:
        """Forget a channel that never got every initial signature (nothing was funded)."""
        ch.rt.removed = True
        await ch.io.write(Removed())
        ch.io.retired = True
        self.channels.pop(ch.id, None)
        await self.stop_extra_watchers(ch.id)
        watcher = self.client.watcher
        if watcher is not None:
            await watcher.stop_watching(ch.id)

    async def stop_extra_watchers(self, channel_id: bytes) -> None:
        """Tell the extra (e.g. remote) watchers that a channel is gone."""
        for extra in self.client.extra_watchers:
            await extra.stop_watching(channel_id)

    def protected_version(self, channel_id: bytes) -> int | None:
        """The newest version an extra watcher holds durably (``None``: none)."""
        best: int | None = None
        for extra in self.client.extra_watchers:
            v = extra.protected_version(channel_id)
            if v is not None and (best is None or v > best):
                best = v
        return best

    async def finish_channel(self, ch: Channel) -> None:
        """The channel is withdrawn: forget it everywhere.

        It stays watched (in the background) until its ``Concluded`` event reached
        :meth:`Channel.events`, so an application sees the channel's last ledger event
        even when the withdrawal finished before the event was polled.
        """
        removed = ch.machine.withdrawn()
        ch.rt.removed = True
        await ch.io.write(removed)
        ch.io.retired = True
        self.channels.pop(ch.id, None)
        await self.stop_extra_watchers(ch.id)
        watcher = self.client.watcher
        if watcher is None:
            return
        if ch.rt.concluded:
            await watcher.stop_watching(ch.id)
            return
        self.retiring[ch.id] = ch
        self.spawn(self._retire(ch))

    async def _retire(self, ch: Channel) -> None:
        """Stop watching a withdrawn channel once its conclusion was delivered (bounded)."""
        try:
            async with asyncio.timeout(self.client.config.final_event_timeout):
                while not ch.rt.concluded:
                    await ch.rt.changed.wait()
        except TimeoutError:
            log.info("no Concluded event for withdrawn channel 0x%s", ch.id.hex()[:12])
        finally:
            self.retiring.pop(ch.id, None)
            watcher = self.client.watcher
            if watcher is not None:
                await watcher.stop_watching(ch.id)

    # --- messages, tasks, callbacks ------------------------------------------------------------

    async def send(self, to: Address, msg: wire.Message) -> None:
        """Publish ``msg`` to ``to`` on the bus."""
        await self.client.bus.publish(wire.Envelope(self.client.address, to, msg))

    def track(self, fut: asyncio.Future[Any]) -> None:
        """Keep a background future until it is done (closing the client cancels it)."""
        self.tasks.add(fut)
        fut.add_done_callback(self.tasks.discard)

    def spawn(self, coro: Any) -> asyncio.Future[Any]:
        """Run ``coro`` in the background; its failure is logged and reported."""
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)
        self.track(task)
        task.add_done_callback(self._log_failure)
        return task

    def _log_failure(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("background protocol task failed: %s", exc, exc_info=exc)
            self.report_error(exc)

    def report_error(self, exc: BaseException) -> None:
        """Tell the application's error callbacks."""
        for cb in self.error_callbacks:
            try:
                cb(exc)
            except Exception:
                log.exception("error callback failed")

    def call_user(self, ch: Channel, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a user callback, marking the current task so re-entrant updates fail fast."""
        task = asyncio.current_task()
        if task is None:
            return fn(*args)
        ch.rt.mark_callback(task)
        try:
            return fn(*args)
        finally:
            ch.rt.unmark_callback(task)

    async def await_user(self, ch: Channel, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a sync or async user callback in the current task, marked as a callback."""
        task = asyncio.current_task()
        assert task is not None
        ch.rt.mark_callback(task)
        try:
            res = fn(*args)
            if asyncio.iscoroutine(res) or isinstance(res, asyncio.Future):
                res = await res
            return res
        finally:
            ch.rt.unmark_callback(task)

    def notify_update(self, ch: Channel, old: State | None, new: State) -> None:
        """A new current state is persisted: fund or settle sub-channels it concerns, and
        tell the ``on_update`` callbacks."""
        self.subs.on_enabled(ch, old, new)
        for cb in self.update_callbacks:
            self.spawn(self.await_user(ch, cb, ch, old, new))

    def notify_invalid(self, ch: Channel, err: PerunError) -> None:
        """A peer sent something invalid for ``ch`` (reported to the error callbacks)."""
        self.report_error(err)

    def announce(self, ch: Channel) -> None:
        """Tell ``on_new_channel`` callbacks about an open or restored channel."""
        for cb in self.channel_callbacks:
            self.spawn(self.await_user(ch, cb, ch))


__all__ = ["Engine", "Route"]
