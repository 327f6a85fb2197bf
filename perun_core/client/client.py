"""The Client: one party's endpoint for opening, updating and settling channels."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from perun_core.channel.app import App, AppRegistry, PaymentApp
from perun_core.channel.params import Params
from perun_core.channel.phase import Phase
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address
from perun_core.client.channel import Channel
from perun_core.client.config import ClientConfig
from perun_core.client.dispute import DisputeProtocol
from perun_core.client.proposal import LedgerChannelProposal, ProposalProtocol
from perun_core.client.restore import restore_channels
from perun_core.client.settle import SettleProtocol
from perun_core.client.sync import SyncProtocol
from perun_core.client.update import UpdateProtocol
from perun_core.errors import (
    ChannelClosedError,
    InvalidSignatureError,
    PerunError,
    UnknownChannelError,
)
from perun_core.interfaces.adjudicator import AdjudicatorEvent, ConcludedEvent
from perun_core.interfaces.persister import ChannelRecord
from perun_core.logging import log_extra
from perun_core.watcher.local import LocalWatcher
from perun_core.wire import messages as wire

if TYPE_CHECKING:
    from types import TracebackType

    from perun_core.interfaces.adjudicator import Adjudicator
    from perun_core.interfaces.bus import Bus, Subscription
    from perun_core.interfaces.chain import ChainBackend
    from perun_core.interfaces.funder import Funder
    from perun_core.interfaces.persister import Persister
    from perun_core.interfaces.wallet import Account

log = logging.getLogger("perun.client")

UpdateCallback = Callable[[Channel, State | None, State], Any]
"""Called after a new state became current: ``(channel, old, new)``; may be async."""
ChannelCallback = Callable[[Channel], Any]
"""Called with a channel, e.g. a newly opened one; may be async."""


class Client:
    """One party of state channels on one chain backend.

    Args:
        account: the wallet account that signs our channel states.
        backend: the chain backend (channel IDs and signatures).
        bus: the message bus.
        funder: deposits our shares (usually ``backend.funder(account)``).
        adjudicator: disputes and withdrawals (usually ``backend.adjudicator(account)``).
        persister: where channel records go (default: in memory).
        address: our wire address (default: the account's address).
        config: timeouts and limits.
        apps: the app registry (the backend's payment app is added for you).

    Use as ``async with Client(...) as client:``; it then handles incoming messages.
    """

    def __init__(
        self,
        *,
        account: Account,
        backend: ChainBackend,
        bus: Bus,
        funder: Funder,
        adjudicator: Adjudicator,
        persister: Persister | None = None,
        address: Address | None = None,
        config: ClientConfig | None = None,
        apps: AppRegistry | None = None,
    ) -> None:
        if persister is None:
            from perun_core.persistence.memory import MemoryPersister

            persister = MemoryPersister()
        self.account = account
        self.backend = backend
        self.bus = bus
        self.funder = funder
        self.adjudicator = adjudicator
        self.persister: Persister = persister
        self.address: Address = address if address is not None else account.address
        self.config = config if config is not None else ClientConfig()
        self.apps = apps if apps is not None else AppRegistry()
        pay_id = backend.payment_app_id()
        if pay_id is not None and pay_id not in self.apps:
            self.apps.register(PaymentApp(pay_id))
        self._channels: dict[bytes, Channel] = {}
        self._retiring: dict[bytes, Channel] = {}  # withdrawn, awaiting their last event
        self._proposals = ProposalProtocol(self)
        self._updates = UpdateProtocol(self)
        self._settlement = SettleProtocol(self)
        self._disputes = DisputeProtocol(self)
        self._sync = SyncProtocol(self)
        self.watcher: LocalWatcher | None = (
            LocalWatcher(adjudicator, self._on_ledger_event) if self.config.watch else None
        )
        self._proposal_handler: Any = None
        self._update_handler: Any = None
        self._update_callbacks: list[UpdateCallback] = []
        self._channel_callbacks: list[ChannelCallback] = []
        self._error_callbacks: list[Callable[[BaseException], Any]] = []
        self._tx_listeners: list[Callable[[Channel, Transaction], None]] = []
        self._tasks: set[asyncio.Future[Any]] = set()
        self._sub: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start handling incoming messages."""
        if self._reader is not None:
            return
        self._sub = self.bus.subscribe(self.address)
        self._reader = asyncio.create_task(self._read_loop(), name=f"perun-reader-{self.address}")
        # Restoring creates many objects that all stay alive (dozens per channel); the cyclic
        # garbage collector would walk them again and again while they are being created,
        # which was half the restore time of 100,000 channels. It pauses for the bulk load
        # (objects that become garbage meanwhile are collected when it resumes).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            await restore_channels(self)
            self.bus.on_connect(self.address, self._sync.sync_peer)
            # Reach out ourselves: this dials the peer, whose connection triggers sync.
            by_peer: dict[Address, list[Channel]] = {}
            for ch in self._channels.values():
                if ch._needs_sync:
                    by_peer.setdefault(ch.peer, []).append(ch)
            for chans in by_peer.values():
                self._spawn(self._sync.start_many(chans))
        finally:
            if gc_was_enabled:
                gc.enable()

    async def close(self) -> None:
        """Stop handling messages and cancel background work (channels stay persisted)."""
        if self._closed:
            return
        self._closed = True
        if self._sub is not None:
            self._sub.close()
        if self._reader is not None:
            self._reader.cancel()
        self._updates.close()
        if self.watcher is not None:
            await self.watcher.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(
            *self._tasks, *(x for x in [self._reader] if x), return_exceptions=True
        )
        for ch in self._channels.values():
            ch._closed = True

    async def __aenter__(self) -> Client:
        await self.start()
        return self

    async def __aexit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- user API ------------------------------------------------------------------------------

    def on_proposal(self, handler: Any) -> None:
        """Set the channel-proposal handler.

        ``handler(proposal, responder)`` (sync or async) or an object with a
        ``handle_proposal(proposal, responder)`` method; it must call ``responder.accept()``
        or ``responder.reject(reason)`` within the proposal timeout. Without a handler every
        proposal is rejected.
        """
        self._proposal_handler = getattr(handler, "handle_proposal", handler)

    def on_update_proposal(self, handler: Any) -> None:
        """Set the handler deciding on the peer's update proposals.

        ``handler(channel, current, proposed, responder)`` (sync or async) or an object with
        a ``handle_update(...)`` method; it must call ``responder.accept()`` or
        ``responder.reject(reason)`` within the update timeout. The default accepts only
        updates that do not lower our balances (incoming payments, finalization).
        """
        self._update_handler = getattr(handler, "handle_update", handler)

    def on_update(self, callback: UpdateCallback) -> None:
        """Register ``callback(channel, old, new)``, called after every new current state."""
        self._update_callbacks.append(callback)

    def on_new_channel(self, callback: ChannelCallback) -> None:
        """Register ``callback(channel)``, called when a channel is open (funded) or restored."""
        self._channel_callbacks.append(callback)

    def on_error(self, callback: Callable[[BaseException], Any]) -> None:
        """Register ``callback(error)`` for errors of background protocol work."""
        self._error_callbacks.append(callback)

    async def propose_channel(self, proposal: LedgerChannelProposal) -> Channel:
        """Propose a ledger channel to ``proposal.peer``; returns it once funded.

        Raises:
            PeerRejectedError: the peer rejected (with its reason).
            RequestTimedOutError: the peer did not answer in time.
            ChannelFundingError: funding failed; carries the channel for fund recovery.
            InvalidStateError: the proposal itself is invalid (nothing was sent).
        """
        self._check_open()
        ch = await self._proposals.propose(proposal)
        return ch

    def channel(self, channel_id: bytes) -> Channel:
        """The channel with ``channel_id`` (``UnknownChannelError`` if none)."""
        try:
            return self._channels[channel_id]
        except KeyError:
            raise UnknownChannelError(f"no channel 0x{channel_id.hex()}") from None

    @property
    def channels(self) -> list[Channel]:
        """Every channel of this client that is not withdrawn."""
        return list(self._channels.values())

    def add_tx_listener(self, listener: Callable[[Channel, Transaction], None]) -> None:
        """Register a synchronous listener for every newly enabled transaction (watchers)."""
        self._tx_listeners.append(listener)

    # --- internals used by the protocol modules --------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelClosedError("the client is closed")
        if self._reader is None:
            raise ChannelClosedError("the client is not started; use `async with client:`")

    def _app_of(self, params: Params) -> App | None:
        return self.apps.get(params.app) if params.app is not None else None

    def _add_channel(self, record: ChannelRecord) -> Channel:
        ch = Channel(self, record)
        self._channels[ch.id] = ch
        return ch

    def _remove_channel(self, ch: Channel) -> None:
        self._channels.pop(ch.id, None)

    async def _send(self, to: Address, msg: wire.Message) -> None:
        await self.bus.publish(wire.Envelope(self.address, to, msg))

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self._tasks.add(fut)
        fut.add_done_callback(self._tasks.discard)

    def _spawn(self, coro: Any) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)
        self._track(task)
        task.add_done_callback(self._log_failure)
        return task

    def _log_failure(self, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("background protocol task failed: %s", exc, exc_info=exc)
            self._report_error(exc)

    def _report_error(self, exc: BaseException) -> None:
        for cb in self._error_callbacks:
            try:
                cb(exc)
            except Exception:
                log.exception("error callback failed")

    def _verify_peer_sig(self, ch: Channel, state: State, sig: bytes) -> None:
        peer = ch.params.participants[ch.peer_idx]
        if not self.backend.verify_state(peer, state, sig):
            raise InvalidSignatureError(
                "the proposer's signature does not verify",
                channel_id=ch.id,
                version=state.version,
            )

    def _publish_to_watcher(self, ch: Channel, tx: Transaction) -> None:
        if self.watcher is not None and ch.params.ledger_channel:
            self.watcher.start_watching(ch.params, ch.idx, tx)  # idempotent; newest wins
        for listener in self._tx_listeners:
            listener(ch, tx)

    def _on_ledger_event(self, channel_id: bytes, ev: AdjudicatorEvent) -> None:
        ch = self._channels.get(channel_id)
        if ch is not None:
            self._disputes.on_event(ch, ev)
            return
        ch = self._retiring.get(channel_id)
        if ch is not None:
            # Withdrawn already: only tell the application (nothing is left to do).
            ch._last_event = ev
            if isinstance(ev, ConcludedEvent):
                ch._concluded = True
            ch._pulse()
            ch._emit_event(ev)

    async def _drop_channel(self, ch: Channel) -> None:
        """Forget a channel that never got both initial signatures (nothing was funded)."""
        ch._removed = True
        await ch._io(lambda: self.persister.channel_removed(ch.id))
        self._remove_channel(ch)
        if self.watcher is not None:
            await self.watcher.stop_watching(ch.id)

    async def _finish_channel(self, ch: Channel) -> None:
        """The channel is withdrawn: forget it everywhere.

        It stays watched (in the background) until its ``Concluded`` event reached
        :meth:`Channel.events`, so an application sees the channel's last ledger event
        even when the withdrawal finished before the event was polled.
        """
        if ch._phase != Phase.WITHDRAWN:
            ch._set_phase(Phase.WITHDRAWN)
        ch._removed = True
        await ch._io(lambda: self.persister.channel_removed(ch.id))
        self._remove_channel(ch)
        if self.watcher is None:
            return
        if ch._concluded:
            await self.watcher.stop_watching(ch.id)
            return
        self._retiring[ch.id] = ch
        self._spawn(self._retire(ch))

    async def _retire(self, ch: Channel) -> None:
        """Stop watching a withdrawn channel once its conclusion was delivered (bounded)."""
        try:
            async with asyncio.timeout(self.config.final_event_timeout):
                while not ch._concluded:
                    await ch._changed.wait()
        except TimeoutError:
            log.info("no Concluded event for withdrawn channel 0x%s", ch.id.hex()[:12])
        finally:
            self._retiring.pop(ch.id, None)
            if self.watcher is not None:
                await self.watcher.stop_watching(ch.id)

    def _notify_update(self, ch: Channel, old: State | None, new: State) -> None:
        for cb in self._update_callbacks:
            self._spawn(ch._await_user(cb, ch, old, new))

    def _notify_invalid(self, ch: Channel, err: PerunError) -> None:
        self._report_error(err)

    def _announce(self, ch: Channel) -> None:
        for cb in self._channel_callbacks:
            self._spawn(ch._await_user(cb, ch))

    # --- dispatch ------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        sub = self._sub
        assert sub is not None
        # A bus that can call the dispatcher as envelopes arrive saves a queue and an
        # event-loop turn per message; next() then only reports the close.
        if sub.set_receiver(self._receive):
            while await sub.next() is not None:
                pass
            return
        while (env := await sub.next()) is not None:
            self._receive(env)

    def _receive(self, env: wire.Envelope) -> None:
        try:
            self._dispatch(env)
        except Exception:
            # A bug or hostile input must never take the receiver down.
            log.exception(
                "failed to handle %s from %s",
                type(env.msg).__name__,
                env.sender,
                extra=log_extra(peer=env.sender),
            )

    def _dispatch(self, env: wire.Envelope) -> None:
        """Apply one incoming message (synchronously, in arrival order)."""
        msg = env.msg
        if env.recipient != self.address:
            log.info(
                "dropped a message for %s (we are %s)",
                env.recipient,
                self.address,
                extra=log_extra(peer=env.sender),
            )
            return
        if isinstance(msg, wire.ChannelUpdate):
            ch = self._peer_channel(env, msg.state.channel_id)
            if ch is None:
                self._reply_unknown(env, msg.state.channel_id, msg.state.version)
                return
            self._updates.on_update(ch, env, msg)
        elif isinstance(msg, wire.ChannelUpdateAcc):
            ch = self._peer_channel(env, msg.channel_id)
            if ch is None:
                return
            if msg.version == 0 and ch._v0_sig is not None:
                self._proposals.on_v0_sig(ch, msg)
            else:
                self._updates.on_acc(ch, msg)
        elif isinstance(msg, wire.ChannelUpdateRej):
            ch = self._peer_channel(env, msg.channel_id)
            if ch is not None:
                self._updates.on_rej(ch, msg)
        elif isinstance(msg, wire.ChannelSync):
            ch = self._peer_channel(env, msg.channel_id)
            if ch is not None:
                self._sync.on_sync(ch, msg)
            elif msg.current is not None or msg.pending is not None:
                # Unknown to us: say so, so the peer drops a half-created channel (whose
                # view has only its staged v0, no current state). Never answer an answer.
                unknown = wire.ChannelSync(msg.channel_id, 0, None, None, 0)
                self._spawn(self._send(env.sender, unknown))
        elif isinstance(msg, wire.LedgerChannelProposal):
            self._proposals.on_proposal(env, msg)
        elif isinstance(msg, wire.LedgerChannelProposalAcc | wire.ChannelProposalRej):
            self._proposals.on_answer(env, msg)
        elif isinstance(msg, wire.Ping):
            import time

            self._spawn(self._send(env.sender, wire.Pong(msg.created_ns, time.time_ns())))
        elif isinstance(msg, wire.Pong | wire.Shutdown):
            log.debug(
                "%s from %s", type(msg).__name__, env.sender, extra=log_extra(peer=env.sender)
            )
        else:
            log.info(
                "ignored unexpected %s from %s",
                type(msg).__name__,
                env.sender,
                extra=log_extra(peer=env.sender),
            )

    def _peer_channel(self, env: wire.Envelope, channel_id: bytes) -> Channel | None:
        ch = self._channels.get(channel_id)
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

    def _reply_unknown(self, env: wire.Envelope, channel_id: bytes, version: int) -> None:
        from perun_core.errors import RejectCode

        rej = wire.ChannelUpdateRej(
            channel_id, version, RejectCode.UNKNOWN_CHANNEL, "unknown channel"
        )
        self._spawn(self._send(env.sender, rej))


def channels_by_peer(channels: Iterable[Channel], peer: Address) -> list[Channel]:
    """The channels shared with ``peer``."""
    return [c for c in channels if c.peer == peer]
