"""The Client: one party's endpoint for opening, updating and settling channels."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from perun_core.channel.app import AppRegistry, PaymentApp, bind_apps
from perun_core.channel.state import State, Transaction
from perun_core.channel.types import Address
from perun_core.client.channel import Channel
from perun_core.client.config import ClientConfig
from perun_core.client.dispute import DisputeProtocol
from perun_core.client.engine import Engine
from perun_core.client.force import ForceProtocol
from perun_core.client.proposal import (
    LedgerChannelProposal,
    ProposalInfo,
    ProposalProtocol,
    ProposalResponder,
)
from perun_core.client.restore import restore_channels
from perun_core.client.settle import SettleProtocol
from perun_core.client.subchannel import SubChannelProtocol
from perun_core.client.sync import SyncProtocol
from perun_core.client.update import UpdateProtocol, UpdateResponder
from perun_core.errors import (
    ChannelClosedError,
    UnknownAppError,
    UnknownChannelError,
)
from perun_core.logging import log_extra
from perun_core.plugins import installed_apps
from perun_core.watcher.base import Watcher
from perun_core.watcher.local import LocalWatcher
from perun_core.wire import messages as wire

if TYPE_CHECKING:
    from types import TracebackType

    from perun_core.configfile import ConfigSource
    from perun_core.interfaces.adjudicator import Adjudicator
    from perun_core.interfaces.bus import Bus, Subscription
    from perun_core.interfaces.chain import ChainBackend
    from perun_core.interfaces.funder import Funder
    from perun_core.interfaces.persister import Persister
    from perun_core.interfaces.wallet import Account
    from perun_core.plugins import Plugins

log = logging.getLogger("perun.client")

UpdateCallback = Callable[[Channel, State | None, State], Any]
"""Called after a new state became current: ``(channel, old, new)``; may be async."""
ChannelCallback = Callable[[Channel], Any]
"""Called with a channel, e.g. a newly opened one; may be async."""


ProposalHandlerFunction = Callable[[ProposalInfo, ProposalResponder], Any]
"""Decides on a channel proposal: ``(proposal, responder)``; may be async."""
UpdateHandlerFunction = Callable[[Channel, State, State, UpdateResponder], Any]
"""Decides on the peer's update proposal: ``(channel, current, proposed, responder)``; may
be async."""


class ProposalHandlerObject(Protocol):
    """An object deciding on channel proposals (an alternative to a plain handler)."""

    def handle_proposal(self, proposal: ProposalInfo, responder: ProposalResponder, /) -> Any:
        """Call ``responder.accept()`` or ``responder.reject(reason)``; may be async."""


class UpdateHandlerObject(Protocol):
    """An object deciding on the peer's update proposals (an alternative to a plain handler)."""

    def handle_update(
        self, channel: Channel, current: State, proposed: State, responder: UpdateResponder, /
    ) -> Any:
        """Call ``responder.accept()`` or ``responder.reject(reason)``; may be async."""


class Client:
    """One party of state channels on one chain backend.

    Args:
        account: the wallet account that signs our channel states.
        backend: the chain backend (channel IDs and signatures).
        bus: the message bus.
        funder: deposits our shares (default: ``backend.funder(account)``).
        adjudicator: disputes and withdrawals (default: ``backend.adjudicator(account)``).
        persister: where channel records go (default: in memory).
        address: our wire address (default: the account's address).
        config: timeouts and limits.
        apps: the app registry (default: the backend's payment app and every installed
            plugin app the backend can run, see :func:`~perun_core.plugins.installed_apps`).
        watchers: watchers besides the local one, e.g.
            :class:`~perun_core.watcher.remote.RemoteWatcher` s of remote watchtowers; each
            gets every newly enabled state too.

    Use as ``async with Client(...) as client:``; it then handles incoming messages.
    :meth:`from_config` builds one from a ``perun.toml`` configuration.
    """

    def __init__(
        self,
        *,
        account: Account,
        backend: ChainBackend,
        bus: Bus,
        funder: Funder | None = None,
        adjudicator: Adjudicator | None = None,
        persister: Persister | None = None,
        address: Address | None = None,
        config: ClientConfig | None = None,
        apps: AppRegistry | None = None,
        watchers: Sequence[Watcher] = (),
    ) -> None:
        if persister is None:
            from perun_core.persistence.memory import MemoryPersister

            persister = MemoryPersister()
        if funder is None:
            funder = backend.funder(account)
        if adjudicator is None:
            adjudicator = backend.adjudicator(account)
        self.account = account
        self.backend = backend
        self.bus = bus
        self.funder = funder
        self.adjudicator = adjudicator
        self.persister: Persister = persister
        self.address: Address = address if address is not None else account.address
        self.config = config if config is not None else ClientConfig()
        if apps is None:
            apps = bind_apps(installed_apps(), backend.app_id)
        self.apps = apps
        pay_id = backend.payment_app_id()
        if pay_id is not None and pay_id not in self.apps:
            self.apps.register(PaymentApp(pay_id))
        self._engine = engine = Engine(self)
        engine.proposals = ProposalProtocol(engine)
        engine.updates = UpdateProtocol(engine)
        engine.settlement = SettleProtocol(engine)
        engine.disputes = DisputeProtocol(engine)
        engine.force = ForceProtocol(engine)
        engine.sync = SyncProtocol(engine)
        engine.subs = SubChannelProtocol(engine)
        self.watcher: LocalWatcher | None = (
            LocalWatcher(adjudicator, engine.on_ledger_event) if self.config.watch else None
        )
        self.extra_watchers: tuple[Watcher, ...] = tuple(watchers)
        self._message_handlers: dict[type[wire.Message], list[Callable[[wire.Envelope], None]]] = {}
        self._sub: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        # Parts that from_config opened for this client, closed with it (last opened first).
        self._owned: list[Bus | Persister | ChainBackend] = []
        for w in self.extra_watchers:
            w.attach(self)

    @classmethod
    async def from_config(
        cls,
        source: ConfigSource,
        *,
        account: Account | None = None,
        backend: ChainBackend | None = None,
        bus: Bus | None = None,
        persister: Persister | None = None,
        config: ClientConfig | None = None,
        plugins: Plugins | None = None,
    ) -> Client:
        """A client built from a ``perun.toml`` configuration (see :mod:`perun_core.configfile`).

        The chain backend, bus and persister the configuration names are looked up in the
        plugin registries and built from their tables; when it names a ``logger``, the
        plugins' ``perun_configure`` hook gets the ``[perun]`` table (process-wide). A part
        passed in is used instead of building one (e.g. a bus shared by several clients of
        a process). Parts the client built are closed by :meth:`close`.

        Args:
            source: a path of a TOML file, or the parsed document or its ``perun`` table.
            account: the account (default: ``perun.account`` or the wallet's only account).
            backend: use this chain backend instead of building one.
            bus: use this bus instead of opening one.
            persister: use this persister instead of opening one.
            config: timeouts and limits (default: the ``[perun.client]`` table).
            plugins: the loaded plugins (default: :func:`~perun_core.plugins.load_plugins`).

        Raises:
            ConfigError: the configuration is malformed, a part refuses its table, or the
                account is not in the wallet (or not named while the wallet holds several).
            PluginNotFoundError: a named plugin is not installed.
        """
        from perun_core.configfile import build_parts

        parts = await build_parts(
            source, account=account, backend=backend, bus=bus, persister=persister, plugins=plugins
        )
        try:
            from perun_core.watcher.remote import towers_from_config

            client = cls(
                account=parts.account,
                backend=parts.backend,
                bus=parts.bus,
                persister=parts.persister,
                config=config if config is not None else parts.client_config,
                watchers=towers_from_config(parts.table, parts.backend),
            )
        except BaseException:
            await parts.close()
            raise
        client._owned = parts.owned
        return client

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
            engine = self._engine
            await restore_channels(engine)
            self.bus.on_connect(self.address, engine.sync.sync_peer)
            # Reach out ourselves: this dials the peer, whose connection triggers sync.
            by_peer: dict[Address, list[Channel]] = {}
            for ch in engine.channels.values():
                if ch.machine.needs_sync:
                    by_peer.setdefault(ch.peer, []).append(ch)
            for chans in by_peer.values():
                engine.spawn(engine.sync.start_many(chans))
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
        engine = self._engine
        engine.updates.close()
        if self.watcher is not None:
            await self.watcher.close()
        for w in self.extra_watchers:
            await w.close()
        for t in list(engine.tasks):
            t.cancel()
        await asyncio.gather(
            *engine.tasks, *(x for x in [self._reader] if x), return_exceptions=True
        )
        for ch in engine.channels.values():
            ch.rt.closed = True
        for part in reversed(self._owned):
            await part.close()

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

    def on_proposal(self, handler: ProposalHandlerFunction | ProposalHandlerObject) -> None:
        """Set the channel-proposal handler.

        ``handler(proposal, responder)`` (sync or async) or an object with a
        ``handle_proposal(proposal, responder)`` method; it must call ``responder.accept()``
        or ``responder.reject(reason)`` within the proposal timeout. Without a handler every
        proposal is rejected.
        """
        self._engine.proposal_handler = getattr(handler, "handle_proposal", handler)

    def on_update_proposal(self, handler: UpdateHandlerFunction | UpdateHandlerObject) -> None:
        """Set the handler deciding on the peer's update proposals.

        ``handler(channel, current, proposed, responder)`` (sync or async) or an object with
        a ``handle_update(...)`` method; it must call ``responder.accept()`` or
        ``responder.reject(reason)`` within the update timeout. The default accepts only
        updates that do not lower our balances (incoming payments, finalization).
        """
        self._engine.update_handler = getattr(handler, "handle_update", handler)

    def on_update(self, callback: UpdateCallback) -> None:
        """Register ``callback(channel, old, new)``, called after every new current state."""
        self._engine.update_callbacks.append(callback)

    def on_new_channel(self, callback: ChannelCallback) -> None:
        """Register ``callback(channel)``, called when a channel is open (funded) or restored."""
        self._engine.channel_callbacks.append(callback)

    def on_error(self, callback: Callable[[BaseException], Any]) -> None:
        """Register ``callback(error)`` for errors of background protocol work."""
        self._engine.error_callbacks.append(callback)

    async def propose_channel(self, proposal: LedgerChannelProposal) -> Channel:
        """Propose a ledger channel to ``proposal.peer``; returns it once funded.

        Raises:
            PeerRejectedError: the peer rejected (with its reason).
            RequestTimedOutError: the peer did not answer in time.
            ChannelFundingError: funding failed; carries the channel for fund recovery.
            InvalidStateError: the proposal itself is invalid (nothing was sent).
        """
        self._check_open()
        return await self._engine.proposals.propose(proposal)

    def app_id(self, name: str) -> bytes:
        """The AppID of the installed app ``name`` on this client's chain.

        Raises:
            UnknownAppError: no such app, or this chain cannot run it.
        """
        aid = self.backend.app_id(name)
        if aid is None or aid not in self.apps:
            chain = self.backend.name
            raise UnknownAppError(f"app {name!r} is not installed for the {chain} chain")
        return aid

    def channel(self, channel_id: bytes) -> Channel:
        """The channel with ``channel_id`` (``UnknownChannelError`` if none)."""
        try:
            return self._engine.channels[channel_id]
        except KeyError:
            raise UnknownChannelError(f"no channel 0x{channel_id.hex()}") from None

    @property
    def channels(self) -> list[Channel]:
        """Every channel of this client that is not withdrawn."""
        return list(self._engine.channels.values())

    @property
    def watchers(self) -> tuple[Watcher, ...]:
        """Every watcher of this client: the local one (if on) and the extra ones."""
        local = (self.watcher,) if self.watcher is not None else ()
        return local + self.extra_watchers

    def add_message_handler(
        self, kind: type[wire.Message], handler: Callable[[wire.Envelope], None]
    ) -> None:
        """Hand incoming messages of a plugin-defined ``kind`` (codes 128-255) to ``handler``.

        Several handlers of one kind each get every such envelope (e.g. one remote watcher
        per tower, each picking its tower's answers); ``handler`` runs synchronously in
        arrival order and must not block.
        """
        handlers = self._message_handlers.get(kind)
        if handlers is None:
            handlers = self._message_handlers[kind] = []
            hs = handlers

            def fan_out(env: wire.Envelope, msg: wire.Message) -> None:
                for h in list(hs):
                    h(env)

            self._engine.route(kind, fan_out)
        handlers.append(handler)

    def add_tx_listener(self, listener: Callable[[Channel, Transaction], None]) -> None:
        """Register a synchronous listener for every newly enabled transaction (watchers)."""
        self._engine.tx_listeners.append(listener)

    # --- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ChannelClosedError("the client is closed")
        if self._reader is None:
            raise ChannelClosedError("the client is not started; use `async with client:`")

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
            self._engine.dispatch(env)
        except Exception:
            # A bug or hostile input must never take the receiver down.
            log.exception(
                "failed to handle %s from %s",
                type(env.msg).__name__,
                env.sender,
                extra=log_extra(peer=env.sender),
            )


def channels_by_peer(channels: Iterable[Channel], peer: Address) -> list[Channel]:
    """The channels shared with ``peer``."""
    return [c for c in channels if c.peer == peer]
